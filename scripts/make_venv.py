#!/usr/bin/env python
"""Make one of the rules' environments (envs/*.yaml) as a plain venv, where conda is not used.

Installs the env file's pinned pip packages into FOLDER and runs its post-deploy script
(envs/<name>.post-deploy.sh), as Snakemake does for a conda environment. A venv already made
from the same files is left as it is. Point the workflow at it with a config key, e.g. the
vLLM backend on a machine without a GPU:

    python scripts/make_venv.py envs/vllm-cpu.yaml .venvs/vllm-cpu
    snakemake --cores all --config sample='{backend: vllm, vllm_python: .venvs/vllm-cpu/bin/python}'

Arguments after -- go to pip install (an extra index for the CPU build of torch, say).
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401
from sppoflow.runtime.environments import make_venv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("env_file", type=Path, help="an env file of envs/")
    parser.add_argument("folder", type=Path, help="the venv to make or bring up to date")
    parser.add_argument("pip_args", nargs="*", help="after --: more arguments for pip install")
    return parser


if __name__ == "__main__":
    import sys

    from sppoflow.errors import UserError

    args = build_parser().parse_args()
    try:
        python = make_venv(args.env_file, args.folder, args.pip_args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(python)
