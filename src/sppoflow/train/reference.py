"""The reference log-probabilities of every training sequence: log pi_t(y | x) under the
round's starting policy, and for a method anchored to the base model log pi_ref(y | x) under
round 0's. Each is computed once, before the first step, shared out between the processes,
and kept in the state folder for a resume; the base model is loaded for its pass and freed
before training, so training never holds more than the policy."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import TrainingArguments

from sppoflow.atomic import write_text_atomically
from sppoflow.errors import UserError
from sppoflow.models.loading import load_policy
from sppoflow.models.logprobs import response_logps
from sppoflow.runtime.flops import forward_flops_per_token, linear_shapes, sequence_tokens
from sppoflow.runtime.peak import precision_dtype
from sppoflow.runtime.throughput import log_compute_on, log_rate
from sppoflow.train.data import Collator

log = logging.getLogger(__name__)


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


def log_pass(
    work: str, model, examples: list[dict], seconds: float, args: TrainingArguments, precision: str
) -> None:
    """The pass's rate and arithmetic over every process (process 0's time, the others'
    shares being the same size)."""
    tokens = sequence_tokens(examples)
    log_rate(work, tokens, "tokens", seconds, f"forward passes on {args.world_size} process(es)")
    shapes = linear_shapes(model)
    flops = forward_flops_per_token(shapes) * tokens
    dtype = precision_dtype(precision)
    log_compute_on(work, flops, seconds, args.device, dtype, shapes, args.world_size)


def shard_reference_logps(
    model,
    examples: list[dict],
    collator: Collator,
    args: TrainingArguments,
    precision: str,
    work: str = "reference",
) -> list[list[float]]:
    """Reference log-probabilities, each process computing every world_size-th example.

    The pass runs on the plain model before the Trainer wraps it (DDP, FSDP or DeepSpeed),
    so it needs the model to fit on one device in the training precision.
    """
    rank, world = args.process_index, args.world_size
    model.to(args.device)
    start = time.perf_counter()
    mine = reference_logps(
        model, examples[rank::world], collator, args.per_device_train_batch_size, precision
    )
    if rank == 0:
        log_pass(work, model, examples, time.perf_counter() - start, args, precision)
    if world == 1:
        return mine
    shards: list[list[list[float]] | None] = [None] * world
    torch.distributed.all_gather_object(shards, mine)
    refs: list[list[float]] = [[] for _ in examples]
    for shard_rank, shard in enumerate(shards):
        for offset, values in enumerate(shard):
            refs[shard_rank + offset * world] = values
    return refs


def stored_references(
    path: Path,
    examples: list[dict],
    key: str,
    compute: Callable[[], list[list[float]]],
    main_process: bool,
) -> None:
    """Attach ``key`` (one value per sequence) to every example: read from ``path`` when a
    run before this one computed it, else computed and kept there (by the first process)."""
    if path.exists():
        refs = json.loads(path.read_text())
    else:
        refs = compute()
        if main_process:
            write_text_atomically(path, json.dumps(refs))
    if len(refs) != len(examples):
        raise UserError(f"{path} holds {len(refs)} examples, not {len(examples)}: delete it")
    for example, ref in zip(examples, refs, strict=True):
        example[key] = ref


def load_or_compute_references(
    model, examples, collator, args: TrainingArguments, precision: str, path: Path
) -> None:
    """Attach ``ref_logps``, log pi_t of every sequence; kept in the state folder."""

    def compute() -> list[list[float]]:
        return shard_reference_logps(model, examples, collator, args, precision)

    stored_references(path, examples, "ref_logps", compute, args.process_index == 0)


def load_or_compute_base_references(
    base_dir: Path,
    policy_dir: Path,
    examples: list[dict],
    collator: Collator,
    args: TrainingArguments,
    precision: str,
    path: Path,
) -> None:
    """Attach ``base_logps``, log pi_ref of every sequence under the base model in
    ``base_dir``; kept in the state folder. Where the round starts from the base model
    (round 1), they are the policy's own and nothing is loaded."""

    def compute() -> list[list[float]]:
        if Path(base_dir).resolve() == Path(policy_dir).resolve():
            return [list(example["ref_logps"]) for example in examples]
        base, _ = load_policy(base_dir, device=args.device)
        size = base.get_input_embeddings().num_embeddings
        largest = max(largest_token_id(example) for example in examples)
        if largest >= size:
            raise UserError(
                f"the base model {base_dir} has {size} token embeddings and this round's "
                f"sequences use id {largest}: it is not the base of this policy"
            )
        log.info("log-probabilities of the round's sequences under the base model %s", base_dir)
        try:
            return shard_reference_logps(
                base, examples, collator, args, precision, "base_reference"
            )
        finally:
            del base
            gc.collect()
            if args.device.type == "cuda":
                torch.cuda.empty_cache()

    stored_references(path, examples, "base_logps", compute, args.process_index == 0)


def largest_token_id(example: dict) -> int:
    responses = (i for response in example["response_ids"] for i in response)
    return max([*example["prompt_ids"], *responses])
