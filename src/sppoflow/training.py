"""The train stage: fit pi_theta to the round's preferences, starting from its policy pi_t.

The objective is SPPO's (or, for the paper's baselines, DPO's or IPO's; ``sppoflow.loss``).

Built on transformers' Trainer, so mixed precision, gradient accumulation, checkpointing,
resume and multi-GPU launch (``accelerate launch``) come from it. The reference pi_t is the
model before the first step: its log-probabilities are computed once, before training, so no
second copy of the model sits in memory while training.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from sppoflow.chat import encode_prompts
from sppoflow.cli import setting
from sppoflow.devices import bf16_supported, resolve_device
from sppoflow.errors import UserError, check_choice
from sppoflow.logprobs import response_logps
from sppoflow.lora import add_lora_adapters, save_merged
from sppoflow.loss import (
    LOSSES,
    MARGIN_LOSSES,
    dpo_loss,
    implicit_reward,
    ipo_loss,
    pair_targets,
    sppo_general_loss,
    sppo_pair_loss,
)
from sppoflow.models import cast_saved_weights, disk_dtype, dtype_name, folder_dtype
from sppoflow.provenance import write_to_folder as record_provenance
from sppoflow.run_state import keep_for_run
from sppoflow.safe_loading import SOURCE_RECORD
from sppoflow.tables import write_atomically, write_text_atomically
from sppoflow.throughput import log_rate, mfu
from sppoflow.tracking import (
    REPORT_TO,
    REPORTERS,
    environment,
    prepare_tracking_dir,
    report_targets,
    tracking_environment,
)
from sppoflow.versions import package_versions

log = logging.getLogger(__name__)

PAIR_MODES = ("winner_loser", "all")
OPTIMIZERS = {"rmsprop": "rmsprop", "adamw": "adamw_torch"}
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")
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


# -- data ------------------------------------------------------------------------------------


def build_examples(
    tokenizer,
    samples: pd.DataFrame,
    pairs: pd.DataFrame,
    win_rates: pd.DataFrame,
    settings: TrainSettings,
    system_prompt: str | None = None,
) -> list[dict]:
    """One example per prompt: its (truncated) prompt ids and the sequences it trains.

    winner_loser: sequences [w, l] with their win rates and q; all: every response with its
    win rate, the winner and loser marked (role +1 / -1) for logging.
    """
    ids = {
        (r.prompt_id, r.response_idx): list(r.response_token_ids)
        for r in samples.itertuples(index=False)
    }
    if settings.pairs == "winner_loser":
        groups = [
            (
                r.prompt_id,
                r.prompt,
                [(r.winner_idx, r.p_winner, 1), (r.loser_idx, r.p_loser, -1)],
                r.q,
            )
            for r in pairs.itertuples(index=False)
        ]
    else:
        trained = set(pairs["prompt_id"])  # prompts with a preference
        prompt_text = samples.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
        groups = []
        for pid, group in win_rates[win_rates["prompt_id"].isin(trained)].groupby("prompt_id"):
            seqs = [
                (r.response_idx, r.win_rate, 1 if r.is_winner else -1 if r.is_loser else 0)
                for r in group.itertuples(index=False)
            ]
            groups.append((pid, prompt_text[pid], seqs, float("nan")))
    if not groups:
        raise UserError("no training pairs: every prompt of this round had no preference")
    empty = [key for key, token_ids in ids.items() if not token_ids]
    if empty:
        raise UserError(
            f"samples: {len(empty)} response(s) have no tokens, not even a stop token (first: "
            f"prompt {empty[0][0]}, response {empty[0][1]}): re-run the sample stage"
        )
    prompt_ids = encode_prompts(tokenizer, [g[1] for g in groups], system_prompt)
    examples = []
    cut_prompts = cut_responses = 0
    for (pid, _, seqs, q), prompt in zip(groups, prompt_ids, strict=True):
        cut_prompts += len(prompt) > settings.max_prompt_length
        prompt = prompt[-settings.max_prompt_length :]  # keep the end, where the question is
        budget = settings.max_length - len(prompt)
        cut_responses += sum(len(ids[(pid, idx)]) > budget for idx, _, _ in seqs)
        examples.append(
            {
                "prompt_id": pid,
                "prompt_ids": prompt,
                "response_ids": [ids[(pid, idx)][:budget] for idx, _, _ in seqs],
                "p": [float(p) for _, p, _ in seqs],
                "role": [role for _, _, role in seqs],
                "q": float(q),
            }
        )
    if cut_prompts or cut_responses:
        log.warning(
            "%d of %d prompts were longer than train.max_prompt_length=%d tokens and lost their "
            "start; %d responses were cut to fit train.max_length=%d",
            cut_prompts, len(examples), settings.max_prompt_length, cut_responses,
            settings.max_length,
        )  # fmt: skip
    return examples


class Collator:
    """Flatten each example's sequences into one right-padded batch."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows, response_masks = [], []
        for ex in examples:
            for response in ex["response_ids"]:
                rows.append(ex["prompt_ids"] + response)
                response_masks.append([0] * len(ex["prompt_ids"]) + [1] * len(response))
        width = max(len(r) for r in rows)
        batch = {
            "input_ids": torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
            "response_mask": torch.tensor([m + [0] * (width - len(m)) for m in response_masks]),
            "p": torch.tensor([p for ex in examples for p in ex["p"]], dtype=torch.float32),
            "role": torch.tensor([r for ex in examples for r in ex["role"]]),
            "q": torch.tensor([ex["q"] for ex in examples for _ in ex["p"]], dtype=torch.float32),
        }
        if "ref_logps" in examples[0]:
            batch["ref_logps"] = torch.tensor(
                [x for ex in examples for x in ex["ref_logps"]], dtype=torch.float32
            )
        return batch


