#!/usr/bin/env python
"""score stage: judge every ordered pair of each prompt's K responses.

Reads a samples table and writes a preferences table (prompt_id, i, j, logit, prob) with
P(y_i > y_j | x) for all i != j, from the preference model chosen by --backend. Prompts are
judged in chunks of --prompts-per-chunk, streamed: each chunk is read, judged and written to
<out>.parts on its own (host memory does not grow with the number of prompts), and a rerun
after an interruption judges only the missing chunks. With --shards N, --shard s judges chunks
s, s + N, ... only (the same batches as one job, so the same numbers), and scripts/gather.py
joins them.

Example:
    python scripts/score.py --samples results/iter1/samples.parquet --out /tmp/preferences.parquet
"""

from dataclasses import asdict
from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.cli import add_settings, add_shard_arguments, parser_for, run_stage, settings_from
from sppoflow.errors import UserError
from sppoflow.runtime.shards import check_shard
from sppoflow.score.judges import JudgeSettings, build_judge
from sppoflow.score.preferences import run_fingerprint, score_file


def main(args) -> None:
    check_shard(args.shard, args.shards)
    settings = settings_from(JudgeSettings, args)
    if not Path(args.samples).is_file():
        raise UserError(f"{args.samples}: samples file not found")
    run_id = run_fingerprint(Path(args.samples), asdict(settings), settings.prompts_per_chunk)
    score_file(
        lambda: build_judge(settings),
        args.samples,
        args.out,
        settings.prompts_per_chunk,
        shard=args.shard,
        shards=args.shards,
        run_id=run_id,
        comparisons=settings.comparisons,
    )


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--samples", required=True, help="samples parquet")
    parser.add_argument("--out", required=True, help="preferences parquet to write")
    add_settings(parser, JudgeSettings)
    add_shard_arguments(parser, "chunks of prompts")
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
