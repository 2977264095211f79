#!/usr/bin/env python
"""evaluate stage: judge a round's held-out responses against the base model and the
previous round.

Reads evaluation responses (samples tables with K = 1, written by sample.py on the eval
prompts) and writes per-prompt judgements and a JSON of metrics: the win rate (ties count
half) and the mean preference probability, each with a 95% confidence interval, and the
mean response length.

Example:
    python scripts/evaluate.py --round 2 --responses results/iter2/eval/responses.parquet \\
        --base results/iter0/eval/responses.parquet \\
        --previous results/iter1/eval/responses.parquet \\
        --judgements /tmp/judgements.parquet --metrics /tmp/metrics.json
"""

import json
from pathlib import Path

import _bootstrap  # noqa: F401
import pandas as pd

from sppoflow.cli import add_settings, parser_for, run_stage, settings_from
from sppoflow.evaluation import judge_against, summarise
from sppoflow.preference import JudgeSettings, build_judge
from sppoflow.tables import EVAL_JUDGEMENTS, SAMPLES, read_table, write_table


def main(args) -> None:
    ours = read_table(args.responses, SAMPLES)
    opponents = {"base": read_table(args.base, SAMPLES)}
    if args.previous:
        opponents["previous"] = read_table(args.previous, SAMPLES)
    settings = settings_from(JudgeSettings, args)
    judge = build_judge(settings)
    judgements = pd.concat(
        [judge_against(judge, ours, theirs, name) for name, theirs in opponents.items()],
        ignore_index=True,
    )
    write_table(judgements, args.judgements, EVAL_JUDGEMENTS)
    metrics = summarise(judgements, args.round, settings.backend)
    Path(args.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--round", type=int, required=True, help="round being evaluated")
    parser.add_argument("--responses", required=True, help="the round's eval responses")
    parser.add_argument("--base", required=True, help="the base model's eval responses")
    parser.add_argument("--previous", default=None, help="the previous round's eval responses")
    parser.add_argument("--judgements", required=True, help="per-prompt judgements to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    add_settings(parser, JudgeSettings)
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
