"""A stage's arithmetic counted from the model's shapes (sppoflow.runtime.flops), checked
against torch's own FLOP counter, and the CPU's peak measured once per machine, precision,
thread count and shapes (sppoflow.runtime.peak)."""

import json
import logging

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sppoflow.runtime import peak as peaks
from sppoflow.runtime.flops import ForwardTokens, forward_flops_per_token, linear_shapes
from sppoflow.runtime.job_records import COMPUTE_LINE, compute_by_work
from sppoflow.runtime.throughput import log_compute

SHAPES = ((64, 32, 2), (32, 64, 1))


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied,
        attn_implementation="sdpa",
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_the_forward_flops_are_torchs_count_of_the_matmuls(tied):
    """torch's FlopCounterMode counts every matmul the forward pass runs; attention runs in
    scaled_dot_product_attention, which the shapes leave out, so the rest is the linear
    layers', head included."""
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_llama(tied)
    ids = torch.randint(0, 97, (3, 11))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(input_ids=ids)
    counts = counter.get_flop_counts()["Global"]
    matmuls = sum(v for op, v in counts.items() if op.__name__.split(".")[0] in ("mm", "addmm"))
    assert matmuls == forward_flops_per_token(linear_shapes(model)) * ids.numel()
    # 2 layers x (q, o: 32x32; k, v: 32x16; gate, up: 32x48; down 48x32) and the 32x97 head
    assert linear_shapes(model) == ((32, 16, 4), (32, 32, 4), (32, 48, 4), (32, 97, 1), (48, 32, 2))


def test_forward_tokens_count_the_mask_not_the_padding():
    model = tiny_llama(True)
    meter = ForwardTokens(model)
    ids = torch.randint(0, 97, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)  # 8 real tokens
        model(ids)  # no mask: every id, given by position
    assert meter.tokens == 8 + 10
    assert meter.flops == 18 * forward_flops_per_token(linear_shapes(model))


def test_a_logged_compute_line_is_read_back(caplog):
    with caplog.at_level(logging.INFO, logger="sppoflow.throughput"):
        share = log_compute("train", 6e11, 4.0, peaks.Peak(3e11, "measured: float32 matmuls"))
        unknown = log_compute("score", 1e9, 2.0, None)
    assert share == pytest.approx(0.5) and unknown is None
    assert caplog.messages[0] == (
        "train compute: 6e+11 FLOP in 4.0 s: 150.0 GFLOP/s, 50.0% of 300.0 GFLOP/s "
        "(measured: float32 matmuls)"
    )
    known, missing = (
        COMPUTE_LINE.search(f"2026-12-08 10:00:00,000 INFO sppoflow.throughput: {m}")
        for m in caplog.messages
    )
    assert (known["work"], float(known["flops"]), known["peak"]) == ("train", 6e11, "300.0")
    assert known["source"] == "measured: float32 matmuls"
    assert missing["work"] == "score" and missing["peak"] is None


def test_the_share_of_the_peak_weighs_each_job_by_its_time():
    import pandas as pd

    keys = {"stage": ["sample"] * 2, "method": ["shared"] * 2, "round": [1, 1],
            "work": ["generation"] * 2}  # fmt: skip
    # two shards: 100 GFLOP in 1 s on a 200 GFLOP/s machine, 300 GFLOP in 3 s on a 100 one
    compute = pd.DataFrame({**keys, "flops": [1e11, 3e11], "seconds": [1.0, 3.0],
                            "peak": [2e11, 1e11], "source": ["measured"] * 2})  # fmt: skip
    row = compute_by_work(compute).iloc[0]
    assert row["flops"] == 4e11 and row["gflop_per_s"] == pytest.approx(100.0)
    assert row["share_of_peak"] == pytest.approx(4e11 / (1 * 2e11 + 3 * 1e11))
    assert row["floor_s"] == pytest.approx(0.5 + 3.0)


def test_the_cpu_peak_is_measured_once_per_thread_count_and_leaves_the_rng_alone(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SPPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(peaks, "MEASURE_SECONDS", 0.05)
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    try:
        torch.set_num_threads(2)  # whatever this worker was given: two thread counts
        first = peaks.cpu_peak(SHAPES, torch.float32)
        assert torch.equal(torch.get_rng_state(), state)  # the job's sampling stays seeded
        again = peaks.cpu_peak(SHAPES, torch.float32)
        torch.set_num_threads(1)
        one_thread = peaks.cpu_peak(SHAPES, torch.float32)
    finally:
        torch.set_num_threads(threads)
    assert first.flops > 0
    assert first.source == "measured: float32 matmuls of the model's shapes on 2 thread(s)"
    assert again == peaks.Peak(first.flops, first.source + ", cached")
    assert one_thread.source == "measured: float32 matmuls of the model's shapes on 1 thread(s)"
    cached = json.loads((tmp_path / "cpu_peaks.json").read_text())
    model, _ = peaks.cpu_model_and_flags()
    assert all(entry["machine"].startswith(model) for entry in cached.values())
    assert sorted(e["threads"] for e in cached.values()) == [1, 2]


def test_no_peak_where_measuring_is_off_or_the_device_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("SPPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SPPO_MEASURE_PEAK", "0")
    assert peaks.device_peak(torch.device("cpu"), torch.float32, SHAPES) is None
    assert peaks.device_peak(torch.device("meta"), torch.float32, SHAPES) is None
    assert not (tmp_path / "cpu_peaks.json").exists()


def test_a_broken_cache_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SPPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(peaks, "MEASURE_SECONDS", 0.05)
    (tmp_path / "cpu_peaks.json").write_text("{not json")
    measured = peaks.cpu_peak(SHAPES, torch.float32)
    assert not measured.source.endswith("cached")
    assert len(json.loads((tmp_path / "cpu_peaks.json").read_text())) == 1


@pytest.mark.parametrize(("cap", "fast"), [("AVX2", False), ("avx512_core", False), ("", None)])
def test_auto_precision_follows_onednns_cap_as_an_avx2_laptop_would(monkeypatch, cap, fast):
    """ONEDNN_MAX_CPU_ISA=AVX2 emulates a laptop without bf16: ``auto`` then computes in fp32,
    as it does there; without a cap it follows the CPU's flags."""
    from sppoflow.runtime import devices

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    devices.cpu_has_fast_bf16.cache_clear()
    try:
        has = devices.cpu_has_fast_bf16()
        dtype = devices.resolve_dtype("auto", torch.device("cpu"))
    finally:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
        devices.cpu_has_fast_bf16.cache_clear()
    if fast is None:  # no cap: this CPU's own flags decide
        flags = peaks.cpu_model_and_flags()[1]
        fast = "avx512_bf16" in flags or "amx_bf16" in flags
    assert has is fast
    assert dtype == (torch.bfloat16 if has else torch.float32)
