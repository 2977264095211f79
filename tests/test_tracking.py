"""Experiment tracking of the train stage: TensorBoard event files, train.report_to, W&B env."""

import argparse
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import SCRIPTS
from sppoflow.cli import add_settings, settings_from
from sppoflow.errors import UserError
from sppoflow.models.loading import load_policy
from sppoflow.train import tracking
from sppoflow.train.data import build_examples
from sppoflow.train.resume import fingerprint
from sppoflow.train.round import train
from sppoflow.train.settings import TrainSettings
from sppoflow.train.tracking import (
    environment,
    prepare_tracking_dir,
    report_targets,
    tracking_environment,
)
from training_data import node_lost_after, round_tables, settings

SPPO_METRICS = ("logratio_winner", "logratio_loser", "target_winner", "target_loser")


def train_tracked(run, tiny_model_dir, tokenizer, **overrides):
    """Train with TensorBoard into run/tracking/iter1; the step log and the event files."""
    samples, pairs, responses = round_tables(tokenizer)
    s = settings(report_to=["tensorboard"], **overrides)
    model, tokenizer = load_policy(tiny_model_dir)
    examples = build_examples(tokenizer, samples, pairs, responses, s)
    tracking = run / "tracking" / "iter1"
    train(model, tokenizer, examples, s, run / "state", run / "model", run / "log.csv",
          run_id="run-1", tracking_dir=tracking)  # fmt: skip
    events = EventAccumulator(str(tracking), size_guidance={"scalars": 0, "tensors": 0})
    return pd.read_csv(run / "log.csv"), events.Reload()


def scalars(events, name):
    return [(e.step, e.value) for e in events.Scalars(f"train/{name}")]


def run_arguments(events) -> dict:
    """The TrainingArguments, which the TensorBoard callback writes as text at the start."""
    return json.loads(events.Tensors("args/text_summary")[0].tensor_proto.string_val[0])


