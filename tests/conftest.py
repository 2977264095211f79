"""Shared fixtures: a tiny random Llama with the embedded SmolLM2 tokenizer, built offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))


# The bad-input cases: each config must fail with a line that names the key.
BAD_CONFIGS = [
    ({"rounds": 0}, "config error: rounds: 0 is less than the minimum of 1"),
    ({"sample": {"k": 1}}, "config error: sample.k: 1 is less than the minimum of 2"),
    ({"judge": {"backend": "oracle"}}, "config error: judge.backend: 'oracle' is not one of"),
    ({"train": {"loss": "kto"}}, "config error: train.loss: 'kto' is not one of"),
    ({"train": {"loss": "dpo"}}, "config error: train.loss=dpo needs train.beta > 0"),
    (
        {"methods": [{"name": "sppo"}, {"name": "sppo", "train": {"eta": 5}}]},
        "config error: methods: the name 'sppo' is given twice",
    ),
    (
        {"methods": [{"name": "sppo"}, {"name": "kto", "train": {"loss": "kto"}}]},
        "config error: methods.1.train.loss: 'kto' is not one of",
    ),
    (
        {"methods": [{"name": "sppo"}, {"name": "dpo", "train": {"loss": "dpo"}}]},
        "config error: method dpo: train.loss=dpo needs train.beta > 0",
    ),
    (
        {"methods": [{"name": "a", "train": {"learning_rte": 1}}]},
        "config error: methods.0.train: Additional properties are not allowed ('learning_rte'",
    ),
    (
        {"evaluate": {"judges": [{"name": "pm", "backend": "oracle"}]}},
        "config error: evaluate.judges.0.backend: 'oracle' is not one of",
    ),
    (
        {"evaluate": {"judges": [{"name": "training"}]}},
        "config error: evaluate.judges.0.name: 'training' names the training judge",
    ),
    ({"sample": {"backend": "tgi"}}, "config error: sample.backend: 'tgi' is not one of"),
    (
        {"train": {"accelerate_config": "absent.yaml"}},
        "config error: train.accelerate_config: absent.yaml does not exist",
    ),
    (
        {"resources": {"train": {"gpus": -1}}},
        "config error: resources.train.gpus: -1 is less than the minimum of 0",
    ),
    ({"train": {"lora": {"r": 0}}}, "config error: train.lora.r: 0 is less than the minimum of 1"),
]


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from sppoflow.models import load_tokenizer, resolve_source

    return load_tokenizer(resolve_source("embedded:smollm2-135m-instruct"))


def build_tiny_llama(folder: Path, tokenizer, seed: int = 0) -> Path:
    """A 2-layer, hidden-size-32 Llama with random weights and the real tokenizer and template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), embedded_tokenizer)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from sppoflow.models import load_policy

    return load_policy(tiny_model_dir)


def fake_hub_cache(cache: Path, repo_id: str, files_from: Path) -> None:
    """Lay out a model in the hub cache format, as a download would have left it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in files_from.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())


def snakemake(workdir, *args, env=None, clean_env=False):
    """Run the workflow's Snakefile in ``workdir`` with this environment's snakemake (in
    ``env`` alone with ``clean_env``, else in this process's environment plus ``env``)."""
    env = {**({} if clean_env else os.environ), **(env or {})}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(SNAKEFILE), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
    )


# A 2-round run small enough for a 2-core CPU: 6 prompts a round, K = 3, 12 new tokens.
# Judge chunks of 2 prompts, so that a round's scoring has 3 chunks to share out in shards.
TINY_CONFIG = {
    "rounds": 2,
    "prompts": {
        "source": str(ROOT / "config/prompts/instructions.jsonl"),
        "n_eval": 6,
        "n_per_round": 6,
    },
    "sample": {"k": 3, "max_new_tokens": 12, "batch_size": 4, "device": "cpu"},
    "judge": {"device": "cpu", "prompts_per_chunk": 2},
    "train": {
        "eta": 10,
        "learning_rate": 1.0e-3,
        "batch_size": 1,
        "max_length": 128,
        "max_prompt_length": 96,
        "device": "cpu",
    },
    "evaluate": {"max_new_tokens": 12, "batch_size": 4, "device": "cpu"},
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir):
    """A 2-round run of the whole workflow on the tiny model, on this machine (default
    profile), shared by the workflow, report and cluster tests."""
    folder = tmp_path_factory.mktemp("tiny-run")
    config = {**TINY_CONFIG, "policy": {"model": str(tiny_model_dir)}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(folder, "--configfile", "config.yaml", "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    return folder, config


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node SLURM cluster with two fake GPUs (tests/slurm_cluster.py), started for
    the session and stopped by its daemons' pids at the end."""
    from slurm_cluster import ClusterUnavailable, start

    try:
        cluster = start(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as reason:
        pytest.skip(f"no local SLURM cluster here: {reason}")
    yield cluster
    cluster.stop()
