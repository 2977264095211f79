"""One training round: ``train_round`` reads the round's tables and the starting policy and
calls ``train``, which plans the run, trains (resuming where a checkpoint is) and publishes."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainingArguments

from sppoflow.errors import UserError
from sppoflow.models.loading import dtype_name, load_policy
from sppoflow.runtime.devices import bf16_supported, resolve_device
from sppoflow.runtime.flops import (
    TRAINING_PASSES,
    Shapes,
    forward_flops_per_token,
    linear_shapes,
    sequence_tokens,
)
from sppoflow.runtime.peak import precision_dtype
from sppoflow.runtime.throughput import log_compute_on, log_rate
from sppoflow.train.data import RoundTables, build_examples
from sppoflow.train.methods import BASE
from sppoflow.train.publish import check_saved_precision, publish, saved_dtype
from sppoflow.train.resume import (
    CHECKPOINT,
    StopOnSignal,
    TrainingStopped,
    fingerprint,
    resume_point,
    training_lock,
)
from sppoflow.train.settings import TrainSettings
from sppoflow.train.tracking import (
    environment,
    prepare_tracking_dir,
    report_targets,
    tracking_environment,
)
from sppoflow.train.trainer import build_trainer, global_batch_size, training_arguments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPlan:
    """What a run's settings resolve to on this machine, checked once before anything loads."""

    device: torch.device
    precision: str
    targets: list[str]  # where the step metrics go


def plan_training(settings: TrainSettings) -> TrainingPlan:
    """Check the settings and resolve them: device, precision, trackers (a tracker that is
    not installed fails here, before the model loads)."""
    settings.check()
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    check_saved_precision(settings, precision)
    return TrainingPlan(device, precision, report_targets(settings.reporters()))


def train_round(
    settings: TrainSettings,
    model_dir: Path,
    tables: RoundTables,
    out_dir: Path,
    log_path: Path,
    state_dir: Path,
    system_prompt: str | None = None,
    tracking_dir: Path | None = None,
    run_group: str | None = None,
    run_name: str | None = None,
    base_model_dir: Path | None = None,
) -> dict:
    """One round: from the policy in ``model_dir`` and the round's tables to the trained model
    in ``out_dir``. A rerun with the same inputs resumes the run's checkpoints in
    ``state_dir``; different inputs start afresh. ``base_model_dir``: round 0's model, for a
    method that reads the base model's log-probabilities (INPO)."""
    plan = plan_training(settings)
    needs_base = BASE in settings.method().references
    if needs_base and base_model_dir is None:
        raise UserError(f"train.loss={settings.loss} needs the base model (--base-model)")
    samples, pairs, win_rates = tables.read()
    models = (Path(model_dir), Path(base_model_dir)) if needs_base else None
    run_id = fingerprint(tables.paths(), settings, *(models or (Path(model_dir),)))
    # fp32 weights (precision is autocast), loaded onto this process's GPU where there is one
    model, tokenizer = load_policy(model_dir, device=process_device(settings))
    examples = build_examples(tokenizer, samples, pairs, win_rates, settings, system_prompt)
    return train(
        model,
        tokenizer,
        examples,
        settings,
        Path(state_dir),
        Path(out_dir),
        Path(log_path),
        run_id=run_id,
        tracking_dir=tracking_dir,
        run_group=run_group,
        run_name=run_name,
        plan=plan,
        models=models,
    )


