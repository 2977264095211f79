"""Experiment tracking of training runs: which trackers, where their files go, offline W&B.

transformers' Trainer does the reporting; this decides the trackers of ``train.report_to``,
sets the environment variables they read (transformers 5 takes no directory for them), and
keeps TensorBoard's step series right across a fresh start and a resume.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from sppoflow.errors import UserError

REPORTERS = ("tensorboard", "wandb")  # each is also the package it needs
REPORT_TO = ("auto", "none", *REPORTERS)


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def report_targets(chosen: list[str]) -> list[str]:
    """The trackers transformers reports to: ``auto`` is TensorBoard where it is installed.
    A tracker named explicitly must be installed; that is checked here, where training runs,
    not when the config is read (the submitting host may lack the package)."""
    if chosen == ["auto"]:
        return ["tensorboard"] if installed("tensorboard") else []
    targets = [name for name in chosen if name != "none"]
    for name in targets:
        if not installed(name):
            raise UserError(
                f"train.report_to={name} needs the {name} package where training runs: "
                f"pip install {name}"
            )
    return targets


def tracking_environment(
    targets: list[str],
    tracking_dir: Path,
    group: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """The variables the trackers read (transformers 5 takes no directory argument for them).

    TensorBoard writes to the tracking folder. W&B runs offline into it, in project ``sppo``,
    the rounds of a workflow grouped, unless the user set the variable: jobs run without the
    internet; ``wandb sync`` uploads the runs later.
    """
    env = {}
    if "tensorboard" in targets:
        env["TENSORBOARD_LOGGING_DIR"] = str(tracking_dir)
    if "wandb" in targets:
        defaults = {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(tracking_dir),
            "WANDB_PROJECT": "sppo",
            "WANDB_RUN_GROUP": group,
        }
        env.update({k: v for k, v in defaults.items() if v and k not in environ})
    return env


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def prepare_tracking_dir(folder: Path, targets: list[str], resumed_at: int | None) -> None:
    """A fresh start drops the TensorBoard files of an earlier attempt (W&B runs are kept:
    they may not be uploaded yet). A resume from the checkpoint of step ``resumed_at`` marks a
    restart, so that TensorBoard drops the values of the steps after it, which are redone."""
    if resumed_at is None:
        for stale in folder.glob("events.out.tfevents.*"):
            stale.unlink()
    if not targets:
        return
    folder.mkdir(parents=True, exist_ok=True)
    if resumed_at is not None and "tensorboard" in targets:
        mark_restart(folder, resumed_at + 1)


def mark_restart(folder: Path, step: int) -> None:
    """Write TensorBoard's restart event (SessionLog START, as TensorFlow's Supervisor did):
    readers forget what they read of ``step`` and later. It goes in a file of its own, which
    sorts after the earlier attempt's files and before the one the trainer opens next."""
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog
    from torch.utils.tensorboard.writer import FileWriter

    writer = FileWriter(str(folder))
    writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
    writer.close()
