#!/usr/bin/env python
"""export stage: the run's results for tools outside the workflow.

  alpaca   a round's evaluation responses in AlpacaEval's format (instruction, output, generator)
  answers  a round's question-set answers (scripts/question_set_answers.py) in the file the
           question set's tool reads: arena-hard-auto's or FastChat's model_answer/<model>.jsonl,
           the model named after the file
  lm-eval  a bash script that runs lm-evaluation-harness on a round's model (paths relative to
           the run folder, the current one)
  duckdb   a DuckDB database of views over every round's parquet files (run from the run folder),
           with a method column

Examples:
    python scripts/export.py alpaca --responses results/iter3/eval/responses.parquet \\
        --generator sppo-iter3 --out results/export/alpaca_eval_iter3.json
    python scripts/export.py answers --question-set mt_bench --questions mt_bench/question.jsonl \\
        --answers results/iter3/eval/mt_bench_answers.parquet \\
        --out results/export/mt_bench/model_answer/sppo-iter3.jsonl
    python scripts/export.py lm-eval --model results/iter3/model --name sppo-iter3 \\
        --tasks leaderboard --out results/export/lm_eval_iter3.sh
    python scripts/export.py duckdb --out results/sppo.duckdb
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.cli import run_stage
from sppoflow.evaluate.question_sets import QUESTION_SETS
from sppoflow.report.answer_exports import (
    LM_EVAL_DTYPES,
    write_answers,
    write_lm_eval_script,
)
from sppoflow.report.exports import write_alpaca_eval, write_database


def alpaca(args) -> None:
    write_alpaca_eval(Path(args.responses), args.generator, Path(args.out))


def answers(args) -> None:
    out = Path(args.out)
    n = write_answers(
        args.question_set, Path(args.questions), Path(args.answers), out, args.system_prompt
    )
    print(f"{out}: {n} answers of {out.stem}")


def lm_eval(args) -> None:
    write_lm_eval_script(
        Path(args.out),
        model=Path(args.model),
        name=args.name,
        tasks=args.tasks,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        system_prompt=args.system_prompt,
    )


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
    answered = commands.add_parser("answers", help="question-set answers for the set's tool")
    answered.add_argument("--question-set", required=True, choices=QUESTION_SETS)
    answered.add_argument("--questions", required=True, help="the question set's question file")
    answered.add_argument("--answers", required=True, help="question-set answers parquet")
    answered.add_argument("--system-prompt", default=None, help="system message, if any")
    answered.add_argument("--out", required=True, help="<model>.jsonl to write")
    answered.set_defaults(run=answers)
    harness = commands.add_parser("lm-eval", help="an lm-evaluation-harness command")
    harness.add_argument("--model", required=True, help="the round's model folder")
    harness.add_argument("--name", required=True, help="the model's name (its results folder)")
    harness.add_argument("--tasks", nargs="+", required=True, help="lm-eval tasks or groups")
    harness.add_argument("--dtype", default="auto", choices=list(LM_EVAL_DTYPES))
    harness.add_argument(
        "--trust-remote-code",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the model's own Python code (policy.trust_remote_code)",
    )
    harness.add_argument("--system-prompt", default=None, help="system message, if any")
    harness.add_argument("--out", required=True, help="bash script to write")
    harness.set_defaults(run=lm_eval)
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
