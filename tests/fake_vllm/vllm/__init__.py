"""A stand-in for vLLM's offline API (LLM, SamplingParams) on machines without a GPU.

It checks the calls the vLLM backend makes and answers deterministically from each request's
seed, so the backend's own logic (requests, seeds, stop tokens, the output table) is tested
without the engine. It records the engine's arguments in FAKE_VLLM_LOG when that is set.
"""

import json
import os
import random
from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    stop_token_ids: list = field(default_factory=list)
    skip_special_tokens: bool = True


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    finish_reason: str
    stop_reason: object = None


@dataclass
class RequestOutput:
    prompt_token_ids: list
    outputs: list


class LLM:
    def __init__(self, model, **kwargs):
        self.model = model
        self.kwargs = kwargs
        if os.environ.get("FAKE_VLLM_LOG"):
            with open(os.environ["FAKE_VLLM_LOG"], "a") as log:
                log.write(json.dumps({"model": model, **kwargs}) + "\n")

    def generate(self, prompts, sampling_params, use_tqdm=True):
        assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts)
        results = []
        for request, params in zip(prompts, sampling_params, strict=True):
            ids = request["prompt_token_ids"]
            assert all(isinstance(i, int) for i in ids)
            rng = random.Random(params.seed)
            stop = min(params.stop_token_ids)
            outputs = []
            for index in range(params.n):
                body = [rng.randrange(100, 200) for _ in range(rng.randrange(2, params.max_tokens))]
                if index % 3 == 0:  # stopped, stop token kept
                    tokens, reason, stop_reason = [*body, stop], "stop", None
                elif index % 3 == 1:  # stopped on a stop token id vLLM left out
                    tokens, reason, stop_reason = body, "stop", stop
                else:  # ran out of tokens
                    tokens = [rng.randrange(100, 200) for _ in range(params.max_tokens)]
                    reason, stop_reason = "length", None
                outputs.append(CompletionOutput(index, "", tokens, reason, stop_reason))
            results.append(RequestOutput(ids, outputs))
        return results
