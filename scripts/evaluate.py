#!/usr/bin/env python
"""evaluate stage: judge a round's held-out responses against the base model and the
previous round, with every evaluation judge.

Reads evaluation responses (samples tables with K = 1, written by sample.py on the eval
prompts) and writes per-prompt judgements (a row per judge, opponent and prompt) and a JSON of
metrics: per judge and opponent the win rate (ties count half) and the mean preference
probability, each with a 95% confidence interval, the length-controlled win rate and the mean
response length; and measures that need no judge (length, truncation, prompt repetition,
repetition loops) of the round's and the base model's responses.

The judges are the judge flags below (named "training"), or a JSON object of name -> judge
settings (--judges, as the workflow passes evaluate.judges); the first is the primary one.

Example:
    python scripts/evaluate.py --round 2 --responses results/iter2/eval/responses.parquet \\
        --base results/iter0/eval/responses.parquet \\
        --previous results/iter1/eval/responses.parquet \\
        --judgements /tmp/judgements.parquet --metrics /tmp/metrics.json
"""

from dataclasses import replace

import _bootstrap  # noqa: F401
from sppoflow.cli import parser_for, run_stage, settings_from
from sppoflow.evaluate.judging import add_judge_arguments, judge_all, judges_from, summarise
from sppoflow.evaluate.round_metrics import Objective, round_metrics_text, write_round_metrics
from sppoflow.evaluate.text_measures import objective_measures
from sppoflow.score.judges import JudgeSettings
from sppoflow.tables import EVAL_JUDGEMENTS, SAMPLES, read_table, write_table


def main(args) -> None:
    ours = read_table(args.responses, SAMPLES)
    base = read_table(args.base, SAMPLES)
    opponents = {"base": base}
    if args.previous:
        opponents["previous"] = read_table(args.previous, SAMPLES)
    judges = judges_from(args.judges, settings_from(JudgeSettings, args))
    judgements = judge_all(judges, ours, opponents)
    metrics = summarise(
        judgements, args.round, {n: s.backend for n, s in judges.items()}, args.method
    )
    objective = Objective(round=objective_measures(ours), base=objective_measures(base))
    metrics = replace(metrics, objective=objective)
    write_table(judgements, args.judgements, EVAL_JUDGEMENTS)
    write_round_metrics(args.metrics, metrics)
    print(round_metrics_text(metrics), end="")


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--round", type=int, required=True, help="round being evaluated")
    parser.add_argument("--method", default=None, help="the method whose round this is")
    parser.add_argument("--responses", required=True, help="the round's eval responses")
    parser.add_argument("--base", required=True, help="the base model's eval responses")
    parser.add_argument("--previous", default=None, help="the previous round's eval responses")
    add_judge_arguments(parser)
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
