"""The embedded default judge: semantic relevance of a response to its prompt.

s(y) = cos(embed(x), embed(y)) with all-MiniLM-L6-v2 (mean pooling, L2 normalisation) and
P(y_i > y_j | x) = sigmoid((s_i - s_j) / temperature). It is a stand-in that runs on any laptop: it
ranks off-topic and looping responses last, and it also rewards restating the question, so
treat its gains as a proxy's, not as quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from sppoflow.models.batching import length_sorted_batches, pad
from sppoflow.score.judges.base import PointwiseJudge, TransformersJudge

DEFAULT_TEMPERATURE = 0.05
DEFAULT_MAX_LENGTH = 256
CPU_MAX_BATCH_TOKENS = 4096  # a 22M-parameter encoder needs batches to use a CPU well


class RelevanceJudge(PointwiseJudge, TransformersJudge):
    name = "relevance"
    default_max_length = DEFAULT_MAX_LENGTH

    def __init__(self, folder: str | Path, settings, device, dtype: torch.dtype) -> None:
        super().__init__(settings.temperature or DEFAULT_TEMPERATURE)
        self.encoder = self.load(AutoModel, folder, settings, device, dtype)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, computed in length-sorted batches to limit padding."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(texts), self.encoder.config.hidden_size), dtype=np.float64)
        for batch in length_sorted_batches(
            [len(i) for i in ids], self.batch_size, self.max_batch_tokens
        ):
            input_ids, mask = pad([ids[n] for n in batch], self.tokenizer.pad_token_id)
            hidden = self.encoder(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
            ).last_hidden_state.float()
            weights = mask.to(self.device).unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            out[batch] = torch.nn.functional.normalize(pooled, dim=-1).cpu().double().numpy()
        return out

    def scores(self, prompts, responses):
        unique_prompts = sorted(set(prompts))
        prompt_vectors = dict(zip(unique_prompts, self.embed(unique_prompts), strict=True))
        flat = [r for group in responses for r in group]
        response_vectors = self.embed(flat)
        result, start = [], 0
        for prompt, group in zip(prompts, responses, strict=True):
            vectors = response_vectors[start : start + len(group)]
            result.append(vectors @ prompt_vectors[prompt])
            start += len(group)
        return result


def build(settings, folder: Path, device: torch.device, dtype: torch.dtype) -> RelevanceJudge:
    return RelevanceJudge(folder, settings, device, dtype)
