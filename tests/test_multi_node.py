"""A train job over several nodes, without a cluster: each node's launcher from SLURM's
variables set by hand, and its errors. The run on two real nodes is in tests/test_slurm.py."""

import socket
import subprocess
import sys

import pytest

from helpers import ROOT
from sppoflow.errors import UserError
from sppoflow.runtime.job_errors import explaining_line
from sppoflow.runtime.multi_node import (
    Rendezvous,
    accelerate_launch,
    interface_towards,
    network_environment,
    rendezvous_from_slurm,
)
from sppoflow.runtime.placement import check_overrides, placement

# what srun sets in the task of the second node of job 4242, started from 10.1.2.3
SECOND_NODE = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NNODES": "4",
    "SLURM_NODEID": "1",
    "SLURM_LAUNCH_NODE_IPADDR": "10.1.2.3",
    "SLURMD_NODENAME": "gpu-b",
}


def test_each_node_finds_its_rank_and_the_first_nodes_address_in_slurms_variables():
    meeting = rendezvous_from_slurm(4, SECOND_NODE)
    assert meeting == Rendezvous(1, 4, "10.1.2.3", 15000 + 4242, "gpu-b")
    first = rendezvous_from_slurm(4, {**SECOND_NODE, "SLURM_NODEID": "0"})
    assert (first.address, first.port) == (meeting.address, meeting.port)  # one meeting point
    other_job = rendezvous_from_slurm(4, {**SECOND_NODE, "SLURM_JOB_ID": "4243"})
    assert other_job.port != meeting.port  # two jobs on one node do not collide
    mine = {**SECOND_NODE, "MASTER_ADDR": "gpu-a", "MASTER_PORT": "29500"}
    overridden = rendezvous_from_slurm(4, mine)
    assert (overridden.address, overridden.port) == ("gpu-a", 29500)  # the user's own win
    assert overridden.given == ("MASTER_ADDR", "MASTER_PORT") and meeting.given == ()
    with pytest.raises(UserError, match="MASTER_PORT is 'auto': a port number, or unset"):
        rendezvous_from_slurm(4, {**SECOND_NODE, "MASTER_PORT": "auto"})


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SLURM_NNODES", "runs as a SLURM job step (srun, the slurm profile), but SLURM_NNODES"),
        ("SLURM_NODEID", "but SLURM_NODEID is not set here"),
        ("SLURM_LAUNCH_NODE_IPADDR", "but SLURM_LAUNCH_NODE_IPADDR is not set here"),
    ],
)
def test_a_launcher_outside_a_slurm_step_says_which_variable_is_missing(missing, message):
    environ = {k: v for k, v in SECOND_NODE.items() if k != missing}
    with pytest.raises(UserError, match=r"resources.train.nodes is 4: ") as error:
        rendezvous_from_slurm(4, environ)
    assert message in str(error.value)


def test_a_step_with_other_nodes_than_the_job_asked_for_is_refused():
    with pytest.raises(
        UserError, match=r"nodes is 4 but this job step has 2 node\(s\).*set-resources"
    ):
        rendezvous_from_slurm(4, {**SECOND_NODE, "SLURM_NNODES": "2"})


def test_accelerate_launch_counts_processes_over_every_node():
    meeting = Rendezvous(1, 4, "10.1.2.3", 19242)
    config = "config/accelerate/deepspeed_zero3.yaml"
    command = accelerate_launch(8, ["train.py", "--x"], config, meeting)
    assert command == [
        "accelerate", "launch", "--config_file", config,
        "--num_processes", "32", "--num_machines", "4",
        "--machine_rank", "1", "--main_process_ip", "10.1.2.3", "--main_process_port", "19242",
        "train.py", "--x",
    ]  # fmt: skip
    one_node = accelerate_launch(2, ["train.py"], None)
    assert one_node == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2",
                        "--num_machines", "1", "train.py"]  # fmt: skip


def test_gloo_gets_the_interface_towards_the_rendezvous_where_the_host_name_is_loopback(
    monkeypatch,
):
    meeting = Rendezvous(0, 2, "127.0.0.1", 15000)
    assert interface_towards("127.0.0.1", 15000) == "lo"
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "127.0.1.1")  # Debian's hosts
    assert network_environment(meeting, {}) == {"GLOO_SOCKET_IFNAME": "lo"}
    assert network_environment(meeting, {"GLOO_SOCKET_IFNAME": "ib0"}) == {}  # the user's own
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "10.1.2.4")
    assert network_environment(meeting, {}) == {}  # a routable name: gloo finds it alone


