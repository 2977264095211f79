"""Starting and stopping the test cluster's daemons (tests/slurm_cluster.py): the Debian
packages they come from, their pid files, and waits for an event with a generous limit."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
MARK = "# written by the sppo-workflow test suite (tests/slurm_cluster.py)"


class ClusterUnavailable(Exception):
    """This machine cannot run the local cluster (the reason is the message)."""


def ensure_packages(packages=PACKAGES, tools=("slurmctld", "slurmd", "sbatch", "munged")) -> None:
    """Install Debian ``packages`` unless every one of ``tools`` is there (needs root)."""
    if all(shutil.which(tool) for tool in tools):
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"{' '.join(packages)} missing, and installing needs root")
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable(f"{' '.join(packages)} missing, and there is no apt-get")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        done = subprocess.run(command, env=env, check=False, **quiet)
        if done.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Each wait below is for an event (a daemon up, a node idle); its limit only ends a wait for
# one that will never come, so it is generous: a slow or busy machine waits as it needs.
def wait_for(condition, seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}\n{tail}")


def record_daemon(
    pids: dict[str, int], name: str, pid_file: Path, log: Path | None = None, seconds: float = 300
) -> None:
    """Wait for daemon ``name`` to run and record its pid in ``pids``; recorded also when
    waiting times out, so that the cluster's stop() finds a daemon that started slowly."""
    try:
        wait_for(lambda: alive(read_pid(pid_file)), seconds, name, log)
    finally:
        pid = read_pid(pid_file)
        if pid is not None:
            pids[name] = pid


def terminate(pids: dict[str, int], names: list[str]) -> None:
    """SIGTERM to the daemons ``names`` recorded in ``pids``; return once they are gone
    (SIGKILL after 120 s). They leave the record."""
    stopping = [pids.pop(name, None) for name in names]
    for pid in stopping:
        if alive(pid):
            os.kill(pid, 15)
    for pid in stopping:
        deadline = time.monotonic() + 120
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, 9)
