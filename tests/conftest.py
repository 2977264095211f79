"""Shared fixtures: a tiny random Llama with the embedded SmolLM2 tokenizer, built offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(ROOT / "src"))


# The bad-input cases: each config must fail with a line that names the key.
BAD_CONFIGS = [
    ({"rounds": 0}, "config error: rounds: 0 is less than the minimum of 1"),
    ({"sample": {"k": 1}}, "config error: sample.k: 1 is less than the minimum of 2"),
    ({"judge": {"backend": "oracle"}}, "config error: judge.backend: 'oracle' is not one of"),
    ({"train": {"loss": "dpo"}}, "config error: train.loss: 'dpo' is not one of"),
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
