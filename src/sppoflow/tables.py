"""The tables passed between stages: their columns, checked where a file is read or written.

Users query these files with DuckDB, so the column names are part of the project's contract;
docs/data-contracts.md says which stage writes and reads each, with types and invariants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sppoflow import provenance
from sppoflow.atomic import write_atomically
from sppoflow.errors import UserError


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, str]  # column -> what it holds (documentation and check)

    def check(self, frame: pd.DataFrame, path: Path | str) -> None:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise UserError(
                f"{path}: not a {self.name} table, missing column(s) {', '.join(missing)}"
            )


PROMPT_POOL = Table(
    "prompt pool",
    {
        "prompt_id": "stable id: 'p' + first 16 hex digits of sha256 of the normalised prompt",
        "prompt": "the instruction text (plain, not chat-templated)",
        "split": "'train' or 'eval'",
        "source_round": "0 for the shared source, r for the source listed for round r",
        "position": "seeded order of the prompt within its split and source",
    },
)

PROMPTS = Table(
    "prompts",
    {
        "prompt_id": "stable prompt id",
        "prompt": "the instruction text",
    },
)

SAMPLES = Table(
    "samples",
    {
        "prompt_id": "stable prompt id",
        "prompt": "the instruction text",
        "response_idx": "0..K-1, the response's index among the prompt's K samples",
        "response": "decoded response text, special tokens removed",
        "response_token_ids": "the generated token ids, stop token included when it stopped",
        "prompt_tokens": "tokens of the chat-templated prompt",
        "response_tokens": "generated tokens, stop token included",
        "finish_reason": "'stop' (a stop token was generated) or 'length' (max_new_tokens)",
    },
)

PREFERENCES = Table(
    "preferences",
    {
        "prompt_id": "stable prompt id",
        "i": "response_idx of the first response",
        "j": "response_idx of the second response",
        "logit": "logit of P(y_i > y_j | x)",
        "prob": "P(y_i > y_j | x) = sigmoid(logit)",
    },
)

RESPONSE_WIN_RATES = Table(
    "response win rates",
    {
        "prompt_id": "stable prompt id",
        "response_idx": "index of the response",
        "strength": "the authors' strength s_i = (1/K) sum_j (L[i,j] - L[j,i])",
        "win_rate_strength": "(1/K) sum_j sigmoid(s_i - s_j), self term 0.5 included",
        "win_rate_direct": "mean over j != i of (P[i,j] + 1 - P[j,i]) / 2",
        "win_rate": "the configured estimator's win rate",
        "is_winner": "the prompt's winner under the configured estimator",
        "is_loser": "the prompt's loser under the configured estimator",
        "response_tokens": "generated tokens",
    },
)

PAIRS = Table(
    "pairs",
    {
        "prompt_id": "stable prompt id",
        "prompt": "the instruction text",
        "winner_idx": "response_idx of the winner w",
        "loser_idx": "response_idx of the loser l",
        "winner": "winner text",
        "loser": "loser text",
        "p_winner": "estimated win rate of w against the policy, P(w > pi_t | x)",
        "p_loser": "estimated win rate of l against the policy",
        "q": "P(w > l | x) under the configured estimator",
        "spread": "p_winner - p_loser",
    },
)

ROUND_STATS = Table(
    "round statistics",
    {
        "round": "the round t",
        "estimator": "aggregate.estimator",
        "comparisons": "the judging plan the preferences follow (judge.comparisons)",
        "n_prompts": "prompts sampled",
        "n_responses": "responses sampled (K per prompt)",
        "n_pairs": "training pairs (prompts with a winner and a loser)",
        "n_no_preference": "prompts whose spread is 0 or below aggregate.min_spread (no pair)",
        "mean_spread": "mean over prompts of max - min win rate",
        "median_spread": "median of the same",
        "mean_p_winner": "mean p_winner of the pairs",
        "mean_p_loser": "mean p_loser of the pairs",
        "mean_q": "mean q of the pairs",
        "estimator_winner_agreement": "share of prompts where both estimators pick one winner",
        "mean_response_tokens": "mean generated tokens",
        "share_truncated": "share of responses cut at max_new_tokens",
    },
)

EVAL_JUDGEMENTS = Table(
    "evaluation judgements",
    {
        "prompt_id": "stable prompt id",
        "judge": "the judge's name: 'training' (the training judge) or one of evaluate.judges",
        "opponent": "'base', 'previous', or (head to head) the other method's name",
        "prob": "P(round's response > opponent's response | x), both orders for pairwise judges",
        "outcome": "1 win, 0.5 tie, 0 loss",
        "tokens": "round's response tokens",
        "opponent_tokens": "opponent's response tokens",
        "overlap": "share of the prompt's distinct words the round's response repeats",
        "opponent_overlap": "the same for the opponent's response",
        "repetition": "share of the round's response's word 4-grams that repeat an earlier one",
        "opponent_repetition": "the same for the opponent's response",
        "reward": "pointwise judges' reward r(x, y) of the round's response (NaN: pairwise)",
        "opponent_reward": "the same for the opponent's response",
        "order_flipped": "pairwise judges: the verdict changed with the order (NaN otherwise)",
    },
)


QUESTION_SET_ANSWERS = Table(
    "question-set answers",
    {
        "question_id": "the question's id in the question set's question file, as text",
        "category": "the question's category in that file",
        "turn": "1, 2, ...: the user turn this row answers",
        "prompt": "that turn's user message",
        "temperature": "the temperature the answer was sampled at (0: greedy)",
        "response": "decoded answer text, special tokens removed",
        "response_token_ids": "the generated token ids, stop token included when it stopped",
        "prompt_tokens": "tokens of the chat-templated conversation up to this turn",
        "response_tokens": "generated tokens, stop token included",
        "finish_reason": "'stop' (a stop token was generated) or 'length' (max_new_tokens)",
    },
)


def check_table(path: Path | str, table: Table) -> None:
    """The file exists, is parquet and has ``table``'s columns; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {table.name} file not found")
    try:
        names = pq.read_schema(path).names
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise UserError(f"{path}: cannot read {table.name} parquet: {error}") from error
    table.check(pd.DataFrame(columns=names), path)


def read_table(path: Path | str, table: Table) -> pd.DataFrame:
    """Read a parquet file and check it has ``table``'s columns; errors name the file."""
    check_table(path, table)
    try:
        return pd.read_parquet(path)
    except Exception as error:
        raise UserError(f"{path}: cannot read {table.name} parquet: {error}") from error


def write_table(frame: pd.DataFrame, path: Path | str, table: Table) -> None:
    """Check the columns and write parquet atomically: the file appears whole or not at all
    (an interrupted write leaves neither it nor a partial file). The job's provenance record
    goes into the file's metadata (sppoflow.provenance)."""
    path = Path(path)
    table.check(frame, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = arrow.replace_schema_metadata(with_provenance(arrow.schema).metadata)
    write_atomically(path, lambda partial: pq.write_table(arrow, partial))


def with_provenance(schema: pa.Schema) -> pa.Schema:
    """``schema`` with this job's provenance record in its metadata (see sppoflow.provenance)."""
    record = provenance.record_json()
    if record is None:
        return schema
    return schema.with_metadata({**(schema.metadata or {}), provenance.METADATA_KEY: record})
