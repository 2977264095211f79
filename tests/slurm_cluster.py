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
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
# the accounting database: sacct, the plugin's efficiency report and its failed-node records
ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")
ACCOUNTING_TOOLS = ("slurmdbd", "mariadbd", "mariadb-install-db", "mariadb", "sacctmgr")
DBD_CONF = Path("/etc/slurm/slurmdbd.conf")
DB_PORT = 13306  # the cluster's own MariaDB, on 127.0.0.1 only
DB_PASSWORD = "sppo-test"  # a throwaway database of test jobs, reachable from this host only
ACCOUNT = "sppo-test"
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
MARK = "# written by the sppo-workflow test suite (tests/slurm_cluster.py)"
MUNGE_PID = Path("/run/munge/munged.pid")
BRIDGE = "sppo-br"  # the nodes' network: 10.77.0.1 is the controller, 10.77.0.1<i> node i
SUBNET = "10.77.0"
NAMESPACE = "sppo-n{}"  # node i's network namespace, and its node name
VETH = "sppo-v{}"  # node i's end of the bridge


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


def slurm_conf(
    folder: Path, host: str, nodes: list[str], gpus: int, kill_wait: int, accounting: bool = False
) -> str:
    """slurm.conf of a cluster whose nodes are ``nodes``: this host itself (one node named as
    the host), or nodes in network namespaces (named as their namespaces, at their addresses).
    Partitions debug (the default), cpu and gpu each hold every node, for the tests of where
    jobs go."""
    on_host = nodes == [host]
    controller = host if on_host else f"{host}({SUBNET}.1)"
    per_node = "" if on_host else "-%n"  # one pid file, log and spool folder per slurmd
    if accounting:  # job records in slurmdbd, with each step's CPU time and peak memory
        records = (
            "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            "AccountingStoreFlags=job_comment\nJobAcctGatherType=jobacct_gather/linux\n"
            "JobAcctGatherFrequency=task=2"
        )
    else:
        records = (
            "AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none"
        )
    node_lines = "\n".join(
        f"NodeName={node}{'' if on_host else f' NodeAddr={address(i)}'} CPUs=16"
        f" RealMemory=512000 Gres=gpu:{gpus} State=UNKNOWN"
        for i, node in enumerate(nodes, 1)
    )
    return f"""{MARK}
ClusterName=sppotest
SlurmctldHost={controller}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool{per_node}
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd{per_node}.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd{per_node}.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
{records}
JobCompType=jobcomp/none
MinJobAge=3600
KillWait={kill_wait}
SlurmdTimeout=60
JobRequeue=0
ReturnToService=2
SchedulerParameters=bf_interval=1
SlurmdParameters=config_overrides
GresTypes=gpu
{node_lines}
PartitionName=debug Nodes={",".join(nodes)} Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes={",".join(nodes)} MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={",".join(nodes)} MaxTime=INFINITE State=UP
"""


