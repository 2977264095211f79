"""A causal LM as a pairwise judge: it reads the instruction and two responses and names the
better one; P(first > second | x) comes from the next-token logits of the two verdict tokens.

The judge prompt is a template with {instruction}, {response_a} and {response_b}, rendered
as a user message through the judge's own chat template. Every pair is asked in both orders
(judges prefer a position), and the share of pairs whose verdict follows the position is
reported. A small model is no judge (docs/judges.md, "The embedded default and what its judge
rewards"); use a large instruct model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from sppoflow.errors import UserError
from sppoflow.models.batching import length_sorted_batches, pad
from sppoflow.models.chat import render_prompt
from sppoflow.score.judges.base import PairwiseJudge, TransformersJudge

DEFAULT_MAX_LENGTH = 4096
PLACEHOLDERS = ("{instruction}", "{response_a}", "{response_b}")
DEFAULT_TEMPLATE = """Which of the two responses below follows the instruction better: \
more helpful, more accurate, more relevant? Judge the content, not the length or the order.

[Instruction]
{instruction}

[Response A]
{response_a}

[Response B]
{response_b}

Answer with a single letter, A or B."""


def read_template(path: str | None) -> str:
    if path is None:
        return DEFAULT_TEMPLATE
    file = Path(path)
    if not file.is_file():
        raise UserError(f"judge.template: file {file} not found")
    template = file.read_text()
    missing = [p for p in PLACEHOLDERS if p not in template]
    if missing:
        raise UserError(f"judge.template: {file} lacks {', '.join(missing)}")
    return template


def fill(template: str, instruction: str, response_a: str, response_b: str) -> str:
    """Substitute the three placeholders once; braces in the texts are left alone."""
    parts = {"{instruction}": instruction, "{response_a}": response_a, "{response_b}": response_b}
    out, rest = [], template
    while rest:
        found = [(rest.find(p), p) for p in parts if rest.find(p) >= 0]
        if not found:
            out.append(rest)
            break
        at, placeholder = min(found)
        out.append(rest[:at] + parts[placeholder])
        rest = rest[at + len(placeholder) :]
    return "".join(out)


class LLMJudge(PairwiseJudge, TransformersJudge):
    name = "llm_judge"
    default_max_length = DEFAULT_MAX_LENGTH

    def __init__(self, folder: str | Path, settings, device, dtype: torch.dtype) -> None:
        self.model = self.load(AutoModelForCausalLM, folder, settings, device, dtype)
        if not self.tokenizer.chat_template:
            raise UserError(f"judge.model: {folder} has no chat template to put the question in")
        verdict_a, verdict_b = settings.verdict_a, settings.verdict_b
        self.verdict_ids = [self.verdict_id(verdict_a), self.verdict_id(verdict_b)]
        if self.verdict_ids[0] == self.verdict_ids[1]:
            raise UserError(f"judge.verdict_a and verdict_b map to the same token ({verdict_a!r})")
        self.template = read_template(settings.template)

    def verdict_id(self, token: str) -> int:
        """The id of a verdict as the judge would write it first (the last id if it splits)."""
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if not ids:
            raise UserError(f"judge verdict token {token!r} encodes to nothing")
        return ids[-1]

    def encode(self, instruction: str, response_a: str, response_b: str) -> list[int]:
        """The filled prompt through the chat template; an over-long one loses its beginning,
        so the question and the answer slot stay."""
        text = render_prompt(
            self.tokenizer, fill(self.template, instruction, response_a, response_b)
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][-self.max_length :]

    @torch.inference_mode()
    def pair_logits(
        self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]
    ) -> np.ndarray:
        encoded = [self.encode(*t) for t in zip(prompts, first, second, strict=True)]
        out = np.zeros(len(encoded), dtype=np.float64)
        lengths = [len(ids) for ids in encoded]
        verdicts = torch.tensor(self.verdict_ids, device=self.device)
        for batch in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens):
            # Left padding puts every row's next-token position last; position ids follow the
            # mask so a padded row is computed as it would be alone.
            ids, mask = pad([encoded[n] for n in batch], self.tokenizer.pad_token_id, left=True)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = (
                self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=positions.to(self.device),
                )
                .logits[:, -1]
                .float()
            )
            pair = logits.index_select(-1, verdicts)
            out[batch] = (pair[:, 0] - pair[:, 1]).cpu().numpy()
        return out


def build(settings, folder: Path, device: torch.device, dtype: torch.dtype) -> LLMJudge:
    return LLMJudge(folder, settings, device, dtype)
