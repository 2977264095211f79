#!/usr/bin/env python
"""What a planned run will cost before it is submitted: rounds and jobs, the GPU-hours of each
stage and round, and each job's peak GPU memory against the GPU it asks for
(sppoflow.workflow.plan_cost).

The config is read as Snakemake reads it (--configfile files merged in order, --config
key=value on top; config/config.yaml when no file is given). Rates come from a finished run's
job logs where --run holds one for the stage (run the config small once on the cluster, e.g.
rounds=1 and few prompts, then plan the real one), else from the cost model's assumptions;
each line says which. The GPU is SPPO_SLURM_GPU_MODEL (or --gpu); a job that will not fit on it
is a warning line, which the workflow also prints before it runs anything.

Examples:
    SPPO_SLURM_GPU_MODEL=h100 python scripts/plan_cost.py \\
        --configfile config/paper/mistral-7b-instruct-v0.2.yaml
    python scripts/plan_cost.py --config rounds=3 --run results   # the embedded default
"""

import argparse
import os
from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.cli import run_stage
from sppoflow.config.loading import load_configs
from sppoflow.workflow.plan_cost import plan_cost, plan_lines


def main(args) -> None:
    config = load_configs([Path(p) for p in args.configfile], args.config)
    environ = dict(os.environ, **({"SPPO_SLURM_GPU_MODEL": args.gpu} if args.gpu else {}))
    run = Path(args.run) if args.run else None
    print("\n".join(plan_lines(plan_cost(config, run, environ))))


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configfile", nargs="+", default=[], help="config files, in order")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides, as snakemake --config takes them")  # fmt: skip
    parser.add_argument("--gpu", default=None, help="the GPU the jobs get (default: "
                        "SPPO_SLURM_GPU_MODEL), e.g. h100, a100-40, l4")  # fmt: skip
    parser.add_argument("--run", default=None, help="a finished run's results folder, whose "
                        "job logs give measured rates")  # fmt: skip
    return parser


if __name__ == "__main__":
    run_stage(main, build_parser())
