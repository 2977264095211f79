"""What made a stage's outputs, recorded with them.

Every table a stage writes carries a provenance record in its parquet metadata (key
``sppo.provenance``), and every model folder a ``provenance.json``: the stage, its arguments
(seeds and settings; not the thread count, which never changes a result), the workflow's
config and its sha256, the project's git commit and the package versions. The record holds
nothing that differs between two runs of the same config on the same machine (no time, host
or thread count), so reruns stay bitwise identical. ``results/sppo.duckdb`` reads the records
back in its view ``provenance``.

The workflow hands each job its config through the environment (:data:`CONFIG_VARIABLE`); a
stage run by hand records ``config: null``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from sppoflow.versions import package_versions

METADATA_KEY = b"sppo.provenance"
FILE_NAME = "provenance.json"
CONFIG_VARIABLE = "SPPO_CONFIG"
COMMIT_VARIABLE = "SPPO_GIT_COMMIT"
# arguments that say how fast a job runs, where it reports or writes, or which share of the
# stage's work it does (shards write the same rows as one job), never what the rows are
UNRECORDED_ARGUMENTS = frozenset(
    {"threads", "tracking_dir", "run_group", "run_name", "report_to", "shard", "shards", "out"}
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]

_job: dict[str, Any] | None = None


def config_json(config: dict) -> str:
    """The canonical JSON of a config: keys sorted, no spaces, so equal configs hash equal."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def job_environment(recorded_config: dict) -> dict[str, str]:
    """What every job records with its outputs, passed in its environment: the config (less
    its run-only settings) and the project's commit."""
    return {CONFIG_VARIABLE: config_json(recorded_config), COMMIT_VARIABLE: git_commit() or ""}


@cache
def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The project's commit, with "-dirty" when tracked files differ from it; None outside a
    git checkout (an installed package) or without git."""
    if os.environ.get(COMMIT_VARIABLE):
        return os.environ[COMMIT_VARIABLE]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "diff", "--quiet", "HEAD", "--"], capture_output=True
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def begin_job(stage: str, arguments: dict[str, Any]) -> None:
    """Remember what this process's outputs are made from (called once, by the stage's entry
    point, before any output is written)."""
    global _job
    config = os.environ.get(CONFIG_VARIABLE)
    _job = {
        "stage": stage,
        "arguments": {
            k: v
            for k, v in sorted(arguments.items())
            if k not in UNRECORDED_ARGUMENTS and not callable(v)
        },
        "config_sha256": hashlib.sha256(config.encode()).hexdigest() if config else None,
        "config": json.loads(config) if config else None,
        "git_commit": git_commit(),
        "versions": package_versions(),
    }


def read_record(table_path: Path | str) -> dict[str, Any] | None:
    """The provenance record in a parquet file's metadata (None when it has none)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(table_path).metadata or {}
    record = metadata.get(METADATA_KEY)
    return json.loads(record) if record else None


def adopt(record: dict[str, Any]) -> None:
    """Record ``record`` instead of this job's own: the gather stage writes the rows its shard
    jobs computed, so the gathered table carries their record (the same one a single job of
    the stage would have written)."""
    global _job
    _job = dict(record)


def record_json() -> bytes | None:
    return None if _job is None else json.dumps(_job, sort_keys=True, default=str).encode()


def write_to_folder(folder: Path | str) -> None:
    """A model folder's provenance.json (nothing when no record was started)."""
    if _job is not None:
        text = json.dumps(_job, indent=1, sort_keys=True, default=str) + "\n"
        (Path(folder) / FILE_NAME).write_text(text)
