#!/usr/bin/env python
"""Run a command on GPUs of its own: the GPU rules' wrapper on one machine.

Snakemake's gpu resource keeps the GPU count of running jobs within the machine's, but does not
pick devices; this claims N free GPUs (a lock file each) and runs the command with
CUDA_VISIBLE_DEVICES set to them. Under SLURM (CUDA_VISIBLE_DEVICES already set) or without
GPUs the command runs unchanged; N = 0 hides every GPU. With --process-per-gpu the command is
a Python script, started once per GPU through `accelerate launch` when N > 1. The wrapper waits
for the command when it is signalled (SIGTERM at a time limit), so that the trainer can save.

Examples:
    python scripts/with_gpus.py 2 -- python scripts/sample.py --model ... --backend vllm \\
        --tensor-parallel-size 2
    python scripts/with_gpus.py 8 --process-per-gpu \\
        --accelerate-config config/accelerate/deepspeed_zero3.yaml -- scripts/train.py ...
"""

import argparse
import logging
import sys

import _bootstrap  # noqa: F401

from sppoflow.errors import UserError
from sppoflow.gpu_slots import launcher_environment, process_per_gpu, run_with_gpus


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
    parser.usage = "%(prog)s [-h] [--process-per-gpu] [--accelerate-config FILE] gpus -- command"
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("no command given (put it after --)")
    if args.gpus < 0:
        parser.error(f"gpus must be 0 or more, got {args.gpus}")
    extra_env = {}
    if args.process_per_gpu:
        command = process_per_gpu(args.gpus, command, args.accelerate_config or None)
        extra_env = launcher_environment() if args.gpus > 1 else {}
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s with_gpus: %(message)s"
    )
    try:
        sys.exit(run_with_gpus(args.gpus, command, extra_env))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
