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


def read_throughput(run: Path) -> pd.DataFrame:
    """The rates the jobs logged (tokens generated or trained, pairs judged), one row per job
    and measure: stage, method, round, amount, unit, seconds of the work itself, what."""
    rows = []
    for path in sorted(run.glob("**/logs/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            found = RATE_LINE.search(line)
            if found:
                rows.append(
                    {
                        **job_name(path, run),
                        "amount": int(found["amount"]),
                        "unit": found["unit"],
                        "seconds": float(found["seconds"]),
                        "what": found["what"],
                    }
                )
    return pd.DataFrame(
        rows, columns=["stage", "method", "round", "amount", "unit", "seconds", "what"]
    )


def throughput(rates: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """Per stage, method and round (shards summed): the work's rate, and the rate over the
    jobs' whole wall time (the model's load and the engine's start included)."""
    keys = ["stage", "method", "round"]
    work = rates.groupby(keys, dropna=False).agg(
        amount=("amount", "sum"), unit=("unit", "first"), seconds=("seconds", "sum"),
        what=("what", "first"),
    )  # fmt: skip
    wall = jobs.groupby(keys, dropna=False)["seconds"].sum().rename("job_seconds")
    table = work.join(wall, how="left").reset_index()
    table["per_s"] = table["amount"] / table["seconds"]
    table["per_job_s"] = table["amount"] / table["job_seconds"]
    columns = ["stage", "method", "round", "amount", "unit", "per_s", "per_job_s", "what"]
    return table[columns].sort_values(["method", "round", "stage"])
