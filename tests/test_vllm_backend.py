"""The vLLM backend: its mechanics against a stand-in engine here, the real engine on a GPU."""

import importlib.util
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT
from sppoflow.chat import encode_prompts
from sppoflow.errors import UserError
from sppoflow.generation import SamplingSettings
from sppoflow.tables import SAMPLES, read_table, write_table

FAKE = ROOT / "tests" / "fake_vllm"
PROMPTS = pd.DataFrame(
    {
        "prompt_id": ["a1", "b2", "c3"],
        "prompt": ["Name a colour.", "Is None a value?", "Write one line about the sea."],
    }
)


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.setenv("FAKE_VLLM_LOG", str(tmp_path / "engine.jsonl"))
    sys.modules.pop("vllm", None)
    yield tmp_path / "engine.jsonl"
    sys.modules.pop("vllm", None)


def run(model_dir, prompts=PROMPTS, **overrides):
    from sppoflow.vllm_generation import generate_vllm

    settings = SamplingSettings(**{"backend": "vllm", "k": 3, "max_new_tokens": 8, **overrides})
    return generate_vllm(str(model_dir), prompts, settings)


def test_samples_follow_the_contract_with_stop_tokens_included(fake_vllm, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    samples = run(tiny_model_dir, tensor_parallel_size=2)
    write_table(samples, fake_vllm.parent / "s.parquet", SAMPLES)  # checks the columns
    assert samples.groupby("prompt_id").response_idx.apply(list).tolist() == [[0, 1, 2]] * 3
    eos = tokenizer.eos_token_id
    for row in samples.itertuples():
        ids = list(row.response_token_ids)
        assert row.response_tokens == len(ids)
        if row.finish_reason == "stop":
            assert ids[-1] == eos and eos not in ids[:-1]  # put back when vLLM left it out
        else:
            assert len(ids) == 8 and eos not in ids
    assert set(samples[samples.response_idx == 1].finish_reason) == {"stop"}
    encoded = encode_prompts(tokenizer, PROMPTS["prompt"].tolist())
    lengths = dict(zip(PROMPTS.prompt_id, map(len, encoded), strict=True))
    assert (samples.prompt_tokens == samples.prompt_id.map(lengths)).all()
    engine = json.loads(fake_vllm.read_text().splitlines()[-1])
    assert engine["tensor_parallel_size"] == 2 and engine["model"] == str(tiny_model_dir)
    assert engine["max_model_len"] == max(lengths.values()) + 8


def test_a_prompts_samples_do_not_depend_on_the_other_prompts(fake_vllm, tiny_model_dir):
    together = run(tiny_model_dir).set_index(["prompt_id", "response_idx"])
    alone = run(tiny_model_dir, prompts=PROMPTS.iloc[[2, 0]]).set_index(
        ["prompt_id", "response_idx"]
    )
    for key, row in alone.iterrows():
        assert list(row.response_token_ids) == list(together.loc[key].response_token_ids)
    other_seed = run(tiny_model_dir, seed=7).set_index(["prompt_id", "response_idx"])
    assert any(
        list(other_seed.loc[k].response_token_ids) != list(together.loc[k].response_token_ids)
        for k in together.index
    )


def test_no_gpu_count_still_means_one_engine(fake_vllm, tiny_model_dir):
    run(tiny_model_dir, tensor_parallel_size=0)
    assert json.loads(fake_vllm.read_text().splitlines()[-1])["tensor_parallel_size"] == 1


@pytest.mark.parametrize(
    ("cuda", "bf16", "asked", "told"),
    [
        (True, True, "auto", "bfloat16"),  # never vLLM's auto: fp32 checkpoints would be fp16
        (True, False, "auto", "float16"),
        (False, False, "auto", "float16"),
        (True, True, "float32", "float32"),
    ],
)
def test_the_engine_is_told_its_dtype(
    fake_vllm, tiny_model_dir, monkeypatch, cuda, bf16, asked, told
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    run(tiny_model_dir, dtype=asked)
    assert json.loads(fake_vllm.read_text().splitlines()[-1])["dtype"] == told


def test_an_unknown_dtype_is_refused_before_the_engine_starts(fake_vllm, tiny_model_dir):
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        run(tiny_model_dir, dtype="fp8")
    assert not fake_vllm.exists()


def test_without_vllm_the_error_names_the_environment(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(UserError, match=r"envs/vllm\.yaml.*--sdm conda|--sdm conda.*envs/vllm"):
        run(tiny_model_dir)


def test_sample_script_runs_the_vllm_backend(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.parquet"
    PROMPTS.to_parquet(prompts)
    out = tmp_path / "samples.parquet"
    env = {**os.environ, "PYTHONPATH": str(FAKE), "FAKE_VLLM_LOG": str(tmp_path / "log")}
    command = [sys.executable, str(ROOT / "scripts" / "sample.py"), "--model", str(tiny_model_dir),
               "--prompts", str(prompts), "--out", str(out), "--k", "2", "--backend", "vllm",
               "--tensor-parallel-size", "1", "--max-new-tokens", "6"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(read_table(out, SAMPLES)) == 6
    missing = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}
    )
    if importlib.util.find_spec("vllm") is None:
        assert missing.returncode == 2
        assert missing.stderr.startswith("error: the vllm backend needs the vllm package")


needs_vllm_gpu = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None
    or not __import__("torch").cuda.is_available()
    or str(FAKE) in sys.path,
    reason="needs vLLM and a CUDA GPU",
)


@pytest.mark.gpu
@needs_vllm_gpu
def test_real_vllm_matches_the_contract_and_transformers_greedy(tmp_path, embedded_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sppoflow.generation import generate
    from sppoflow.models import load_policy

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(embedded_tokenizer), hidden_size=128,
                         intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=embedded_tokenizer.bos_token_id,
                         eos_token_id=embedded_tokenizer.eos_token_id,
                         pad_token_id=embedded_tokenizer.pad_token_id)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "m")
    embedded_tokenizer.save_pretrained(tmp_path / "m")
    greedy = {"k": 2, "temperature": 0.0, "max_new_tokens": 16, "dtype": "float32"}
    fast = run(tmp_path / "m", gpu_memory_utilization=0.3, **greedy)
    write_table(fast, tmp_path / "s.parquet", SAMPLES)
    model, tokenizer = load_policy(tmp_path / "m")
    slow = generate(model.cuda(), tokenizer, PROMPTS, SamplingSettings(**greedy))
    same = [
        list(a) == list(b)
        for a, b in zip(fast.response_token_ids, slow.response_token_ids, strict=True)
    ]
    assert sum(same) >= len(same) - 1  # greedy decoding agrees (fp32; one tie may differ)
