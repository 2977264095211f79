"""A real SLURM cluster on this machine, for the tests of the cluster path: two nodes with two
fake GPUs each, or one node where network namespaces cannot be made.

slurmctld, slurmd and munge come from Debian packages (installed with apt-get when missing);
their state, logs and pid files live in a temp folder. Each node is a slurmd of its own (``-N
name``) in a network namespace of its own (``ip netns``, joined with ``nsenter --net`` so that
/sys stays mounted), with its own address on a bridge the controller listens on: the two nodes
share this machine's processes and file system, as a cluster's nodes share one, and talk over
TCP as real ones do. Debian's SLURM is built without multiple-slurmd support, so two slurmds
on one network stack would both want port 6818. SLURM schedules the fake GPUs like
real ones (character devices named in gres.conf): a job asking for ``--gpus=1`` gets
``CUDA_VISIBLE_DEVICES`` set, CPU-only torch ignores it. The node claims 16 CPUs and 500 GB
(``SlurmdParameters=config_overrides``) so that jobs with the workflow's real sizes are
scheduled on a small machine; nothing enforces memory without cgroups. Jobs are recorded by
slurmdbd in a MariaDB of the cluster's own (its data folder in the temp folder, on 127.0.0.1
only; both installed with apt-get when missing, or left out, saying why), so ``sacct``
answers as on a real cluster: the executor plugin's efficiency report reads it. The workflow's
profile still takes job status from squeue (``MinJobAge`` keeps finished jobs there), which
works with accounting and without.

The config goes to /etc/slurm/slurm.conf (only when no other SLURM config is there), because
the SLURM executor's job step drops ``SLURM_CONF`` from the environment of its nested srun.

By hand (as root), to try the workflow's SLURM profile on this machine:

    python tests/slurm_cluster.py start /tmp/slurm     # prints the nodes and GPUs, then returns
    python tests/slurm_cluster.py start /tmp/slurm --nodes 1 --no-accounting
    python tests/slurm_cluster.py stop /tmp/slurm
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from slurm_accounting import (
    ACCOUNTING_PACKAGES,
    ACCOUNTING_TOOLS,
    DBD_CONF,
    start_database,
    start_slurmdbd,
)
from slurm_config import slurm_conf
from slurm_daemons import (
    MARK,
    ClusterUnavailable,
    alive,
    ensure_packages,
    read_pid,
    record_daemon,
    terminate,
    wait_for,
)
from slurm_node_network import make_node_network, remove_node_network

CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
MUNGE_PID = Path("/run/munge/munged.pid")


@dataclass
class LocalCluster:
    folder: Path
    nodes: list[str]
    gpus: int  # per node
    pids: dict[str, int] = field(default_factory=dict)
    one_node_why: str = ""  # why a cluster asked for several nodes has one (else "")
    no_accounting_why: str = ""  # why it runs without slurmdbd (else "": sacct works)

    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, Snakemake's SLURM executor) needs in its environment."""
        return {"SLURM_CONF": str(CONF)}

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows (finished ones too, for MinJobAge), from
        ``scontrol show job -d``: job id, name, comment, state, exit code, GPU indices (of the
        first node) and ``node_gpus``, each node's as node:indices (both while it runs)."""
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
            running = re.findall(
                r"\bNodes=(\S+) [^=]+=\S+ Mem=\d+ GRES=gpu(?::\w+)?:\d+\(IDX:([\d,-]+)\)", line
            )
            fields["gpu_idx"] = running[0][1] if running else ""
            fields["node_gpus"] = ",".join(f"{node}:{idx}" for node, idx in running)
            jobs.append(fields)
        return jobs

    def fail_node(self, node: str) -> None:
        """Kill every process of ``node`` at once (its slurmd, job steps and their commands),
        as a node that loses power: after SlurmdTimeout the controller marks it down and its
        jobs NODE_FAIL (JobRequeue=0: SLURM does not requeue them itself)."""
        listed = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True)
        for pid in map(int, listed.stdout.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def revive_node(self, node: str) -> None:
        """Start ``node``'s slurmd again; return once the node is idle (ReturnToService=2)."""
        _start_slurmd(self, node)
        _save(self)
        _wait_idle(self, node)

    def watch(self, seconds: float = 1.0) -> JobWatcher:
        """A background poll of the running jobs' GPU indices (shown only while they run)."""
        return JobWatcher(self, seconds)

    def stop(self) -> None:
        """Stop the daemons this cluster started, by their pids, remove its config and the
        nodes' network."""
        daemons = [name for name in self.pids if name.startswith("slurmd-")]
        terminate(self.pids, [*daemons, "slurmctld", "slurmdbd", "mariadbd", "munged"])
        for path in (CONF, GRES, DBD_CONF):
            if path.exists() and path.read_text().startswith(MARK):
                path.unlink()
        if len(self.nodes) > 1:
            for node in self.nodes:  # whatever a job left running in the node's namespace
                self.fail_node(node)
            remove_node_network(len(self.nodes))


class JobWatcher:
    """Records, for each job seen running, the GPU indices SLURM gave it (``gpu_idx``, of its
    first node) and its nodes with theirs (``node_gpus``), in a ``with`` block."""

    def __init__(self, cluster: LocalCluster, seconds: float) -> None:
        self.cluster = cluster
        self.seconds = seconds
        self.gpu_idx: dict[str, str] = {}
        self.node_gpus: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.seconds):
            for job in self.cluster.jobs():
                if job.get("JobState") == "RUNNING" and job["gpu_idx"]:
                    self.gpu_idx[job["JobId"]] = job["gpu_idx"]
                    self.node_gpus[job["JobId"]] = job["node_gpus"]

    def __enter__(self) -> JobWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _start_munge(cluster: LocalCluster) -> None:
    if alive(read_pid(MUNGE_PID)):
        return  # someone else's munged: use it, leave it running
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True)
    record_daemon(cluster.pids, "munged", MUNGE_PID)


