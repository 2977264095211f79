"""The score stage: every ordered pair of a prompt's responses, judged.

Prompts are judged in chunks of a fixed number of prompts (in prompt-id order), each chunk
batched on its own. A chunk is also the unit of a shard: shard s of N judges chunks s, s + N,
..., so every pair meets the same batch-mates whatever the number of shards, and 1 shard
and N shards give the same preferences bit for bit.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sppoflow.errors import UserError
from sppoflow.preference import PreferenceModel, sigmoid
from sppoflow.shards import take_shard
from sppoflow.tables import PREFERENCES

log = logging.getLogger(__name__)


def prompt_chunks(samples: pd.DataFrame, prompts_per_chunk: int) -> list[list[tuple]]:
    """The (prompt_id, responses) groups of ``samples``, sorted by prompt id, in chunks."""
    if prompts_per_chunk < 1:
        raise UserError(f"judge.prompts_per_chunk must be 1 or more, got {prompts_per_chunk}")
    samples = samples.sort_values(["prompt_id", "response_idx"])
    groups = list(samples.groupby("prompt_id", sort=True))
    too_few = [pid for pid, g in groups if len(g) < 2]
    if too_few:
        raise UserError(
            f"{len(too_few)} prompt(s) have fewer than 2 responses (e.g. {too_few[0]}); "
            "pairwise preferences need K >= 2"
        )
    return [groups[n : n + prompts_per_chunk] for n in range(0, len(groups), prompts_per_chunk)]


def judge_chunk(judge: PreferenceModel, groups: list[tuple]) -> pd.DataFrame:
    """PREFERENCES rows for the prompts of one chunk."""
    matrices = judge.logit_matrices(
        [g["prompt"].iat[0] for _, g in groups], [g["response"].tolist() for _, g in groups]
    )
    frames = []
    for (pid, group), logits in zip(groups, matrices, strict=True):
        idx = group["response_idx"].to_numpy()
        i, j = np.meshgrid(np.arange(len(idx)), np.arange(len(idx)), indexing="ij")
        off_diagonal = i != j
        frames.append(
            pd.DataFrame(
                {
                    "prompt_id": pid,
                    "i": idx[i[off_diagonal]],
                    "j": idx[j[off_diagonal]],
                    "logit": logits[off_diagonal],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def score_samples(
    judge: PreferenceModel,
    samples: pd.DataFrame,
    prompts_per_chunk: int = 256,
    shard: int = 0,
    shards: int = 1,
) -> pd.DataFrame:
    """A PREFERENCES table: (prompt_id, i, j, logit, prob) for every i != j of each prompt
    (of this shard's chunks)."""
    chunks = take_shard(prompt_chunks(samples, prompts_per_chunk), shard, shards)
    frames = []
    for number, chunk in enumerate(chunks, start=1):
        frames.append(judge_chunk(judge, chunk))
        log.info("judged chunk %d of %d (%d prompts)", number, len(chunks), len(chunk))
    if not frames:
        return pd.DataFrame({c: [] for c in PREFERENCES.columns})
    preferences = pd.concat(frames, ignore_index=True)
    preferences["prob"] = sigmoid(preferences["logit"].to_numpy())
    return preferences
