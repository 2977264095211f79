"""The train stage's settings, checked; importing this module does not import torch."""

from __future__ import annotations

from sppoflow.errors import UserError, check_choice
from sppoflow.schema import config_section, declared
from sppoflow.train.methods import REGISTRY, TRAIN_ON, TrainingMethod, method_named
from sppoflow.train.tracking import REPORT_TO, REPORTERS

OPTIMIZERS = {"rmsprop": "rmsprop", "adamw": "adamw_torch"}
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")


@config_section("train")
class TrainSettings:
    loss: str = declared()
    train_on: str = declared()
    eta: float = declared()
    dpo_beta: float | None = declared()
    dpo_label_smoothing: float = declared()
    ipo_tau: float | None = declared()
    inpo_eta: float | None = declared()
    inpo_tau: float | None = declared()
    optimizer: str = declared()
    learning_rate: float = declared()
    lr_scheduler: str = declared()
    warmup_ratio: float = declared()
    weight_decay: float = declared()
    max_grad_norm: float = declared()
    epochs: float = declared()
    max_steps: int | None = declared()
    batch_size: int = declared()
    gradient_accumulation_steps: int = declared()
    global_batch_size: int | None = declared()
    max_length: int = declared()
    max_prompt_length: int = declared()
    gradient_checkpointing: bool = declared()
    precision: str = declared()
    save_dtype: str = declared()
    checkpoint_steps: int = declared()
    report_to: list[str] = declared(listed=True, choices=REPORT_TO)
    seed: int = declared()
    device: str = declared()
    lora: bool = declared()
    lora_r: int = declared()
    lora_alpha: float = declared()
    lora_dropout: float = declared()
    lora_target_modules: list[str] = declared()

    def method(self) -> TrainingMethod:
        """The training method ``loss`` names (sppoflow.train.methods)."""
        return method_named(self.loss)

    def check(self) -> None:
        method = self.method()
        check_choice("train.train_on", self.train_on, TRAIN_ON)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.lr_scheduler", self.lr_scheduler, SCHEDULERS)
        check_choice("train.precision", self.precision, PRECISIONS)
        check_choice("train.save_dtype", self.save_dtype, SAVE_DTYPES)
        if self.train_on not in method.data:
            able = " or ".join(m.name for m in REGISTRY.values() if self.train_on in m.data)
            raise UserError(
                f"train.train_on={self.train_on}: train.loss={self.loss} cannot train on it; "
                f"set train.loss={able}"
            )
        if self.max_prompt_length >= self.max_length:
            raise UserError("train.max_prompt_length must be smaller than train.max_length")
        method.check(self)
        self.reporters()

    def objective(self) -> str:
        """The loss and its parameters, as the logs name them."""
        return self.method().objective(self)

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
