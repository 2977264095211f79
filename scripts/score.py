#!/usr/bin/env python
"""score stage: judge every ordered pair of each prompt's K responses.

Reads a samples table and writes a preferences table (prompt_id, i, j, logit, prob) with
P(y_i > y_j | x) for all i != j, from the preference model chosen by --backend.

Example:
    python scripts/score.py --samples results/iter1/samples.parquet --out /tmp/preferences.parquet
"""

import _bootstrap  # noqa: F401

from sppoflow.cli import add_settings, parser_for, run_stage, settings_from
from sppoflow.preference import JudgeSettings, build_judge
from sppoflow.scoring import score_samples
from sppoflow.tables import PREFERENCES, SAMPLES, read_table, write_table


def main(args) -> None:
    samples = read_table(args.samples, SAMPLES)
    judge = build_judge(settings_from(JudgeSettings, args))
    write_table(score_samples(judge, samples), args.out, PREFERENCES)


def build_parser():
    parser = parser_for(__doc__)
    parser.add_argument("--samples", required=True, help="samples parquet")
    parser.add_argument("--out", required=True, help="preferences parquet to write")
    add_settings(parser, JudgeSettings)
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
