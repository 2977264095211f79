"""Training under `accelerate launch`: 2 CPU processes (gloo) against 1, same global batch.

accelerate 1.15 starts several CPU processes only through mpirun (`--cpu --num_processes 2`
without an MPI hostfile runs one process), so the two processes are started the way a GPU
run is (`--multi_gpu`, torchrun) while the script trains on the CPU (`--device cpu`), where
torch.distributed uses gloo.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from sppoflow.tables import PAIRS, RESPONSE_WIN_RATES, SAMPLES, write_table
from sppoflow.training import COMPLETE
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
        "--win-rates", str(tables["win_rates"]),
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
    samples, pairs, win_rates = round_tables(embedded_tokenizer, n_prompts=8)
    paths = {name: folder / f"{name}.parquet" for name in ("samples", "pairs", "win_rates")}
    write_table(samples, paths["samples"], SAMPLES)
    write_table(pairs, paths["pairs"], PAIRS)
    write_table(win_rates, paths["win_rates"], RESPONSE_WIN_RATES)
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
    moved = max((weights_one[n] - start[n]).abs().max().item() for n in start)
    assert moved > 1e-3  # the comparison is between trained models, not two copies of the start
    # Two processes sum the gradients in another order (the all-reduce), and RMSprop divides
    # each update by the root of that weight's mean squared gradient, which scales the last-bit
    # differences up where gradients are tiny (one weight in 2048 differed by 1.5e-5 on an
    # AMX CPU): the runs must agree to 1% of how far training moved the weights.
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=0, atol=0.01 * moved)
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


def wrapped_launch(tmp_path, model_dir, tables, name, extra_env=None):
    """Two training processes the way the workflow starts them: scripts/with_gpus.py 2
    --process-per-gpu (accelerate launch with the launcher settings), on fake GPUs 0,1."""
    out = tmp_path / name
    command = [
        sys.executable, str(ROOT / "scripts" / "with_gpus.py"), "2", "--process-per-gpu", "--",
        str(ROOT / "scripts" / "train.py"),
        "--model", str(model_dir), "--samples", str(tables["samples"]),
        "--pairs-table", str(tables["pairs"]), "--win-rates", str(tables["win_rates"]),
        "--out", str(out / "model"), "--log", str(out / "train_log.csv"),
        "--state-dir", str(out / "state"), "--batch-size", "1", "--global-batch-size", "2",
        "--epochs", "1", "--eta", "10", "--learning-rate", "1e-3", "--warmup-ratio", "0",
        "--precision", "fp32", "--device", "cpu", "--max-length", "64",
        "--max-prompt-length", "32", "--threads", "1",
    ]  # fmt: skip
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "0,1"}
    env.update(extra_env or {})
    env.pop("ACCELERATE_CONFIG_FILE", None)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    return out, process


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "whom"),
    [(signal.SIGTERM, "every process, as SLURM does"), (signal.SIGUSR1, "the wrapper alone")],
)
def test_two_processes_stop_on_a_signal_together_and_resume(
    tmp_path, tiny_model_dir, round_files, signum, whom
):
    import psutil

    straight, process = wrapped_launch(tmp_path, tiny_model_dir, round_files, "straight")
    assert process.wait(timeout=600) == 0, process.stderr.read()[-3000:]
    slow = {"PYTHONPATH": str(ROOT / "tests" / "slurm_faults"), "SPPO_FAULT_SLOW_TRAINING": "2"}
    if whom.startswith("every"):
        slow["SLURM_JOB_ID"] = "1"  # the wrapper leaves the signalling to the scheduler
    out, process = wrapped_launch(tmp_path, tiny_model_dir, round_files, "stopped", slow)
    step_log = out / "state" / "train_log.csv"
    deadline = time.monotonic() + 300
    while not (step_log.exists() and len(pd.read_csv(step_log)) >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.5)
    wrapper = psutil.Process(process.pid)
    targets = (
        [wrapper, *wrapper.children(recursive=True)] if whom.startswith("every") else [wrapper]
    )
    for target in targets:
        target.send_signal(signum)
    code = process.wait(timeout=300)
    stderr = process.stderr.read()
    assert code != 0, stderr[-3000:]
    checkpoints = sorted((out / "state" / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1, stderr[-3000:]  # both ranks saved the same step, once
    saved = checkpoints[0]
    assert (saved / COMPLETE).read_text() == "2 process(es)\n"
    assert {p.name for p in saved.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert f"got {signal.Signals(signum).name}: saving a checkpoint" in stderr

    _, process = wrapped_launch(tmp_path, tiny_model_dir, round_files, "stopped")
    assert process.wait(timeout=600) == 0, process.stderr.read()[-3000:]
    assert f"resuming from {saved}" in process.stderr.read()
    log, straight_log = pd.read_csv(out / "train_log.csv"), pd.read_csv(straight / "train_log.csv")
    assert log.step.tolist() == straight_log.step.tolist() == [1, 2, 3, 4]
    assert log.loss.to_numpy() == pytest.approx(straight_log.loss.to_numpy(), rel=1e-6, abs=1e-7)
    resumed = load_file(out / "model" / "model.safetensors")
    for name, tensor in load_file(straight / "model" / "model.safetensors").items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-6, atol=1e-7)
