"""transformers' Trainer with the loss of the training method that ``train.loss`` names
(SPPO's, or the paper's baselines': DPO, IPO), and the arguments it runs with."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from sppoflow.errors import UserError
from sppoflow.models.logprobs import response_logps
from sppoflow.train.data import Collator
from sppoflow.train.lora import add_lora_adapters
from sppoflow.train.methods import BASE, Batch, LossTerms, implicit_reward
from sppoflow.train.reference import load_or_compute_base_references, load_or_compute_references
from sppoflow.train.resume import (
    STAGING,
    CsvLogCallback,
    StopOnSignal,
    TrainingStopped,
    commit_checkpoint,
    prepare_state_dir,
)
from sppoflow.train.settings import OPTIMIZERS, TrainSettings

log = logging.getLogger(__name__)


class SPPOTrainer(Trainer):
    """Trainer whose loss is SPPO's regression of log-ratios onto the win-rate targets, or one
    of the paper's baselines on the winner/loser margin (DPO, IPO)."""

    def __init__(self, *args, sppo: TrainSettings, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sppo = sppo
        self.method = sppo.method()
        self.reward_beta = self.method.reward_beta(sppo)
        self.model_accepts_loss_kwargs = False  # our loss is a mean: scale it for accumulation
        self._step_metrics: dict[str, list[float]] = defaultdict(list)
        self._writing_checkpoint = False

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, written into the staging folder and then put in place
        whole (sppoflow.train.resume.commit_checkpoint)."""
        self._writing_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._writing_checkpoint = False
        staged = Path(self.args.output_dir) / STAGING / f"checkpoint-{self.state.global_step}"
        commit_checkpoint(staged, self.args.world_size, self.is_world_process_zero())

    def _get_output_dir(self, trial: object) -> str:
        """Where the Trainer writes: the staging folder while it writes a checkpoint."""
        if self._writing_checkpoint:
            return str(Path(self.args.output_dir) / STAGING)
        return super()._get_output_dir(trial)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # accelerate autocasts the model's forward only; the output layer, applied outside
        # it, must run in the same precision as in the reference pass
        with self.accelerator.autocast():
            logps = response_logps(
                model, inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"]
            )
        terms = self.objective(logps - inputs["ref_logps"], inputs)
        winner = implicit_reward(terms.logratio_winner, self.reward_beta)
        loser = implicit_reward(terms.logratio_loser, self.reward_beta)
        logged = {**terms._asdict(), "reward_margin": winner - loser}
        logged["reward_accuracy"] = (logged["reward_margin"] > 0).float()
        del logged["loss"]  # the Trainer logs it
        for name, value in logged.items():
            self._step_metrics[name].append(value.detach().float().mean().item())
        return terms.loss

    def objective(self, logratio: torch.Tensor, inputs: dict) -> LossTerms:
        """The loss of a batch of log-ratios log pi_theta(y|x) - log pi_t(y|x), with the
        terms the step log shows: the training method's (sppoflow.train.methods)."""
        if "base_logps" in inputs:
            drift = inputs["ref_logps"] - inputs["base_logps"]
        else:
            drift = torch.full_like(logratio, float("nan"))
        batch = Batch(logratio, inputs["p"], inputs["role"], inputs["q"], drift)
        return self.method.loss(batch, self.sppo)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._step_metrics:
            for name, values in self._step_metrics.items():
                logs[name] = sum(values) / len(values)
            self._step_metrics.clear()
        super().log(logs, start_time)


LAUNCHER_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def align_launcher_precision(precision: str, environ: dict[str, str] = os.environ) -> None:
    """Make train.precision the one that counts. ``accelerate launch`` passes its config's
    mixed_precision on (ACCELERATE_MIXED_PRECISION), and the Trainer and the FSDP/DeepSpeed
    plugins take it wherever the Trainer's own setting is fp32: a bf16 config would silently
    train an fp32 round in bf16 autocast."""
    wanted = LAUNCHER_PRECISION[precision]
    launched = environ.get("ACCELERATE_MIXED_PRECISION")
    if launched is not None and launched != wanted and environ.get("RANK", "0") == "0":
        log.warning(
            "the accelerate config's mixed_precision is %s, train.precision is %s: "
            "training in %s (train.precision decides)", launched, precision, precision,
        )  # fmt: skip
    if launched is not None:
        environ["ACCELERATE_MIXED_PRECISION"] = wanted


def checkpointing_argument(enabled: bool) -> dict[str, bool]:
    """Activation checkpointing under the name the installed transformers takes: it became
    ``activation_checkpointing`` in 5.2x; 5.17 (on GPU images, for one) only knows
    ``gradient_checkpointing``."""
    names = {field.name for field in dataclasses.fields(TrainingArguments)}
    if "activation_checkpointing" in names:
        return {"activation_checkpointing": enabled}
    return {"gradient_checkpointing": enabled}


def training_arguments(
    settings: TrainSettings,
    state_dir: Path,
    device: torch.device,
    precision: str,
    report_to: list[str] | None = None,
    run_name: str | None = None,
) -> TrainingArguments:
    """Trainer arguments; creating them also sets up the process group under accelerate."""
    align_launcher_precision(precision)
    args = TrainingArguments(
        output_dir=str(state_dir / "checkpoints"),
        per_device_train_batch_size=settings.batch_size,
        num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of all steps
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        optim=OPTIMIZERS[settings.optimizer],
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **checkpointing_argument(settings.gradient_checkpointing),
        logging_steps=1,
        save_strategy="steps" if settings.checkpoint_steps else "no",
        save_steps=settings.checkpoint_steps or 500,
        save_total_limit=None,  # old checkpoints are removed once a new one is in place
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=device.type == "cpu",
        remove_unused_columns=False,
        push_to_hub=False,  # nothing ever leaves the machine
        report_to=report_to or "none",
        run_name=run_name,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
    )
    args.gradient_accumulation_steps = settings.accumulation_steps(args.world_size)
    return args


def global_batch_size(args: TrainingArguments, settings: TrainSettings) -> int:
    return settings.batch_size * args.gradient_accumulation_steps * args.world_size


def build_trainer(
    model,
    tokenizer,
    examples: list[dict],
    settings: TrainSettings,
    state_dir: Path,
    args: TrainingArguments,
    precision: str,
    stop: StopOnSignal,
    run_id: str | None,
    models: tuple[Path, Path] | None = None,
) -> SPPOTrainer:
    """The state folder, the reference log-probabilities and the trainer over the policy.
    ``models``: the folders of the policy and of the base model, for a method that reads the
    base model's log-probabilities."""
    with args.main_process_first(local=False, desc="preparing the state folder"):
        if args.process_index == 0:
            if run_id is not None:
                prepare_state_dir(state_dir, run_id)
            state_dir.mkdir(parents=True, exist_ok=True)
    for module in model.modules():  # the targets assume deterministic log-probabilities
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.config.use_cache = False
    collator = Collator(tokenizer.pad_token_id)
    load_or_compute_references(
        model, examples, collator, args, precision, state_dir / "reference_logps.json"
    )
    if BASE in settings.method().references:
        if models is None:
            raise UserError(f"train.loss={settings.loss} needs the base model (--base-model)")
        policy_dir, base_dir = models
        load_or_compute_base_references(
            base_dir, policy_dir, examples, collator, args, precision,
            state_dir / "base_logps.json",
        )  # fmt: skip
    if stop.agreed():  # signalled during the reference pass: that is saved, training not begun
        raise TrainingStopped(stop.received, 0, 0, None)
    if settings.lora:
        model = add_lora_adapters(model, settings)
    return SPPOTrainer(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=Collator(tokenizer.pad_token_id),  # its own: it counts training's padding
        processing_class=tokenizer,
        callbacks=[CsvLogCallback(state_dir / "train_log.csv"), stop],
        sppo=settings,
    )
