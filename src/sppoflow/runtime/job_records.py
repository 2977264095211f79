"""What a run's jobs recorded about their own speed: the timing file Snakemake writes for
every job (wall seconds, peak RSS, CPU time) and the rates the stages log
(sppoflow.runtime.throughput).
Both are timing records, kept out of the outputs that a rerun repeats bit for bit; the per-stage
table (benchmarks/stages.py) and the report's throughput page read them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sppoflow import layout
from sppoflow.errors import UserError

ROUND = re.compile(r".*iter(\d+)")  # the last iter<t> of a path
METHOD = re.compile(layout.METHOD_IN_PATH)
SHARD = re.compile(r"(_shard\d+|\.\d+-of-\d+)$")  # a shard's file: sample.0-of-2.tsv
# the line sppoflow.runtime.throughput logs (its logger is named sppoflow.throughput):
# "<work>: <amount> <unit> in <s> s: <rate> <unit>/s (<what>)"
RATE_LINE = re.compile(
    r"sppoflow\.throughput: (?P<work>\w+): (?P<amount>\d+) (?P<unit>[\w ]+?) "
    r"in (?P<seconds>[\d.]+) s: \S+ \S+/s \((?P<what>.*)\)$"
)
# "<work> compute: <FLOPs> FLOP in <s> s: <rate> GFLOP/s, <share>% of <peak> GFLOP/s (<source>)"
# or "..., peak unknown (...)"
COMPUTE_LINE = re.compile(
    r"sppoflow\.throughput: (?P<work>\w+) compute: (?P<flops>[\d.e+-]+) FLOP "
    r"in (?P<seconds>[\d.]+) s: \S+ GFLOP/s, "
    r"(?:[\d.]+% of (?P<peak>[\d.]+) GFLOP/s \((?P<source>.*)\)|peak unknown.*)$"
)


def job_name(path: Path, run: Path) -> dict:
    """Stage, method and round of a job's log or timing file."""
    relative = str(path.relative_to(run))
    found, method = ROUND.search(relative), METHOD.search(relative)
    return {
        "stage": re.sub(r"_iter\d+$", "", SHARD.sub("", path.stem)),
        "method": method.group(1) if method else "shared",
        "round": int(found.group(1)) if found else None,
    }


def read_timings(run: Path) -> pd.DataFrame:
    """One row per job: stage, round (None outside rounds), seconds, max_rss (MiB), cpu_time."""
    rows = []
    for path in sorted(run.glob("**/timings/*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if table.empty:
            continue
        job = table.iloc[-1]  # a file holds one row per repeat; Snakemake's default is one
        rows.append(
            {
                **job_name(path, run),
                "seconds": float(job["s"]),
                "max_rss_mib": float(job["max_rss"]) if job["max_rss"] != "-" else float("nan"),
                "cpu_seconds": float(job["cpu_time"]) if job["cpu_time"] != "-" else float("nan"),
            }
        )
    if not rows:
        raise UserError(f"no timing files under {run}: run the workflow first")
    return pd.DataFrame(rows)


def log_lines(run: Path, pattern: re.Pattern) -> list[dict]:
    """Every match of ``pattern`` in the run's job logs, with the job's stage, method, round."""
    rows = []
    for path in sorted(run.glob("**/logs/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            found = pattern.search(line)
            if found:
                rows.append({**job_name(path, run), **found.groupdict()})
    return rows


def read_throughput(run: Path) -> pd.DataFrame:
    """The rates the jobs logged (tokens generated or trained, pairs judged), one row per job
    and measure: stage, method, round, work, amount, unit, seconds of the work itself, what."""
    table = pd.DataFrame(
        log_lines(run, RATE_LINE),
        columns=["stage", "method", "round", "work", "amount", "unit", "seconds", "what"],
    )
    return table.astype({"amount": "int64", "seconds": "float64"})


def read_compute(run: Path) -> pd.DataFrame:
    """The arithmetic the jobs logged, one row per job and work: stage, method, round, work,
    flops, seconds, peak (FLOP/s, NaN where unknown), source (of the peak)."""
    table = pd.DataFrame(
        log_lines(run, COMPUTE_LINE),
        columns=["stage", "method", "round", "work", "flops", "seconds", "peak", "source"],
    )
    table = table.astype({"flops": "float64", "seconds": "float64", "peak": "float64"})
    table["peak"] *= 1e9  # logged in GFLOP/s
    return table


KEYS = ["stage", "method", "round", "work"]


def throughput(rates: pd.DataFrame, jobs: pd.DataFrame, compute: pd.DataFrame | None = None):
    """Per stage, method, round and work (shards summed): the work's rate, the rate over the
    jobs' whole wall time (the model's load and the engine's start included), and where the
    jobs logged their arithmetic, its FLOP/s and share of the peak."""
    work = rates.groupby(KEYS, dropna=False).agg(
        amount=("amount", "sum"), unit=("unit", "first"), seconds=("seconds", "sum"),
        what=("what", "first"),
    )  # fmt: skip
    wall = jobs.groupby(KEYS[:3], dropna=False)["seconds"].sum().rename("job_seconds")
    table = work.reset_index().join(wall, on=KEYS[:3], how="left")
    table["per_s"] = table["amount"] / table["seconds"]
    table["per_job_s"] = table["amount"] / table["job_seconds"]
    columns = [*KEYS, "amount", "unit", "per_s", "per_job_s"]
    if compute is not None and not compute.empty:
        table = table.merge(compute_by_work(compute).drop(columns=["work_s"]), on=KEYS, how="left")
        columns += ["gflop_per_s", "share_of_peak"]
    return table[[*columns, "what"]].sort_values(["method", "round", "stage", "work"])


def compute_by_work(compute: pd.DataFrame, keys: list[str] = KEYS) -> pd.DataFrame:
    """Per ``keys`` (default: stage, method, round and work): FLOPs, the seconds of the work,
    FLOP/s and the share of the peak (over the summed seconds at the peak, so that jobs on other
    machines weigh by their time), and the floor, the seconds the FLOPs take at the peak."""
    compute = compute.assign(
        floor_s=compute["flops"] / compute["peak"], at_peak=compute["seconds"] * compute["peak"]
    )
    table = compute.groupby(keys, dropna=False).agg(
        flops=("flops", "sum"), work_s=("seconds", "sum"), floor_s=("floor_s", "sum"),
        at_peak=("at_peak", "sum"),
    ).reset_index()  # fmt: skip
    table["gflop_per_s"] = table["flops"] / table["work_s"] / 1e9
    table["share_of_peak"] = table["flops"] / table["at_peak"]
    return table[[*keys, "flops", "work_s", "gflop_per_s", "share_of_peak", "floor_s"]]


SNAKEMAKE_TIME = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def snakemake_wall_seconds(workdir: Path) -> tuple[float, Path] | None:
    """The wall time of the newest Snakemake invocation in ``workdir``: from its log file's
    name (the time it started) to the last time stamp in it; with the log file, or None."""
    from datetime import datetime

    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    newest = logs[-1]
    started = datetime.strptime(newest.name.split(".snakemake")[0], "%Y-%m-%dT%H%M%S.%f")
    stamps = [
        found[1]
        for found in map(SNAKEMAKE_TIME.match, newest.read_text(errors="replace").splitlines())
        if found
    ]
    if not stamps:
        return None
    ended = datetime.strptime(" ".join(stamps[-1].split()), "%a %b %d %H:%M:%S %Y")
    return (ended - started).total_seconds(), newest
