#!/usr/bin/env python
"""Run every benchmark in turn, each printing its own figures and ratios.

Those that read a finished run (reference_model, bf16_rounding, stages) use --run; without
one they are skipped with the command that makes it. The GPU check runs only where torch sees
a CUDA device. About 30 minutes on a 2-core CPU, most of it the paper-sized round.

    snakemake --cores all --config rounds=3      # the embedded default, once
    python benchmarks/run_all.py --run results
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = [  # (script, arguments, needs a finished run)
    ("logprob_memory.py", [], False),
    ("reference_model.py", ["--run", "{run}"], True),
    ("bf16_rounding.py", ["--run", "{run}"], True),
    ("paper_round.py", [], False),
    ("join_memory.py", [], False),
    ("stages.py", ["--run", "{run}"], True),
    (
        "sampler.py",
        ["--model", "{run}/iter0/model", "--backends", "transformers", "--scales", "1"],
        True,
    ),
    ("pairrm_throughput.py", ["--prompts", "2", "--k", "3"], False),
    ("cost_model.py", [], False),
    ("gpu_check.py", [], False),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=Path("results"), help="a finished run")
    parser.add_argument("--only", nargs="+", help="script names to run (default: all)")
    args = parser.parse_args()
    finished = (args.run / "iter1" / "model" / "sppo_training.json").is_file()
    failed = []
    for script, arguments, needs_run in BENCHMARKS:
        if args.only and script.removesuffix(".py") not in {
            s.removesuffix(".py") for s in args.only
        }:
            continue
        print(f"\n== {script} ==", flush=True)
        if needs_run and not finished:
            print(f"skipped: {args.run} holds no finished round; make one with "
                  "`snakemake --cores all --config rounds=1`")  # fmt: skip
            continue
        command = [sys.executable, str(HERE / script)]
        command += [a.format(run=args.run) for a in arguments]
        start = time.perf_counter()
        done = subprocess.run(command)
        print(f"({script}: {time.perf_counter() - start:.0f} s)", flush=True)
        if done.returncode:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
