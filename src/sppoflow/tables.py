"""The tables passed between stages: their columns, checked where a file is read or written.

Users query these files with DuckDB, so the column names are part of the project's contract.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

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

RESPONSES = Table(
    "response win rates",
    {
        "prompt_id": "stable prompt id",
        "response_idx": "index of the response",
        "score": "authors' score s_i = (1/K) sum_j (L[i,j] - L[j,i])",
        "win_rate_score": "(1/K) sum_j sigmoid(s_i - s_j), self term 0.5 included",
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
        "score": "pointwise judge score of the round's response (NaN for pairwise judges)",
        "opponent_score": "the same for the opponent's response",
        "order_flipped": "pairwise judges: the verdict changed with the order (NaN otherwise)",
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
    """Check the columns and write parquet atomically (a crash never leaves half a file)."""
    path = Path(path)
    table.check(frame, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)
