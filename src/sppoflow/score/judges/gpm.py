"""GPM, the general preference model (Zhang et al., ICML 2025, "Beyond Bradley-Terry Models: A
General Preference Model for Language Model Alignment"), read natively: no remote code.

Each response is embedded once. The decoder's last hidden state at the sequence's last token
goes through a linear value head (no bias) to a vector of even size d, normalised to unit
length: v_y. With a prompt head, the prompt's last hidden state (at the end of the prompt's
own chat-templated turn) gives d/2 weights lambda = softmax(prompt_head(h_x)); without it every
lambda_k is 1. The preference score is skew-symmetric,

    s(y_i > y_j | x) = sum_k lambda_k (v_i[2k] v_j[2k+1] - v_i[2k+1] v_j[2k]),

so s(j, i) = -s(i, j), and P(y_i > y_j | x) = sigmoid(s / temperature), with the authors'
training temperature 0.1 by default. A prompt's K responses cost K forward passes; PairRM
asks K(K-1).

The input is formatted as the authors' inference pipeline (``gpm_example_usage.py``) does: the
conversation [user x, assistant y] rendered by the model's chat template without a generation
prompt, tokenized with the tokenizer's special tokens, cut on the right at ``max_length``, and
its last token set to the end-of-sequence token. A published checkpoint holds the decoder as a
causal LM's ``model.*`` weights, ``value_head.weight`` [d, hidden] and, where it has one,
``prompt_head.weight`` [d/2, hidden]; its config is the base model's (architectures
``CustomRewardModel``), and d and the prompt head are read from the weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from sppoflow.errors import UserError
from sppoflow.models.batching import length_sorted_batches, pad
from sppoflow.score.judges.base import Comparison, Judge, TransformersJudge, check_finite, sigmoid

DEFAULT_TEMPERATURE = 0.1
DEFAULT_MAX_LENGTH = 4096
VALUE_HEAD = "value_head.weight"
PROMPT_HEAD = "prompt_head.weight"


def head_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The value head's weight and the prompt head's (where the checkpoint has one), read from
    its safetensors files without loading the rest."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        where = json.loads(index.read_text())["weight_map"]
        files = {name: folder / where[name] for name in (VALUE_HEAD, PROMPT_HEAD) if name in where}
    else:
        single = folder / "model.safetensors"
        if not single.is_file():
            raise UserError(f"judge.model: {folder} has no safetensors weights (GPM reads them)")
        with safe_open(single, "pt") as weights:
            names = set(weights.keys())
        files = {name: single for name in (VALUE_HEAD, PROMPT_HEAD) if name in names}
    if VALUE_HEAD not in files:
        raise UserError(
            f"judge.model: {folder} has no {VALUE_HEAD}: not a GPM checkpoint (judge.backend gpm)"
        )
    heads = {}
    for name, file in files.items():
        with safe_open(file, "pt") as weights:
            heads[name] = weights.get_tensor(name)
    return heads


def skew_scores(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """S[i, j] = sum_k lambda_k (v_i[2k] v_j[2k+1] - v_i[2k+1] v_j[2k]) for embeddings v [K, d]
    and block weights lambda [d/2]."""
    even, odd = v[:, 0::2], v[:, 1::2]
    return (even * weights) @ odd.T - (odd * weights) @ even.T


class GPMJudge(Judge, TransformersJudge):
    name = "gpm"
    default_max_length = DEFAULT_MAX_LENGTH

    def __init__(self, folder: str | Path, settings, device, dtype: torch.dtype) -> None:
        self.temperature = settings.temperature or DEFAULT_TEMPERATURE
        folder = Path(folder)
        heads = head_weights(folder)
        self.model = self.load(AutoModel, folder, settings, device, dtype)
        hidden = self.model.config.hidden_size
        value = heads[VALUE_HEAD]
        size = value.shape[0]
        if value.shape != (size, hidden) or size % 2:
            raise UserError(
                f"judge.model: {folder}: {VALUE_HEAD} has shape {tuple(value.shape)}; GPM's is "
                f"[d, {hidden}] with d even"
            )
        self.value_head = value.to(self.device, dtype)
        prompt = heads.get(PROMPT_HEAD)
        if prompt is not None and prompt.shape != (size // 2, hidden):
            raise UserError(
                f"judge.model: {folder}: {PROMPT_HEAD} has shape {tuple(prompt.shape)}, not "
                f"[{size // 2}, {hidden}] for a value head of size {size}"
            )
        self.prompt_head = None if prompt is None else prompt.to(self.device, dtype)
        if not self.tokenizer.chat_template:
            raise UserError(f"judge.model: {folder} has no chat template; GPM reads conversations")
        if self.tokenizer.eos_token_id is None:
            raise UserError(f"judge.model: {folder}'s tokenizer has no end-of-sequence token")

    @property
    def value_head_dim(self) -> int:
        return self.value_head.shape[0]

    def encode(self, prompt: str, response: str) -> tuple[list[int], int]:
        """The conversation's ids and the index of the prompt turn's last token."""
        user = [{"role": "user", "content": prompt}]
        full = self.tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": response}], tokenize=False
        )
        alone = self.tokenizer.apply_chat_template(user, tokenize=False)
        ids = self.tokenizer(full)["input_ids"][: self.max_length]
        ids[-1] = self.tokenizer.eos_token_id
        prompt_ids = self.tokenizer(alone)["input_ids"][: self.max_length]
        return ids, min(len(prompt_ids), len(ids)) - 1

    @torch.inference_mode()
    def embed(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(v [n, d] unit vectors, lambda [n, d/2]) for each (prompt, response)."""
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        vectors = np.zeros((len(encoded), self.value_head_dim), dtype=np.float64)
        weights = np.ones((len(encoded), self.value_head_dim // 2), dtype=np.float64)
        lengths = [len(ids) for ids, _ in encoded]
        for batch in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens):
            ids, mask = pad([encoded[n][0] for n in batch], self.tokenizer.pad_token_id)
            hidden = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).last_hidden_state
            rows = torch.arange(len(batch), device=self.device)
            last = torch.tensor([lengths[n] - 1 for n in batch], device=self.device)
            value = torch.nn.functional.normalize(hidden[rows, last] @ self.value_head.T, dim=-1)
            vectors[batch] = value.float().cpu().numpy()
            if self.prompt_head is not None:
                ends = torch.tensor([encoded[n][1] for n in batch], device=self.device)
                gate = torch.softmax((hidden[rows, ends] @ self.prompt_head.T).float(), dim=-1)
                weights[batch] = gate.cpu().numpy()
        return vectors, weights

    def logit_matrices(self, prompts, responses):
        flat_prompts = [p for p, group in zip(prompts, responses, strict=True) for _ in group]
        vectors, weights = self.embed(flat_prompts, [r for group in responses for r in group])
        matrices, start = [], 0
        for prompt, group in zip(prompts, responses, strict=True):
            v = torch.from_numpy(vectors[start : start + len(group)])
            # one prompt, one lambda: the prompt's hidden state is the same in each response's
            # pass (causal attention), so the first response's is the prompt's
            scores = skew_scores(v, torch.from_numpy(weights[start])).numpy()
            check_finite(scores, self.name, [prompt], "preference scores")
            matrices.append(scores / self.temperature)
            start += len(group)
        return matrices

    def compare(self, prompts, first, second):
        vectors, weights = self.embed([*prompts, *prompts], [*first, *second])
        n = len(prompts)
        scores = np.array(
            [
                skew_scores(torch.from_numpy(vectors[[k, n + k]]), torch.from_numpy(weights[k]))[
                    0, 1
                ].item()
                for k in range(n)
            ]
        )
        check_finite(scores, self.name, list(prompts), "preference scores")
        return Comparison(sigmoid(scores / self.temperature))


def build(settings, folder: Path, device: torch.device, dtype: torch.dtype) -> GPMJudge:
    return GPMJudge(folder, settings, device, dtype)
