"""The test cluster's node network (tests/slurm_cluster.py): a bridge at 10.77.0.1 and, for
each node, a network namespace with its own address on it, so that each node's slurmd has
port 6818 of its own."""

from __future__ import annotations

import shutil
import subprocess

from slurm_daemons import ClusterUnavailable

BRIDGE = "sppo-br"  # the nodes' network: 10.77.0.1 is the controller, 10.77.0.1<i> node i
SUBNET = "10.77.0"
NAMESPACE = "sppo-n{}"  # node i's network namespace, and its node name
VETH = "sppo-v{}"  # node i's end of the bridge


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
