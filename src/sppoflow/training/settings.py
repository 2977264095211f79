"""The train stage's settings, checked; importing this module does not import torch."""

from __future__ import annotations

from dataclasses import dataclass

from sppoflow.cli import declared
from sppoflow.errors import UserError, check_choice
from sppoflow.tracking import REPORT_TO, REPORTERS

# The losses' names live here rather than in sppoflow.loss, which imports torch.
SPPO_LOSSES = ("sppo", "sppo_single", "sppo_hard")
MARGIN_LOSSES = ("dpo", "ipo")
LOSSES = SPPO_LOSSES + MARGIN_LOSSES

TRAIN_ON = ("winner_loser", "all")
OPTIMIZERS = {"rmsprop": "rmsprop", "adamw": "adamw_torch"}
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")


def lora_flag_names(lora: dict) -> dict:
    """Config section train.lora as TrainSettings' fields: ``enabled`` is ``lora``, every
    other key ``lora_<key>``."""
    return {("lora" if k == "enabled" else f"lora_{k}"): v for k, v in lora.items()}


@dataclass
class TrainSettings:
    loss: str = declared("train", "loss")
    train_on: str = declared("train", "train_on")
    eta: float = declared("train", "eta")
    dpo_beta: float | None = declared("train", "dpo_beta")
    ipo_tau: float | None = declared("train", "ipo_tau")
    optimizer: str = declared("train", "optimizer")
    learning_rate: float = declared("train", "learning_rate")
    lr_scheduler: str = declared("train", "lr_scheduler")
    warmup_ratio: float = declared("train", "warmup_ratio")
    weight_decay: float = declared("train", "weight_decay")
    max_grad_norm: float = declared("train", "max_grad_norm")
    epochs: float = declared("train", "epochs")
    max_steps: int | None = declared("train", "max_steps")
    batch_size: int = declared("train", "batch_size")
    gradient_accumulation_steps: int = declared("train", "gradient_accumulation_steps")
    global_batch_size: int | None = declared("train", "global_batch_size")
    max_length: int = declared("train", "max_length")
    max_prompt_length: int = declared("train", "max_prompt_length")
    gradient_checkpointing: bool = declared("train", "gradient_checkpointing")
    precision: str = declared("train", "precision")
    save_dtype: str = declared("train", "save_dtype")
    checkpoint_steps: int = declared("train", "checkpoint_steps")
    report_to: list[str] = declared("train", "report_to", listed=True, choices=REPORT_TO)  # noqa: RUF009 (a default_factory field)
    seed: int = declared("train", "seed")
    device: str = declared("train", "device")
    lora: bool = declared("train", "lora", "enabled")
    lora_r: int = declared("train", "lora", "r")
    lora_alpha: float = declared("train", "lora", "alpha")
    lora_dropout: float = declared("train", "lora", "dropout")
    lora_target_modules: list[str] = declared("train", "lora", "target_modules")  # noqa: RUF009 (a default_factory field)

    def resolved_eta(self) -> float:
        if self.loss in MARGIN_LOSSES:
            return float("nan")  # DPO and IPO have no eta
        if self.eta <= 0:
            raise UserError(f"train.eta must be positive, got {self.eta}")
        return self.eta

    def check(self) -> None:
        check_choice("train.loss", self.loss, LOSSES)
        check_choice("train.train_on", self.train_on, TRAIN_ON)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.lr_scheduler", self.lr_scheduler, SCHEDULERS)
        check_choice("train.precision", self.precision, PRECISIONS)
        check_choice("train.save_dtype", self.save_dtype, SAVE_DTYPES)
        if self.train_on == "all" and self.loss != "sppo":
            raise UserError(
                f"train.train_on=all trains SPPO's general objective: set train.loss=sppo "
                f"(not {self.loss})"
            )
        if self.max_prompt_length >= self.max_length:
            raise UserError("train.max_prompt_length must be smaller than train.max_length")
        self.resolved_eta()
        self.reward_beta()
        self.reporters()

    def reward_beta(self) -> float:
        """The scale of the implicit reward beta * l_y in the logs: DPO's beta, IPO's tau (as
        in TRL's IPO logs), 1/eta for SPPO."""
        if self.loss == "dpo":
            if self.dpo_beta is None or self.dpo_beta <= 0:
                raise UserError(
                    "train.loss=dpo needs train.dpo_beta > 0 (DPO's beta; 0.1 is common)"
                )
            return self.dpo_beta
        if self.loss == "ipo":
            if self.ipo_tau is None or self.ipo_tau <= 0:
                raise UserError("train.loss=ipo needs train.ipo_tau > 0 (target margin 1/(2 tau))")
            return self.ipo_tau
        return 1.0 / self.resolved_eta()

    def objective(self) -> str:
        """The loss and its one parameter, as the logs name them."""
        if self.loss == "dpo":
            return f"dpo, beta {self.dpo_beta:g}"
        if self.loss == "ipo":
            return f"ipo, tau {self.ipo_tau:g}"
        return f"{self.loss}, eta {self.resolved_eta():g}"

    def reporters(self) -> list[str]:
        """train.report_to as a list (one value may be given as a plain string), checked."""
        values = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to)
        for value in values:
            check_choice("train.report_to", value, REPORT_TO)
        if len(values) != 1 and not set(values) <= set(REPORTERS):
            raise UserError(
                f"train.report_to: {', '.join(values)}: auto and none cannot be combined"
            )
        return values

    def accumulation_steps(self, processes: int) -> int:
        """Micro-batches per optimizer step: from global_batch_size when it is set."""
        if self.global_batch_size is None:
            return self.gradient_accumulation_steps
        per_step = self.batch_size * processes
        if self.global_batch_size % per_step:
            raise UserError(
                f"train.global_batch_size={self.global_batch_size} is not a multiple of "
                f"train.batch_size x processes = {self.batch_size} x {processes}"
            )
        return self.global_batch_size // per_step
