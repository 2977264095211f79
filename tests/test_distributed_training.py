"""Training under `accelerate launch`: 2 CPU processes (gloo) against 1, same global batch.

accelerate 1.15 starts several CPU processes only through mpirun (`--cpu --num_processes 2`
without an MPI hostfile runs one process), so the two processes are started the way a GPU
run is (`--multi_gpu`, torchrun) while the script trains on the CPU (`--device cpu`), where
torch.distributed uses gloo.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helpers import ROOT
from sppoflow.train.resume import COMPLETE
from sppoflow.train.round import end_process_group
from training_data import TRAIN_FLAGS, write_round_tables
from training_hold import NEVER, TrainingHold, wait_for_line

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


def assert_trained_alike(ours: Path, theirs: Path, start_dir: Path) -> None:
    """Two trained model folders agree to 1% of how far training moved the weights.

    Several processes sum the gradients in another order (the all-reduce, or a reduce-scatter
    when sharded), and RMSprop divides each update by the root of that weight's mean squared
    gradient, which scales the last-bit differences up where gradients are tiny (one weight in
    2048 differed by 1.5e-5 on an AMX CPU)."""
    weights_ours = load_file(ours / "model.safetensors")
    weights_theirs = load_file(theirs / "model.safetensors")
    start = load_file(Path(start_dir) / "model.safetensors")
    assert weights_ours.keys() == weights_theirs.keys() == start.keys()
    moved = max((weights_theirs[n] - start[n]).abs().max().item() for n in start)
    assert moved > 1e-3  # the comparison is between trained models, not two copies of the start
    for name, tensor in weights_theirs.items():
        assert weights_ours[name].dtype == tensor.dtype, name
        torch.testing.assert_close(weights_ours[name], tensor, rtol=0, atol=0.01 * moved)


@pytest.fixture(scope="module")
def launched_round(tmp_path_factory, embedded_tokenizer):
    return write_round_tables(tmp_path_factory.mktemp("round"), embedded_tokenizer, n_prompts=8)


def test_two_processes_match_one_with_the_same_global_batch(
    tmp_path, tiny_model_dir, launched_round
):
    one, _ = launch(tmp_path, tiny_model_dir, launched_round, 1, 4, "one")
    two, stderr = launch(tmp_path, tiny_model_dir, launched_round, 2, 2, "two")
    assert "on 2 process(es) (gloo), global batch 4 (2 x 1 accumulation x 2)" in stderr

    log_one = pd.read_csv(one / "train_log.csv")
    log_two = pd.read_csv(two / "train_log.csv")
    assert log_one.step.tolist() == log_two.step.tolist() == list(range(1, 7))
    assert log_two.loss.to_numpy() == pytest.approx(log_one.loss.to_numpy(), rel=1e-4, abs=1e-5)
    assert log_one.loss.iloc[-2:].mean() < log_one.loss.iloc[:2].mean()  # it did learn

    assert_trained_alike(two / "model", one / "model", tiny_model_dir)
    summary = json.loads((two / "model" / "sppo_training.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch_size"] == 4
    assert summary["settings"]["gradient_accumulation_steps"] == 1


def test_one_process_accumulates_to_the_global_batch(tmp_path, tiny_model_dir, launched_round):
    """batch 2 on one process with global batch 4 accumulates 2 micro-batches per step."""
    one, _ = launch(tmp_path, tiny_model_dir, launched_round, 1, 4, "one")
    acc, stderr = launch(tmp_path, tiny_model_dir, launched_round, 1, 2, "acc")
    assert "global batch 4 (2 x 2 accumulation x 1)" in stderr
    log_one = pd.read_csv(one / "train_log.csv")
    log_acc = pd.read_csv(acc / "train_log.csv")
    assert log_acc.loss.to_numpy() == pytest.approx(log_one.loss.to_numpy(), rel=1e-4, abs=1e-5)


class Launch(NamedTuple):
    out: Path
    process: subprocess.Popen
    log: Path  # its stderr

    def running(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        return self.log.read_text()


def wrapped_launch(
    tmp_path, model_dir, tables, name, extra_env=None, gpus=2, accelerate_config=None
) -> Launch:
    """Training processes the way the workflow starts them: scripts/with_gpus.py N
    --process-per-gpu (accelerate launch with the launcher settings when N > 1, DDP or the
    given accelerate config), on fake GPUs 0,1; global batch 2 whatever N is."""
    out = tmp_path / name
    how = ["--accelerate-config", str(accelerate_config)] if accelerate_config else []
    command = [
        sys.executable, str(ROOT / "scripts" / "with_gpus.py"), str(gpus), "--process-per-gpu",
        *how, "--",
        str(ROOT / "scripts" / "train.py"),
        "--model", str(model_dir), "--samples", str(tables["samples"]),
        "--pairs-table", str(tables["pairs"]), "--win-rates", str(tables["win_rates"]),
        "--out", str(out / "model"), "--log", str(out / "train_log.csv"),
        "--state-dir", str(out / "state"), "--batch-size", str(2 // max(gpus, 1)),
        "--global-batch-size", "2", "--epochs", "1", *TRAIN_FLAGS,
    ]  # fmt: skip
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "0,1"}
    env.update(extra_env or {})
    env.pop("ACCELERATE_CONFIG_FILE", None)
    log = tmp_path / f"{name}-{len(list(tmp_path.glob(f'{name}-*.log')))}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
            start_new_session=True,
        )  # fmt: skip
    return Launch(out, process, log)


def finished(launched: Launch) -> str:
    """The stderr of a launch that must succeed."""
    code = launched.process.wait(timeout=NEVER)
    assert code == 0, launched.stderr()[-3000:]
    return launched.stderr()


def stop_in_step_two(tmp_path, model_dir, tables, name, signum, everyone, **launch):
    """A launch held in its second step (tests/training_hold.py), signalled there and then
    released, so that it saves step 2 and stops; returns (folder, stderr)."""
    import psutil

    hold = TrainingHold(tmp_path / f"{name}-held")
    env = hold.env()
    if everyone:
        env["SLURM_JOB_ID"] = "1"  # the wrapper leaves the signalling to the scheduler
    launched = wrapped_launch(tmp_path, model_dir, tables, name, env, **launch)
    try:
        hold.wait_held(launched.running)
        wrapper = psutil.Process(launched.process.pid)
        targets = [wrapper, *wrapper.children(recursive=True)] if everyone else [wrapper]
        for target in targets:
            target.send_signal(signum)
        said = f"got {signal.Signals(signum).name}: saving a checkpoint"
        wait_for_line(launched.log, said, launched.running)
    finally:
        hold.release()
    code = launched.process.wait(timeout=NEVER)
    assert code != 0, launched.stderr()[-3000:]
    return launched.out, launched.stderr()


def saved_checkpoint(out: Path, stderr: str, signum) -> Path:
    """The one checkpoint a signalled 2-process launch saved (of step 2), checked whole."""
    checkpoints = sorted((out / "state" / "checkpoints").glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == ["checkpoint-2"], stderr[-3000:]  # saved once
    saved = checkpoints[0]
    assert (saved / COMPLETE).read_text() == "2 process(es)\n"
    assert {p.name for p in saved.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert f"got {signal.Signals(signum).name}: saving a checkpoint" in stderr
    return saved


@pytest.mark.parametrize(
    ("signum", "whom"),
    [(signal.SIGTERM, "every process, as SLURM does"), (signal.SIGUSR1, "the wrapper alone")],
)
def test_two_processes_stop_on_a_signal_together_and_resume(
    tmp_path, tiny_model_dir, launched_round, signum, whom
):
    straight = wrapped_launch(tmp_path, tiny_model_dir, launched_round, "straight")
    finished(straight)
    straight = straight.out
    out, stderr = stop_in_step_two(
        tmp_path, tiny_model_dir, launched_round, "stopped", signum, whom.startswith("every")
    )
    saved = saved_checkpoint(out, stderr, signum)

    resumed = wrapped_launch(tmp_path, tiny_model_dir, launched_round, "stopped")
    assert f"resuming from {saved}" in finished(resumed)
    log, straight_log = pd.read_csv(out / "train_log.csv"), pd.read_csv(straight / "train_log.csv")
    assert log.step.tolist() == straight_log.step.tolist() == [1, 2, 3, 4]
    assert log.loss.to_numpy() == pytest.approx(straight_log.loss.to_numpy(), rel=1e-6, abs=1e-7)
    resumed = load_file(out / "model" / "model.safetensors")
    for name, tensor in load_file(straight / "model" / "model.safetensors").items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_model_dir, launched_round) -> Path:
    """The reference for the sharded runs: the same round on one process."""
    one = wrapped_launch(
        tmp_path_factory.mktemp("one-process"), tiny_model_dir, launched_round, "one", gpus=1
    )
    finished(one)
    return one.out


@pytest.mark.parametrize("engine", ["fsdp", "deepspeed_zero3"])
def test_a_sharded_round_saves_on_sigterm_resumes_and_matches_one_process(
    tmp_path, tiny_model_dir, launched_round, one_process, engine
):
    """The shipped config/accelerate/<engine>.yaml as the train rule passes it, on 2 CPU
    processes over gloo: FSDP2 (fully_shard), or DeepSpeed ZeRO-3 through its CPU accelerator
    (which builds its shared-memory op with the C++ compiler on first use). The config says
    bf16 and the round trains in fp32: train.precision decides, so the run can match the
    1-process one."""
    from sppoflow.models.loading import load_policy

    if engine.startswith("deepspeed") and shutil.which("c++") is None:
        pytest.skip("DeepSpeed's CPU accelerator builds its shared-memory op: no C++ compiler")
    launch = {"gpus": 2, "accelerate_config": ROOT / "config" / "accelerate" / f"{engine}.yaml"}
    out, stderr = stop_in_step_two(
        tmp_path, tiny_model_dir, launched_round, engine, signal.SIGTERM, True, **launch
    )
    saved = saved_checkpoint(out, stderr, signal.SIGTERM)

    resumed = wrapped_launch(tmp_path, tiny_model_dir, launched_round, engine, **launch)
    stderr = finished(resumed)
    assert f"resuming from {saved}" in stderr
    assert "mixed_precision is bf16, train.precision is fp32: training in fp32" in stderr
    log, reference = pd.read_csv(out / "train_log.csv"), pd.read_csv(one_process / "train_log.csv")
    assert log.step.tolist() == reference.step.tolist() == [1, 2, 3, 4]  # none done twice
    assert log.loss.to_numpy() == pytest.approx(reference.loss.to_numpy(), rel=1e-4, abs=1e-5)
    assert_trained_alike(out / "model", one_process / "model", tiny_model_dir)
    summary = json.loads((out / "model" / "sppo_training.json").read_text())
    assert summary["processes"] == 2 and summary["precision"] == "fp32"
    model, _ = load_policy(out / "model")  # the reader of the next round's base_model
    published = load_file(out / "model" / "model.safetensors")
    loaded = model.state_dict()
    for name, tensor in published.items():
        assert torch.equal(loaded[name], tensor), name


def test_a_training_process_tears_its_process_group_down_before_it_ends(tmp_path):
    """scripts/train.py ends the process group itself once training is done (or stopped by a
    signal), not the interpreter's exit, where gloo's threads can abort the process."""
    store = f"file://{tmp_path / 'store'}"
    torch.distributed.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    end_process_group()
    assert not torch.distributed.is_initialized()
    end_process_group()  # and nothing to do without one
