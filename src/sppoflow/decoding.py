"""The transformers backend's decoding loop: one forward pass per token over a KV cache.

It replaces ``model.generate`` for sampling because, on a CPU, three costs of the generic
loop dominate once the matmuls are fast: top-p sorts the whole vocabulary for every row at
every step, multinomial sampling draws one exponential per vocabulary entry, and rows that
have already stopped keep being computed until the longest one ends. Here top-p looks only
at the most likely candidates (exactly: it widens the candidate set until it holds the
nucleus), sampling draws among those, and finished rows leave the batch and its cache.
Each row draws its own uniform number per step from the batch's seed, so dropping finished
rows changes no other row's tokens.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Rows drop out of the batch once this share of it has finished: each drop copies the
# cache, so it is worth it only when it saves enough rows' work.
COMPACT_SHARE = 0.125
FIRST_CANDIDATES = 64


class PreallocatedLayer(DynamicLayer):
    """A layer's KV cache in buffers sized for the whole generation, so that a step writes
    its keys in place instead of copying the cache to append them (``DynamicLayer``)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.device = key_states.device
            shape = (*key_states.shape[:2], self.capacity, key_states.shape[-1])
            self.key_buffer = key_states.new_empty(shape)
            self.value_buffer = value_states.new_empty(shape)
            self.is_initialized = True
        end = self.length + key_states.shape[-2]
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys = self.key_buffer[:, :, :end]
        self.values = self.value_buffer[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]


def nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the smallest set of most likely tokens whose mass reaches ``top_p``.

    Returns (weights, token ids), both (rows, n): weights are the probabilities of the
    kept tokens and zero for the rest.
    """
    vocab = probs.shape[-1]
    n = min(FIRST_CANDIDATES, vocab)
    while True:
        weights, ids = probs.topk(n, dim=-1)  # sorted, most likely first
        before = weights.cumsum(-1) - weights  # mass of the tokens ahead of each one
        if n == vocab or bool((before[:, -1] >= top_p).all()):
            break
        n = min(n * 4, vocab)
    # A token is in the nucleus while the tokens ahead of it hold less than top_p; the
    # most likely token always is.
    keep = before < top_p
    keep[:, 0] = True
    return weights.masked_fill(~keep, 0.0), ids


def next_tokens(logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor):
    """One token per row: greedy at temperature 0, else nucleus sampling by inverse CDF,
    row r drawing with ``uniforms[r]`` (so a row's draw does not depend on the others)."""
    logits = logits.float()
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1.0:
        weights, ids = probs, None
    else:
        weights, ids = nucleus(probs, top_p)
    cdf = weights.cumsum(-1)
    target = (uniforms * cdf[:, -1]).unsqueeze(-1)
    choice = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)
    return (choice if ids is None else ids.gather(-1, choice)).squeeze(-1)


def forward(model, ids, mask, positions, cache) -> torch.Tensor:
    """The next-token logits of each row, its keys and values added to ``cache``."""
    return model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :]


@torch.inference_mode()
def decode(
    model,
    ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stops: set[int],
    temperature: float,
    top_p: float,
    seed: int,
) -> list[list[int]]:
    """The generated ids of each left-padded row of ``ids``: at most ``max_new_tokens``, and
    a row that drew a stop token may run on past it (cut it there with
    ``generation.cut_at_stop``). The same inputs and seed give the same tokens."""
    device = ids.device
    generator = torch.Generator(device=device).manual_seed(seed)
    stop_ids = torch.tensor(sorted(stops), device=device)
    out: list[list[int]] = [[] for _ in range(ids.shape[0])]
    rows = torch.arange(ids.shape[0], device=device)  # the row of ``ids`` each slot holds
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    capacity = ids.shape[1] + max_new_tokens
    cache = Cache(
        layers=[PreallocatedLayer(capacity) for _ in range(model.config.num_hidden_layers)]
    )
    # The K samples of a prompt share its prompt: read it once, then copy its cache K times.
    width = ids.shape[1]
    unique, copies = torch.unique(torch.cat([ids, mask], dim=-1), dim=0, return_inverse=True)
    unique_mask = unique[:, width:]
    unique_positions = (unique_mask.cumsum(-1) - 1).clamp(min=0)
    logits = forward(model, unique[:, :width], unique_mask, unique_positions, cache)[copies]
    cache.batch_select_indices(copies)
    positions = unique_positions[copies]
    for step in range(max_new_tokens):
        uniforms = torch.rand(len(out), generator=generator, device=device)[rows]
        tokens = next_tokens(logits, temperature, top_p, uniforms)
        for row, token in zip(rows.tolist(), tokens.tolist(), strict=True):
            out[row].append(token)
        finished |= torch.isin(tokens, stop_ids)
        if step + 1 == max_new_tokens or bool(finished.all()):
            break
        if int(finished.sum()) >= max(1.0, COMPACT_SHARE * len(rows)):
            keep = (~finished).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, tokens, mask, positions = rows[keep], tokens[keep], mask[keep], positions[keep]
            finished = finished[keep]
        # A finished row not yet dropped is fed its own last token; what it draws next is
        # past its stop token, and cut away.
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        positions = positions[:, -1:] + 1
        logits = forward(model, tokens.unsqueeze(-1), mask, positions, cache)
    return out
