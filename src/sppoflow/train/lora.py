"""LoRA adapters (PEFT) for the train stage, merged into the weights the next round loads.

The reference log-probabilities are computed before the adapters are added, so the reference
is exactly pi_t; the adapters start at zero (PEFT initialises B = 0), so training starts from
a log-ratio of 0 as in full fine-tuning.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from sppoflow.errors import UserError

log = logging.getLogger(__name__)


def add_lora_adapters(model, settings):
    """Wrap ``model`` so that only LoRA adapters on ``settings.lora_target_modules`` train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("train.lora needs the peft package: pip install peft") from None
    sharded = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3" or (
        os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    )
    if sharded:
        raise UserError(
            "train.lora with sharded weights (DeepSpeed ZeRO-3 or FSDP) is not supported: the "
            "adapters are merged into the full weights at the end. LoRA needs little memory; "
            "use one GPU or config/accelerate/multi_gpu.yaml"
        )
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(settings.lora_target_modules) - names)
    if missing:
        raise UserError(
            f"train.lora.target_modules {missing} are not layers of this model "
            f"(it has e.g. {sorted(n for n in names if n.endswith('proj'))[:8]})"
        )
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft (0.21) asks the model for is_gradient_checkpointing, which transformers 5.23
        # deprecated: the call is peft's, and what it prepares is done below
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        wrapped = get_peft_model(model, config)
    if settings.gradient_checkpointing:
        wrapped.enable_input_require_grads()  # frozen embeddings would stop the gradient
    trainable, total = wrapped.get_nb_trainable_parameters()
    log.info("LoRA: %d of %d parameters train (%.2f%%)", trainable, total, 100 * trainable / total)
    return wrapped


def save_merged(trainer, out_dir: Path) -> None:
    """Save base + adapters as one plain model (what the next round samples and trains)."""
    if not trainer.is_world_process_zero():
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    trainer.processing_class.save_pretrained(str(out_dir))
