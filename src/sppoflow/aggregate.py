"""The aggregate stage: win rates, training pairs and round statistics, in SQL run by DuckDB.

The queries live in ``sql/*.sql`` and read the views ``samples`` and ``preferences``; see
README, "The pipeline", for the two estimators (the authors' score-based one and the direct one).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from sppoflow.cli import setting
from sppoflow.errors import UserError, check_choice

ESTIMATORS = ("score", "direct")


@dataclass
class AggregateSettings:
    estimator: str = setting(
        "score", "win-rate estimator: the authors' score or direct", ESTIMATORS
    )
    min_spread: float = setting(
        0.0, "prompts whose p_winner - p_loser is below this are not trained on"
    )


@dataclass
class Aggregates:
    responses: pd.DataFrame  # RESPONSES: every response's win rates
    pairs: pd.DataFrame  # PAIRS: the winner and loser of each prompt
    stats: pd.DataFrame  # one row of round statistics


def query(name: str) -> str:
    return resources.files("sppoflow.sql").joinpath(f"{name}.sql").read_text()


def check_complete(con: duckdb.DuckDBPyConnection) -> None:
    """Every ordered pair of every prompt's responses must be judged exactly once."""
    duplicated, judged = con.execute(
        "SELECT count(*) - count(DISTINCT (prompt_id, i, j)), count(*) FROM preferences"
    ).fetchone()
    if duplicated:
        raise UserError("preferences hold the same (prompt_id, i, j) more than once")
    expected = con.execute(
        "SELECT coalesce(sum(k * (k - 1)), 0) FROM "
        "(SELECT count(*) AS k FROM samples GROUP BY prompt_id)"
    ).fetchone()[0]
    strangers = con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT prompt_id FROM preferences) "
        "WHERE prompt_id NOT IN (SELECT prompt_id FROM samples)"
    ).fetchone()[0]
    if judged != expected or strangers:
        raise UserError(
            f"preferences hold {judged} ordered pairs but the samples need {expected} "
            "(K(K-1) per prompt); re-run the score stage"
        )


def register(con: duckdb.DuckDBPyConnection, name: str, table: pd.DataFrame | Path) -> None:
    """A view ``name`` over a DataFrame or a parquet file (read by DuckDB where it lies, so a
    paper round's 100k response texts never become Python objects); token ids left out."""
    if isinstance(table, pd.DataFrame):
        con.register(name, table.drop(columns=["response_token_ids"], errors="ignore"))
        return
    columns = [c for c in pq.read_schema(table).names if c != "response_token_ids"]
    selected = ", ".join(f'"{c}"' for c in columns)
    path = str(table).replace("'", "''")
    con.execute(f"CREATE VIEW {name} AS SELECT {selected} FROM read_parquet('{path}')")


def aggregate(
    samples: pd.DataFrame | Path,
    preferences: pd.DataFrame | Path,
    settings: AggregateSettings,
    round_number: int = 0,
) -> Aggregates:
    """Win rates, pairs and statistics of a round from its samples and preferences (tables,
    or parquet files that DuckDB reads where they lie)."""
    check_choice("aggregate.estimator", settings.estimator, ESTIMATORS)
    # one thread: the round's statistics (averages over prompts) come out the same to the bit
    con = duckdb.connect(config={"threads": 1})
    register(con, "samples", samples)
    register(con, "preferences", preferences)
    check_complete(con)
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
