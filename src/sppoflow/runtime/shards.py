"""Data-parallel shards of a stage: which part of the work shard s of N does, and the gather.

A stage's work is cut into units whose contents do not depend on the number of shards
(generation batches, vLLM prompts, judge chunks); shard s of N takes units s, s + N, s + 2N, ...
A unit is computed the same way whoever computes it, so 1 shard and N shards write the same
rows (bit for bit for judge chunks and transformers batches on the same hardware; vLLM keeps a
prompt's seed, but its kernels may round differently with other batch-mates), and the gather
only has to put them back in order and check that none is missing or doubled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd

from sppoflow.errors import UserError
from sppoflow.tables import Table, read_table

T = TypeVar("T")


def check_shard(shard: int, shards: int) -> None:
    if shards < 1:
        raise UserError(f"--shards must be 1 or more, got {shards}")
    if not 0 <= shard < shards:
        raise UserError(f"--shard must be between 0 and {shards - 1}, got {shard}")


def take_shard(units: Sequence[T], shard: int, shards: int) -> list[T]:
    """Units shard, shard + shards, ... (round robin, so long and short units spread evenly)."""
    check_shard(shard, shards)
    return list(units[shard::shards])


def gather(paths: Sequence[Path | str], table: Table, keys: list[str]) -> pd.DataFrame:
    """The shards' rows in one table, sorted by ``keys``; a key found twice is an error."""
    frames = [read_table(path, table) for path in paths]
    if not frames:
        raise UserError(f"no {table.name} shards to gather")
    # an empty shard (more shards than units of work) has untyped columns: leave it out
    frame = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        first = frame.loc[duplicated, keys].iloc[0].to_dict()
        raise UserError(
            f"{duplicated.sum()} row(s) appear in more than one shard (e.g. {first}): "
            "the shards come from different runs; delete them and run the stage again"
        )
    return frame.sort_values(keys).reset_index(drop=True)


def missing_keys(frame: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows of ``expected`` (its ``keys`` columns) that ``frame`` lacks."""
    merged = expected[keys].merge(frame[keys].drop_duplicates(), how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", keys]
