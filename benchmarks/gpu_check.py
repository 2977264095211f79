#!/usr/bin/env python
"""The GPU check: what only a GPU machine can measure. Skips, saying so, without CUDA.

1. Sampling throughput on the embedded model: the transformers backend against vLLM (where it
   is installed), the same prompts, K and token limit; generated tokens per second and ratio.
2. PairRM: batched in bf16 against one pair per forward pass (benchmarks/pairrm_throughput.py
   on the GPU; target at least 10x).
3. One round of the workflow on the GPU (the embedded default, vLLM sampling where installed),
   in a temporary folder: the per-stage times from its benchmark files.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sampling_throughput(model_dir: Path, n_prompts: int, k: int, max_new_tokens: int) -> None:
    import pandas as pd

    from sppoflow.generation import SamplingSettings, generate
    from sppoflow.models import load_policy
    from sppoflow.prompts import read_source

    texts = read_source(str(ROOT / "config" / "prompts" / "instructions.jsonl"), "prompt")
    prompts = pd.DataFrame(
        {"prompt_id": [f"g{n}" for n in range(n_prompts)], "prompt": texts[:n_prompts]}
    )
    settings = dict(k=k, max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.9, seed=0)
    results = {}
    model, tokenizer = load_policy(model_dir)
    model.to("cuda")
    start = time.perf_counter()
    samples = generate(
        model, tokenizer, prompts, SamplingSettings(**settings, batch_size=256, device="cuda")
    )
    results["transformers"] = samples.response_tokens.sum() / (time.perf_counter() - start)
    del model
    if importlib.util.find_spec("vllm"):
        from sppoflow.vllm_generation import generate_vllm

        start = time.perf_counter()
        samples = generate_vllm(str(model_dir), prompts, SamplingSettings(**settings))
        results["vllm"] = samples.response_tokens.sum() / (time.perf_counter() - start)
    print(f"sampling {n_prompts} prompts x K={k}, <= {max_new_tokens} new tokens:")
    for name, rate in results.items():
        print(f"  {name:13s} {rate:9.0f} generated tokens/s (engine start included)")
    if len(results) == 2:
        print(f"  vLLM / transformers: x{results['vllm'] / results['transformers']:.1f}")
    else:
        print("  vLLM: not installed in this environment (envs/vllm.yaml)")


def one_round(folder: Path) -> None:
    backend = "vllm" if importlib.util.find_spec("vllm") else "transformers"
    command = [
        shutil.which("snakemake") or "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
        "--cores", "all", "--configfile", str(ROOT / "config" / "config.yaml"),
        "--config", "rounds=1", f"sample={{backend: {backend}}}",
        f"prompts={{source: {ROOT / 'config' / 'prompts' / 'instructions.jsonl'}}}",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the workflow failed:\n{done.stderr[-3000:]}")
    print(f"one round on the GPU ({backend} sampling): {time.perf_counter() - start:.0f} s wall")
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stages.py"), "--run", "results"], cwd=folder
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device (this check runs on a GPU machine)")
        return
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sppoflow.models import import_policy

    with tempfile.TemporaryDirectory() as folder:
        model_dir = Path(folder) / "model"
        import_policy("embedded:smollm2-135m-instruct", model_dir)
        sampling_throughput(model_dir, args.prompts, args.k, args.max_new_tokens)
        print("PairRM, batched bf16 against one pair per pass:")
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "pairrm_throughput.py"), "--prompts",
             "8", "--k", "4"], check=True,
        )  # fmt: skip
        one_round(Path(folder))


if __name__ == "__main__":
    main()
