"""pip's dry runs of the envs/ files, started as soon as pytest has collected the tests that
read them (tests/conftest.py), so that they wait on the package index while the first tests
run; tests/test_environments.py reads their results."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import ROOT, package_index_problem
from sppoflow.runtime.environments import env_spec

ENVS = sorted((ROOT / "envs").glob("*.yaml"))


def resolve(env_file, folder):
    """Start pip's dry run of an env's pip section (the envs resolve side by side: each waits
    on the index, not on the CPU); returns (process, report path), or a reason to skip."""
    python, packages = env_spec(env_file)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != here:
        return f"{env_file.name} is for Python {python}; this is Python {here}"
    requirements = folder / f"{env_file.stem}.txt"
    requirements.write_text("\n".join(packages) + "\n")
    report = folder / f"{env_file.stem}.json"
    log = (folder / f"{env_file.stem}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "-r", str(requirements)],
        # to a file, not a pipe: nobody reads it until the test, and a full pipe stops pip
        stdout=subprocess.DEVNULL, stderr=log,
        env={**os.environ, "PIP_CONSTRAINT": ""},  # not this machine's pip constraints
    )  # fmt: skip
    log.close()  # pip has its own copy
    return process, report, packages


# The dry runs, started as soon as pytest has collected this module's tests
# (tests/conftest.py), so that they wait on the index while the first tests run.
STARTED: dict = {}


def start_resolving() -> None:
    if STARTED:
        return
    problem = package_index_problem()
    if problem:
        STARTED["unreachable"] = problem
        return
    folder = Path(tempfile.mkdtemp(prefix="sppo-envs-"))
    STARTED["folder"] = folder
    STARTED.update({env.stem: resolve(env, folder) for env in ENVS})
