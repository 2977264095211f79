#!/usr/bin/env python
"""summary stage: one table across rounds (metrics.tsv) and what the judge rewards
(judge_rewards.tsv: rank correlations of its verdicts with length and prompt overlap).

Give the per-round files in round order.

Example:
    python scripts/summary.py --metrics results/iter*/eval/metrics.json \\
        --stats results/iter*/aggregate_stats.parquet --logs results/iter*/train_log.csv \\
        --judgements results/iter*/eval/judgements.parquet \\
        --out results/summary/metrics.tsv --judge-rewards results/summary/judge_rewards.tsv
"""

from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.atomic import write_text_atomically
from sppoflow.cli import parser_for, run_stage
from sppoflow.report.summary import summarise_rounds


def main(args) -> None:
    table, rewards = summarise_rounds(
        [Path(p) for p in args.metrics],
        [Path(p) for p in args.stats],
        [Path(p) for p in args.logs],
        [Path(p) for p in args.judgements],
    )
    for frame, out in ((table, Path(args.out)), (rewards, Path(args.judge_rewards))):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out, frame.to_csv(sep="\t", index=False, float_format="%.4f"))
    print(table.to_string(index=False))
    print(rewards.to_string(index=False))


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--metrics", nargs="+", required=True, help="eval metrics JSON per round")
    parser.add_argument("--stats", nargs="+", required=True, help="aggregate stats per round")
    parser.add_argument("--logs", nargs="+", required=True, help="train_log.csv per round")
    parser.add_argument("--judgements", nargs="+", required=True, help="eval judgements per round")
    parser.add_argument("--out", required=True, help="metrics.tsv to write")
    parser.add_argument("--judge-rewards", required=True, help="judge_rewards.tsv to write")
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
