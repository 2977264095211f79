"""The transformers backend's decoding loop: one forward pass per token over a KV cache.

It replaces ``model.generate`` for sampling because, on a CPU, three costs of the generic
loop dominate once the matmuls are fast: top-p sorts the whole vocabulary for every row at
every step, multinomial sampling draws one exponential per vocabulary entry, and rows that
have already stopped keep being computed until the longest one ends. Here top-p looks only
at the most likely candidates (exactly: it widens the candidate set until it holds the
nucleus), sampling draws among those, and finished rows leave the batch and its cache.
Each row draws its own uniform number per step from the batch's seed, so dropping finished
rows changes no other row's tokens.

A step's attention (one query token per row) reads the cache's whole buffers with two batched
matmuls and a mask, rather than SDPA over the filled part: on a CPU, SDPA's kernel costs more
per call than the step's few attention FLOPs, and a slice of the buffers is strided, which the
batched matmul would copy first. Keys are kept in fp32 for it, so that its scores are as
precise as SDPA's (bf16 products of bf16 keys had 1.7x SDPA's error against fp32).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

# Rows drop out of the batch once this share of it has finished: each drop copies the
# cache, so it is worth it only when it saves enough rows' work.
COMPACT_SHARE = 0.125
FIRST_CANDIDATES = 64


class PreallocatedLayer(DynamicLayer):
    """A layer's KV cache in buffers sized for the whole generation, so that a step writes
    its keys in place instead of copying the cache to append them (``DynamicLayer``).

    With ``key_dtype`` float32, keys are kept in fp32 for the one-token attention, whose
    scores are then fp32 products, not bf16 ones (what SDPA's kernel computes internally);
    the prompt's pass gets its keys in the model's dtype, a step the fp32 buffer.
    """

    def __init__(self, capacity: int, key_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.capacity = capacity
        self.key_dtype = key_dtype
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.device = key_states.device
            shape = (*key_states.shape[:2], self.capacity, key_states.shape[-1])
            # Zeros, not garbage: a step's attention reads the unfilled positions too, with
            # weight 0, and 0 x NaN would be NaN.
            self.key_buffer = key_states.new_zeros(shape, dtype=self.key_dtype)
            self.value_buffer = value_states.new_zeros(shape)
            self.is_initialized = True
        start, end = self.length, self.length + key_states.shape[-2]
        self.key_buffer[:, :, start:end] = key_states
        self.value_buffer[:, :, start:end] = value_states
        self.length = end
        self.keys = self.key_buffer[:, :, :end]
        self.values = self.value_buffer[:, :, :end]
        if self.keys.dtype == key_states.dtype:
            return self.keys, self.values
        if start == 0:  # the prompt's pass: the keys are all in hand
            return key_states, value_states
        # A step: the one-token attention reads the buffers themselves, and a layer it hands
        # to SDPA converts the keys there; converting every layer's cache here at every step
        # was a tenth of the step's time.
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]


ONE_TOKEN_ATTENTION = "sppoflow_one_token"


class StepKeys:
    """What a step's attention reads besides the query: the cache, and which of its buffers'
    positions each row attends to, (rows, capacity)."""

    def __init__(self, cache: Cache, attended: torch.Tensor) -> None:
        self.cache = cache
        self.attended = attended


def one_token_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, step_keys=None, **kwargs
):
    """Plain attention of one query token per row over the cache's whole buffers; anything
    else (the prompt's pass, sliding windows, soft-capping, dropout) goes to SDPA."""
    plain = (
        step_keys is not None
        and query.shape[2] == 1
        and dropout == 0.0
        and kwargs.get("sliding_window") is None
        and kwargs.get("softcap") is None
        and getattr(module, "layer_idx", None) is not None
    )
    if not plain:
        key = key.to(query.dtype)  # fp32 keys of a step (PreallocatedLayer.update)
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    layer = step_keys.cache.layers[module.layer_idx]
    keys, values = layer.key_buffer, layer.value_buffer  # (rows, kv heads, capacity, dim)
    rows, heads, _, dim = query.shape
    kv_heads = keys.shape[1]
    # Query head h reads kv head h // (heads / kv_heads), as transformers' repeat_kv has it.
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped.to(keys.dtype), keys.transpose(-1, -2)).float()
    scores.mul_(dim**-0.5 if scaling is None else scaling)
    scores.masked_fill_(~step_keys.attended[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(values.dtype)
    out = torch.matmul(weights, values).reshape(rows, 1, heads, dim)
    return out, None


AttentionInterface.register(ONE_TOKEN_ATTENTION, one_token_attention)
AttentionMaskInterface.register(ONE_TOKEN_ATTENTION, sdpa_mask)


@contextlib.contextmanager
def one_token_steps(model) -> Iterator[bool]:
    """Within it, a model on SDPA on a CPU routes its attention through
    ``one_token_attention``; yields whether it does. Other implementations, and GPUs (where
    the lever was not measured, and vLLM samples), keep theirs."""
    before = model.config._attn_implementation
    if before != "sdpa" or next(model.parameters()).device.type != "cpu":
        yield False
        return
    model.set_attn_implementation(ONE_TOKEN_ATTENTION)
    try:
        yield True
    finally:
        model.set_attn_implementation(before)


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
    if temperature <= 0:
        return logits.float().argmax(-1)
    # In place: a (rows, vocab) fp32 buffer fewer at every step.
    probs = torch.softmax(logits.float().div_(temperature), dim=-1)
    if top_p >= 1.0:
        weights, ids = probs, None
    else:
        weights, ids = nucleus(probs, top_p)
    cdf = weights.cumsum(-1)
    target = (uniforms * cdf[:, -1]).unsqueeze(-1)
    choice = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)
    return (choice if ids is None else ids.gather(-1, choice)).squeeze(-1)


@functools.cache
def cache_argument(model_class: type) -> str:
    """The name under which ``model_class.forward`` takes the KV cache: ``cache`` from
    transformers 5.24 on (where ``past_key_values`` is deprecated, to go in 5.40), and
    ``past_key_values`` in older releases and in models whose code has not been updated."""
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def forward(model, ids, mask, positions, cache, **kwargs) -> torch.Tensor:
    """The next-token logits of each row, its keys and values added to ``cache``."""
    kwargs[cache_argument(type(model))] = cache
    return model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **kwargs,
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
    with one_token_steps(model) as fast:
        return decode_steps(
            model, ids, mask, max_new_tokens, stops, temperature, top_p, seed, fast=fast
        )


def decode_steps(model, ids, mask, max_new_tokens, stops, temperature, top_p, seed, fast):
    device = ids.device
    generator = torch.Generator(device=device).manual_seed(seed)
    stop_ids = torch.tensor(sorted(stops), device=device)
    out: list[list[int]] = [[] for _ in range(ids.shape[0])]
    rows = torch.arange(ids.shape[0], device=device)  # the row of ``ids`` each slot holds
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    capacity = ids.shape[1] + max_new_tokens
    cache = Cache(
        layers=[
            PreallocatedLayer(capacity, torch.float32 if fast else None)
            for _ in range(model.config.num_hidden_layers)
        ]
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
        fast_kwargs = {}
        if fast:
            attended = torch.nn.functional.pad(mask.bool(), (0, capacity - mask.shape[1]))
            fast_kwargs["step_keys"] = StepKeys(cache, attended)
        logits = forward(model, tokens.unsqueeze(-1), mask, positions, cache, **fast_kwargs)
    return out
