#!/usr/bin/env python
"""score stage: judge every ordered pair of each prompt's K responses.

Reads a samples table and writes a preferences table (prompt_id, i, j, logit, prob) with
P(y_i > y_j | x) for all i != j, from the preference model chosen by --backend. Prompts are
judged in chunks of --prompts-per-chunk; with --shards N, --shard s judges chunks s, s + N, ...
only (the same batches as one job, so the same numbers), and scripts/gather.py joins them.

Example:
    python scripts/score.py --samples results/iter1/samples.parquet --out /tmp/preferences.parquet
"""

import _bootstrap  # noqa: F401

from sppoflow.cli import add_settings, add_shard_arguments, parser_for, run_stage, settings_from
from sppoflow.preference import JudgeSettings, build_judge
from sppoflow.scoring import score_samples
from sppoflow.shards import check_shard
from sppoflow.tables import PREFERENCES, SAMPLES, read_table, write_table


def main(args) -> None:
    check_shard(args.shard, args.shards)  # before the judge is loaded
    samples = read_table(args.samples, SAMPLES)
    settings = settings_from(JudgeSettings, args)
    judge = build_judge(settings)
    preferences = score_samples(
        judge, samples, settings.prompts_per_chunk, shard=args.shard, shards=args.shards
    )
    write_table(preferences, args.out, PREFERENCES)


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--samples", required=True, help="samples parquet")
    parser.add_argument("--out", required=True, help="preferences parquet to write")
    add_settings(parser, JudgeSettings)
    add_shard_arguments(parser, "chunks of prompts")
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
