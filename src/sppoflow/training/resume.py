"""What lets a run stop and go on: the step log, checkpoints marked complete, the stop on
SIGTERM or SIGUSR1, the run's fingerprint, and the checkpoint a rerun resumes from."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import shutil
import signal
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from sppoflow.run_state import keep_for_run
from sppoflow.tables import write_atomically
from sppoflow.training.settings import TrainSettings

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
    """Drop the rows of steps after ``last_step`` (logged before a crash, to be redone)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if int(row["step"]) <= last_step]
    if len(kept) == len(rows):
        return
    log.info(
        "dropping %d log row(s) after step %d: they are redone", len(rows) - len(kept), last_step
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


class MarkCompleteCheckpoints(TrainerCallback):
    """Mark a checkpoint complete once every process has written its part (model, optimizer
    shards, RNG state), so that a job killed while saving never resumes from half of one."""

    def on_save(self, args, state, control, **kwargs):
        if args.world_size > 1:
            torch.distributed.barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (folder / COMPLETE).write_text(f"{args.world_size} process(es)\n")
        if args.world_size > 1:
            # no process exits (a stop on a signal) before the mark is written: over several
            # nodes, srun --kill-on-bad-exit ends the others when the first one exits
            torch.distributed.barrier()


def last_complete_checkpoint(folder: Path, remove_partial: bool = False) -> Path | None:
    """The newest checkpoint marked complete; a newer, partial one (a job killed while
    saving) is skipped, and removed if asked."""
    if not folder.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (m := CHECKPOINT.match(path.name))
    )
    for _, path in reversed(found):
        if (path / COMPLETE).is_file():
            return path
        log.warning("ignoring %s: it was not completely written", path)
        if remove_partial:
            shutil.rmtree(path, ignore_errors=True)
    return None


def fingerprint(paths: list[Path], settings: TrainSettings, model_dir: Path) -> str:
    """Identifies a training run, so that a resume never mixes different inputs."""
    # where the metrics are reported does not change the run: a resume may switch it
    values = {k: v for k, v in asdict(settings).items() if k != "report_to"}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode())
    for path in [*paths, model_dir / "config.json"]:
        digest.update(path.read_bytes())
    weights = sorted(model_dir.glob("*.safetensors"))
    digest.update(
        json.dumps([(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]).encode()
    )
    return digest.hexdigest()


def prepare_state_dir(state_dir: Path, run_id: str) -> None:
    """Keep the state of an interrupted run with the same inputs; clear anything else."""
    keep_for_run(state_dir, run_id, "fingerprint.txt")


def resume_point(trainer: Trainer, state_dir: Path) -> Path | None:
    """The checkpoint to resume from, if any; the step log is cut back to it, so that no step
    appears twice, and a fresh start does not append to a stale log."""
    main_process = trainer.is_world_process_zero()
    last = last_complete_checkpoint(Path(trainer.args.output_dir), remove_partial=main_process)
    step_log = state_dir / "train_log.csv"
    if last:
        log.info("resuming from %s", last)
        if main_process:
            truncate_log(step_log, int(CHECKPOINT.match(last.name).group(1)))
    elif main_process and step_log.exists():
        step_log.unlink()
    return last