def test_the_sppo_metrics_reach_tensorboard_once_per_step(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    log, events = train_tracked(tmp_path, tiny_model_dir, embedded_tokenizer)
    assert log.step.tolist() == [1, 2, 3]
    for name in (*SPPO_METRICS, "loss", "learning_rate", "grad_norm"):
        steps, values = zip(*scalars(events, name), strict=True)
        assert list(steps) == [1, 2, 3], name
        assert list(values) == pytest.approx(log[name].tolist(), rel=1e-5), name
    assert run_arguments(events)["run_name"] == "iter1"  # the tracking folder's name
    assert not (tmp_path / "state").exists()  # the state folder goes, the tracking folder stays


def test_a_resume_leaves_one_value_per_step_in_tensorboard(
    tmp_path, tiny_model_dir, embedded_tokenizer
):
    """Checkpoint at step 2, crash after step 3 was logged: step 3 is redone and must not
    appear twice; a later fresh start replaces the event files of the earlier attempt."""
    with node_lost_after(3), pytest.raises(RuntimeError, match="node lost"):
        train_tracked(tmp_path, tiny_model_dir, embedded_tokenizer, epochs=2, checkpoint_steps=2)
    log, events = train_tracked(
        tmp_path, tiny_model_dir, embedded_tokenizer, epochs=2, checkpoint_steps=2
    )
    assert [step for step, _ in scalars(events, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [value for _, value in scalars(events, "loss")] == pytest.approx(log.loss.tolist())

    log, events = train_tracked(tmp_path, tiny_model_dir, embedded_tokenizer, epochs=1)
    assert [step for step, _ in scalars(events, "loss")] == [1, 2, 3]
    assert len(list((tmp_path / "tracking" / "iter1").glob("events.out.tfevents.*"))) == 1


def test_prepare_tracking_dir_keeps_wandb_runs_and_creates_nothing_without_a_tracker(tmp_path):
    folder = tmp_path / "iter1"
    (folder / "wandb" / "offline-run-1").mkdir(parents=True)
    (folder / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    prepare_tracking_dir(folder, ["wandb"], resumed_at=None)
    assert [p.name for p in folder.iterdir()] == ["wandb"]
    prepare_tracking_dir(tmp_path / "unused", [], resumed_at=None)
    assert not (tmp_path / "unused").exists()


def test_auto_is_tensorboard_where_it_is_installed(monkeypatch):
    monkeypatch.setattr(tracking, "installed", lambda package: package == "tensorboard")
    assert report_targets(TrainSettings().reporters()) == ["tensorboard"]
    monkeypatch.setattr(tracking, "installed", lambda package: False)
    assert report_targets(TrainSettings().reporters()) == []
    assert report_targets(TrainSettings(report_to="none").reporters()) == []


def test_a_single_value_or_a_list(monkeypatch):
    monkeypatch.setattr(tracking, "installed", lambda package: True)
    assert report_targets(TrainSettings(report_to="wandb").reporters()) == ["wandb"]
    both = TrainSettings(report_to=["tensorboard", "wandb"])
    assert report_targets(both.reporters()) == ["tensorboard", "wandb"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mlflow", r"train.report_to: unknown value 'mlflow' \(known: auto, none, tensorboard"),
        (["tensorboard", "comet"], r"train.report_to: unknown value 'comet'"),
        (["none", "wandb"], r"train.report_to: none, wandb: auto and none cannot be combined"),
    ],
)
def test_an_unknown_value_is_a_clear_error(value, message):
    with pytest.raises(UserError, match=message):
        TrainSettings(report_to=value).check()


@pytest.mark.parametrize("package", ["tensorboard", "wandb"])
def test_asking_for_a_tracker_that_is_not_installed_says_what_to_install(monkeypatch, package):
    monkeypatch.setattr(tracking, "installed", lambda name: name != package)
    with pytest.raises(UserError, match=rf"report_to={package} needs .*: pip install {package}$"):
        report_targets(TrainSettings(report_to=["tensorboard", "wandb"]).reporters())


@pytest.mark.skipif(tracking.installed("wandb"), reason="wandb is installed")
def test_the_train_script_says_what_to_install_in_one_line_before_loading_anything(tmp_path):
    flags = ["--model", "m", "--samples", "s", "--pairs-table", "p", "--win-rates", "r"]
    flags += ["--out", "o", "--log", "l", "--state-dir", "d", "--report-to", "wandb"]
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "train.py"), *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "error: train.report_to=wandb needs the wandb package where training runs: "
        "pip install wandb"
    )


def test_the_command_line_takes_one_tracker_or_several():
    parser = argparse.ArgumentParser()
    add_settings(parser, TrainSettings)
    assert settings_from(TrainSettings, parser.parse_args([])).report_to == ["auto"]
    args = parser.parse_args(["--report-to", "tensorboard", "wandb"])
    assert settings_from(TrainSettings, args).report_to == ["tensorboard", "wandb"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--report-to", "mlflow"])


def test_wandb_runs_offline_into_the_tracking_folder_unless_told_otherwise(tmp_path):
    folder = tmp_path / "tracking" / "iter2"
    assert tracking_environment(["wandb"], folder, "my-run", environ={}) == {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(folder),
        "WANDB_PROJECT": "sppo",
        "WANDB_RUN_GROUP": "my-run",
    }
    user = {"WANDB_MODE": "online", "WANDB_DIR": "/scratch", "WANDB_RUN_GROUP": "mine"}
    assert tracking_environment(["wandb"], folder, "my-run", environ=user) == {
        "WANDB_PROJECT": "sppo"
    }
    assert tracking_environment(["tensorboard"], folder, environ=user) == {
        "TENSORBOARD_LOGGING_DIR": str(folder)
    }
    assert tracking_environment([], folder, environ={}) == {}


def test_the_environment_is_restored_after_training(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    with environment({"WANDB_MODE": "offline", "WANDB_DIR": "x"}):
        assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_DIR"] == "x"
    assert os.environ["WANDB_MODE"] == "online" and "WANDB_DIR" not in os.environ


def test_switching_trackers_keeps_a_resumable_state(tmp_path, tiny_model_dir):
    table = tmp_path / "pairs.parquet"
    table.write_bytes(b"pairs")
    quiet = fingerprint([table], TrainSettings(report_to="none"), tiny_model_dir)
    assert fingerprint([table], TrainSettings(report_to="wandb"), tiny_model_dir) == quiet
    assert fingerprint([table], TrainSettings(eta=5.0), tiny_model_dir) != quiet