def process_device(settings: TrainSettings) -> torch.device:
    """The device this training process works on: under ``accelerate launch`` each process has
    the GPU of its LOCAL_RANK."""
    device = resolve_device(settings.device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        log.warning("bf16 asked for on %s without native bf16 support: it will be slow", device)
    return precision


def check_schedule(steps: int, settings: TrainSettings) -> None:
    """Warmup takes ceil(warmup_ratio x steps) steps, the first at learning rate 0: a round
    with one optimizer step never changes the model, so it stops here with the reason; one
    that never leaves the warmup gets a warning."""
    warmup = math.ceil(settings.warmup_ratio * steps)
    if warmup == 0:
        return
    if steps <= 1:
        raise UserError(
            f"train: the round has {steps} optimizer step and it is a warmup step at learning "
            f"rate 0 (warmup_ratio {settings.warmup_ratio}): the model would not change; "
            "train more prompts per round, use a smaller global batch, or set "
            "train.warmup_ratio: 0"
        )
    if warmup >= steps:
        log.warning(
            "all %d optimizer steps are warmup steps (warmup_ratio %s): the learning rate never "
            "reaches train.learning_rate=%s",
            steps, settings.warmup_ratio, settings.learning_rate,
        )  # fmt: skip


def log_plan(
    args: TrainingArguments, settings: TrainSettings, examples: int, precision: str
) -> None:
    global_batch = global_batch_size(args, settings)
    log.info(
        "training %d prompts on %d process(es)%s, global batch %d (%d x %d accumulation "
        "x %d), %d steps per epoch, precision %s, %s%s",
        examples,
        args.world_size,
        f" ({torch.distributed.get_backend()})" if torch.distributed.is_initialized() else "",
        global_batch,
        settings.batch_size,
        args.gradient_accumulation_steps,
        args.world_size,
        math.ceil(examples / global_batch),
        precision,
        settings.objective(),
        f", LoRA r={settings.lora_r}" if settings.lora else "",
    )


def train(
    model,
    tokenizer,
    examples: list[dict],
    settings: TrainSettings,
    state_dir: Path,
    out_dir: Path,
    log_path: Path,
    run_id: str | None = None,
    tracking_dir: Path | None = None,
    run_group: str | None = None,
    run_name: str | None = None,
    plan: TrainingPlan | None = None,
    models: tuple[Path, Path] | None = None,
) -> dict:
    """Train, publish the model to ``out_dir`` and the step log to ``log_path``.

    Runs as one process or as each of the processes ``accelerate launch`` starts; the
    reference pass is shared out between them and the global batch stays the same. With a
    ``run_id`` the state folder is kept for a resume only if it belongs to the same run.
    A SIGTERM or SIGUSR1 saves a checkpoint and raises :class:`TrainingStopped`.
    The step metrics also go to the trackers of train.report_to, their files to
    ``tracking_dir`` (default: ``tracking`` beside ``out_dir``), whose name names the run;
    ``run_group`` groups runs in W&B; ``run_name`` names the run (default: the folder's name).
    ``plan`` is ``plan_training(settings)``, made here when not given. ``models``: the
    policy's folder and the base model's, for a method that reads the base model.
    """
    plan = plan or plan_training(settings)
    precision, targets = plan.precision, plan.targets
    tracking_dir = Path(tracking_dir) if tracking_dir else Path(out_dir).parent / "tracking"
    run_name = run_name or tracking_dir.name
    args = training_arguments(settings, state_dir, plan.device, precision, targets, run_name)
    batches = math.ceil(len(examples) / global_batch_size(args, settings))
    steps = math.ceil(batches * settings.epochs)
    if settings.max_steps and settings.max_steps < steps:
        args.max_steps = steps = settings.max_steps  # the schedule then ends at this step
    check_schedule(steps, settings)
    tracking_env = tracking_environment(targets, tracking_dir, run_group)
    shapes = linear_shapes(model)
    with (
        training_lock(state_dir, args.process_index == 0),
        environment(tracking_env),
        StopOnSignal(args.world_size, args.device) as stop,
    ):
        trainer = build_trainer(
            model, tokenizer, examples, settings, state_dir, args, precision, stop, run_id,
            models,
        )  # fmt: skip
        last = resume_point(trainer, state_dir)
        resumed_at = int(CHECKPOINT.match(last.name).group(1)) if last else None
        if trainer.is_world_process_zero():
            prepare_tracking_dir(tracking_dir, targets, resumed_at)
        log_plan(args, settings, len(examples), precision)
        result = trainer.train(resume_from_checkpoint=str(last) if last else None)
        if stop.stopped_at is not None and result.global_step < trainer.state.max_steps:
            checkpoint = Path(args.output_dir) / f"checkpoint-{stop.stopped_at}"
            raise TrainingStopped(
                stop.received, stop.stopped_at, trainer.state.max_steps, checkpoint
            )
        # still under the handler: a signal now must not cut the publishing short
        record = {
            "precision": precision,
            "examples": len(examples),
            "save_dtype": dtype_name(saved_dtype(settings, model)),
        }
        log_training_throughput(
            examples, settings, result, trainer.state.max_steps, resumed_at, shapes, args,
            precision,
        )  # fmt: skip
        if args.process_index == 0:
            log.info(
                "padding: %.1f%% of the training batches' token slots (a packed batch would "
                "skip them)", 100 * trainer.data_collator.padding_share,
            )  # fmt: skip
        publish(trainer, settings, result, state_dir, out_dir, log_path, record)
    return {"steps": result.global_step, "train_loss": result.training_loss}


def end_process_group() -> None:
    """Tear down this process's torch.distributed group (``accelerate launch``'s), once its
    collectives are done, before the interpreter exits. Left to the interpreter's finalization,
    gloo's worker threads may still hold tensors, and the process then dies with SIGABRT
    ("terminate called without an active exception") after its work is done, which fails the
    job: seen once, on the second of 2 CPU processes at the end of a ZeRO-3 round
    (pytorch/pytorch#179291 describes the mechanism). A no-op in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def log_training_throughput(
    examples: list[dict],
    settings: TrainSettings,
    result,
    max_steps: int,
    resumed_at: int | None,
    shapes: Shapes,
    args: TrainingArguments,
    precision: str,
) -> None:
    """Log trained tokens/s over this run's optimizer steps (the reference pass and the
    model's load not counted), and their arithmetic against the peak of the devices it ran
    on. After a resume it counts the steps since the resume. Kept out of the model folder,
    whose files are the same bit for bit on a rerun."""
    if args.process_index != 0:
        return
    per_epoch = sequence_tokens(examples)
    steps = result.global_step - (resumed_at or 0)
    tokens = round(per_epoch * settings.epochs * steps / max(max_steps, 1))
    seconds = float(result.metrics.get("train_runtime", 0.0))
    what = f"{steps} steps on {args.world_size} process(es)"
    log_rate("train", tokens, "trained tokens", seconds, what)
    flops = TRAINING_PASSES * forward_flops_per_token(shapes) * tokens
    dtype = precision_dtype(precision)
    log_compute_on("train", flops, seconds, args.device, dtype, shapes, args.world_size)
