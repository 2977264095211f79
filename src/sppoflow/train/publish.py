"""The trained model folder: its weights in train.save_dtype, its step log and
sppo_training.json, written beside the output and renamed into place when whole; then the
run's state is removed (sppoflow.atomic: whatever instant a job is killed at, the model is
whole or absent, and the state is whole or gone)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from sppoflow.atomic import copy_atomically, partial_name, remove_tree, replace_folder
from sppoflow.errors import UserError
from sppoflow.models.loading import cast_saved_weights, disk_dtype, folder_dtype
from sppoflow.models.safe_loading import SOURCE_RECORD
from sppoflow.provenance import write_to_folder as record_provenance
from sppoflow.train.lora import save_merged
from sppoflow.train.settings import TrainSettings
from sppoflow.train.trainer import SPPOTrainer, global_batch_size
from sppoflow.versions import package_versions


def check_saved_precision(settings: TrainSettings, precision: str) -> None:
    """DeepSpeed with bf16 or fp16 turns the parameters themselves into 16-bit ones (the fp32
    master copy lives in the optimizer) and saves those: an fp32 file would hold 16-bit values
    at twice the size, and the updates it was meant to keep would already be rounded away."""
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if deepspeed and precision in ("bf16", "fp16") and settings.save_dtype == "float32":
        raise UserError(
            f"train.save_dtype=float32 cannot be kept under DeepSpeed with {precision}: it saves "
            "16-bit parameters; set train.save_dtype: bfloat16 (what the authors kept), or train "
            "with config/accelerate/fsdp.yaml, which keeps fp32 weights between rounds"
        )


def saved_dtype(settings: TrainSettings, model) -> torch.dtype:
    """train.save_dtype, with ``auto`` read from the starting model's folder."""
    start = Path(getattr(model.config, "_name_or_path", "") or ".")
    default = folder_dtype(start) if (start / "config.json").is_file() else torch.float32
    return disk_dtype(settings.save_dtype, default)


def publish(
    trainer: SPPOTrainer,
    settings: TrainSettings,
    result,
    state_dir: Path,
    out_dir: Path,
    log_path: Path,
    record: dict,
) -> None:
    """Write the trained model, its step log and sppo_training.json; clear the state. The
    model folder is written beside ``out_dir`` and renamed into place when whole, so an
    interrupted save never leaves a model folder that looks finished."""
    out_dir = Path(out_dir)
    partial = partial_name(out_dir)
    if trainer.is_world_process_zero() and partial.exists():
        shutil.rmtree(partial)
    trainer.accelerator.wait_for_everyone()
    if settings.lora:
        save_merged(trainer, partial)
    else:
        trainer.save_model(str(partial))
    if not trainer.is_world_process_zero():
        return
    cast_saved_weights(partial, disk_dtype(record["save_dtype"], torch.float32))
    start = Path(getattr(trainer.model.config, "_name_or_path", "") or ".")
    if (start / SOURCE_RECORD).is_file():  # the policy's origin, and whether its code is trusted
        shutil.copyfile(start / SOURCE_RECORD, partial / SOURCE_RECORD)
    summary = {
        "settings": asdict(settings),
        "objective": settings.objective(),
        "eta": settings.eta if "eta" in (p.field for p in settings.method().parameters) else None,
        **record,
        "processes": trainer.args.world_size,
        "global_batch_size": global_batch_size(trainer.args, settings),
        "steps": result.global_step,
        # the mean of the step log, which a resume keeps whole (the trainer's own figure
        # averages the steps since the resume only)
        "train_loss": float(pd.read_csv(state_dir / "train_log.csv")["loss"].mean()),
        "versions": package_versions(),
    }
    (partial / "sppo_training.json").write_text(json.dumps(summary, indent=2) + "\n")
    record_provenance(partial)
    copy_atomically(state_dir / "train_log.csv", log_path)
    replace_folder(partial, out_dir)
    remove_tree(state_dir)
