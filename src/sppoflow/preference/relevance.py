"""The embedded default judge: semantic relevance of a response to its prompt.

s(y) = cos(embed(x), embed(y)) with all-MiniLM-L6-v2 (mean pooling, L2 normalisation) and
P(y_i > y_j | x) = sigmoid((s_i - s_j) / tau). It is a stand-in that runs on any laptop: it
ranks off-topic and looping responses last, and it also rewards restating the question, so
treat its gains as a proxy's, not as quality.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from sppoflow.preference.base import PointwisePreferenceModel


class RelevanceJudge(PointwisePreferenceModel):
    name = "relevance"

    def __init__(
        self,
        model_path: str,
        tau: float = 0.05,
        batch_size: int = 64,
        max_length: int = 256,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(tau)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.encoder = AutoModel.from_pretrained(model_path, dtype=dtype).to(self.device).eval()

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, computed in length-sorted batches to limit padding."""
        order = sorted(range(len(texts)), key=lambda n: len(texts[n]))
        out = np.zeros((len(texts), self.encoder.config.hidden_size), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            tokens = self.tokenizer(
                [texts[n] for n in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.encoder(**tokens).last_hidden_state.float()
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
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
