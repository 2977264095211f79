"""The aggregate stage: win rates, training pairs and round statistics, in SQL run by DuckDB.

The queries live in ``sql/*.sql`` and read the views ``samples`` and ``preferences``; see
docs/algorithm.md, section 4, for the two estimators (the authors' strength-based one and the
direct one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from sppoflow.errors import UserError, check_choice
from sppoflow.schema import config_section, declared
from sppoflow.score.plans import check_plan

log = logging.getLogger(__name__)

ESTIMATORS = ("strength", "direct")


@config_section("aggregate")
class AggregateSettings:
    estimator: str = declared()
    min_spread: float = declared()


@dataclass
class Aggregates:
    win_rates: pd.DataFrame  # RESPONSE_WIN_RATES: every response's win rates
    pairs: pd.DataFrame  # PAIRS: the winner and loser of each prompt
    stats: pd.DataFrame  # one row of round statistics


def query(name: str) -> str:
    return resources.files("sppoflow.aggregate.sql").joinpath(f"{name}.sql").read_text()


def check_complete(con: duckdb.DuckDBPyConnection) -> str:
    """Every planned ordered pair of every prompt's responses judged exactly once, none
    missing and none beyond the plan; returns the judging plan the preferences follow
    (judge.comparisons, sppoflow.score.plans)."""
    duplicated = con.execute(
        "SELECT count(*) - count(DISTINCT (prompt_id, i, j)) FROM preferences"
    ).fetchone()[0]
    if duplicated:
        raise UserError("preferences hold the same (prompt_id, i, j) more than once")
    strangers = con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT prompt_id FROM preferences) "
        "WHERE prompt_id NOT IN (SELECT prompt_id FROM samples)"
    ).fetchone()[0]
    if strangers:
        raise UserError(
            f"preferences hold {strangers} prompt(s) that the samples do not: re-run the "
            "score stage"
        )
    # each pair as positions in the prompt's response order, which is what a plan names
    judged = con.execute(query("judged_pairs")).df()
    pairs = {pid: set() for pid in judged["prompt_id"]}
    sizes = dict(zip(judged["prompt_id"], judged["k"], strict=True))
    for pid, i, j in judged[["prompt_id", "i", "j"]].dropna().itertuples(index=False, name=None):
        pairs[pid].add((int(i), int(j)))
    return check_plan((pid, int(sizes[pid]), pairs[pid]) for pid in sorted(pairs))


def register(con: duckdb.DuckDBPyConnection, name: str, table: pd.DataFrame | Path) -> None:
    """A view ``name`` over a DataFrame or a parquet file (read by DuckDB where it lies, so a
    paper round's 100k response texts never become Python objects); token ids left out."""
    if isinstance(table, pd.DataFrame):
        con.register(name, table.drop(columns=["response_token_ids"], errors="ignore"))
        return
    columns = [c for c in pq.read_schema(table).names if c != "response_token_ids"]
    # the relation API: neither the path nor a column name is spliced into SQL text
    relation = con.read_parquet(str(table)).select(*map(duckdb.ColumnExpression, columns))
    relation.create_view(name)


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
    plan = check_complete(con)
    log.info("the preferences follow judge.comparisons %s", plan)
    params = {"estimator": settings.estimator}
    win_rates = con.execute(query("response_win_rates"), params).df()
    con.register("response_win_rates", win_rates)
    pairs = con.execute(query("pairs"), {**params, "min_spread": settings.min_spread}).df()
    con.register("pairs", pairs)
    stats = con.execute(
        query("round_stats"),
        {**params, "min_spread": settings.min_spread, "round": round_number, "plan": plan},
    ).df()
    con.close()
    check_preferences(stats.iloc[0], settings)
    return Aggregates(win_rates, pairs, stats)


def check_preferences(stats: pd.Series, settings: AggregateSettings) -> None:
    """Prompts whose responses all tie (or differ by less than min_spread) give no pair: a
    warning for some, an error when none is left to train on."""
    tied, prompts = int(stats["n_no_preference"]), int(stats["n_prompts"])
    if prompts and tied == prompts:
        raise UserError(
            f"no training pair: the responses of all {prompts} prompts tie (win-rate spread 0"
            + (
                f" or below aggregate.min_spread={settings.min_spread}"
                if settings.min_spread
                else ""
            )
            + "); the judge cannot tell them apart, or the policy gives one answer K times"
        )
    if tied:
        log.warning(
            "%d of %d prompts give no pair: their responses tie (spread 0%s)",
            tied,
            prompts,
            f" or below min_spread={settings.min_spread}" if settings.min_spread else "",
        )
