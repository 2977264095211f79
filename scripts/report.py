#!/usr/bin/env python
"""report stage: the figures and tables `snakemake --report` shows.

  round    one round's training curves and the distribution of its estimated win rates
  throughput  the stages' rates, from the jobs' logs and timing files (timing records)
  summary  win rates per round (and method; plot and table), response length and the
           length-controlled win rate, what the judge rewards, example responses, the config
           and versions; with --head-to-head, the methods' final rounds against each other

Examples:
    python scripts/report.py round --round 1 --train-log results/iter1/train_log.csv \\
        --pairs results/iter1/pairs.parquet --stats results/iter1/aggregate_stats.parquet \\
        --training results/iter1/report/training.png \\
        --estimates results/iter1/report/win_rate_estimates.png
    python scripts/report.py summary --metrics results/iter*/eval/metrics.json \\
        --judgements results/iter*/eval/judgements.parquet \\
        --responses results/iter*/eval/responses.parquet --models results/iter[1-9]*/model \\
        --out-dir results/report
    python scripts/report.py throughput --run results --out results/timings/throughput.html
"""

import argparse
import json
from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.cli import run_stage
from sppoflow.errors import UserError
from sppoflow.evaluate.round_metrics import read_head_to_head, read_round_metrics
from sppoflow.report import figures, pages
from sppoflow.runtime.job_records import read_compute, read_throughput, read_timings, throughput

SUMMARY_FILES = ("win_rates.png", "win_rates.html", "length.png", "judge_rewards.png",
                 "examples.html", "config.html")  # fmt: skip


def round_figures(args) -> None:
    title = args.title or f"Round {args.round}"
    figures.training_curves(Path(args.train_log), title, Path(args.training))
    figures.win_rate_estimates(Path(args.pairs), Path(args.stats), title, Path(args.estimates))


def summary_figures(args) -> None:
    metrics = [read_round_metrics(p) for p in args.metrics]  # in the order given
    side_by_side = len({m.method_name for m in metrics}) > 1
    rounds = [f"{m.method_name}, round {m.round}" if side_by_side else m.round for m in metrics]
    if (
        len(args.judgements) != len(rounds)
        or len(args.responses) != len(rounds) + 1
        or (args.models and len(args.models) != len(rounds))
    ):
        raise UserError(
            "give one --judgements file (and --models folder) per round and --responses for "
            "round 0 (the base model) then every round, in round order"
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures.win_rates(metrics, out / "win_rates.png")
    pages.win_rate_page(metrics, out / "win_rates.html")
    if args.head_to_head:
        pages.head_to_head(read_head_to_head(args.head_to_head), out / "head_to_head.html")
    figures.lengths(metrics, out / "length.png")
    judgements = [Path(p) for p in args.judgements]
    figures.judge_rewards_figure(judgements, rounds, out / "judge_rewards.png")
    responses = [Path(p) for p in args.responses]
    pages.examples(responses[0], responses[1:], rounds, out / "examples.html")
    config = json.loads(args.config_json) if args.config_json else {}
    training = {}
    for round_number, model in zip(rounds, args.models or [], strict=False):
        summary = Path(model) / "sppo_training.json"
        if summary.is_file():
            training[round_number] = json.loads(summary.read_text())
    pages.config_page(config, out / "config.html", training)


def throughput_table(args) -> None:
    run = Path(args.results)
    table = throughput(read_throughput(run), read_timings(run), read_compute(run))
    pages.throughput_page(table, Path(args.out))


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("round", help="one round's figures")
    one.add_argument("--round", type=int, required=True)
    one.add_argument("--title", default=None, help='names the round (default "Round N")')
    one.add_argument("--train-log", required=True, help="train_log.csv of the round")
    one.add_argument("--pairs", required=True, help="pairs.parquet of the round")
    one.add_argument("--stats", required=True, help="aggregate_stats.parquet of the round")
    one.add_argument("--training", required=True, help="training curves PNG to write")
    one.add_argument("--estimates", required=True, help="win-rate distribution PNG to write")
    one.set_defaults(run=round_figures)
    every = commands.add_parser("summary", help="figures and tables across rounds")
    every.add_argument(
        "--metrics", nargs="+", required=True, help="eval metrics per round (method by method)"
    )
    every.add_argument("--judgements", nargs="+", required=True, help="eval judgements per round")
    every.add_argument(
        "--responses", nargs="+", required=True, help="eval responses: base model, then rounds"
    )
    every.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="trained model folders per round (their sppo_training.json gives the versions)",
    )
    every.add_argument("--config-json", default=None, help="the run's config, as JSON text")
    every.add_argument(
        "--head-to-head", default=None, help="methods side by side: head_to_head metrics.json"
    )
    every.add_argument("--out-dir", required=True, help=f"folder for {', '.join(SUMMARY_FILES)}")
    every.set_defaults(run=summary_figures)
    rates = commands.add_parser("throughput", help="the stages' rates, as an HTML table")
    rates.add_argument("--run", dest="results", default="results", help="the run's results folder")
    rates.add_argument("--out", required=True, help="HTML table to write")
    rates.set_defaults(run=throughput_table)
    return parser


if __name__ == "__main__":
    run_stage(lambda args: args.run(args), build_parser())
