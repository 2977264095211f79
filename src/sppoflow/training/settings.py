"""The train stage's settings, checked; importing this module does not import torch."""

from __future__ import annotations

from dataclasses import dataclass

from sppoflow.cli import setting
from sppoflow.errors import UserError, check_choice
from sppoflow.tracking import REPORT_TO, REPORTERS

# The losses' names live here rather than in sppoflow.loss, which imports torch.
SPPO_LOSSES = ("sppo", "sppo_single", "sppo_hard")
MARGIN_LOSSES = ("dpo", "ipo")
LOSSES = SPPO_LOSSES + MARGIN_LOSSES

PAIR_MODES = ("winner_loser", "all")
OPTIMIZERS = {"rmsprop": "rmsprop", "adamw": "adamw_torch"}
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class TrainSettings:
    loss: str = setting("sppo", "SPPO variant, or a baseline: dpo, ipo", LOSSES)
    pairs: str = setting(
        "winner_loser", "train the winner/loser pair or all K responses", PAIR_MODES
    )
    eta: float = setting(1000.0, "eta of the SPPO target eta * (P - 1/2); beta = 1/eta")
    beta: float | None = setting(
        None, "SPPO: beta = 1/eta, when set it fixes eta; dpo: DPO's beta (required)"
    )
    tau: float | None = setting(None, "ipo: IPO's tau, target margin 1/(2 tau) (required)")
    optimizer: str = setting("rmsprop", "optimizer", list(OPTIMIZERS))
    learning_rate: float = setting(5e-7, "peak learning rate")
    lr_scheduler: str = setting("linear", "learning-rate schedule after warmup", SCHEDULERS)
    warmup_ratio: float = setting(0.1, "share of the steps spent warming up")
    weight_decay: float = setting(0.0, "weight decay (AdamW)")
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 disables it")
    epochs: float = setting(1.0, "passes over the round's data")
    batch_size: int = setting(8, "prompts per device per step")
    gradient_accumulation_steps: int = setting(1, "micro-batches per optimizer step")
    global_batch_size: int | None = setting(
        None, "prompts per optimizer step over all processes; sets the accumulation steps"
    )
    max_length: int = setting(1024, "longest prompt + response, in tokens")
    max_prompt_length: int = setting(512, "longest prompt (cut from the left), in tokens")
    gradient_checkpointing: bool = setting(False, "recompute activations to save memory")
    precision: str = setting(
        "auto", "auto: bf16 autocast over fp32 weights where supported", PRECISIONS
    )
    save_dtype: str = setting(
        "float32",
        "precision of the trained model on disk; auto: that of the round's starting model",
        SAVE_DTYPES,
    )
    checkpoint_steps: int = setting(0, "save a resumable checkpoint every N steps; 0: never")
    report_to: list[str] = setting(  # noqa: RUF009 (a default_factory field)
        ["auto"],
        "where the step metrics go: auto (tensorboard where installed), none, or tensorboard "
        "and/or wandb",
        REPORT_TO,
    )
    seed: int = setting(42, "seed of shuffling and initialisation")
    device: str = setting("auto", "auto, cpu or cuda (multi-GPU: use accelerate launch)")
    lora: bool = setting(False, "train LoRA adapters (PEFT) only; merged into the saved model")
    lora_r: int = setting(16, "LoRA rank")
    lora_alpha: float = setting(32.0, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = setting(0.0, "dropout on the adapters' input")
    lora_target_modules: list[str] = setting(  # noqa: RUF009 (a default_factory field)
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "linear layers that get adapters",
    )

    def resolved_eta(self) -> float:
        if self.loss in MARGIN_LOSSES:
            return float("nan")  # DPO and IPO have no eta
        if self.beta is not None:
            if self.beta <= 0:
                raise UserError(f"train.beta must be positive, got {self.beta}")
            return 1.0 / self.beta
        if self.eta <= 0:
            raise UserError(f"train.eta must be positive, got {self.eta}")
        return self.eta

    def check(self) -> None:
        check_choice("train.loss", self.loss, LOSSES)
        check_choice("train.pairs", self.pairs, PAIR_MODES)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.lr_scheduler", self.lr_scheduler, SCHEDULERS)
        check_choice("train.precision", self.precision, PRECISIONS)
        check_choice("train.save_dtype", self.save_dtype, SAVE_DTYPES)
        if self.pairs == "all" and self.loss != "sppo":
            raise UserError(
                f"train.pairs=all trains SPPO's general objective: set train.loss=sppo "
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
            if self.beta is None or self.beta <= 0:
                raise UserError("train.loss=dpo needs train.beta > 0 (DPO's beta; 0.1 is common)")
            return self.beta
        if self.loss == "ipo":
            if self.tau is None or self.tau <= 0:
                raise UserError("train.loss=ipo needs train.tau > 0 (target margin 1/(2 tau))")
            return self.tau
        return 1.0 / self.resolved_eta()

    def objective(self) -> str:
        """The loss and its one parameter, as the logs name them."""
        if self.loss == "dpo":
            return f"dpo, beta {self.beta:g}"
        if self.loss == "ipo":
            return f"ipo, tau {self.tau:g}"
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
