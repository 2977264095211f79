"""Load a policy from the embedded package, a local folder or the hub; save it as safetensors.

Weights keep the precision they come in on disk (a bf16 hub checkpoint stays bf16), unless a
``dtype`` is asked for: a 9B bf16 model written as fp32 would be 37 GB per round instead of 18.
A GGUF file's dequantized weights count as fp32 (their values need its 24-bit mantissa).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from sppoflow.atomic import folder_written_whole, write_atomically, write_text_atomically
from sppoflow.errors import UserError
from sppoflow.models import safe_loading
from sppoflow.models.sources import ModelSource, resolve_source
from sppoflow.provenance import write_to_folder as record_provenance
from sppoflow.runtime.devices import DTYPES

__all__ = [
    "ModelSource",
    "cast_saved_weights",
    "folder_dtype",
    "import_policy",
    "load_causal_lm",
    "load_policy",
    "resolve_source",
    "source_dtype",
    "source_tokenizer",
]

log = logging.getLogger(__name__)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def folder_dtype(folder: Path | str) -> torch.dtype:
    """The precision a model folder's config.json declares (fp32 when it declares none)."""
    config_path = Path(folder) / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    if name not in DTYPES:
        raise UserError(f"{config_path}: unsupported dtype '{name}' (known: {', '.join(DTYPES)})")
    return DTYPES[name]


def source_dtype(source: ModelSource) -> torch.dtype:
    return torch.float32 if source.gguf_file else folder_dtype(source.folder)


def disk_dtype(name: str, default: torch.dtype) -> torch.dtype:
    """``auto`` -> ``default``; otherwise the named precision (float32, bfloat16, float16)."""
    if name == "auto":
        return default
    if name not in DTYPES:
        raise UserError(f"unknown dtype '{name}' (choose auto, {', '.join(DTYPES)})")
    return DTYPES[name]


def cast_saved_weights(folder: Path | str, dtype: torch.dtype) -> None:
    """Rewrite a saved model's floating-point weights in ``dtype``, one file at a time.

    Done on the files rather than on the model in memory, so it is the same after a plain,
    DDP, FSDP, DeepSpeed or LoRA-merged save; the conversion rounds to nearest even.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = Path(folder)
    total_bytes = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {"format": "pt"}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        cast = {n: t.to(dtype) if t.is_floating_point() else t for n, t in tensors.items()}
        total_bytes += sum(t.numel() * t.element_size() for t in cast.values())
        if any(cast[n] is not tensors[n] for n in tensors):
            write_atomically(path, functools.partial(save_file, cast, metadata=metadata))
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        index.setdefault("metadata", {})["total_size"] = total_bytes
        write_text_atomically(index_path, json.dumps(index, indent=2) + "\n")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("torch_dtype", None)
    config["dtype"] = dtype_name(dtype)
    write_text_atomically(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def source_tokenizer(source: ModelSource, revision: str | None = None, trust: bool = False):
    """The tokenizer of a policy source (its GGUF file's, where it is one)."""
    return safe_loading.load_tokenizer(
        source.folder, "policy.model", trust, gguf_file=source.gguf_file, revision=revision
    )


def load_causal_lm(
    source: ModelSource,
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
    device: torch.device | None = None,
    trust: bool = False,
) -> PreTrainedModel:
    """The model in ``dtype``; on a GPU ``device`` the weights go from the (memory-mapped)
    files straight to it, so host memory never holds a copy: 8 processes of a 9B model
    would otherwise hold 8 x 37 GB of fp32 weights while loading."""
    placement = {"device_map": {"": str(device)}} if device and device.type == "cuda" else {}
    model = safe_loading.load_pretrained(
        AutoModelForCausalLM,
        source.folder,
        "policy.model",
        trust,
        gguf_file=source.gguf_file,
        revision=revision,
        dtype=dtype,
        **placement,
    )
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
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> None:
    """The base_model stage: any supported source -> a safetensors folder with its tokenizer.

    ``dtype`` ``auto`` keeps the source's precision on disk. ``trust_remote_code`` (the
    config's choice for this model) is recorded in the folder for every later stage.
    """
    source = resolve_source(reference)
    log.info("loading %s (%s: %s)", reference, source.kind, source.folder)
    tokenizer = source_tokenizer(source, revision, trust_remote_code)
    if chat_template:
        template_path = Path(chat_template)
        if not template_path.is_file():
            raise UserError(f"policy.chat_template: file {template_path} not found")
        tokenizer.chat_template = template_path.read_text()
    if not tokenizer.chat_template:
        raise UserError(
            f"{reference} has no chat template; give one with policy.chat_template (a .jinja file)"
        )
    weights_dtype = disk_dtype(dtype, source_dtype(source))
    model = load_causal_lm(source, weights_dtype, revision, trust=trust_remote_code)
    safe_loading.check_tokenizer_fits(model, tokenizer, reference)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    origin = {
        "reference": reference,
        "kind": source.kind,
        "revision": revision,
        "trust_remote_code": trust_remote_code,
    }
    with folder_written_whole(Path(out_dir)) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / safe_loading.SOURCE_RECORD).write_text(json.dumps(origin, indent=2) + "\n")
        record_provenance(folder)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "saved %s (%.1fM parameters, %s) to %s",
        reference,
        n_params / 1e6,
        dtype_name(weights_dtype),
        out_dir,
    )


def load_policy(
    folder: Path | str, dtype: torch.dtype = torch.float32, device: torch.device | None = None
):
    """(model, tokenizer) from a folder written by ``import_policy`` or the train stage."""
    source = resolve_source(str(folder))
    if source.kind != "local":
        raise UserError(f"model folder {folder} does not exist")
    trust = safe_loading.trusted_by_record(folder)
    model = load_causal_lm(source, dtype, device=device, trust=trust)
    tokenizer = source_tokenizer(source, trust=trust)
    safe_loading.check_tokenizer_fits(model, tokenizer, folder)
    return model, tokenizer
