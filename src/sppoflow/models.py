"""Load a policy from the embedded package, a local folder or the hub; save it as safetensors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from sppoflow.errors import UserError, first_line
from sppoflow.sources import ModelSource, resolve_source

__all__ = ["ModelSource", "import_policy", "load_causal_lm", "load_policy", "resolve_source"]

log = logging.getLogger(__name__)


def load_tokenizer(source: ModelSource, revision: str | None = None):
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source.folder, gguf_file=source.gguf_file, revision=revision
        )
    except (OSError, ValueError) as error:
        raise UserError(
            f"cannot load tokenizer of {source.reference}: {first_line(error)}"
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    source: ModelSource, dtype: torch.dtype = torch.float32, revision: str | None = None
) -> PreTrainedModel:
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.folder, gguf_file=source.gguf_file, revision=revision, dtype=dtype
        )
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load model {source.reference}: {first_line(error)}") from error
    if source.gguf_file:
        # The GGUF weights were dequantized on load; forget the quantizer so that
        # save_pretrained writes plain safetensors that reload in a fraction of a second.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
    return model


def import_policy(
    reference: str,
    out_dir: Path | str,
    revision: str | None = None,
    chat_template: str | None = None,
) -> None:
    """The base_model stage: any supported source -> a safetensors folder with its tokenizer."""
    source = resolve_source(reference)
    log.info("loading %s (%s: %s)", reference, source.kind, source.folder)
    tokenizer = load_tokenizer(source, revision)
    if chat_template:
        template_path = Path(chat_template)
        if not template_path.is_file():
            raise UserError(f"policy.chat_template: file {template_path} not found")
        tokenizer.chat_template = template_path.read_text()
    if not tokenizer.chat_template:
        raise UserError(
            f"{reference} has no chat template; give one with policy.chat_template (a .jinja file)"
        )
    model = load_causal_lm(source, torch.float32, revision)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    provenance = {"reference": reference, "kind": source.kind, "revision": revision}
    (out_dir / "sppo_source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    log.info("saved %s (%.1fM parameters) to %s", reference, n_params / 1e6, out_dir)


def load_policy(folder: Path | str, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a folder written by ``import_policy`` or the train stage."""
    source = resolve_source(str(folder))
    if source.kind != "local":
        raise UserError(f"model folder {folder} does not exist")
    return load_causal_lm(source, dtype), load_tokenizer(source)
