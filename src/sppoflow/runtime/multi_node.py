"""A training run over the nodes of a SLURM job: one launcher per node, one process per GPU.

The train rule starts ``srun`` with one task per node; each task runs ``accelerate launch``
(torchrun underneath) for the GPUs of its node. They meet at a rendezvous on the job's first
node, whose address and port every node derives from SLURM's environment alone, so no file or
extra step is needed to agree on it:

- machine rank: ``SLURM_NODEID`` (0 for the first node of the step);
- address: ``SLURM_LAUNCH_NODE_IPADDR``, the node srun was started from, which is the job's
  batch node, the first one (``MASTER_ADDR`` overrides);
- port: 15000 + the job id modulo 10000, so two jobs sharing a first node meet on different
  ports unless their ids are a multiple of 10000 apart (``MASTER_PORT`` overrides).

``MASTER_ADDR``, ``MASTER_PORT`` and ``GLOO_SOCKET_IFNAME`` are read from the job's
environment, which sbatch copies from the submitting shell (``--export=ALL``): the launcher
logs where the rendezvous comes from, so a stale value there is seen.

gloo (CPU training, and torch's own CPU-side collectives) finds its network interface by
resolving the host name; where that gives a loopback address (Debian's /etc/hosts maps it to
127.0.1.1) the processes of other nodes cannot reach it. The launcher then sets
``GLOO_SOCKET_IFNAME`` to the interface that routes to the rendezvous, unless it is set.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from sppoflow.errors import UserError

FIRST_PORT = 15000
PORTS = 10000


@dataclass(frozen=True)
class Rendezvous:
    machine_rank: int
    machines: int
    address: str
    port: int
    node_name: str = ""
    given: tuple[str, ...] = ()  # MASTER_ADDR / MASTER_PORT taken from the environment


def _needed(environ: Mapping[str, str], name: str, nodes: int) -> str:
    value = environ.get(name)
    if not value:
        raise UserError(
            f"resources.train.nodes is {nodes}: a multi-node train job runs as a SLURM job step"
            f" (srun, the slurm profile), but {name} is not set here"
        )
    return value


def rendezvous_from_slurm(nodes: int, environ: Mapping[str, str] = os.environ) -> Rendezvous:
    """Where this node's launcher meets the others, read from the step's SLURM variables."""
    step_nodes = int(_needed(environ, "SLURM_NNODES", nodes))
    if step_nodes != nodes:
        raise UserError(
            f"resources.train.nodes is {nodes} but this job step has {step_nodes} node(s) "
            "(SLURM_NNODES): the job's nodes were changed outside the config (the profile's "
            "set-resources), or the step was started by hand with another --nodes"
        )
    rank = int(_needed(environ, "SLURM_NODEID", nodes))
    job_id = int(_needed(environ, "SLURM_JOB_ID", nodes))
    address = environ.get("MASTER_ADDR") or _needed(environ, "SLURM_LAUNCH_NODE_IPADDR", nodes)
    port_given = environ.get("MASTER_PORT")
    if port_given and not port_given.isdigit():
        raise UserError(f"MASTER_PORT is {port_given!r}: a port number, or unset")
    port = int(port_given) if port_given else FIRST_PORT + job_id % PORTS
    given = [name for name in ("MASTER_ADDR", "MASTER_PORT") if environ.get(name)]
    return Rendezvous(rank, nodes, address, port, environ.get("SLURMD_NODENAME", ""), tuple(given))


def accelerate_launch(
    gpus_per_node: int,
    script: list[str],
    accelerate_config: str | None,
    rendezvous: Rendezvous | None = None,
) -> list[str]:
    """``accelerate launch`` of ``script`` with one process per GPU of this node; with a
    rendezvous, as machine ``machine_rank`` of ``machines`` (processes counted over all)."""
    how = ["--config_file", accelerate_config] if accelerate_config else ["--multi_gpu"]
    machines = rendezvous.machines if rendezvous else 1
    command = [
        "accelerate", "launch", *how,
        "--num_processes", str(gpus_per_node * machines),
        "--num_machines", str(machines),
    ]  # fmt: skip
    if rendezvous is not None:
        command += [
            "--machine_rank", str(rendezvous.machine_rank),
            "--main_process_ip", rendezvous.address,
            "--main_process_port", str(rendezvous.port),
        ]  # fmt: skip
    return [*command, *script]


def _resolves_to_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(name)).is_loopback
    except (OSError, ValueError):
        return True


def interface_towards(address: str, port: int) -> str | None:
    """The name of this machine's network interface that reaches ``address``, or None."""
    import psutil  # accelerate's dependency

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, port))  # UDP: picks the route, sends nothing
        except OSError:
            return None
        local = probe.getsockname()[0]
    for name, addresses in psutil.net_if_addrs().items():
        if any(entry.address == local for entry in addresses):
            return name
    return None


def network_environment(
    meeting: Rendezvous, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """``GLOO_SOCKET_IFNAME`` for a host whose name resolves to a loopback address (and
    ``GLOO_SOCKET_IFNAME`` is not set already): the interface towards the rendezvous."""
    if environ.get("GLOO_SOCKET_IFNAME") or not _resolves_to_loopback(socket.gethostname()):
        return {}
    interface = interface_towards(meeting.address, meeting.port)
    return {"GLOO_SOCKET_IFNAME": interface} if interface else {}
