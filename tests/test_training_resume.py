"""The train stage's resumable state on the tiny model: a crash, a SIGTERM (a time limit) and
a checkpoint cut short while saving, each resumed to the weights of a straight run; state of
another run cleared; a round that another job is training refused."""

import logging

import pandas as pd
import pytest

from helpers import assert_same_weights
from sppoflow.errors import UserError
from sppoflow.train.resume import (
    COMPLETE,
    TrainingStopped,
    last_complete_checkpoint,
    prepare_state_dir,
)
from sppoflow.train.trainer import SPPOTrainer
from training_data import node_lost_after, run_training


def test_interrupted_training_resumes_from_its_checkpoint(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    with node_lost_after(2), pytest.raises(RuntimeError, match="node lost"):
        run_training(tmp_path, tiny_model_dir, embedded_tokenizer, checkpoint_steps=1)
    assert (tmp_path / "state" / "checkpoints" / "checkpoint-2").is_dir()
    _, log = run_training(tmp_path, tiny_model_dir, embedded_tokenizer, checkpoint_steps=1)
    assert log.step.tolist() == [1, 2, 3]  # the log goes on where it stopped


def test_a_resume_after_a_crash_logs_each_step_once_and_ends_where_a_straight_run_does(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    """Checkpoints every 2 steps, a crash after step 5 was logged: the resume starts from the
    checkpoint of step 4 and redoes step 5, which must not appear twice in the log."""
    straight, straight_log = run_training(
        tmp_path / "straight", tiny_model_dir, embedded_tokenizer, batch_size=1
    )
    assert straight_log.step.tolist() == [1, 2, 3, 4, 5, 6]
    run = tmp_path / "crashed"
    with node_lost_after(5), pytest.raises(RuntimeError, match="node lost"):
        run_training(run, tiny_model_dir, embedded_tokenizer, batch_size=1, checkpoint_steps=2)
    assert pd.read_csv(run / "state" / "train_log.csv").step.tolist() == [1, 2, 3, 4, 5]
    out, log = run_training(run, tiny_model_dir, embedded_tokenizer, batch_size=1,
                            checkpoint_steps=2)  # fmt: skip
    assert log.step.tolist() == [1, 2, 3, 4, 5, 6]
    assert log.loss.tolist() == straight_log.loss.tolist()
    assert_same_weights(out, straight)


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_to_the_same_weights(
    tmp_path, tiny_model_dir, embedded_tokenizer, monkeypatch
):
    """What a SLURM time limit does: SIGTERM in step 3 (no periodic checkpoints at all)."""
    import os
    import signal

    straight, straight_log = run_training(
        tmp_path / "straight", tiny_model_dir, embedded_tokenizer, batch_size=1
    )
    original = SPPOTrainer.compute_loss

    def time_limit_in_step_3(self, *args, **kwargs):
        if self.state.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SPPOTrainer, "compute_loss", time_limit_in_step_3)
    run = tmp_path / "limited"
    with pytest.raises(TrainingStopped, match="stopped by SIGTERM at step 3 of 6") as stopped:
        run_training(run, tiny_model_dir, embedded_tokenizer, batch_size=1)
    assert stopped.value.signum == signal.SIGTERM
    assert (run / "state/checkpoints/checkpoint-3" / COMPLETE).is_file()
    assert not (run / "model").exists()  # nothing published from an unfinished run
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    monkeypatch.setattr(SPPOTrainer, "compute_loss", original)
    out, log = run_training(run, tiny_model_dir, embedded_tokenizer, batch_size=1)
    assert log.step.tolist() == [1, 2, 3, 4, 5, 6]
    assert log.loss.tolist() == straight_log.loss.tolist()
    assert_same_weights(out, straight)


def test_a_checkpoint_cut_short_while_saving_is_skipped(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (2, 4):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / COMPLETE).write_text("1 process(es)")
    (folder / "checkpoint-6").mkdir()  # killed before every process had written its part
    (folder / "checkpoint-6" / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(folder) == folder / "checkpoint-4"
    assert (folder / "checkpoint-6").exists()
    assert last_complete_checkpoint(folder, remove_partial=True) == folder / "checkpoint-4"
    assert not (folder / "checkpoint-6").exists()
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_state_of_a_different_run_is_cleared(tmp_path):
    state = tmp_path / "state"
    prepare_state_dir(state, "run-a")
    (state / "checkpoints").mkdir()
    prepare_state_dir(state, "run-a")
    assert (state / "checkpoints").exists()
    prepare_state_dir(state, "run-b")
    assert not (state / "checkpoints").exists()


def test_a_second_job_cannot_train_a_round_that_is_being_trained(
    tmp_path, tiny_model_dir, embedded_tokenizer, caplog
):
    """A job a killed Snakemake left running on a cluster still trains the round when the
    rerun's job starts: the rerun's stops with one line, and writes nothing into the state."""
    import subprocess
    import sys

    state = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+');"
         " fcntl.flock(f, fcntl.LOCK_EX); f.write('process 4242 on node-7'); f.flush();"
         " print('held', flush=True); sys.stdin.read()", str(tmp_path / ".state.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    try:
        with pytest.raises(UserError, match=r"state is being trained by process 4242 on node-7"):
            run_training(tmp_path, tiny_model_dir, embedded_tokenizer)
        assert not (state / "checkpoints").exists()
    finally:
        holder.communicate("")
    with caplog.at_level(logging.WARNING):  # free again; its holder never emptied it
        out, _ = run_training(tmp_path, tiny_model_dir, embedded_tokenizer)
    assert (out / "model.safetensors").is_file()
    assert "was last held by process 4242 on node-7, which did not let go of it" in caplog.text
    assert (tmp_path / ".state.lock").read_text() == ""  # held by no one
