#!/usr/bin/env python
"""Run a command on GPUs of its own: the GPU rules' wrapper on one machine.

Snakemake's gpu resource keeps the GPU count of running jobs within the machine's, but does not
pick devices; this claims N free GPUs (a lock file each) and runs the command with
CUDA_VISIBLE_DEVICES set to them. Under SLURM (CUDA_VISIBLE_DEVICES already set) or without
GPUs the command runs unchanged; N = 0 hides every GPU. With --process-per-gpu the command is
a Python script, started once per GPU through `accelerate launch` when N > 1. With --nodes M
(M > 1) this is one node's launcher of a SLURM job step over M nodes (srun, one task per node):
N GPUs here, N x M processes in all, meeting at the job's first node
(sppoflow.runtime.multi_node). The
wrapper waits for the command when it is signalled (SIGTERM at a time limit), so that the
trainer can save.

Examples:
    python scripts/with_gpus.py 2 -- python scripts/sample.py --model ... --backend vllm \\
        --tensor-parallel-size 2
    python scripts/with_gpus.py 8 --process-per-gpu \\
        --accelerate-config config/accelerate/deepspeed_zero3.yaml -- scripts/train.py ...
    srun --nodes 4 --ntasks 4 --ntasks-per-node 1 --gres gpu:8 python scripts/with_gpus.py 8 \\
        --process-per-gpu --nodes 4 -- scripts/train.py ...
"""

import argparse
import logging
import os
import sys

import _bootstrap  # noqa: F401
from sppoflow.errors import UserError
from sppoflow.runtime.gpu_slots import launcher_environment, process_per_gpu, run_with_gpus
from sppoflow.runtime.multi_node import (
    accelerate_launch,
    network_environment,
    rendezvous_from_slurm,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("gpus", type=int, help="GPUs the command needs")
    parser.add_argument(
        "--process-per-gpu",
        action="store_true",
        help="the command is a Python script: run it once per GPU (accelerate launch)",
    )
    parser.add_argument(
        "--accelerate-config", default=None, help="accelerate config for --process-per-gpu"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="nodes of the SLURM job step this runs in, one launcher each (--process-per-gpu)",
    )
    parser.usage = (
        "%(prog)s [-h] [--process-per-gpu] [--accelerate-config FILE] [--nodes M] gpus -- command"
    )
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("no command given (put it after --)")
    if args.gpus < 0:
        parser.error(f"gpus must be 0 or more, got {args.gpus}")
    if args.nodes < 1:
        parser.error(f"nodes must be 1 or more, got {args.nodes}")
    if args.nodes > 1 and (not args.process_per_gpu or args.gpus < 1):
        parser.error("--nodes above 1 is for --process-per-gpu with 1 or more GPUs per node")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s with_gpus: %(message)s"
    )
    extra_env = {}
    try:
        if args.nodes > 1:
            meeting = rendezvous_from_slurm(args.nodes)
            logging.info(
                "node %d of %d (%s): %d process(es) here, %d in all, rendezvous %s:%d",
                meeting.machine_rank, args.nodes, meeting.node_name or "?", args.gpus,
                args.gpus * args.nodes, meeting.address, meeting.port,
            )  # fmt: skip
            if meeting.given:
                logging.info("rendezvous from the environment: %s", ", ".join(meeting.given))
            command = accelerate_launch(args.gpus, command, args.accelerate_config or None, meeting)
            extra_env = {**launcher_environment(), **network_environment(meeting)}
            if os.environ.get("GLOO_SOCKET_IFNAME"):
                logging.info("GLOO_SOCKET_IFNAME=%s (from the environment)",
                             os.environ["GLOO_SOCKET_IFNAME"])  # fmt: skip
            elif "GLOO_SOCKET_IFNAME" in extra_env:
                logging.info(
                    "this host's name resolves to a loopback address: GLOO_SOCKET_IFNAME=%s",
                    extra_env["GLOO_SOCKET_IFNAME"],
                )
        elif args.process_per_gpu:
            command = process_per_gpu(args.gpus, command, args.accelerate_config or None)
            extra_env = launcher_environment() if args.gpus > 1 else {}
        sys.exit(run_with_gpus(args.gpus, command, extra_env))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
