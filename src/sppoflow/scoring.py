"""The score stage: every ordered pair of a prompt's responses, judged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sppoflow.errors import UserError
from sppoflow.preference import PreferenceModel, sigmoid


def score_samples(judge: PreferenceModel, samples: pd.DataFrame) -> pd.DataFrame:
    """A PREFERENCES table: (prompt_id, i, j, logit, prob) for every i != j of each prompt."""
    samples = samples.sort_values(["prompt_id", "response_idx"])
    groups = list(samples.groupby("prompt_id", sort=True))
    too_few = [pid for pid, g in groups if len(g) < 2]
    if too_few:
        raise UserError(
            f"{len(too_few)} prompt(s) have fewer than 2 responses (e.g. {too_few[0]}); "
            "pairwise preferences need K >= 2"
        )
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
    preferences = pd.concat(frames, ignore_index=True)
    preferences["prob"] = sigmoid(preferences["logit"].to_numpy())
    return preferences
