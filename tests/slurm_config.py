"""The test cluster's slurm.conf (tests/slurm_cluster.py)."""

from __future__ import annotations

from pathlib import Path

from slurm_daemons import MARK
from slurm_node_network import SUBNET, address


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
