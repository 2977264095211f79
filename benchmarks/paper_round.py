#!/usr/bin/env python
"""A paper-sized round on a CPU: the score stage's host memory and the aggregate stage's time.

A paper round has 20k prompts x K = 5 responses: 400k ordered pairs for PairRM. This writes
synthetic samples files of that shape (responses of 200-2000 tokens, their token ids included,
as the sample stage writes them), then runs, each in its own process:

* score, streamed chunk by chunk, with a random PairRM-shaped judge in the real checkpoint
  layout (word-level tokenizer, DeBERTa-v3 architecture at tiny dimensions, loaded by the real
  backend). Every text is read and tokenized whole; to keep the run in minutes on a CPU the
  judge's inputs are cut to --judge-length tokens (PairRM's own is 2048; the host-side work
  does not depend on it, the model's time does);
* aggregate, on the score stage's output.

Printed per size: peak RSS of score and aggregate (their own processes, from wait4), pairs
judged per second, the aggregate's seconds, and the ratios of 20k to 2k prompts.

    python benchmarks/paper_round.py                       # 2k and 20k prompts, K = 5
    python benchmarks/paper_round.py --prompts 200 2000    # a quick look
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test helpers that build random judges


def write_samples(path: Path, n_prompts: int, k: int, seed: int) -> int:
    """A samples file of n_prompts x k rows, written in row groups of 1000 prompts."""
    from sppoflow.tables import SAMPLES

    rng = np.random.default_rng(seed)
    writer = None
    tokens = 0
    for start in range(0, n_prompts, 1000):
        n = min(1000, n_prompts - start)
        prompt_lengths = rng.integers(30, 300, size=n)
        lengths = rng.integers(200, 2001, size=n * k)
        ids = [rng.integers(4, 128000, size=m) for m in lengths]
        prompts = [
            " ".join(f"w{w}" for w in rng.integers(4, 128000, size=m)) for m in prompt_lengths
        ]
        columns = {
            "prompt_id": [f"p{start + n_:07d}" for n_ in range(n) for _ in range(k)],
            "prompt": [p for p in prompts for _ in range(k)],
            "response_idx": list(range(k)) * n,
            "response": [" ".join(f"w{w}" for w in row) for row in ids],
            "response_token_ids": pa.array([row.tolist() for row in ids], pa.list_(pa.int64())),
            "prompt_tokens": np.repeat(prompt_lengths, k),
            "response_tokens": lengths,
            "finish_reason": ["length" if m == 2000 else "stop" for m in lengths],
        }
        table = pa.table({c: columns[c] for c in SAMPLES.columns})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        tokens += int(lengths.sum())
    writer.close()
    return tokens


def make_judge(folder: Path) -> None:
    from pairrm_helpers import random_pairrm
    from sppoflow.score.judges.pairrm import save_pairrm

    model, tokenizer = random_pairrm()
    save_pairrm(model, tokenizer, folder, layout="hf")


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss would count the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_samples(args) -> None:
    write_samples(args.samples, args.n, args.k, args.seed)


def child_score(args) -> None:
    import torch

    from sppoflow.score.judges import JudgeSettings, build_judge, pairrm
    from sppoflow.score.preferences import score_file

    torch.set_num_threads(args.threads)
    # the judge's budgets, scaled from PairRM's 1224 + 2 x 412 = 2048 to --judge-length
    pairrm.SOURCE_MAX_LENGTH = args.judge_length * 1224 // 2048
    pairrm.MAX_LENGTH = args.judge_length
    settings = JudgeSettings(
        backend="pairrm",
        model=str(args.judge),
        device="cpu",
        dtype="float32",
        batch_size=32,  # and the CPU default of one sequence per forward pass
    )
    judge = build_judge(settings)
    start = time.perf_counter()
    rows = score_file(judge, args.samples, args.out, prompts_per_chunk=256, run_id="bench")
    print(f"{rows} {time.perf_counter() - start:.3f} {peak_rss_mb():.1f}")


def child_aggregate(args) -> None:
    """What scripts/aggregate.py does, timed from reading the files to writing the tables."""
    from sppoflow.aggregate.win_rates import AggregateSettings, aggregate
    from sppoflow.tables import (
        PAIRS,
        PREFERENCES,
        RESPONSE_WIN_RATES,
        SAMPLES,
        check_table,
        write_table,
    )

    start = time.perf_counter()
    check_table(args.samples, SAMPLES)
    check_table(args.out, PREFERENCES)
    result = aggregate(args.samples, args.out, AggregateSettings())
    write_table(
        result.win_rates, args.out.with_name("response_win_rates.parquet"), RESPONSE_WIN_RATES
    )
    write_table(result.pairs, args.out.with_name("pairs.parquet"), PAIRS)
    pairs = int(result.stats["n_pairs"].iat[0]) if "n_pairs" in result.stats else 0
    print(f"{pairs} {time.perf_counter() - start:.3f} {peak_rss_mb():.1f}")


def run_child(stage: str, samples: Path, out: Path, judge: Path, args, n: int = 0) -> list[str]:
    """What one stage prints (rows, seconds, peak RSS in MiB), run in its own process."""
    command = [
        sys.executable, __file__, "--child", stage, "--samples", str(samples), "--out", str(out),
        "--judge", str(judge), "--judge-length", str(args.judge_length),
        "--threads", str(args.threads), "--n", str(n), "--k", str(args.k),
        "--seed", str(args.seed),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{stage} failed:\n{done.stderr[-3000:]}")
    return done.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--judge-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--child", choices=["samples", "score", "aggregate"], help=argparse.SUPPRESS
    )
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--judge", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "score":
        return child_score(args)
    if args.child == "aggregate":
        return child_aggregate(args)
    if args.child == "samples":
        return child_samples(args)

    print(
        f"K = {args.k}, responses of 200-2000 tokens, judge inputs cut to {args.judge_length} "
        f"tokens, {args.threads} threads, chunks of 256 prompts"
    )
    header = "prompts  pairs     samples file  score: peak RSS  pairs/s   aggregate: peak RSS  s"
    results = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_judge(folder / "judge")
        print(header)
        for n in args.prompts:
            samples = folder / f"samples-{n}.parquet"
            out = folder / f"preferences-{n}.parquet"
            run_child("samples", samples, out, folder / "judge", args, n)
            size = samples.stat().st_size / 2**20
            rows, seconds, score_rss = run_child("score", samples, out, folder / "judge", args)
            _, aggregate_seconds, aggregate_rss = run_child(
                "aggregate", samples, out, folder / "judge", args
            )
            pairs, score_rss, aggregate_rss = int(rows), float(score_rss), float(aggregate_rss)
            aggregate_seconds = float(aggregate_seconds)
            results.append((n, score_rss, aggregate_seconds))
            print(
                f"{n:<8} {pairs:<9} {size:8.0f} MiB  {score_rss:10.0f} MiB  "
                f"{pairs / float(seconds):8.0f}  {aggregate_rss:12.0f} MiB  "
                f"{aggregate_seconds:9.1f}",
                flush=True,
            )
            samples.unlink()
    if len(results) > 1:
        (n0, rss0, _), (n1, rss1, _) = results[0], results[-1]
        print(f"{n1} vs {n0} prompts (x{n1 / n0:g}): score peak RSS x{rss1 / rss0:.2f}")


if __name__ == "__main__":
    main()
