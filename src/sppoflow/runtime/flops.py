"""The arithmetic of a stage's work, counted from the model's shapes.

A linear layer of in x out weights does 2 in out FLOPs for every token it sees. A model's
forward pass costs ``forward_flops_per_token`` per token: every linear layer once (the output
head included, embedding lookups left out), attention's own quadratic part left out as
model-FLOPs-utilisation figures do (a few percent at these lengths). A training step costs
3 forward passes per trained token (the backward pass twice the forward), recomputation by
gradient checkpointing not counted: the useful arithmetic, not what a setting adds.
Padding is not counted either: a padded token is work the code chose, not work the stage
needs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# (in features, out features, how many layers have this shape)
Shapes = tuple[tuple[int, int, int], ...]
TRAINING_PASSES = 3  # forward + backward (twice the forward's matmuls) per trained token


def linear_shapes(model: torch.nn.Module) -> Shapes:
    """The matmul shapes a token passes through: every linear layer's (in, out), counted.
    Read from the layers' declared features, so a model sharded by ZeRO-3 or FSDP, whose
    weights are empty on this process, gives the same shapes."""
    import torch

    counts: Counter[tuple[int, int]] = Counter()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            counts[module.in_features, module.out_features] += 1
        elif type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
            counts[module.weight.shape[0], module.nf] += 1  # GPT-2's transposed linear layer
    return tuple((inp, out, n) for (inp, out), n in sorted(counts.items()))


def folder_shapes(folder: str | Path) -> Shapes:
    """The linear shapes of the model saved in ``folder``, built on the meta device from its
    config alone (no weights read): for an engine that loads the model in its own way."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return linear_shapes(model)


def forward_flops_per_token(shapes: Shapes) -> int:
    """2 x the weights of every linear layer: one token's forward pass."""
    return sum(2 * inp * out * n for inp, out, n in shapes)


def sequence_tokens(examples: list[dict]) -> int:
    """The tokens of every (prompt, response) sequence of training examples: what a training
    epoch or a reference pass runs through the model, padding left out."""
    return sum(
        len(ex["prompt_ids"]) + len(response) for ex in examples for response in ex["response_ids"]
    )


class ForwardTokens:
    """Counts the tokens a model's forward passes see: the ones of the attention mask (the
    padding left out), else every input id. Attached to the model as a forward pre-hook, so
    that every judge is counted the same way, whatever its own code does."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.tokens = 0
        self.shapes = linear_shapes(model)
        self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args: tuple, kwargs: dict) -> None:
        import torch

        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            self.tokens += int(mask.sum())
        elif isinstance(ids, torch.Tensor):
            self.tokens += ids.numel()

    @property
    def flops(self) -> int:
        return self.tokens * forward_flops_per_token(self.shapes)
