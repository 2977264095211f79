"""Sample responses from a policy with transformers: batched, left-padded, seeded.

The vLLM backend (``sppoflow.vllm_generation``) writes the same SAMPLES table; both share
``sample_record`` so a response is cut, decoded and counted the same way.
"""

from __future__ import annotations

import logging

import pandas as pd
import torch
from tqdm.auto import tqdm

from sppoflow.chat import encode_rows, stop_token_ids
from sppoflow.decoding import decode
from sppoflow.preference.batching import pad
from sppoflow.schema import config_section, declared, setting
from sppoflow.shards import take_shard
from sppoflow.tables import SAMPLES

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "vllm")


@config_section("sample")
class SamplingSettings:
    backend: str = declared()
    k: int = declared()
    temperature: float = declared()
    top_p: float = declared()
    max_new_tokens: int = declared()
    batch_size: int = declared()
    seed: int = declared()
    dtype: str = declared()
    device: str = declared()
    tensor_parallel_size: int = setting(1, "GPUs one vLLM engine spans (vllm; 0 counts as 1)")
    gpu_memory_utilization: float = declared()


def cut_at_stop(tokens: list[int], stops: set[int]) -> tuple[list[int], str]:
    """The generated ids up to and including the first stop token, and the finish reason."""
    for n, token in enumerate(tokens):
        if token in stops:
            return tokens[: n + 1], "stop"
    # No stop token: generation ran to max_new_tokens (pads only follow a stop token).
    return tokens, "length"


def sample_record(
    tokenizer, prompts: pd.DataFrame, row: int, index: int, prompt_tokens: int, kept, reason: str
) -> dict:
    """One row of the SAMPLES table: response ``index`` to the prompt in row ``row``."""
    return {
        "prompt_id": prompts["prompt_id"].iat[row],
        "prompt": prompts["prompt"].iat[row],
        "response_idx": index,
        "response": tokenizer.decode(kept, skip_special_tokens=True).strip(),
        "response_token_ids": kept,
        "prompt_tokens": prompt_tokens,
        "response_tokens": len(kept),
        "finish_reason": reason,
    }


def samples_frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(SAMPLES.columns))
    return frame.sort_values(["prompt_id", "response_idx"]).reset_index(drop=True)


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
    conversation to continue, column ``messages``: see sppoflow.chat): a SAMPLES table.

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
