"""The sample stage's settings, shared by both backends."""

from __future__ import annotations

from sppoflow.schema import config_section, declared, setting

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
