#!/usr/bin/env python
"""Where a run's time and memory went, per stage, from the benchmark files Snakemake wrote.

Every rule has a `benchmark:` file (results/iter{t}/benchmarks/<stage>.tsv, shard files
<stage>_shard{s}.tsv): wall-clock seconds, peak RSS and CPU time of the job. This prints them
per stage and round, with each stage's share of the run's summed job time. For methods run
side by side (results/methods/<name>/), it also prints the job time every method shared
(the base model, round 1's samples, preferences and pairs, the base's evaluation) and each
method's own, and what separate runs of the methods would have taken: each its own jobs plus
all the shared ones again.

    snakemake --cores all --config rounds=3
    python benchmarks/stages.py --run results
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

ROUND = re.compile(r".*iter(\d+)")  # the last iter<t> of a path
METHOD = re.compile(r"methods/([^/]+)/")


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
        method = METHOD.search(str(path.relative_to(run)))
        rows.append(
            {
                "stage": name,
                "method": method.group(1) if method else "shared",
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


def methods_cost(jobs: pd.DataFrame) -> pd.DataFrame | None:
    """Job seconds shared by every method, each method's own, and separate runs' estimate
    (a method's own jobs plus all shared ones); None for a single method's run."""
    own = jobs[~jobs["method"].isin(["shared", "head_to_head"])]
    if own.empty:
        return None
    shared = float(jobs.loc[jobs["method"] == "shared", "seconds"].sum())
    per_method = own.groupby("method", sort=False)["seconds"].sum()
    comparison = float(jobs.loc[jobs["method"] == "head_to_head", "seconds"].sum())
    rows = [{"part": "shared by every method", "seconds": shared}]
    rows += [{"part": f"{name} alone", "seconds": float(v)} for name, v in per_method.items()]
    rows.append({"part": "head to head", "seconds": comparison})
    together = shared + float(per_method.sum()) + comparison
    separate = float(per_method.sum()) + len(per_method) * shared
    rows.append({"part": "this run (job time)", "seconds": together})
    rows.append({"part": f"{len(per_method)} separate runs (estimate)", "seconds": separate})
    return pd.DataFrame(rows)


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
        cost = methods_cost(jobs)
        if cost is not None:
            print()
            print(cost.to_string(index=False))
            together, separate = cost["seconds"].iloc[-2], cost["seconds"].iloc[-1]
            print(f"separate runs / this run: x{separate / together:.2f} job time")


if __name__ == "__main__":
    main()
