#!/usr/bin/env python
"""PairRM scoring throughput: this project's batched backend against one pair per forward
pass (how the authors' pipeline runs llm-blender's ranker, batch size 1), on the same
PairRM-shaped checkpoint (DeBERTa-v3-large dimensions, random weights: no weights can be
downloaded here, and speed does not depend on their values).

Prompts are 50-300 tokens, responses 100-400, K responses per prompt, every ordered pair
scored. Prints pairs per second for each variant and the ratios, measured in one run.

    python benchmarks/pairrm_throughput.py --prompts 3 --k 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test helpers that build random judges

from pairrm_helpers import LARGE, random_pairrm  # noqa: E402
from sppoflow.runtime.devices import resolve_device, resolve_dtype  # noqa: E402
from sppoflow.score.judges.pairrm import PairRMJudge  # noqa: E402


def workload(n_prompts: int, k: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = np.random.default_rng(seed)

    def text(low: int, high: int) -> str:
        return " ".join(f"w{w}" for w in rng.integers(4, 128000, size=rng.integers(low, high + 1)))

    prompts = [text(50, 300) for _ in range(n_prompts)]
    return prompts, [[text(100, 400) for _ in range(k)] for _ in prompts]


def timed(judge: PairRMJudge, prompts, responses) -> tuple[float, list[np.ndarray]]:
    judge.logit_matrices(prompts[:1], [responses[0][:2]])  # warm-up
    start = time.perf_counter()
    matrices = judge.logit_matrices(prompts, responses)
    return time.perf_counter() - start, matrices


def where_the_time_goes(model, tokenizer, prompts, responses, device, dtypes) -> None:
    """Profile one pair's forward pass per precision and print the ops that dominate."""
    from torch.profiler import ProfilerActivity, profile

    pair = (prompts[0], responses[0][0], responses[0][1])
    for dtype in dtypes:
        judge = PairRMJudge(model, tokenizer, batch_size=1, device=device, dtype=dtype)
        judge.pair_logits(*([x] for x in pair))  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            judge.pair_logits(*([x] for x in pair))
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        top = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in events[:7])
        print(f"  {str(dtype).removeprefix('torch.'):<9} {total / 1e6:5.2f} s per pair: {top}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also show where the time goes")
    args = parser.parse_args()

    device = resolve_device(args.device)
    fast_dtype = resolve_dtype("auto", device)
    model, tokenizer = random_pairrm(LARGE, seed=args.seed, std=None)
    prompts, responses = workload(args.prompts, args.k, args.seed)
    n_pairs = args.prompts * args.k * (args.k - 1)
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{n_pairs} ordered pairs ({args.prompts} prompts x K={args.k})"
    )

    # The authors' way: one pair per forward pass, fp32 on a CPU (llm-blender casts to fp16 on
    # GPUs only). Then batching and precision separately, then this project's defaults.
    baseline_dtype = torch.float32 if device.type == "cpu" else torch.float16
    default_tokens = 16384 if device.type == "cuda" else 1  # 1: one sequence per batch
    variants = [
        ("one pair per pass", 1, 1 << 30, baseline_dtype),
        ("batched <=16384 tokens", args.batch_size, 16384, baseline_dtype),
        ("batched <=16384 tokens", args.batch_size, 16384, fast_dtype),
        ("project defaults on this device", args.batch_size, default_tokens, fast_dtype),
    ]
    results = []  # fp32 variants first: the judge casts the shared model in place
    for name, batch_size, max_batch_tokens, dtype in variants:
        judge = PairRMJudge(
            model,
            tokenizer,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            device=device,
            dtype=dtype,
        )
        seconds, matrices = timed(judge, prompts, responses)
        name = f"{name}, {str(dtype).removeprefix('torch.')}"
        results.append((name, seconds, matrices))
        print(f"  {name:<42} {seconds:8.1f} s  {n_pairs / seconds:7.3f} pairs/s", flush=True)
    base_seconds, base_matrices = results[0][1], results[0][2]
    print("ratios against one pair per pass (same run):")
    for name, seconds, matrices in results[1:]:
        diff = max(
            np.abs(1 / (1 + np.exp(-a)) - 1 / (1 + np.exp(-b))).max()
            for a, b in zip(matrices, base_matrices, strict=True)
        )
        print(f"  {name:<40} x{base_seconds / seconds:5.2f}   max |P - P_baseline| = {diff:.1e}")

    if args.profile:
        print("where the time goes (one pair, one forward pass, self time per op):")
        where_the_time_goes(
            model,
            tokenizer,
            prompts,
            responses,
            device,
            sorted({baseline_dtype, fast_dtype}, key=str, reverse=True),
        )


if __name__ == "__main__":
    main()
