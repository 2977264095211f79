#!/usr/bin/env python
"""The score stage's join of its chunk parts: time and peak memory at a paper round's size.

The join holds the preference rows (no text) in memory and writes them sorted, as the gather of
N shards does, so that one job and N shards write the same bytes. This measures what that costs:
random preference rows for PROMPTS prompts x K = 5 responses (K(K-1) rows each), written as
parts of 256 prompts, then joined by scoring.join_parts.

    python benchmarks/join_memory.py --prompts 20000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sppoflow.score.preferences import join_parts
from sppoflow.tables import PREFERENCES, write_table


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_parts(folder: Path, prompts: int, k: int, per_chunk: int) -> list[Path]:
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    off = i != j
    rng = np.random.default_rng(0)
    paths = []
    for start in range(0, prompts, per_chunk):
        ids = [f"p{n:016x}" for n in range(start, min(start + per_chunk, prompts))]
        frame = pd.DataFrame(
            {
                "prompt_id": np.repeat(ids, off.sum()),
                "i": np.tile(i[off], len(ids)),
                "j": np.tile(j[off], len(ids)),
            }
        )
        frame["logit"] = rng.normal(size=len(frame))
        frame["prob"] = 1 / (1 + np.exp(-frame["logit"]))
        paths.append(folder / f"chunk-{start:06d}.parquet")
        write_table(frame, paths[-1], PREFERENCES)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=20000, help="prompts of the round")
    parser.add_argument("--k", type=int, default=5, help="responses per prompt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_parts(Path(folder), args.prompts, args.k, per_chunk=256)
        before = peak_mib()
        start = time.perf_counter()
        rows = join_parts(paths, Path(folder) / "preferences.parquet")
        seconds = time.perf_counter() - start
    print(
        f"{args.prompts} prompts x K = {args.k}: {rows} rows in {len(paths)} parts, joined in "
        f"{seconds:.1f} s; peak RSS {before:.0f} MiB before the join, {peak_mib():.0f} MiB after"
    )


if __name__ == "__main__":
    main()