def autocast_context(device: torch.device, precision: str):
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def reference_logps(
    model, examples: list[dict], collator: Collator, batch_size: int, precision: str
) -> list[list[float]]:
    """log pi_t(y | x) of every training sequence, under the precision training uses."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = collator(chunk)
        with autocast_context(device, precision):
            logps = response_logps(
                model,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["response_mask"].to(device),
            ).tolist()
        for ex in chunk:
            out.append(logps[: len(ex["response_ids"])])
            logps = logps[len(ex["response_ids"]) :]
    model.train(was_training)
    return out


# -- trainer ---------------------------------------------------------------------------------


class SPPOTrainer(Trainer):
    """Trainer whose loss is SPPO's regression of log-ratios onto the win-rate targets, or one
    of the paper's baselines on the winner/loser margin (DPO, IPO)."""

    def __init__(self, *args, sppo: TrainSettings, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sppo = sppo
        self.eta = sppo.resolved_eta()
        self.reward_beta = sppo.reward_beta()
        self.model_accepts_loss_kwargs = False  # our loss is a mean: scale it for accumulation
        self._step_metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # accelerate autocasts the model's forward only; the output layer, applied outside
        # it, must run in the same precision as in the reference pass
        with self.accelerator.autocast():
            logps = response_logps(
                model, inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"]
            )
        logratio = logps - inputs["ref_logps"]
        loss, l_w, l_l, t_w, t_l, t_margin = self.objective(logratio, inputs)
        margin = implicit_reward(l_w, self.reward_beta) - implicit_reward(l_l, self.reward_beta)
        for name, value in (
            ("logratio_winner", l_w),
            ("logratio_loser", l_l),
            ("target_winner", t_w),
            ("target_loser", t_l),
            ("target_margin", t_margin),
            ("reward_margin", margin),
            ("reward_accuracy", (margin > 0).float()),
        ):
            self._step_metrics[name].append(value.detach().float().mean().item())
        return loss

    def objective(self, logratio: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, ...]:
        """The loss, the winners' and losers' log-ratios, and what the loss pulls them
        towards (NaN where it pulls a margin, not each log-ratio; DPO has no target)."""
        p, role, q = inputs["p"], inputs["role"], inputs["q"]
        loss_name = self.sppo.loss
        if self.sppo.pairs == "all":
            targets = self.eta * (p - 0.5)
            l_w, l_l = logratio[role == 1], logratio[role == -1]
            t_w, t_l = targets[role == 1], targets[role == -1]
            return sppo_general_loss(logratio, p, self.eta).mean(), l_w, l_l, t_w, t_l, t_w - t_l
        l_w, l_l = logratio[0::2], logratio[1::2]
        nan = torch.full_like(l_w, float("nan"))
        if loss_name == "dpo":
            return dpo_loss(l_w, l_l, self.sppo.beta).mean(), l_w, l_l, nan, nan, nan
        if loss_name == "ipo":
            target = torch.full_like(l_w, 1.0 / (2.0 * self.sppo.tau))
            return ipo_loss(l_w, l_l, self.sppo.tau).mean(), l_w, l_l, nan, nan, target
        p_w, p_l, q_pair = p[0::2], p[1::2], q[0::2]
        loss = sppo_pair_loss(l_w, l_l, p_w, p_l, q_pair, self.eta, loss_name).mean()
        t_w, t_l = pair_targets(p_w, p_l, q_pair, self.eta, loss_name)
        return loss, l_w, l_l, t_w, t_l, t_w - t_l

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._step_metrics:
            for name, values in self._step_metrics.items():
                logs[name] = sum(values) / len(values)
            self._step_metrics.clear()
        super().log(logs, start_time)


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


def shard_reference_logps(
    model, examples: list[dict], collator: Collator, args: TrainingArguments, precision: str
) -> list[list[float]]:
    """Reference log-probabilities, each process computing every world_size-th example.

    The pass runs on the plain model before the Trainer wraps it (DDP, FSDP or DeepSpeed),
    so it needs the model to fit on one device in the training precision.
    """
    rank, world = args.process_index, args.world_size
    model.to(args.device)
    mine = reference_logps(
        model, examples[rank::world], collator, args.per_device_train_batch_size, precision
    )
    if world == 1:
        return mine
    shards: list[list[list[float]] | None] = [None] * world
    torch.distributed.all_gather_object(shards, mine)
    refs: list[list[float]] = [[] for _ in examples]
    for shard_rank, shard in enumerate(shards):
        for offset, values in enumerate(shard):
            refs[shard_rank + offset * world] = values
    return refs


def load_or_compute_references(
    model, examples, collator, args: TrainingArguments, precision: str, path: Path
) -> None:
    """Attach ``ref_logps`` to every example; kept in the state folder for a resume."""
    if path.exists():
        refs = json.loads(path.read_text())
    else:
        refs = shard_reference_logps(model, examples, collator, args, precision)
        if args.process_index == 0:
            write_text_atomically(path, json.dumps(refs))
    if len(refs) != len(examples):
        raise UserError(f"{path} holds {len(refs)} examples, not {len(examples)}: delete it")
    for example, ref in zip(examples, refs, strict=True):
        example["ref_logps"] = ref


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
        save_total_limit=2,
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
) -> dict:
    """Train, publish the model to ``out_dir`` and the step log to ``log_path``.

    Runs as one process or as each of the processes ``accelerate launch`` starts; the
    reference pass is shared out between them and the global batch stays the same. With a
    ``run_id`` the state folder is kept for a resume only if it belongs to the same run.
    A SIGTERM or SIGUSR1 saves a checkpoint and raises :class:`TrainingStopped`.
    The step metrics also go to the trackers of train.report_to, their files to
    ``tracking_dir`` (default: ``tracking`` beside ``out_dir``), whose name names the run;
    ``run_group`` groups runs in W&B; ``run_name`` names the run (default: the folder's name).
    """
    settings.check()
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    check_saved_precision(settings, precision)
    targets = report_targets(settings.reporters())
    tracking_dir = Path(tracking_dir) if tracking_dir else Path(out_dir).parent / "tracking"
    run_name = run_name or tracking_dir.name
    args = training_arguments(settings, state_dir, device, precision, targets, run_name)
    batches = math.ceil(len(examples) / global_batch_size(args, settings))
    check_schedule(math.ceil(batches * settings.epochs), settings)
    tracking_env = tracking_environment(targets, tracking_dir, run_group)
    parameters = sum(p.numel() for p in model.parameters())  # before sharding hides them
    with environment(tracking_env), StopOnSignal(args.world_size, args.device) as stop:
        trainer = build_trainer(
            model, tokenizer, examples, settings, state_dir, args, precision, stop, run_id
        )
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
            examples, settings, result, trainer.state.max_steps, resumed_at, parameters, args
        )
        publish(trainer, settings, result, state_dir, out_dir, log_path, record)
    return {"steps": result.global_step, "train_loss": result.training_loss}


