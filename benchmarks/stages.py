#!/usr/bin/env python
"""Where a run's time and memory went, per stage, from the benchmark files Snakemake wrote.

Every rule has a `benchmark:` file (results/iter{t}/benchmarks/<stage>.tsv, shard files
<stage>_shard{s}.tsv): wall-clock seconds, peak RSS and CPU time of the job. This prints them
per stage and round, with each stage's share of the run's summed job time.

    snakemake --cores all --config rounds=3
    python benchmarks/stages.py --run results
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

ROUND = re.compile(r"iter(\d+)")


def read_benchmarks(run: Path) -> pd.DataFrame:
    """One row per job: stage, round (None outside rounds), seconds, max_rss (MiB), cpu_time."""
    rows = []
    for path in sorted(run.glob("**/benchmarks/*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if table.empty:
            continue
        job = table.iloc[-1]  # a file holds one row per repeat; Snakemake's default is one
        name = re.sub(r"_shard\d+$", "", path.stem)
        name = re.sub(r"_iter\d+$", "", name)
        found = ROUND.search(str(path.relative_to(run)))
        rows.append(
            {
                "stage": name,
                "round": int(found.group(1)) if found else None,
                "seconds": float(job["s"]),
                "max_rss_mib": float(job["max_rss"]) if job["max_rss"] != "-" else float("nan"),
                "cpu_seconds": float(job["cpu_time"]) if job["cpu_time"] != "-" else float("nan"),
            }
        )
    if not rows:
        raise SystemExit(f"no benchmark files under {run}: run the workflow first")
    return pd.DataFrame(rows)


def per_stage(jobs: pd.DataFrame) -> pd.DataFrame:
    summary = jobs.groupby("stage").agg(
        jobs=("seconds", "size"),
        seconds=("seconds", "sum"),
        mean_seconds=("seconds", "mean"),
        max_rss_mib=("max_rss_mib", "max"),
        cpu_seconds=("cpu_seconds", "sum"),
    )
    summary["share"] = summary["seconds"] / summary["seconds"].sum()
    return summary.sort_values("seconds", ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=Path("results"), help="a run's results")
    args = parser.parse_args()
    jobs = read_benchmarks(args.run)
    by_round = jobs.dropna(subset=["round"]).pivot_table(
        index="stage", columns="round", values="seconds", aggfunc="sum"
    )
    by_round.columns = [f"round {int(c)} s" for c in by_round.columns]
    print(f"{len(jobs)} jobs in {args.run}, {jobs.seconds.sum():.0f} s of job time in all")
    with pd.option_context("display.width", 120, "display.float_format", "{:.1f}".format):
        summary = per_stage(jobs)
        summary["share"] = (100 * summary["share"]).map("{:.0f}%".format)
        print(summary.to_string())
        print()
        print(by_round.to_string())


if __name__ == "__main__":
    main()
