#!/usr/bin/env python
"""gather stage: join the shards of a sharded stage into the table one job would write.

The shards' rows are put in the stage's order and checked: no row may come from two shards
and none may be missing (every prompt with its K samples; every ordered pair of a prompt's
responses that the judging plan asks for), so a lost or stale shard stops the run here
instead of training on part of a round.

Examples:
    python scripts/gather.py samples --prompts results/prompts/train_iter1.parquet --k 4 \\
        --out results/iter1/samples.parquet results/iter1/shards/samples.*-of-4.parquet
    python scripts/gather.py preferences --samples results/iter1/samples.parquet \\
        --out results/iter1/preferences.parquet results/iter1/shards/preferences.*-of-4.parquet
"""

import pandas as pd

import _bootstrap  # noqa: F401
from sppoflow import provenance
from sppoflow.cli import parser_for, run_stage
from sppoflow.errors import UserError
from sppoflow.runtime.shards import gather, missing_keys
from sppoflow.score.plans import COMPARISONS, planned_pairs
from sppoflow.score.preferences import PREFERENCE_KEYS
from sppoflow.tables import PREFERENCES, PROMPTS, SAMPLES, read_table, write_table


def expected_samples(prompts: pd.DataFrame, k: int) -> pd.DataFrame:
    return pd.DataFrame(
        [(pid, idx) for pid in prompts["prompt_id"] for idx in range(k)],
        columns=["prompt_id", "response_idx"],
    )


def expected_pairs(samples: pd.DataFrame, comparisons: str = "all") -> pd.DataFrame:
    """The ordered pairs the judging plan asks for, as response indices of each prompt."""
    rows = []
    for pid, group in samples.groupby("prompt_id", sort=True):
        idx = sorted(group["response_idx"])
        rows += [(pid, idx[i], idx[j]) for i, j in planned_pairs(len(idx), comparisons)]
    return pd.DataFrame(rows, columns=["prompt_id", "i", "j"])


def main(args) -> None:
    if args.table == "samples":
        if args.prompts is None or args.k is None:
            raise UserError("gathering samples needs --prompts and --k")
        keys, table = ["prompt_id", "response_idx"], SAMPLES
        expected = expected_samples(read_table(args.prompts, PROMPTS), args.k)
    else:
        if args.samples is None:
            raise UserError("gathering preferences needs --samples")
        keys, table = PREFERENCE_KEYS, PREFERENCES
        expected = expected_pairs(read_table(args.samples, SAMPLES), args.comparisons)
    frame = gather(args.shard_files, table, keys)
    missing = missing_keys(frame, expected, keys)
    if len(missing):
        raise UserError(
            f"the {len(args.shard_files)} shards lack {len(missing)} of {len(expected)} "
            f"{table.name} rows (e.g. {missing.iloc[0].to_dict()}): a shard is missing or stale"
        )
    extra = len(frame) - len(expected)
    if extra:
        raise UserError(f"the shards hold {extra} {table.name} row(s) that were not asked for")
    records = [provenance.read_record(path) for path in args.shard_files]
    if records[0] is not None and all(r == records[0] for r in records):
        provenance.adopt(records[0])  # the record one job of the stage would have written
    write_table(frame, args.out, table)


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("table", choices=["samples", "preferences"], help="what the shards hold")
    parser.add_argument("shard_files", nargs="+", help="the shards' parquet files")
    parser.add_argument("--out", required=True, help="the gathered parquet file to write")
    parser.add_argument("--prompts", default=None, help="samples: the prompts that were sampled")
    parser.add_argument("--k", type=int, default=None, help="samples: responses per prompt")
    parser.add_argument("--samples", default=None, help="preferences: the judged samples")
    parser.add_argument(
        "--comparisons",
        default="all",
        choices=COMPARISONS,
        help="preferences: the judging plan the shards followed (judge.comparisons)",
    )
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
