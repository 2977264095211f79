"""The memory a job of a planned run needs on each GPU: a model's shape (from its config, or a
table of the shapes the paper's models have) and the weights, gradients, optimizer state and
activations of training (sharded under ZeRO-3 or FSDP), of generation (vLLM's share of the
GPU) and of judging. sppoflow.workflow.plan_cost puts it beside each job's GPU. Nothing here
imports torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sppoflow.models.sources import is_hub_id

GB = 1e9
ASSUMED_PROMPT_TOKENS = 150  # a prompt's tokens where no run measured them


@dataclass(frozen=True)
class Shape:
    """A transformer's size, from its config.json: enough for FLOPs, memory and activations."""

    parameters: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config: dict) -> Shape:
        text = config.get("text_config") or config
        hidden, layers = text["hidden_size"], text["num_hidden_layers"]
        heads = text["num_attention_heads"]
        kv_heads = text.get("num_key_value_heads") or heads
        head_dim = text.get("head_dim") or hidden // heads
        intermediate, vocab = text["intermediate_size"], text["vocab_size"]
        attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
        mlp = (3 if text.get("hidden_act", "silu") != "gelu" else 2) * hidden * intermediate
        embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", True) else 2)
        return cls(layers * (attention + mlp) + embeddings, layers, hidden, heads, kv_heads,
                   head_dim)  # fmt: skip


# Models whose config may not be on this machine before the run fetches them.
KNOWN_SHAPES = {
    "mistralai/Mistral-7B-Instruct-v0.2": Shape(7.24e9, 32, 4096, 32, 8, 128),
    "meta-llama/Meta-Llama-3-8B-Instruct": Shape(8.03e9, 32, 4096, 32, 8, 128),
    "google/gemma-2-9b-it": Shape(9.24e9, 42, 3584, 16, 8, 256),
    "embedded:smollm2-135m-instruct": Shape(134.5e6, 30, 576, 9, 3, 64),
    "general-preference/GPM-Gemma-2B": Shape(2.51e9, 18, 2048, 8, 1, 256),
    "RLHFlow/LLaMA3-SFT": Shape(8.03e9, 32, 4096, 32, 8, 128),
    "RLHFlow/pair-preference-model-LLaMA3-8B": Shape(8.03e9, 32, 4096, 32, 8, 128),
    "llm-blender/PairRM-hf": Shape(0.435e9, 24, 1024, 16, 16, 64),
    "llm-blender/PairRM": Shape(0.435e9, 24, 1024, 16, 16, 64),
    "embedded:all-minilm-l6-v2": Shape(22.7e6, 6, 384, 12, 12, 32),
}


def model_shape(reference: str, revision: str | None = None) -> tuple[Shape | None, str]:
    """(the shape of a model reference, where it was read), without downloading anything:
    a local folder's config.json, the hub cache's, or the known shapes above."""
    if reference in KNOWN_SHAPES:
        return KNOWN_SHAPES[reference], "known"
    config_path = None
    if Path(reference).expanduser().is_dir():
        config_path = Path(reference).expanduser() / "config.json"
    elif is_hub_id(reference):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(reference, "config.json", revision=revision)
        config_path = Path(cached) if isinstance(cached, str) else None
    if config_path is None or not config_path.is_file():
        return None, "unknown"
    return Shape.from_config(json.loads(config_path.read_text())), str(config_path)


def training_memory_gb(shape: Shape, train: dict, gpus: int, sharded: bool) -> tuple[float, str]:
    """Per GPU: fp32 weights, gradients and optimizer state (sharded over the job's GPUs under
    ZeRO-3/FSDP), bf16 copies in use, one micro-batch's activations (Korthikanti et al.:
    s b h (34 + 5 a s / h) bytes a layer; with checkpointing one layer's plus each layer's
    input)."""
    state_bytes = 4 + 4 + (8 if train["optimizer"] == "adamw" else 4)  # weights, grads, state
    if train["lora"]["enabled"]:
        states = 2 * shape.parameters / GB  # frozen bf16 weights; adapters are small
        kind = "bf16 weights, LoRA adapters"
    else:
        states = state_bytes * shape.parameters / (gpus if sharded else 1) / GB
        kind = f"{state_bytes} bytes of weights, gradients and state per parameter"
        kind += f" over {gpus} GPUs" if sharded and gpus > 1 else ""
    s, b, h, a = train["max_length"], train["batch_size"], shape.hidden, shape.heads
    layer = s * b * h * (34 + 5 * a * s / h)
    if train["gradient_checkpointing"]:
        activations = (layer + shape.layers * s * b * h * 2) / GB
    else:
        activations = shape.layers * layer / GB
    return states + activations + 0.27, f"{kind}, activations of {b} x {s} tokens"  # + logits


def generation_memory_gb(shape: Shape, sample: dict, gpus: int, gpu_memory: float | None):
    """Per GPU: vLLM reserves gpu_memory_utilization of each GPU (its weights must fit in it);
    transformers holds the bf16 weights and the batch's KV cache."""
    weights = 2 * shape.parameters / max(gpus, 1) / GB
    if sample["backend"] == "vllm":
        reserved = sample["gpu_memory_utilization"] * gpu_memory if gpu_memory else None
        if reserved is None or weights > reserved:
            return weights, f"bf16 weights over {max(gpus, 1)} GPU(s)"
        return reserved, "vLLM's gpu_memory_utilization of the GPU"
    tokens = sample["batch_size"] * (ASSUMED_PROMPT_TOKENS + sample["max_new_tokens"])
    cache = 2 * shape.layers * shape.kv_heads * shape.head_dim * 2 * tokens / GB
    return weights + cache, "bf16 weights and the batch's KV cache"


def judge_memory_gb(shape: Shape, judge: dict) -> tuple[float, str]:
    """bf16 weights and one batch's attention (max_batch_tokens; 16384 on GPUs)."""
    tokens = judge["max_batch_tokens"] or 16384
    length = judge["max_length"] or 2048
    attention = 3 * tokens * length * shape.heads * 2 / GB  # DeBERTa: c2c, c2p, p2c
    return 2 * shape.parameters / GB + attention + tokens * shape.hidden * 34 / GB, (
        "bf16 weights and one batch's activations"
    )
