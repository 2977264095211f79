"""The vLLM backend where the real engine cannot run here: a stand-in engine for what a CPU
cannot show (an engine on CUDA choosing bf16, one that leaves its stop token out) and the
real engine on a GPU. The real CPU engine's tests are in tests/test_vllm_cpu.py."""

import importlib.util
import json
import subprocess
import sys

import pandas as pd
import pytest

from helpers import ROOT
from sppoflow.errors import UserError
from sppoflow.sample.settings import SamplingSettings
from sppoflow.tables import SAMPLES, write_table

FAKE = ROOT / "tests" / "fake_vllm"
PROMPTS = pd.DataFrame(
    {
        "prompt_id": ["a1", "b2", "c3"],
        "prompt": ["Name a colour.", "Is None a value?", "Write one line about the sea."],
    }
)


def run(model_dir, prompts=PROMPTS, **overrides):
    from sppoflow.sample.vllm_backend import generate_vllm

    settings = SamplingSettings(**{"backend": "vllm", "k": 3, "max_new_tokens": 8, **overrides})
    return generate_vllm(str(model_dir), prompts, settings)


def test_a_stop_token_the_engine_leaves_out_is_put_back(fake_vllm, tiny_model_dir):
    """The real engine keeps its stop tokens (tests/test_vllm_cpu.py); the stand-in also
    plays one that leaves the stop token out of token_ids and names it in stop_reason."""
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(tiny_model_dir).eos_token_id
    samples = run(tiny_model_dir)
    left_out = samples[samples.response_idx == 1]  # the stand-in's engine that leaves it out
    assert set(left_out.finish_reason) == {"stop"}
    for ids in left_out.response_token_ids:
        assert list(ids)[-1] == eos and eos not in list(ids)[:-1]


def test_an_engine_near_its_context_gives_the_room_left_and_refuses_what_cannot_fit(
    fake_vllm, tiny_model_dir
):
    """A multi-turn question set's engine is started with the model's context at most: a
    conversation near its end gets the tokens that are left, one past it a one-line error."""
    from sppoflow.models.chat import encode_rows
    from sppoflow.sample.vllm_backend import VllmEngine, policy_tokenizer

    settings = SamplingSettings(backend="vllm", k=3, max_new_tokens=40)
    tokenizer = policy_tokenizer(str(tiny_model_dir))
    longest = max(map(len, encode_rows(tokenizer, PROMPTS, None)))
    engine = VllmEngine(str(tiny_model_dir), settings, longest + 10, tokenizer)
    samples = engine.generate(PROMPTS, settings)
    room = longest + 10 - samples.prompt_tokens  # and a stop token the engine left out
    assert (samples.response_tokens <= room + 1).all() and (room < 40).any()
    with pytest.raises(UserError, match=r"a1: its prompt holds \d+ tokens, but the engine's "):
        VllmEngine(str(tiny_model_dir), settings, 5, tokenizer).generate(PROMPTS, settings)


def test_scheduler_options_keep_seeded_requests_whole_on_cpus():
    from sppoflow.sample.vllm_backend import CPU_STEP_TOKENS, scheduler_options

    assert scheduler_options(cpu=False, longest=4096) == {}  # CUDA generators rewind
    assert scheduler_options(cpu=True, longest=100) == {
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": CPU_STEP_TOKENS,
    }
    assert scheduler_options(cpu=True, longest=20000)["max_num_batched_tokens"] == 20000


@pytest.mark.parametrize(
    ("has_cuda", "bf16", "asked", "told"),
    [
        (True, True, "auto", "bfloat16"),  # never vLLM's auto: fp32 checkpoints would be fp16
        (True, False, "auto", "float16"),
        (False, False, "auto", "float16"),
        (True, True, "float32", "float32"),
    ],
)
def test_the_engine_is_told_its_dtype(
    fake_vllm, tiny_model_dir, monkeypatch, has_cuda, bf16, asked, told
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
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


def test_sample_script_without_vllm_says_which_environment(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.parquet"
    PROMPTS.to_parquet(prompts)
    command = [sys.executable, str(ROOT / "scripts" / "sample.py"), "--model", str(tiny_model_dir),
               "--prompts", str(prompts), "--out", str(tmp_path / "s.parquet"), "--k", "2",
               "--backend", "vllm", "--max-new-tokens", "6"]  # fmt: skip
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed in this environment")
    missing = subprocess.run(command, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: the vllm backend needs the vllm package")
    assert not (tmp_path / "s.parquet").exists()


needs_vllm_gpu = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None
    or not __import__("torch").cuda.is_available()
    or str(FAKE) in sys.path,
    reason="needs vLLM and a CUDA GPU",
)


@needs_vllm_gpu
def test_real_vllm_matches_the_contract_and_transformers_greedy(tmp_path, embedded_tokenizer, cuda):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sppoflow.models.loading import load_policy
    from sppoflow.sample.transformers_backend import generate

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
