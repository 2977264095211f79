"""Exports for tools outside the workflow.

- AlpacaEval's model-outputs JSON (a list of {instruction, output, generator}), one file per
  round, so a round's evaluation responses can go to AlpacaEval or any judge that reads it.
- A DuckDB database of views over every round's parquet files, to query the whole run in SQL.
  The views read the files where they lie (paths relative to the run's folder), so the
  database is small and never stale; open it from the folder the workflow ran in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pandas as pd

from sppoflow.tables import SAMPLES, read_table

# view name -> (file pattern under results/, whether the round comes from the path)
VIEWS = {
    "samples": "results/iter*/samples.parquet",
    "preferences": "results/iter*/preferences.parquet",
    "responses": "results/iter*/responses.parquet",
    "pairs": "results/iter*/pairs.parquet",
    "aggregate_stats": "results/iter*/aggregate_stats.parquet",
    "eval_responses": "results/iter*/eval/responses.parquet",
    "eval_judgements": "results/iter*/eval/judgements.parquet",
    "train_log": "results/iter*/train_log.csv",
}
ROUND_FROM_PATH = "CAST(regexp_extract(filename, 'iter(\\d+)', 1) AS INTEGER)"


def alpaca_eval_records(responses_path: Path, generator: str) -> list[dict]:
    responses = read_table(responses_path, SAMPLES).sort_values("prompt_id")
    return [
        {"instruction": r.prompt, "output": r.response, "generator": generator, "dataset": "sppo"}
        for r in responses.itertuples(index=False)
    ]


def write_alpaca_eval(responses_path: Path, generator: str, out: Path) -> None:
    records = alpaca_eval_records(responses_path, generator)
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    os.replace(partial, out)


def view_sql(name: str, pattern: str) -> str:
    reader = "read_csv_auto" if pattern.endswith(".csv") else "read_parquet"
    return (
        f"CREATE OR REPLACE VIEW {name} AS SELECT {ROUND_FROM_PATH} AS round, * EXCLUDE (filename) "
        f"FROM {reader}('{pattern}', filename = true)"
    )


def write_database(out: Path, workdir: Path = Path(".")) -> list[str]:
    """Create the views (those whose files exist) and return their names."""
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    made: list[str] = []
    with duckdb.connect(str(partial)) as db:
        for name, pattern in VIEWS.items():
            if not list(workdir.glob(pattern)):
                continue
            db.execute(view_sql(name, pattern))
            made.append(name)
        if "eval_judgements" in made:
            db.execute(
                "CREATE OR REPLACE VIEW win_rates AS SELECT round, opponent, count(*) AS prompts,"
                " avg(outcome) AS win_rate, avg(prob) AS mean_prob, avg(tokens) AS tokens,"
                " avg(opponent_tokens) AS opponent_tokens FROM eval_judgements"
                " GROUP BY round, opponent ORDER BY round, opponent"
            )
            made.append("win_rates")
    os.replace(partial, out)
    return made


def query(database: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(database), read_only=True) as db:
        return db.execute(sql).df()
