"""log pi(y | x) summed over the response tokens, without a full-vocabulary log-softmax.

The plain way, ``logits.float().log_softmax(-1)`` then a gather, holds the batch's logits three
times over (the model's, an fp32 copy, the log-softmax): with Gemma's 256k vocabulary, 16
sequences x 1024 tokens are 17 GB per fp32 copy. Here the model runs once, asked for the logits
of the last position only, and its decoder's output (the final hidden states, after the final
norm) is taken with a forward hook; the output layer is applied to the
hidden states that predict response tokens only, a chunk of rows at a time, and each token's
log-probability is its target logit minus the log-sum-exp of its row, in fp32. In training each
chunk is recomputed in the backward pass (activation checkpointing), so the output layer costs
the memory of one chunk, not of the batch.

The logits the model still returns for the last position check the reconstruction (the final
norm, Gemma's logit soft-capping) on every batch, for free: a model whose output layer does
something else is refused with a clear error rather than trained on wrong numbers.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

CHUNK_BYTES = 256 * 2**20  # fp32 logits of one chunk of rows: 256 rows of a 256k vocabulary


class OutputLayerMismatch(RuntimeError):
    """The output layer applied to the final hidden states does not give the model's logits."""


def rows_per_chunk(vocab_size: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    return max(1, chunk_bytes // (4 * vocab_size))


def _unwrapped(model):
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model)


def output_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The model's logits for final hidden states, in fp32 (with Gemma's soft-capping)."""
    inner = _unwrapped(model)
    logits = inner.get_output_embeddings()(hidden).float()
    cap = getattr(inner.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _token_logps(model, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = output_logits(model, hidden)
    target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return target_logits - logits.logsumexp(-1)


def response_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_bytes: int = CHUNK_BYTES,
) -> torch.Tensor:
    """Sum of log pi(token | prefix) over the response tokens of each sequence.

    ``response_mask[b, t]`` is 1 where token t of sequence b belongs to the response; the
    hidden state at position t - 1 predicts token t. Call it under the autocast the model's
    forward pass runs in (the output layer, applied here, must run in the same precision as
    in the reference pass); the log-sum-exp is always fp32.
    """
    hidden, last_logits = final_hidden_states(model, input_ids, attention_mask)
    check_output_layer(model, hidden[:, -1:], last_logits)
    predicts = response_mask[:, 1:].bool()
    rows = hidden[:, :-1][predicts]  # (response tokens, hidden)
    targets = input_ids[:, 1:][predicts]
    sequence = predicts.nonzero()[:, 0]
    step = rows_per_chunk(last_logits.shape[-1], chunk_bytes)
    parts = []
    for start in range(0, len(rows), step):
        chunk = (model, rows[start : start + step], targets[start : start + step])
        if torch.is_grad_enabled():
            parts.append(checkpoint(_token_logps, *chunk, use_reentrant=False))
        else:
            parts.append(_token_logps(*chunk))
    token_logps = torch.cat(parts) if parts else rows.new_zeros(0, dtype=torch.float32)
    sums = torch.zeros(len(input_ids), dtype=torch.float32, device=input_ids.device)
    return sums.index_add(0, sequence, token_logps)


def final_hidden_states(model, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """(the decoder's output for every position, the model's logits of the last position)."""
    captured = []

    def keep(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    hook = _unwrapped(model).get_decoder().register_forward_hook(keep)
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
    finally:
        hook.remove()
    return captured[-1], out.logits


def check_output_layer(model, last_hidden: torch.Tensor, last_logits: torch.Tensor) -> None:
    with torch.no_grad():
        rebuilt = output_logits(model, last_hidden)
        returned = last_logits.float()
        scale = returned.abs().max().clamp(min=1.0)
        error = ((rebuilt - returned).abs().max() / scale).item()
    reduced = (
        torch.is_autocast_enabled(last_hidden.device.type)
        or last_hidden.dtype != torch.float32
        or last_logits.dtype != torch.float32
    )
    tolerance = 2e-2 if reduced else 1e-4
    if error > tolerance:
        name = type(_unwrapped(model)).__name__
        raise OutputLayerMismatch(
            f"{name}: its output layer applied to the final hidden states gives other logits "
            f"than the model (relative error {error:.2g}); the memory-lean log-probabilities "
            "cannot be used for it"
        )


def sequence_logps(
    logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor
) -> torch.Tensor:
    """The plain formula from full logits: log_softmax over the vocabulary, then a gather.

    Kept as the reference the memory-lean path is tested and benchmarked against.
    """
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:]
    mask = response_mask[:, 1:].to(logits.dtype)
    token_logps = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1)