def address(index: int) -> str:
    return f"{SUBNET}.1{index}"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ClusterUnavailable(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def remove_node_network(count: int = 9) -> None:
    """Remove the bridge and namespaces of an earlier cluster (a crashed run's too)."""
    for index in range(1, count + 1):
        subprocess.run(["ip", "netns", "del", NAMESPACE.format(index)], capture_output=True)
        # the pair of a namespace still held by a process (a job step's) outlives the name
        subprocess.run(["ip", "link", "del", VETH.format(index)], capture_output=True)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


def make_node_network(count: int) -> list[str]:
    """A bridge at 10.77.0.1 and, for each node, a namespace with its own address on it and
    its own loopback; returns the node names."""
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        raise ClusterUnavailable("ip (iproute2) and nsenter are needed for a node of its own")
    remove_node_network()
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    names = []
    for index in range(1, count + 1):
        name, veth = NAMESPACE.format(index), VETH.format(index)
        _ip("netns", "add", name)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("link", "set", veth, "master", BRIDGE)
        _ip("link", "set", veth, "up")
        _ip("-n", name, "addr", "add", f"{address(index)}/24", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        names.append(name)
    return names


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


# Each wait below is for an event (a daemon up, a node idle); its limit only ends a wait for
# one that will never come, so it is generous: a slow or busy machine waits as it needs.
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
        _terminate(self, [*daemons, "slurmctld", "slurmdbd", "mariadbd", "munged"])
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
    if _alive(_read_pid(MUNGE_PID)):
        return  # someone else's munged: use it, leave it running
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True)
    _record_daemon(cluster, "munged", MUNGE_PID)


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


def _start_database(cluster: LocalCluster) -> None:
    """A MariaDB of the cluster's own in its folder, for slurmdbd, on 127.0.0.1 only."""
    data, socket_path = cluster.folder / "db", cluster.folder / "db.sock"
    subprocess.run(
        ["mariadb-install-db", "--user=root", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=socket"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = subprocess.Popen(
        ["mariadbd", "--user=root", f"--datadir={data}", f"--socket={socket_path}",
         f"--port={DB_PORT}", "--bind-address=127.0.0.1", "--skip-log-bin",
         f"--pid-file={cluster.folder / 'db.pid'}", f"--log-error={cluster.folder / 'db.log'}",
         "--innodb-buffer-pool-size=32M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    cluster.pids["mariadbd"] = server.pid

    def sql(statement: str) -> subprocess.CompletedProcess:
        return subprocess.run(["mariadb", "-S", str(socket_path), "-e", statement],
                              capture_output=True, text=True, check=False)  # fmt: skip

    _wait_for(lambda: sql("SELECT 1").returncode == 0, 300, "MariaDB", cluster.folder / "db.log")
    made = sql(
        f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
        " GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    )
    if made.returncode != 0:
        raise RuntimeError(f"MariaDB refused the slurm user: {made.stderr.strip()}")


def _start_slurmdbd(cluster: LocalCluster) -> None:
    """slurmdbd on the database, and the cluster, account and user registered in it."""
    folder = cluster.folder
    DBD_CONF.write_text(
        f"{MARK}\nAuthType=auth/munge\nDbdHost=localhost\nSlurmUser=root\n"
        f"PidFile={folder}/slurmdbd.pid\nLogFile={folder}/slurmdbd.log\n"
        f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={DB_PORT}\n"
        f"StorageUser=slurm\nStoragePass={DB_PASSWORD}\nStorageLoc=slurm_acct_db\n"
    )
    DBD_CONF.chmod(0o600)  # slurmdbd refuses a config others can read (it holds a password)
    subprocess.run(["slurmdbd"], check=True)
    _record_daemon(cluster, "slurmdbd", folder / "slurmdbd.pid", folder / "slurmdbd.log")

    def sacctmgr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True)

    _wait_for(lambda: sacctmgr("list", "cluster").returncode == 0, 300, "slurmdbd to answer",
              folder / "slurmdbd.log")  # fmt: skip
    for command in (
        ("add", "cluster", "sppotest"),
        ("add", "account", ACCOUNT),
        ("add", "user", "root", f"account={ACCOUNT}", f"defaultaccount={ACCOUNT}"),
    ):
        done = sacctmgr(*command)
        if done.returncode != 0 and "Nothing new added" not in done.stdout + done.stderr:
            raise RuntimeError(f"sacctmgr {' '.join(command)}: {done.stdout}{done.stderr}")


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
        _record_daemon(cluster, "slurmctld", folder / "slurmctld.pid", folder / "slurmctld.log")
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
        _start_database(cluster)
        _start_slurmdbd(cluster)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        _terminate(cluster, ["slurmdbd", "mariadbd"])
        DBD_CONF.unlink(missing_ok=True)
        cluster.no_accounting_why = f"the accounting database did not start: {error}"[:500]
        _write_config(cluster, host, kill_wait)


def _record_daemon(
    cluster: LocalCluster, name: str, pid_file: Path, log: Path | None = None, seconds: float = 300
) -> None:
    """Wait for daemon ``name`` to run and record its pid; recorded also when waiting times
    out, so that stop() finds a daemon that started slowly."""
    try:
        _wait_for(lambda: _alive(_read_pid(pid_file)), seconds, name, log)
    finally:
        pid = _read_pid(pid_file)
        if pid is not None:
            cluster.pids[name] = pid


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


def _terminate(cluster: LocalCluster, names: list[str]) -> None:
    """SIGTERM to the daemons ``names`` of the cluster; return once they are gone (SIGKILL
    after 120 s). They leave its pid record."""
    pids = [cluster.pids.pop(name, None) for name in names]
    for pid in pids:
        if _alive(pid):
            os.kill(pid, 15)
    for pid in pids:
        deadline = time.monotonic() + 120
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, 9)


def _wait_idle(cluster: LocalCluster, node: str) -> None:
    _wait_for(lambda: _node_state(node) == "idle", 300, f"node {node} to be idle",
              _slurmd_file(cluster, node, "log"))  # fmt: skip


def _start_slurmd(cluster: LocalCluster, node: str) -> None:
    """The slurmd of ``node``: on the host for a one-node cluster, else in its namespace."""
    if len(cluster.nodes) == 1:
        command = ["slurmd"]
    else:
        (cluster.folder / f"spool-{node}").mkdir(exist_ok=True)
        command = ["nsenter", f"--net=/var/run/netns/{node}", "slurmd", "-N", node]
    subprocess.run(command, check=True)
    _record_daemon(
        cluster, f"slurmd-{node}", _slurmd_file(cluster, node, "pid"),
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
