"""The rates the stages log (sppoflow.runtime.throughput) and benchmarks/stages.py reads back."""

import logging

import pytest
import torch

from sppoflow.runtime import throughput


def test_a_logged_rate_is_read_back_by_the_stages_table(caplog):
    from sppoflow.runtime.job_records import RATE_LINE

    with caplog.at_level(logging.INFO, logger="sppoflow.throughput"):
        per_second = throughput.log_rate(
            "train", 1200, "trained tokens", 4.0, "6 steps on 2 process(es), MFU 31.0%"
        )
    assert per_second == 300.0
    line = f"2026-12-03 10:00:00,000 INFO sppoflow.throughput: {caplog.messages[0]}"
    assert caplog.messages[0] == (
        "train: 1200 trained tokens in 4.0 s: 300.0 tokens/s (6 steps on 2 process(es), MFU 31.0%)"
    )
    found = RATE_LINE.search(line)
    assert found is not None
    assert (found["work"], found["amount"], found["unit"], found["seconds"]) == (
        "train", "1200", "trained tokens", "4.0",
    )  # fmt: skip
    assert found["what"] == "6 steps on 2 process(es), MFU 31.0%"


@pytest.mark.parametrize(
    ("name", "tflops"),
    [("NVIDIA H200", 989.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("Tesla T4", None)],
)
def test_a_gpus_peak_is_its_data_sheets_over_every_device(monkeypatch, name, tflops):
    """Device names as torch reports them (a fake stands in for the GPU this machine lacks)."""
    from sppoflow.runtime.peak import device_peak

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    peak = device_peak(torch.device("cuda", 0), torch.bfloat16, ((8, 8, 1),), devices=2)
    if tflops is None:
        assert peak is None
    else:
        assert peak.flops == pytest.approx(2 * tflops * 1e12)
        assert peak.source.startswith("2 x ") and "data sheet" in peak.source


def test_the_stages_table_sums_shards_and_sets_work_against_job_time():
    import pandas as pd

    from sppoflow.runtime.job_records import throughput as table

    keys = {"stage": ["sample", "sample"], "method": ["shared"] * 2, "round": [1, 1],
            "work": ["generation"] * 2}  # fmt: skip
    rates = pd.DataFrame(
        {**keys, "amount": [300, 100], "unit": ["generated tokens"] * 2,
         "seconds": [3.0, 1.0], "what": ["transformers on cpu"] * 2}
    )  # fmt: skip
    jobs = pd.DataFrame({**keys, "seconds": [6.0, 4.0]})
    row = table(rates, jobs).iloc[0]
    assert row["amount"] == 400 and row["per_s"] == 100.0 and row["per_job_s"] == 40.0
