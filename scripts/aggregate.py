#!/usr/bin/env python
"""aggregate stage: win rates, the training pairs and round statistics, via SQL in DuckDB.

Reads the samples and preferences of a round and writes three parquet files: every
response's win rate under both estimators (response_win_rates), the winner/loser pair of each prompt
with p_winner, p_loser and q (pairs), and one row of round statistics (stats).

Example:
    python scripts/aggregate.py --samples results/iter1/samples.parquet \\
        --preferences results/iter1/preferences.parquet --round 1 \\
        --win-rates /tmp/response_win_rates.parquet --pairs /tmp/pairs.parquet \\
        --stats /tmp/stats.parquet
"""

from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.aggregate.win_rates import AggregateSettings, aggregate
from sppoflow.cli import add_settings, parser_for, run_stage, settings_from
from sppoflow.tables import (
    PAIRS,
    PREFERENCES,
    RESPONSE_WIN_RATES,
    ROUND_STATS,
    SAMPLES,
    check_table,
    write_table,
)


def main(args) -> None:
    samples, preferences = Path(args.samples), Path(args.preferences)
    check_table(samples, SAMPLES)  # DuckDB then reads the files where they lie
    check_table(preferences, PREFERENCES)
    result = aggregate(samples, preferences, settings_from(AggregateSettings, args), args.round)
    write_table(result.win_rates, args.win_rates, RESPONSE_WIN_RATES)
    write_table(result.pairs, args.pairs, PAIRS)
    write_table(result.stats, args.stats, ROUND_STATS)
    print(result.stats.T.to_string(header=False))


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--samples", required=True, help="samples parquet")
    parser.add_argument("--preferences", required=True, help="preferences parquet")
    parser.add_argument("--round", type=int, default=0, help="round number, for the stats")
    parser.add_argument("--win-rates", required=True, help="response win rates parquet to write")
    parser.add_argument("--pairs", required=True, help="pairs parquet to write")
    parser.add_argument("--stats", required=True, help="round statistics parquet to write")
    add_settings(parser, AggregateSettings)
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
