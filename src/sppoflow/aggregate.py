"""The aggregate stage: win rates, training pairs and round statistics, in SQL run by DuckDB.

The queries live in ``sql/*.sql`` and read the views ``samples`` and ``preferences``; see
DESIGN section 2 for the two estimators (the authors' score-based one and the direct one).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import duckdb
import pandas as pd

from sppoflow.cli import setting
from sppoflow.errors import UserError, check_choice

ESTIMATORS = ("score", "direct")


@dataclass
class AggregateSettings:
    estimator: str = setting(
        "score", "win-rate estimator: the authors' score or direct", ESTIMATORS
    )
    min_spread: float = setting(
        0.001, "prompts whose p_winner - p_loser is below this are not trained on"
    )


@dataclass
class Aggregates:
    responses: pd.DataFrame  # RESPONSES: every response's win rates
    pairs: pd.DataFrame  # PAIRS: the winner and loser of each prompt
    stats: pd.DataFrame  # one row of round statistics


def query(name: str) -> str:
    return resources.files("sppoflow.sql").joinpath(f"{name}.sql").read_text()


def check_complete(preferences: pd.DataFrame, samples: pd.DataFrame) -> None:
    """Every ordered pair of every prompt's responses must be judged exactly once."""
    k = samples.groupby("prompt_id").size()
    expected = int((k * (k - 1)).sum())
    pairs = preferences[["prompt_id", "i", "j"]]
    if pairs.duplicated().any():
        raise UserError("preferences hold the same (prompt_id, i, j) more than once")
    if len(pairs) != expected or not set(pairs["prompt_id"]) <= set(k.index):
        raise UserError(
            f"preferences hold {len(pairs)} ordered pairs but the samples need {expected} "
            "(K(K-1) per prompt); re-run the score stage"
        )


def aggregate(
    samples: pd.DataFrame,
    preferences: pd.DataFrame,
    settings: AggregateSettings,
    round_number: int = 0,
) -> Aggregates:
    check_choice("aggregate.estimator", settings.estimator, ESTIMATORS)
    check_complete(preferences, samples)
    # one thread: the round's statistics (averages over prompts) come out the same to the bit
    con = duckdb.connect(config={"threads": 1})
    con.register("samples", samples.drop(columns=["response_token_ids"], errors="ignore"))
    con.register("preferences", preferences)
    params = {"estimator": settings.estimator}
    responses = con.execute(query("response_win_rates"), params).df()
    con.register("responses", responses)
    pairs = con.execute(query("pairs"), {**params, "min_spread": settings.min_spread}).df()
    con.register("pairs", pairs)
    stats = con.execute(
        query("round_stats"),
        {**params, "min_spread": settings.min_spread, "round": round_number},
    ).df()
    con.close()
    return Aggregates(responses, pairs, stats)
