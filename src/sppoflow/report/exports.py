"""Exports for tools outside the workflow.

- AlpacaEval's model-outputs JSON (a list of {instruction, output, generator}), one file per
  round, so a round's evaluation responses can go to AlpacaEval or any judge that reads it.
- A DuckDB database of views over every round's parquet files, to query the whole run in SQL.
  The views read the files where they lie (paths relative to the run's folder), so the
  database is small and never stale; open it from the folder the workflow ran in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pandas as pd

from sppoflow import layout, provenance
from sppoflow.atomic import write_atomically, write_text_atomically
from sppoflow.errors import UserError
from sppoflow.tables import SAMPLES, read_table

# view name -> (file under a round's folder, the rounds that every method shares when methods
# run side by side: round 0 is the base model, round 1 samples it for every method)
VIEWS = {
    "samples": ("samples.parquet", (1,)),
    "preferences": ("preferences.parquet", (1,)),
    "response_win_rates": ("response_win_rates.parquet", (1,)),
    "pairs": ("pairs.parquet", (1,)),
    "aggregate_stats": ("aggregate_stats.parquet", (1,)),
    "eval_responses": ("eval/responses.parquet", (0,)),
    "eval_judgements": ("eval/judgements.parquet", ()),
    "train_log": ("train_log.csv", ()),
}
HEAD_TO_HEAD = f"{layout.HEAD_TO_HEAD}/judgements.parquet"
# the last iter<t>/ of the path (a method may be named iter5)
ROUND_FROM_PATH = "CAST(regexp_extract(filename, '.*iter(\\d+)/', 1) AS INTEGER)"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def alpaca_eval_records(responses_path: Path, generator: str) -> list[dict]:
    responses = read_table(responses_path, SAMPLES).sort_values("prompt_id")
    return [
        {"instruction": r.prompt, "output": r.response, "generator": generator, "dataset": "sppo"}
        for r in responses.itertuples(index=False)
    ]


def write_alpaca_eval(responses_path: Path, generator: str, out: Path) -> None:
    records = alpaca_eval_records(responses_path, generator)
    write_text_atomically(out, json.dumps(records, indent=1, ensure_ascii=False) + "\n")


def _reader(pattern: str) -> str:
    reader = "read_csv_auto" if pattern.endswith(".csv") else "read_parquet"
    return f"{reader}('{pattern}', filename = true)"


def view_sql(db, name: str, parts: list[tuple[str, list[str]]]) -> str:
    """A view over (file pattern, methods it belongs to) parts: each part's rows once per
    method, with the method and the round (from the path) as the first columns."""
    selects = []
    for pattern, methods in parts:
        columns = db.execute(f"SELECT * FROM {_reader(pattern)} LIMIT 0").df().columns
        dropped = ", ".join(c for c in ("filename", "method", "round") if c in columns)
        values = ", ".join(f"('{m}')" for m in methods)
        selects.append(
            f"SELECT m.method, {ROUND_FROM_PATH} AS round, f.* EXCLUDE ({dropped}) "
            f"FROM {_reader(pattern)} AS f CROSS JOIN (VALUES {values}) AS m(method)"
        )
    return f"CREATE OR REPLACE VIEW {name} AS " + " UNION ALL BY NAME ".join(selects)


# Where the provenance records lie (sppoflow.provenance): in every parquet output's metadata,
# and in each model folder's provenance.json.
PROVENANCE_SOURCES = {
    "results/**/*.parquet": (
        "SELECT file_name AS file, decode(value)::JSON AS record "
        "FROM parquet_kv_metadata('{pattern}') WHERE decode(key) = '{key}'"
    ),
    "results/**/model/provenance.json": (
        "SELECT filename AS file, content::JSON AS record FROM read_text('{pattern}')"
    ),
}


def provenance_sql(patterns: list[str]) -> str:
    """The view ``provenance``: one row per output file that records what made it."""
    key = provenance.METADATA_KEY.decode()
    records = " UNION ALL ".join(PROVENANCE_SOURCES[p].format(pattern=p, key=key) for p in patterns)
    return (
        "CREATE OR REPLACE VIEW provenance AS "
        f"SELECT file, nullif(regexp_extract(file, '{layout.METHOD_IN_PATH}', 1), '') AS method, "
        "TRY_CAST(coalesce(nullif(regexp_extract(file, '.*iter(\\d+)/', 1), ''), "
        "regexp_extract(file, '_iter(\\d+)\\.parquet$', 1)) AS INTEGER) AS round, "
        "record->>'stage' AS stage, record->>'config_sha256' AS config_sha256, "
        "record->>'git_commit' AS git_commit, record->'arguments' AS arguments, "
        "record->'versions' AS versions, record->'config' AS config "
        f"FROM ({records}) ORDER BY file"
    )


def write_database(
    out: Path, workdir: Path = Path("."), methods: list[str] | None = None
) -> list[str]:
    """Create the views (those whose files exist) and return their names. ``methods``: the
    run's method names (default one, "sppo"); several lie side by side, each under its chain
    (sppoflow.layout)."""
    methods = methods or ["sppo"]
    for name in methods:
        if not NAME.match(name):
            raise UserError(f"not a method name: {name!r}")
    chains = [(name, layout.chain(name, len(methods) > 1)) for name in methods]
    made: list[str] = []

    def write(partial: Path) -> None:
        for left in (partial, partial.with_name(partial.name + ".wal")):
            left.unlink(missing_ok=True)  # a killed job's
        with duckdb.connect(str(partial)) as db:
            made.extend(create_views(db, workdir, chains))

    write_atomically(out, write)
    return made


def create_views(db, workdir: Path, chains: list[tuple[str, str]]) -> list[str]:
    """The views of the run in ``workdir`` whose files exist, created in ``db``; their names."""
    made: list[str] = []
    for name, (file, shared_rounds) in VIEWS.items():
        parts = [
            (pattern, owners)
            for pattern, owners in layout.round_file_globs(file, shared_rounds, chains)
            if list(workdir.glob(pattern))
        ]
        if parts:
            db.execute(view_sql(db, name, parts))
            made.append(name)
    if "eval_judgements" in made:
        db.execute(
            "CREATE OR REPLACE VIEW win_rates AS SELECT method, round, judge, opponent,"
            " count(*) AS prompts, avg(outcome) AS win_rate, avg(prob) AS mean_prob,"
            " avg(tokens) AS tokens, avg(opponent_tokens) AS opponent_tokens"
            " FROM eval_judgements GROUP BY method, round, judge, opponent"
            " ORDER BY method, round, judge, opponent"
        )
        made.append("win_rates")
    recorded = [p for p in PROVENANCE_SOURCES if list(workdir.glob(p))]
    if recorded:
        db.execute(provenance_sql(recorded))
        made.append("provenance")
    if (workdir / HEAD_TO_HEAD).is_file():
        reader = f"read_parquet('{HEAD_TO_HEAD}')"
        db.execute(f"CREATE OR REPLACE VIEW head_to_head AS SELECT * FROM {reader}")
        made.append("head_to_head")
    return made


def query(database: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(database), read_only=True) as db:
        return db.execute(sql).df()
