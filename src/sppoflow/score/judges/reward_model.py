"""Reward models as judges: any sequence-classification checkpoint with one scalar head.

Each response is scored once, r(x, y), on the conversation [user x, assistant y] rendered with
the reward model's own chat template, and P(y_i > y_j | x) = sigmoid((r_i - r_j) / temperature)
with temperature 1 by default (the Bradley-Terry reading of a reward model). K forward passes
per prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from sppoflow.errors import UserError
from sppoflow.models.batching import length_sorted_batches, pad
from sppoflow.score.judges.base import PointwiseJudge, TransformersJudge

DEFAULT_TEMPERATURE = 1.0
DEFAULT_MAX_LENGTH = 2048


class RewardModelJudge(PointwiseJudge, TransformersJudge):
    name = "reward_model"
    default_max_length = DEFAULT_MAX_LENGTH

    def __init__(self, folder: str | Path, settings, device, dtype: torch.dtype) -> None:
        super().__init__(settings.temperature or DEFAULT_TEMPERATURE)
        model = self.load(AutoModelForSequenceClassification, folder, settings, device, dtype)
        if model.config.num_labels != 1:
            raise UserError(
                f"judge.model: {folder} has {model.config.num_labels} outputs; a reward model "
                "has one scalar head (num_labels = 1)"
            )
        if not self.tokenizer.chat_template:
            raise UserError(
                f"judge.model: {folder} has no chat template; the reward model scores "
                "conversations rendered with its own template"
            )
        # Sequence classifiers read the last token that is not padding.
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model

    def encode(self, prompt: str, response: str) -> list[int]:
        """The conversation through the model's template, cut on the right at max_length."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
            tokenize=False,
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_length]

    @torch.inference_mode()
    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """r(x, y) for each (prompt, response), in length-sorted right-padded batches."""
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        out = np.zeros(len(encoded), dtype=np.float64)
        lengths = [len(ids) for ids in encoded]
        for batch in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens):
            ids, mask = pad([encoded[n] for n in batch], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            out[batch] = logits.logits[:, 0].float().cpu().numpy()
        return out

    def scores(self, prompts, responses):
        flat_prompts = [p for p, group in zip(prompts, responses, strict=True) for _ in group]
        flat = self.rewards(flat_prompts, [r for group in responses for r in group])
        result, start = [], 0
        for group in responses:
            result.append(flat[start : start + len(group)])
            start += len(group)
        return result


def build(settings, folder: Path, device: torch.device, dtype: torch.dtype) -> RewardModelJudge:
    return RewardModelJudge(folder, settings, device, dtype)
