#!/usr/bin/env python
"""Where a run's time and memory went, per stage, from the benchmark files Snakemake wrote.

Every rule has a `benchmark:` file (results/iter{t}/timings/<stage>.tsv, shard files
<stage>_shard{s}.tsv): wall-clock seconds, peak RSS and CPU time of the job. This prints them
per stage and round, with each stage's share of the run's summed job time, and the rates
the jobs logged (results/iter{t}/logs/): generated tokens/s of sample and eval_generate,
judged pairs/s of score and evaluate, trained tokens/s of train; and the arithmetic of each
(FLOPs counted from the model's shapes), its FLOP/s and share of the device's peak, the run's
total FLOPs, its floor (the seconds the arithmetic takes at the peak) and wall time over floor
(the wall time from the newest Snakemake log beside the results, or --wall). For methods run
side by side (results/methods/<name>/), it also prints the job time every method shared
(the base model, round 1's samples, preferences and pairs, the base's evaluation) and each
method's own, and what separate runs of the methods would have taken: each its own jobs plus
all the shared ones again.

    snakemake --cores all --config rounds=3
    python benchmarks/stages.py --run results
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from sppoflow.errors import UserError
from sppoflow.runtime.job_records import (
    compute_by_work,
    read_compute,
    read_throughput,
    read_timings,
    snakemake_wall_seconds,
    throughput,
)


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


def floor_lines(compute: pd.DataFrame, jobs: pd.DataFrame, wall: tuple | None) -> list[str]:
    """Per stage: FLOPs, FLOP/s, share of the peak and floor; then the run's totals."""
    per_stage = compute_by_work(compute, ["stage"]).set_index("stage")
    per_stage["job_s"] = jobs.groupby("stage")["seconds"].sum()
    per_stage["job_s_over_floor"] = per_stage["job_s"] / per_stage["floor_s"]
    per_stage["tflop"] = per_stage.pop("flops") / 1e12
    total, floor = float(per_stage["tflop"].sum()), float(per_stage["floor_s"].sum())
    per_stage["share_of_peak"] = per_stage["share_of_peak"].map("{:.0%}".format)
    job_time = float(jobs["seconds"].sum())
    lines = [
        "arithmetic per stage: work_s the work itself, floor_s its FLOPs at the peak",
        per_stage.sort_values("floor_s", ascending=False).to_string(),
        "",
        f"total: {total:.2f} TFLOP, floor {floor:.1f} s at the measured peaks",
        f"job time / floor: {job_time:.0f} s / {floor:.0f} s = x{job_time / floor:.2f}",
    ]
    if unknown := sorted(set(compute.loc[compute["peak"].isna(), "stage"])):
        lines.append(f"(no peak known for {', '.join(unknown)}: left out of the floor)")
    if wall is not None:
        seconds, source = wall
        lines.append(
            f"wall time / floor: {seconds:.0f} s / {floor:.0f} s = x{seconds / floor:.2f} "
            f"(wall time: {source})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=Path("results"), help="a run's results")
    parser.add_argument(
        "--wall", type=float, default=None,
        help="the run's wall time in seconds (default: from the newest Snakemake log beside "
        "--run, which is right when that invocation ran the whole run)",
    )  # fmt: skip
    args = parser.parse_args()
    try:
        jobs = read_timings(args.run)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
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
        rates = read_throughput(args.run)
        if not rates.empty:
            print()
            print("throughput: per_s over the work itself, per_job_s over the whole jobs")
            compute = read_compute(args.run)
            table = throughput(rates, jobs, compute)
            if "share_of_peak" in table:
                table["share_of_peak"] = table["share_of_peak"].map("{:.0%}".format)
            print(table.to_string(index=False))
            if not compute.empty:
                print()
                print("\n".join(floor_lines(compute, jobs, run_wall(args))))
        cost = methods_cost(jobs)
        if cost is not None:
            print()
            print(cost.to_string(index=False))
            together, separate = cost["seconds"].iloc[-2], cost["seconds"].iloc[-1]
            print(f"separate runs / this run: x{separate / together:.2f} job time")


def run_wall(args) -> tuple[float, str] | None:
    if args.wall is not None:
        return args.wall, "--wall"
    found = snakemake_wall_seconds(args.run.resolve().parent)
    return (found[0], f"{found[1].name}, first to last time stamp") if found else None


if __name__ == "__main__":
    main()
