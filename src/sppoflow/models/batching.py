"""Length-sorted batches under a sequence and a token budget, and padding helpers."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int
) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first.

    A batch holds at most ``batch_size`` sequences and at most ``max_batch_tokens`` tokens once
    padded to its longest member (a single longer sequence still gets a batch of its own).
    """
    order = sorted(range(len(lengths)), key=lambda n: (-lengths[n], n))
    batches: list[list[int]] = []
    for n in order:
        if batches:
            batch = batches[-1]
            width = lengths[batch[0]]  # the first member is the longest
            if len(batch) < batch_size and width * (len(batch) + 1) <= max_batch_tokens:
                batch.append(n)
                continue
        batches.append([n])
    return batches


def pad(
    rows: Sequence[Sequence[int]], pad_id: int, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) of rows padded to the longest, on the right or the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[n, span] = torch.tensor(list(row), dtype=torch.long)
        mask[n, span] = 1
    return ids, mask
