"""The round's tables as training examples, and the collator that batches them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from sppoflow.errors import UserError
from sppoflow.models.chat import encode_prompts
from sppoflow.tables import PAIRS, RESPONSE_WIN_RATES, SAMPLES, read_table
from sppoflow.train.methods import WINNER_LOSER
from sppoflow.train.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundTables:
    """The round's tables that training reads: the samples (for the exact sampled token ids),
    the pairs and the responses' win rates."""

    samples: Path
    pairs: Path
    win_rates: Path

    def paths(self) -> list[Path]:
        return [Path(self.samples), Path(self.pairs), Path(self.win_rates)]

    def read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Each table, checked against its contract."""
        return (
            read_table(self.samples, SAMPLES),
            read_table(self.pairs, PAIRS),
            read_table(self.win_rates, RESPONSE_WIN_RATES),
        )


def build_examples(
    tokenizer,
    samples: pd.DataFrame,
    pairs: pd.DataFrame,
    win_rates: pd.DataFrame,
    settings: TrainSettings,
    system_prompt: str | None = None,
) -> list[dict]:
    """One example per prompt: its (truncated) prompt ids and the sequences it trains.

    winner_loser: sequences [w, l] with their win rates and q; all: every response with its
    win rate, the winner and loser marked (role +1 / -1) for logging.
    """
    ids = {
        (r.prompt_id, r.response_idx): list(r.response_token_ids)
        for r in samples.itertuples(index=False)
    }
    if settings.train_on == WINNER_LOSER:
        groups = [
            (
                r.prompt_id,
                r.prompt,
                [(r.winner_idx, r.p_winner, 1), (r.loser_idx, r.p_loser, -1)],
                r.q,
            )
            for r in pairs.itertuples(index=False)
        ]
    else:
        trained = set(pairs["prompt_id"])  # prompts with a preference
        prompt_text = samples.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
        groups = []
        for pid, group in win_rates[win_rates["prompt_id"].isin(trained)].groupby("prompt_id"):
            seqs = [
                (r.response_idx, r.win_rate, 1 if r.is_winner else -1 if r.is_loser else 0)
                for r in group.itertuples(index=False)
            ]
            groups.append((pid, prompt_text[pid], seqs, float("nan")))
    if not groups:
        raise UserError("no training pairs: every prompt of this round had no preference")
    empty = [key for key, token_ids in ids.items() if not token_ids]
    if empty:
        raise UserError(
            f"samples: {len(empty)} response(s) have no tokens, not even a stop token (first: "
            f"prompt {empty[0][0]}, response {empty[0][1]}): re-run the sample stage"
        )
    prompt_ids = encode_prompts(tokenizer, [g[1] for g in groups], system_prompt)
    examples = []
    cut_prompts = cut_responses = 0
    for (pid, _, seqs, q), prompt in zip(groups, prompt_ids, strict=True):
        cut_prompts += len(prompt) > settings.max_prompt_length
        prompt = prompt[-settings.max_prompt_length :]  # keep the end, where the question is
        budget = settings.max_length - len(prompt)
        cut_responses += sum(len(ids[(pid, idx)]) > budget for idx, _, _ in seqs)
        examples.append(
            {
                "prompt_id": pid,
                "prompt_ids": prompt,
                "response_ids": [ids[(pid, idx)][:budget] for idx, _, _ in seqs],
                "p": [float(p) for _, p, _ in seqs],
                "role": [role for _, _, role in seqs],
                "q": float(q),
            }
        )
    if cut_prompts or cut_responses:
        log.warning(
            "%d of %d prompts were longer than train.max_prompt_length=%d tokens and lost their "
            "start; %d responses were cut to fit train.max_length=%d",
            cut_prompts, len(examples), settings.max_prompt_length, cut_responses,
            settings.max_length,
        )  # fmt: skip
    return examples


class Collator:
    """Flatten each example's sequences into one right-padded batch. Counts the tokens and
    the padded slots of the batches it made (``padding_share``)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.tokens = self.slots = 0

    @property
    def padding_share(self) -> float:
        """The share of the batches' token slots that were padding."""
        return 1.0 - self.tokens / self.slots if self.slots else 0.0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows, response_masks = [], []
        for ex in examples:
            for response in ex["response_ids"]:
                rows.append(ex["prompt_ids"] + response)
                response_masks.append([0] * len(ex["prompt_ids"]) + [1] * len(response))
        width = max(len(r) for r in rows)
        self.tokens += sum(len(r) for r in rows)
        self.slots += width * len(rows)
        batch = {
            "input_ids": torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
            "response_mask": torch.tensor([m + [0] * (width - len(m)) for m in response_masks]),
            "p": torch.tensor([p for ex in examples for p in ex["p"]], dtype=torch.float32),
            "role": torch.tensor([r for ex in examples for r in ex["role"]]),
            "q": torch.tensor([ex["q"] for ex in examples for _ in ex["p"]], dtype=torch.float32),
        }
        for key in ("ref_logps", "base_logps"):  # one value per sequence, when computed
            if key in examples[0]:
                batch[key] = torch.tensor(
                    [x for ex in examples for x in ex[key]], dtype=torch.float32
                )
        return batch
