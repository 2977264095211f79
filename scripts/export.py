#!/usr/bin/env python
"""export stage: the run's results for tools outside the workflow.

  alpaca  a round's evaluation responses in AlpacaEval's format (instruction, output, generator)
  duckdb  a DuckDB database of views over every round's parquet files (run from the run folder),
          with a method column

Examples:
    python scripts/export.py alpaca --responses results/iter3/eval/responses.parquet \\
        --generator sppo-iter3 --out results/export/alpaca_eval_iter3.json
    python scripts/export.py duckdb --out results/sppo.duckdb
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401

from sppoflow.cli import run_stage
from sppoflow.exports import write_alpaca_eval, write_database


def alpaca(args) -> None:
    write_alpaca_eval(Path(args.responses), args.generator, Path(args.out))


def database(args) -> None:
    views = write_database(Path(args.out), methods=args.methods)
    print(f"{args.out}: views {', '.join(views)}")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("alpaca", help="AlpacaEval model outputs of one round")
    one.add_argument("--responses", required=True, help="eval responses parquet")
    one.add_argument("--generator", required=True, help="name of the model in the file")
    one.add_argument("--out", required=True, help="JSON file to write")
    one.set_defaults(run=alpaca)
    db = commands.add_parser("duckdb", help="views over every round's files")
    db.add_argument("--out", required=True, help="database file to write")
    db.add_argument(
        "--methods",
        nargs="+",
        default=["sppo"],
        help="the run's methods (several: side by side, under results/methods/<name>/)",
    )
    db.set_defaults(run=database)
    return parser


if __name__ == "__main__":
    run_stage(lambda args: args.run(args), build_parser())
