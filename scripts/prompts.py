#!/usr/bin/env python
"""prompts stage: build the prompt pool, or take one round's training prompts from it.

`pool` reads the prompt source(s): local jsonl/json/csv/parquet files, local dataset folders
or dataset ids on the hub; drops empty and duplicate prompts; gives each a stable id; and
holds out the evaluation split, all deterministic under --seed. `round` takes a round's
disjoint slice of the pool (or the round's own source, with --per-round sources).

Examples:
    python scripts/prompts.py pool --source config/prompts/instructions.jsonl \\
        --pool /tmp/pool.parquet --eval /tmp/eval.parquet
    python scripts/prompts.py round --pool /tmp/pool.parquet --round 1 --n-per-round 64 \\
        --out /tmp/train_iter1.parquet
"""

import _bootstrap  # noqa: F401
from sppoflow.cli import add_settings, parser_for, run_stage, settings_from
from sppoflow.prompts.pool import PoolSettings, build_pool, round_prompts
from sppoflow.tables import PROMPT_POOL, PROMPTS, read_table, write_table


def main(args) -> None:
    if args.command == "pool":
        pool = build_pool(
            args.source, args.per_round, args.eval_source, settings_from(PoolSettings, args)
        )
        write_table(pool, args.pool, PROMPT_POOL)
        eval_rows = pool[pool["split"] == "eval"].sort_values("position")
        write_table(eval_rows[["prompt_id", "prompt"]], args.eval, PROMPTS)
        counts = pool.groupby(["split", "source_round"]).size()
        print(counts.to_string())
    else:
        pool = read_table(args.pool, PROMPT_POOL)
        write_table(round_prompts(pool, args.round, args.n_per_round), args.out, PROMPTS)


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null", "all") else int(text)


def build_parser():
    parser = parser_for(__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    pool = commands.add_parser("pool", help="build the prompt pool and the eval split")
    pool.add_argument("--source", default=None, help="prompt source shared by all rounds")
    pool.add_argument("--per-round", nargs="*", default=[], help="one source per round instead")
    pool.add_argument("--eval-source", default=None, help="separate source of eval prompts")
    pool.add_argument("--pool", required=True, help="pool parquet to write")
    pool.add_argument("--eval", required=True, help="eval prompts parquet to write")
    add_settings(pool, PoolSettings)
    one_round = commands.add_parser("round", help="one round's training prompts")
    one_round.add_argument("--pool", required=True, help="pool parquet")
    one_round.add_argument("--round", type=int, required=True, help="round number, from 1")
    one_round.add_argument(
        "--n-per-round",
        type=_optional_int,
        default=None,
        help="prompts per round (all: the whole per-round source)",
    )
    one_round.add_argument("--out", required=True, help="round's prompts parquet to write")
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
