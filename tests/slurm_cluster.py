"""A real one-node SLURM cluster with two fake GPUs, for the tests of the cluster path.

slurmctld, slurmd and munge come from Debian packages (installed with apt-get when missing);
their state, logs and pid files live in a temp folder. SLURM schedules the fake GPUs like
real ones (character devices named in gres.conf): a job asking for ``--gpus=1`` gets
``CUDA_VISIBLE_DEVICES`` set, CPU-only torch ignores it. The node claims 16 CPUs and 500 GB
(``SlurmdParameters=config_overrides``) so that jobs with the workflow's real sizes are
scheduled on a small machine; nothing enforces memory without cgroups. There is no
accounting daemon, so job status comes from squeue (``MinJobAge`` keeps finished jobs there).

The config goes to /etc/slurm/slurm.conf (only when no other SLURM config is there), because
the SLURM executor's job step drops ``SLURM_CONF`` from the environment of its nested srun.

By hand (as root), to try the workflow's SLURM profile on this machine:

    python tests/slurm_cluster.py start /tmp/slurm     # prints the node and GPUs, then returns
    python tests/slurm_cluster.py stop /tmp/slurm
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
MARK = "# written by the sppo-workflow test suite (tests/slurm_cluster.py)"
MUNGE_PID = Path("/run/munge/munged.pid")


class ClusterUnavailable(Exception):
    """This machine cannot run the local cluster (the reason is the message)."""


def ensure_packages() -> None:
    """Install SLURM and munge from Debian packages when they are missing (needs root)."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable("SLURM is not installed and installing it needs root")
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable("SLURM is not installed and there is no apt-get to install it")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(command, env=env, check=False, **quiet)
        if done.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")


def slurm_conf(folder: Path, node: str, gpus: int, kill_wait: int) -> str:
    return f"""{MARK}
ClusterName=sppotest
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
KillWait={kill_wait}
ReturnToService=2
SchedulerParameters=bf_interval=1
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={node} CPUs=16 RealMemory=512000 Gres=gpu:{gpus} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition, seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}\n{tail}")


@dataclass
class LocalCluster:
    folder: Path
    node: str
    gpus: int
    pids: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, Snakemake's SLURM executor) needs in its environment."""
        return {"SLURM_CONF": str(CONF)}

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows (finished ones too, for MinJobAge), from
        ``scontrol show job -d``: job id, name, comment, state, exit code, GPU indices."""
        shown = subprocess.run(
            ["scontrol", "-d", "-o", "show", "job"], capture_output=True, text=True, check=True
        ).stdout
        jobs = []
        for line in shown.splitlines():
            if not line.startswith("JobId="):
                continue
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            allocated = re.search(r"JOB_GRES=gpu(?::\w+)?:(\d+)", line)
            fields["gpus"] = allocated.group(1) if allocated else "0"
            running = re.search(r"\bGRES=gpu(?::\w+)?:\d+\(IDX:([\d,-]+)\)", line)
            fields["gpu_idx"] = running.group(1) if running else ""
            jobs.append(fields)
        return jobs

    def watch(self, seconds: float = 1.0) -> JobWatcher:
        """A background poll of the running jobs' GPU indices (shown only while they run)."""
        return JobWatcher(self, seconds)

    def stop(self) -> None:
        """Stop the daemons this cluster started, by their pids, and remove its config."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.get(name)
            if _alive(pid):
                os.kill(pid, 15)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.get(name)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        for path in (CONF, GRES):
            if path.exists() and path.read_text().startswith(MARK):
                path.unlink()


class JobWatcher:
    """Records, for each job seen running, the GPU indices SLURM gave it (``with`` block)."""

    def __init__(self, cluster: LocalCluster, seconds: float) -> None:
        self.cluster = cluster
        self.seconds = seconds
        self.gpu_idx: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.seconds):
            for job in self.cluster.jobs():
                if job.get("JobState") == "RUNNING" and job["gpu_idx"]:
                    self.gpu_idx[job["JobId"]] = job["gpu_idx"]

    def __enter__(self) -> JobWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _start_munge(cluster: LocalCluster) -> None:
    if _alive(_read_pid(MUNGE_PID)):
        return  # someone else's munged: use it, leave it running
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True)
    _wait_for(lambda: _alive(_read_pid(MUNGE_PID)), 10, "munged")
    cluster.pids["munged"] = _read_pid(MUNGE_PID)


def _fake_gpus(folder: Path, gpus: int) -> str:
    devices = folder / "dev"
    devices.mkdir(exist_ok=True)
    for index in range(gpus):
        device = devices / f"nvidia{index}"
        if not device.exists():
            os.mknod(device, 0o666 | 0o020000, os.makedev(195, index))  # a character device
    return f"{devices}/nvidia[0-{gpus - 1}]" if gpus > 1 else f"{devices}/nvidia0"


def start(folder: Path, gpus: int = 2, kill_wait: int = 30) -> LocalCluster:
    """Start munge (unless running), slurmctld and slurmd; return once the node is idle."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("the local SLURM cluster needs root (daemons, /etc/slurm)")
    ensure_packages()
    if CONF.exists() and not CONF.read_text().startswith(MARK):
        raise ClusterUnavailable(f"{CONF} exists: this machine has a SLURM config of its own")
    if shutil.which("scontrol") and subprocess.run(
        ["scontrol", "ping"], capture_output=True, text=True, check=False
    ).stdout.count("UP"):
        raise RuntimeError("a SLURM controller is running already: stop it first")
    folder = Path(folder).resolve()
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    cluster = LocalCluster(folder, node, gpus)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(slurm_conf(folder, node, gpus, kill_wait))
    GRES.write_text(f"{MARK}\nNodeName={node} Name=gpu File={_fake_gpus(folder, gpus)}\n")
    try:
        _start_munge(cluster)
        subprocess.run(["slurmctld", "-c"], check=True)  # -c: forget any earlier state
        _wait_for(lambda: _alive(_read_pid(folder / "slurmctld.pid")), 20, "slurmctld",
                  folder / "slurmctld.log")  # fmt: skip
        cluster.pids["slurmctld"] = _read_pid(folder / "slurmctld.pid")
        subprocess.run(["slurmd"], check=True)
        _wait_for(lambda: _alive(_read_pid(folder / "slurmd.pid")), 20, "slurmd",
                  folder / "slurmd.log")  # fmt: skip
        cluster.pids["slurmd"] = _read_pid(folder / "slurmd.pid")
        _wait_for(lambda: _node_state(node) == "idle", 60, f"node {node} to be idle",
                  folder / "slurmd.log")  # fmt: skip
    except BaseException:
        cluster.stop()
        raise
    (folder / "cluster.json").write_text(json.dumps({"node": node, "pids": cluster.pids}))
    return cluster


def _node_state(node: str) -> str:
    shown = subprocess.run(
        ["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True, check=False
    )
    return shown.stdout.strip()


def attach(folder: Path) -> LocalCluster:
    """The cluster started earlier in ``folder`` (for ``stop`` by hand)."""
    saved = json.loads((Path(folder) / "cluster.json").read_text())
    return LocalCluster(Path(folder), saved["node"], 0, saved["pids"])


if __name__ == "__main__":
    usage = "usage: python tests/slurm_cluster.py start|stop FOLDER"
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(usage)
    if sys.argv[1] == "start":
        try:
            started = start(Path(sys.argv[2]))
        except ClusterUnavailable as error:
            sys.exit(f"cannot start a local cluster here: {error}")
        print(f"node {started.node} idle with {started.gpus} fake GPUs; daemons {started.pids}")
    else:
        attach(Path(sys.argv[2])).stop()