def log_training_throughput(
    examples: list[dict],
    settings: TrainSettings,
    result,
    max_steps: int,
    resumed_at: int | None,
    parameters: int,
    args: TrainingArguments,
) -> None:
    """Log trained tokens/s over this run's optimizer steps (the reference pass and the
    model's load not counted), and MFU where the device's peak is known. After a resume it
    counts the steps since the resume. Kept out of the model folder, whose files are the same
    bit for bit on a rerun."""
    if args.process_index != 0:
        return
    per_epoch = sum(
        len(ex["prompt_ids"]) + len(response) for ex in examples for response in ex["response_ids"]
    )
    steps = result.global_step - (resumed_at or 0)
    tokens = round(per_epoch * settings.epochs * steps / max(max_steps, 1))
    seconds = float(result.metrics.get("train_runtime", 0.0))
    utilisation = mfu(parameters, tokens, seconds, args.device, args.world_size)
    what = f"{steps} steps on {args.world_size} process(es), " + (
        f"MFU {utilisation:.1%}" if utilisation is not None else "MFU unknown on this device"
    )
    log_rate("train", tokens, "trained tokens", seconds, what)


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


def global_batch_size(args: TrainingArguments, settings: TrainSettings) -> int:
    return settings.batch_size * args.gradient_accumulation_steps * args.world_size


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
    partial = out_dir.with_name(out_dir.name + ".partial")
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
    shutil.copyfile(state_dir / "train_log.csv", log_path)
    summary = {
        "settings": asdict(settings),
        "objective": settings.objective(),
        "eta": settings.resolved_eta() if settings.loss not in MARGIN_LOSSES else None,
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
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    shutil.rmtree(state_dir)


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
) -> SPPOTrainer:
    """The state folder, the reference log-probabilities and the trainer over the policy."""
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
    if stop.agreed():  # signalled during the reference pass: that is saved, training not begun
        raise TrainingStopped(stop.received, 0, 0, None)
    if settings.lora:
        model = add_lora_adapters(model, settings)
    return SPPOTrainer(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[CsvLogCallback(state_dir / "train_log.csv"), MarkCompleteCheckpoints(), stop],
        sppo=settings,
    )


def resume_point(trainer: SPPOTrainer, state_dir: Path) -> Path | None:
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