def test_the_interface_is_the_one_holding_the_address_the_route_to_the_rendezvous_leaves_from(
    monkeypatch,
):
    """As on the test cluster: the route to 10.77.0.11 leaves from 10.77.0.12, eth0's address."""
    import psutil

    class Probe:
        def __init__(self, *args):
            pass

        def connect(self, address):
            assert address == ("10.77.0.11", 15009)

        def getsockname(self):
            return ("10.77.0.12", 40000)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    entry = type("Entry", (), {})
    lo, eth0 = entry(), entry()
    lo.address, eth0.address = "127.0.0.1", "10.77.0.12"
    monkeypatch.setattr(socket, "socket", Probe)
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {"lo": [lo], "eth0": [eth0]})
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "127.0.0.1")
    meeting = Rendezvous(1, 2, "10.77.0.11", 15009)
    assert network_environment(meeting, {}) == {"GLOO_SOCKET_IFNAME": "eth0"}


def test_a_failed_multi_node_jobs_explaining_line_is_found_under_the_task_labels():
    log = (
        "0: 2026-12-06 INFO with_gpus: node 0 of 2 (a): 1 process(es) here\n"
        "1: error: train.max_steps: 0 is less than the minimum of 1\n"
        "0: Traceback (most recent call last):\n"
        "srun: error: b: task 1: Exited with exit code 2\n"
    )
    assert explaining_line(log) == "error: train.max_steps: 0 is less than the minimum of 1"


@pytest.mark.parametrize(
    ("nodes", "overrides", "refused"),
    [
        (4, {"train": {"gpu": 4}}, "gpu"),
        (4, {"train": {"gpu_model": "a100", "nodes": 2}}, "gpu_model, nodes"),
        (1, {"train": {"nodes": 2}}, "nodes"),
        (1, {"train": {"mpi": "srun", "tasks": 4}}, "mpi, tasks"),
    ],
)
def test_set_resources_that_would_size_a_multi_node_job_apart_from_its_launchers_are_refused(
    nodes, overrides, refused
):
    with pytest.raises(UserError, match=f"^set-resources train: {refused}: a train job over"):
        check_overrides(nodes, overrides)


def test_set_resources_that_keep_the_job_on_one_node_are_left_alone():
    check_overrides(1, {"train": {"gpu": 4, "slurm_partition": "a100", "runtime": 60}})
    check_overrides(4, {"train": {"slurm_partition": "a100", "mem_mb": 100}, "score": {"gpu": 2}})


def test_a_multi_node_job_asks_for_gpus_per_node_and_one_task_on_each():
    environ = {"SPPO_SLURM_GPU_MODEL": "h100", "SPPO_SLURM_GPU_PARTITION": "gpu"}
    assert placement(8, environ, nodes=4) == {
        "nodes": 4, "tasks": 4, "tasks_per_gpu": 0, "mpi": "srun", "gres": "gpu:h100:8",
        "gpus_per_node": 8, "gpu": 0, "gpu_model": "", "slurm_partition": "gpu",
    }  # fmt: skip
    assert placement(2, {}) == {"nodes": 1, "gpu": 2}
    assert placement(1, {}, nodes=2)["gres"] == "gpu:1"


def test_with_gpus_refuses_several_nodes_outside_a_slurm_step():
    script = str(ROOT / "scripts" / "with_gpus.py")
    env = {"PATH": "/usr/bin:/bin"}
    ran = subprocess.run(
        [sys.executable, script, "1", "--process-per-gpu", "--nodes", "2", "--", "train.py"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines()[-1] == (
        "error: resources.train.nodes is 2: a multi-node train job runs as a SLURM job step "
        "(srun, the slurm profile), but SLURM_NNODES is not set here"
    )
    no_gpus = subprocess.run(
        [sys.executable, script, "0", "--process-per-gpu", "--nodes", "2", "--", "train.py"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert no_gpus.returncode == 2 and "1 or more GPUs per node" in no_gpus.stderr
