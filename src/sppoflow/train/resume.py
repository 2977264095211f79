"""What lets a run stop and go on: the step log, checkpoints put in place whole, the stop on
SIGTERM or SIGUSR1, the run's fingerprint, and the checkpoint a rerun resumes from.

A job may be killed at any instant (SIGKILL, a node that dies), and the next run must go on
from what is left. Every process writes its part of a checkpoint into a staging folder; once
all have, the first process marks it complete and renames it into place
(:func:`commit_checkpoint`), so a ``checkpoint-N`` folder is always whole. A checkpoint whose
save was cut short stays in the staging folder, and the next run discards it with a line
saying so (:func:`discard_unfinished`)."""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from sppoflow.atomic import (
    finish_removals,
    remove_tree,
    replace_folder,
    sync_tree,
    write_atomically,
)
from sppoflow.errors import UserError
from sppoflow.runtime.run_state import keep_for_run
from sppoflow.train.settings import TrainSettings

log = logging.getLogger(__name__)

LOG_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "learning_rate",
    "grad_norm",
    "logratio_winner",
    "logratio_loser",
    "target_winner",
    "target_loser",
    "target_margin",
    "reward_margin",
    "reward_accuracy",
)


class CsvLogCallback(TrainerCallback):
    """Append one row per logged step to a CSV file (kept across resumes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({**logs, "step": state.global_step})


def truncate_log(path: Path, last_step: int) -> None:
    """Drop the rows of steps after ``last_step`` (logged before a crash, to be redone), and a
    last row cut short by a job killed while appending it."""
    if not path.exists():
        return
    text = path.read_text()
    torn = bool(text) and not text.endswith("\n")
    if torn:
        log.info("dropping the last row of %s: a killed job cut it short", path)
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(text.splitlines()))
    kept = [row for row in rows if int(row["step"]) <= last_step]
    if len(kept) == len(rows) and not torn:
        return
    if len(kept) < len(rows):
        log.info(
            "dropping %d log row(s) after step %d: they are redone",
            len(rows) - len(kept),
            last_step,
        )

    def write(partial: Path) -> None:
        with partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    write_atomically(path, write)


class StopOnSignal(TrainerCallback):
    """SIGTERM or SIGUSR1 (a time limit, ``scancel``, preemption): finish the optimizer step,
    save a checkpoint and stop, so that the job's retry resumes from that step.

    SLURM signals every process of a job, but a multi-process run may get the signal in
    different steps on different ranks; they agree at the end of each step (an all-reduce of
    the flag) and save the same step together.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, world_size: int, device: torch.device) -> None:
        self.world_size = world_size
        self.device = device
        self.received = 0
        self.stopped_at: int | None = None
        self.previous: dict = {}

    def _note(self, signum, frame) -> None:
        if not self.received:
            log.warning("got %s: saving a checkpoint after this step", signal.Signals(signum).name)
        self.received = signum

    def agreed(self) -> int:
        """The signal any process got (0: none), the same on every process."""
        if self.world_size == 1:
            return self.received
        flag = torch.tensor([self.received], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        signum = self.agreed()
        if signum:
            self.received = signum
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def __enter__(self) -> StopOnSignal:
        self.previous = {signum: signal.signal(signum, self._note) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class TrainingStopped(Exception):
    """Training stopped on a signal after saving a checkpoint; a rerun resumes from it."""

    def __init__(self, signum: int, step: int, max_steps: int, checkpoint: Path | None) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        where = (
            f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (stopped before step 1)"
        )
        super().__init__(
            f"stopped by {name} at step {step} of {max_steps}; {where}: "
            "running the job again resumes from there"
        )


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
COMPLETE = "sppo_checkpoint_complete"


STAGING = ".staging"  # in the checkpoints folder: where a checkpoint is written
CHECKPOINTS_KEPT = 2  # the newest and the one before it


def checkpoints_by_step(folder: Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (m := CHECKPOINT.match(path.name))
    ]
    return [path for _, path in sorted(found)]


def commit_checkpoint(staged: Path, world_size: int, main_process: bool) -> Path:
    """Put the checkpoint that every process has written into ``staged`` (a folder in the
    staging folder) in its place, marked complete; checkpoints older than the newest
    ``CHECKPOINTS_KEPT`` are removed. Returns where it is now."""
    checkpoints = staged.parent.parent
    final = checkpoints / staged.name
    # each process flushes what it wrote (on a cluster's file system, only the node that
    # wrote a file can flush it) before the first one puts the checkpoint in place
    sync_tree(staged)
    if world_size > 1:
        torch.distributed.barrier()  # every process has written its part
    if main_process:
        (staged / COMPLETE).write_text(f"{world_size} process(es)\n")
        replace_folder(staged, final)
        for old in checkpoints_by_step(checkpoints)[:-CHECKPOINTS_KEPT]:
            remove_tree(old)
    if world_size > 1:
        # no process exits (a stop on a signal) before the checkpoint is in place: over several
        # nodes, srun --kill-on-bad-exit ends the others when the first one exits
        torch.distributed.barrier()
    return final


def discard_unfinished(folder: Path) -> None:
    """Discard what a job killed in the middle of a save left in the checkpoints ``folder``:
    checkpoints still in the staging folder, and removals of old ones cut short."""
    staging = folder / STAGING
    if staging.is_dir():
        for staged in sorted(staging.iterdir()):
            log.warning("discarding %s: the job was killed while saving it", staged.name)
        shutil.rmtree(staging)
    finish_removals(folder)


def last_complete_checkpoint(folder: Path, remove_partial: bool = False) -> Path | None:
    """The newest checkpoint marked complete; a newer one without the mark (left by a
    version of this workflow that wrote checkpoints in place) is skipped, and removed if
    asked."""
    for path in reversed(checkpoints_by_step(folder)):
        if (path / COMPLETE).is_file():
            return path
        log.warning("ignoring %s: it was not completely written", path)
        if remove_partial:
            remove_tree(path)
    return None


def fingerprint(paths: list[Path], settings: TrainSettings, *model_dirs: Path) -> str:
    """Identifies a training run, so that a resume never mixes different inputs: the
    tables, the settings and the models read (the policy; the base model for INPO)."""
    # where the metrics are reported does not change the run: a resume may switch it
    values = {k: v for k, v in asdict(settings).items() if k != "report_to"}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode())
    for path in [*paths, *(model_dir / "config.json" for model_dir in model_dirs)]:
        digest.update(path.read_bytes())
    for model_dir in model_dirs:
        weights = sorted(model_dir.glob("*.safetensors"))
        digest.update(
            json.dumps([(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]).encode()
        )
    return digest.hexdigest()


@contextmanager
def training_lock(state_dir: Path, main_process: bool) -> Iterator[None]:
    """Hold ``.<state_dir name>.lock`` beside the state folder while training (the first
    process does): a second job that trains the same round at the same time, such as one a
    killed Snakemake left running on a cluster, stops with an error instead of writing into
    the same checkpoints. The file says who holds it, and is empty once they are done: a line
    found in it names a holder that was killed, or one on a node the file system's locks do
    not reach (said in a warning). Where the file system has no locks, it trains unguarded,
    saying so."""
    if not main_process:
        yield
        return
    path = state_dir.with_name(f".{state_dir.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(
                f"{state_dir} is being trained by {holder}: a job of an earlier run may still be "
                "running (on a cluster, a job that a killed Snakemake left behind); cancel it, "
                "then run this again"
            ) from None
        except OSError as error:  # e.g. a Lustre mount without flock
            log.warning(
                "cannot lock %s (%s): nothing stops a second job training here", path, error
            )
        handle.seek(0)
        left = handle.read().strip()
        if left:  # its holder never let go: it was killed, or its lock does not reach here
            log.warning(
                "%s was last held by %s, which did not let go of it: a killed job, or one still "
                "running on another node that this file system's locks do not reach",
                path, left,
            )  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)  # held by no one (a killed holder's line stays, its lock goes)


def prepare_state_dir(state_dir: Path, run_id: str) -> None:
    """Keep the state of an interrupted run with the same inputs; clear anything else."""
    keep_for_run(state_dir, run_id, "fingerprint.txt")


def resume_point(trainer: Trainer, state_dir: Path) -> Path | None:
    """The checkpoint to resume from, if any, the same for every process (the first process
    looks, after discarding what a killed save left); the step log is cut back to it, so that
    no step appears twice, and a fresh start does not append to a stale log."""
    main_process = trainer.is_world_process_zero()
    checkpoints = Path(trainer.args.output_dir)
    last = None
    if main_process:
        discard_unfinished(checkpoints)
        last = last_complete_checkpoint(checkpoints, remove_partial=True)
    if trainer.args.world_size > 1:
        found = [str(last) if last else None]
        torch.distributed.broadcast_object_list(found, src=0)
        last = Path(found[0]) if found[0] else None
    step_log = state_dir / "train_log.csv"
    if last:
        log.info("resuming from %s", last)
        warn_of_another_layout(last, trainer.args.world_size)
        if main_process:
            truncate_log(step_log, int(CHECKPOINT.match(last.name).group(1)))
    elif main_process and step_log.exists():
        step_log.unlink()
    return last


def warn_of_another_layout(checkpoint: Path, world_size: int) -> None:
    """A checkpoint written by another number of processes resumes their RNG states only in
    part, and a sharded engine's optimizer state not at all: say so."""
    written = (checkpoint / COMPLETE).read_text().split()[0]
    if written.isdigit() and int(written) != world_size:
        log.warning(
            "%s was written by %s process(es) and this run has %d: their random state (and a "
            "sharded optimizer's state, under DeepSpeed or FSDP) does not carry over as it is",
            checkpoint.name, written, world_size,
        )  # fmt: skip
