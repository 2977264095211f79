"""Sample responses from a policy with transformers: batched, left-padded, seeded.

The vLLM backend (``sppoflow.sample.vllm_backend``) writes the same SAMPLES table."""

from __future__ import annotations

import logging

import pandas as pd
import torch
from tqdm.auto import tqdm

from sppoflow.models.batching import pad
from sppoflow.models.chat import encode_rows, stop_token_ids
from sppoflow.runtime.shards import take_shard
from sppoflow.sample.decoding import decode
from sppoflow.sample.records import cut_at_stop, sample_record, samples_frame
from sppoflow.sample.settings import SamplingSettings

log = logging.getLogger(__name__)


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: pd.DataFrame,
    settings: SamplingSettings,
    system_prompt: str | None = None,
    shard: int = 0,
    shards: int = 1,
) -> pd.DataFrame:
    """K responses for each row of ``prompts`` (prompt_id, prompt, and optionally the
    conversation to continue, column ``messages``: see sppoflow.models.chat): a SAMPLES table.

    The batches (and the seed of each) are planned over all prompts; shard s of N generates
    batches s, s + N, ..., so the N shards together write exactly the rows one job would.
    """
    encoded = encode_rows(tokenizer, prompts, system_prompt)
    jobs = [(row, sample) for row in range(len(prompts)) for sample in range(settings.k)]
    # Longest prompts first: batches of similar length waste little padding, and a batch
    # that does not fit in memory fails at once rather than at the end.
    jobs.sort(key=lambda job: -len(encoded[job[0]]))
    batches = [
        jobs[start : start + settings.batch_size]
        for start in range(0, len(jobs), settings.batch_size)
    ]
    mine = take_shard(list(enumerate(batches)), shard, shards)
    stops = stop_token_ids(model.generation_config.eos_token_id, tokenizer)
    pad_id = tokenizer.pad_token_id
    device = next(model.parameters()).device
    records = []
    progress = tqdm(
        total=sum(len(b) for _, b in mine), desc="generating", unit="seq", mininterval=5
    )
    for batch_number, batch in mine:
        ids, mask = pad([encoded[row] for row, _ in batch], pad_id, left=True)
        generated = decode(
            model,
            ids.to(device),
            mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            stops=stops,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed + batch_number,
        )
        for (row, sample), tokens in zip(batch, generated, strict=True):
            kept, reason = cut_at_stop(tokens, stops)
            records.append(
                sample_record(tokenizer, prompts, row, sample, len(encoded[row]), kept, reason)
            )
        progress.update(len(batch))
    progress.close()
    return samples_frame(records)
