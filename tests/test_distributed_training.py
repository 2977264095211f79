"""Training under `accelerate launch`: 2 CPU processes (gloo) against 1, same global batch.

accelerate 1.15 starts several CPU processes only through mpirun (`--cpu --num_processes 2`
without an MPI hostfile runs one process), so the two processes are started the way a GPU
run is (`--multi_gpu`, torchrun) while the script trains on the CPU (`--device cpu`), where
torch.distributed uses gloo.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from sppoflow.tables import PAIRS, RESPONSES, SAMPLES, write_table
from test_training import round_tables

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, model_dir, tables, processes, batch_size, name, *extra):
    out = tmp_path / name
    command = [
        str(BIN / "accelerate"),
        "launch",
        *(["--multi_gpu"] if processes > 1 else ["--cpu"]),
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(ROOT / "scripts" / "train.py"),
        "--model", str(model_dir),
        "--samples", str(tables["samples"]),
        "--pairs-table", str(tables["pairs"]),
        "--responses", str(tables["responses"]),
        "--out", str(out / "model"),
        "--log", str(out / "train_log.csv"),
        "--state-dir", str(out / "state"),
        "--batch-size", str(batch_size),
        "--global-batch-size", "4",
        "--epochs", "3",
        "--eta", "10",
        "--learning-rate", "1e-3",
        "--warmup-ratio", "0",
        "--precision", "fp32",
        "--device", "cpu",
        "--max-length", "64",
        "--max-prompt-length", "32",
        "--threads", "1",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_CONFIG_FILE", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, done.stderr


@pytest.fixture(scope="module")
def round_files(tmp_path_factory, embedded_tokenizer):
    folder = tmp_path_factory.mktemp("round")
    samples, pairs, responses = round_tables(embedded_tokenizer, n_prompts=8)
    paths = {name: folder / f"{name}.parquet" for name in ("samples", "pairs", "responses")}
    write_table(samples, paths["samples"], SAMPLES)
    write_table(pairs, paths["pairs"], PAIRS)
    write_table(responses, paths["responses"], RESPONSES)
    return paths


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, tiny_model_dir, round_files):
    one, _ = launch(tmp_path, tiny_model_dir, round_files, 1, 4, "one")
    two, stderr = launch(tmp_path, tiny_model_dir, round_files, 2, 2, "two")
    assert "on 2 process(es) (gloo), global batch 4 (2 x 1 accumulation x 2)" in stderr

    log_one = pd.read_csv(one / "train_log.csv")
    log_two = pd.read_csv(two / "train_log.csv")
    assert log_one.step.tolist() == log_two.step.tolist() == list(range(1, 7))
    assert log_two.loss.to_numpy() == pytest.approx(log_one.loss.to_numpy(), rel=1e-4, abs=1e-5)
    assert log_one.loss.iloc[-2:].mean() < log_one.loss.iloc[:2].mean()  # it did learn

    weights_one = load_file(one / "model" / "model.safetensors")
    weights_two = load_file(two / "model" / "model.safetensors")
    start = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-4, atol=1e-5)
    moved = max((weights_one[n] - start[n]).abs().max().item() for n in start)
    assert moved > 1e-3  # the comparison is between trained models, not two copies of the start
    summary = json.loads((two / "model" / "sppo_training.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch_size"] == 4
    assert summary["settings"]["gradient_accumulation_steps"] == 1


@pytest.mark.slow
def test_one_process_accumulates_to_the_global_batch(tmp_path, tiny_model_dir, round_files):
    """batch 2 on one process with global batch 4 accumulates 2 micro-batches per step."""
    one, _ = launch(tmp_path, tiny_model_dir, round_files, 1, 4, "one")
    acc, stderr = launch(tmp_path, tiny_model_dir, round_files, 1, 2, "acc")
    assert "global batch 4 (2 x 2 accumulation x 1)" in stderr
    log_one = pd.read_csv(one / "train_log.csv")
    log_acc = pd.read_csv(acc / "train_log.csv")
    assert log_acc.loss.to_numpy() == pytest.approx(log_one.loss.to_numpy(), rel=1e-4, abs=1e-5)