def _fake_gpus(folder: Path, gpus: int, first: int = 0) -> str:
    """Character devices for ``gpus`` fake GPUs (numbered from ``first``), as gres.conf's File=."""
    devices = folder / "dev"
    devices.mkdir(exist_ok=True)
    for index in range(first, first + gpus):
        device = devices / f"nvidia{index}"
        if not device.exists():
            os.mknod(device, 0o666 | 0o020000, os.makedev(195, index))  # a character device
    last = first + gpus - 1
    return f"{devices}/nvidia[{first}-{last}]" if gpus > 1 else f"{devices}/nvidia{first}"


def start(
    folder: Path, gpus: int = 2, kill_wait: int = 600, nodes: int = 2, accounting: bool = True
) -> LocalCluster:
    """Start munge (unless running), the accounting database and slurmdbd, slurmctld and a
    slurmd per node; return once every node is idle. ``gpus`` fake GPUs per node. Where
    namespaces cannot be made, one node on the host's own network (the reason in
    ``one_node_why``); where MariaDB and slurmdbd cannot be installed, no accounting (the
    reason in ``no_accounting_why``)."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("the local SLURM cluster needs root (daemons, /etc/slurm)")
    ensure_packages()
    for path in (CONF, GRES, DBD_CONF):
        if path.exists() and not path.read_text().startswith(MARK):
            raise ClusterUnavailable(f"{path} exists: this machine has a SLURM config of its own")
    if shutil.which("scontrol") and subprocess.run(
        ["scontrol", "ping"], capture_output=True, text=True, check=False
    ).stdout.count("UP"):
        raise RuntimeError("a SLURM controller is running already: stop it first")
    folder = Path(folder).resolve()
    (folder / "state").mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    cluster = LocalCluster(folder, [host], gpus, no_accounting_why="not asked for")
    try:
        if nodes > 1:
            try:
                cluster.nodes = make_node_network(nodes)
            except ClusterUnavailable as reason:
                remove_node_network(nodes)
                cluster.one_node_why = f"one node only: {reason}"
        if accounting:
            try:
                ensure_packages(ACCOUNTING_PACKAGES, ACCOUNTING_TOOLS)
                cluster.no_accounting_why = ""
            except ClusterUnavailable as reason:
                cluster.no_accounting_why = str(reason)
        _write_config(cluster, host, kill_wait)
        GRES.write_text(
            MARK + "\n" + "".join(
                f"NodeName={name} Name=gpu File={_fake_gpus(folder, gpus, i * gpus)}\n"
                for i, name in enumerate(cluster.nodes)
            )
        )  # fmt: skip
        _start_munge(cluster)
        if not cluster.no_accounting_why:
            _start_accounting(cluster, host, kill_wait)
        subprocess.run(["slurmctld", "-c"], check=True)  # -c: forget any earlier state
        record_daemon(cluster.pids, "slurmctld", folder / "slurmctld.pid", folder / "slurmctld.log")
        for name in cluster.nodes:
            _start_slurmd(cluster, name)
        for name in cluster.nodes:
            _wait_idle(cluster, name)
    except BaseException:
        cluster.stop()
        raise
    _save(cluster)
    return cluster


def _write_config(cluster: LocalCluster, host: str, kill_wait: int) -> None:
    CONF.parent.mkdir(parents=True, exist_ok=True)
    accounting = not cluster.no_accounting_why
    CONF.write_text(
        slurm_conf(cluster.folder, host, cluster.nodes, cluster.gpus, kill_wait, accounting)
    )


def _start_accounting(cluster: LocalCluster, host: str, kill_wait: int) -> None:
    """The database and slurmdbd; where either fails, the cluster goes on without accounting
    (its config rewritten), saying why."""
    try:
        start_database(cluster.folder, cluster.pids)
        start_slurmdbd(cluster.folder, cluster.pids)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        terminate(cluster.pids, ["slurmdbd", "mariadbd"])
        DBD_CONF.unlink(missing_ok=True)
        cluster.no_accounting_why = f"the accounting database did not start: {error}"[:500]
        _write_config(cluster, host, kill_wait)


def _save(cluster: LocalCluster) -> None:
    """cluster.json, for ``attach`` (stop by hand)."""
    (cluster.folder / "cluster.json").write_text(
        json.dumps(
            {"nodes": cluster.nodes, "gpus": cluster.gpus, "pids": cluster.pids,
             "no_accounting_why": cluster.no_accounting_why}
        )
    )  # fmt: skip


def _slurmd_file(cluster: LocalCluster, node: str, kind: str) -> Path:
    suffix = "" if len(cluster.nodes) == 1 else f"-{node}"
    return cluster.folder / f"slurmd{suffix}.{kind}"


def _wait_idle(cluster: LocalCluster, node: str) -> None:
    wait_for(lambda: _node_state(node) == "idle", 300, f"node {node} to be idle",
              _slurmd_file(cluster, node, "log"))  # fmt: skip


def _start_slurmd(cluster: LocalCluster, node: str) -> None:
    """The slurmd of ``node``: on the host for a one-node cluster, else in its namespace."""
    if len(cluster.nodes) == 1:
        command = ["slurmd"]
    else:
        (cluster.folder / f"spool-{node}").mkdir(exist_ok=True)
        command = ["nsenter", f"--net=/var/run/netns/{node}", "slurmd", "-N", node]
    subprocess.run(command, check=True)
    record_daemon(
        cluster.pids, f"slurmd-{node}", _slurmd_file(cluster, node, "pid"),
        _slurmd_file(cluster, node, "log"),
    )  # fmt: skip


def _node_state(node: str) -> str:
    shown = subprocess.run(
        ["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True, check=False
    )
    return shown.stdout.strip()


def attach(folder: Path) -> LocalCluster:
    """The cluster started earlier in ``folder`` (for ``stop`` by hand)."""
    saved = json.loads((Path(folder) / "cluster.json").read_text())
    return LocalCluster(Path(folder), saved["nodes"], saved["gpus"], saved["pids"],
                        no_accounting_why=saved["no_accounting_why"])  # fmt: skip


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="start or stop the tests' local SLURM cluster")
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--nodes", type=int, default=2, help="nodes (default 2)")
    parser.add_argument("--gpus", type=int, default=2, help="fake GPUs per node (default 2)")
    parser.add_argument(
        "--no-accounting", action="store_true", help="no slurmdbd and MariaDB (no sacct)"
    )
    args = parser.parse_args()
    if args.action == "start":
        try:
            started = start(
                args.folder, gpus=args.gpus, nodes=args.nodes, accounting=not args.no_accounting
            )
        except ClusterUnavailable as error:
            sys.exit(f"cannot start a local cluster here: {error}")
        print(f"nodes {','.join(started.nodes)} idle with {started.gpus} fake GPUs each;"
              f" daemons {started.pids} {started.one_node_why}".rstrip())  # fmt: skip
        if started.no_accounting_why:
            print(f"no accounting: {started.no_accounting_why}")
    else:
        attach(args.folder).stop()
