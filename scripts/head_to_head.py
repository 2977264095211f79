#!/usr/bin/env python
"""head_to_head stage: the final rounds of methods trained side by side, judged against each
other by every evaluation judge.

For methods m1, m2, m3 (in config order) it judges m1 against m2 and m3, then m2 against m3,
on the held-out prompts, and writes the per-prompt judgements (column method; opponent is
the other method's name) and a JSON of win rates with 95% confidence intervals per pair and
judge: P(method > opponent), ties counting half.

Example:
    python scripts/head_to_head.py --methods sppo dpo --round 3 \\
        --responses results/methods/sppo/iter3/eval/responses.parquet \\
        results/methods/dpo/iter3/eval/responses.parquet \\
        --judgements /tmp/h2h.parquet --metrics /tmp/h2h.json
"""

import pandas as pd

import _bootstrap  # noqa: F401
from sppoflow.cli import parser_for, run_stage, settings_from
from sppoflow.errors import UserError
from sppoflow.evaluate.judging import add_judge_arguments, judge_all, judges_from, verdicts
from sppoflow.evaluate.round_metrics import HeadToHead, Pair, head_to_head_text, write_head_to_head
from sppoflow.score.judges import JudgeSettings
from sppoflow.tables import EVAL_JUDGEMENTS, SAMPLES, read_table, write_table


def main(args) -> None:
    if len(args.methods) != len(args.responses) or len(args.methods) < 2:
        raise UserError("give two or more --methods and one --responses file for each, in order")
    responses = {
        m: read_table(p, SAMPLES) for m, p in zip(args.methods, args.responses, strict=True)
    }
    judges = judges_from(args.judges, settings_from(JudgeSettings, args))
    frames = []
    for n, method in enumerate(args.methods[:-1]):
        later = {other: responses[other] for other in args.methods[n + 1 :]}
        frames.append(judge_all(judges, responses[method], later).assign(method=method))
    judgements = pd.concat(frames, ignore_index=True)
    pairs = tuple(
        Pair(method, opponent, {n: verdicts(g) for n, g in rows.groupby("judge", sort=False)})
        for (method, opponent), rows in judgements.groupby(["method", "opponent"], sort=False)
    )
    h2h = HeadToHead(args.round, tuple(args.methods), pairs)
    write_table(judgements, args.judgements, EVAL_JUDGEMENTS)
    write_head_to_head(args.metrics, h2h)
    print(head_to_head_text(h2h), end="")


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--methods", nargs="+", required=True, help="method names, in order")
    parser.add_argument(
        "--responses", nargs="+", required=True, help="each method's final eval responses"
    )
    parser.add_argument("--round", type=int, required=True, help="the final round's number")
    add_judge_arguments(parser)
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
