"""log pi_t(y | x) of every training sequence: computed once, before the first step, shared
out between the processes, and kept in the state folder for a resume."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from transformers import TrainingArguments

from sppoflow.atomic import write_text_atomically
from sppoflow.errors import UserError
from sppoflow.models.logprobs import response_logps
from sppoflow.train.data import Collator


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
