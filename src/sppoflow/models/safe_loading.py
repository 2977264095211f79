"""Every model and tokenizer the workflow loads goes through here, with the safe defaults.

- A model's own Python code (``auto_map`` in its config) runs only when the config trusts
  that model (``policy.trust_remote_code`` / ``judge.trust_remote_code``); the policy's
  choice is kept in its imported folder (``sppo_source.json``), so every later stage that
  loads the policy or a model trained from it makes the same one.
- Weights load from safetensors; a PyTorch ``.bin`` only with ``weights_only=True``, so a
  pickle that holds more than tensors is refused, never run.
- The tokenizer's pad token falls back to its end-of-sequence token.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from sppoflow.errors import UserError, first_line

SOURCE_RECORD = "sppo_source.json"  # written by the base_model stage (sppoflow.models.loading)


def needs_remote_code(folder: Path | str) -> bool:
    """The model's config maps its classes to code in the model's own files."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text()).get("auto_map"))
    except json.JSONDecodeError:
        return False


def trusted_by_record(folder: Path | str) -> bool:
    """Whether the config trusted the policy's own code when the base_model stage imported it
    (recorded in the model folder, and copied to each trained round's folder)."""
    record = Path(folder) / SOURCE_RECORD
    return record.is_file() and bool(json.loads(record.read_text()).get("trust_remote_code"))


def check_remote_code(folder: Path | str, trust: bool, key: str) -> None:
    if needs_remote_code(folder) and not trust:
        raise UserError(
            f"{key}: {folder} brings its own Python code (auto_map in config.json), which is "
            f"not run unless you trust it: set {key.rsplit('.', 1)[0]}.trust_remote_code: true"
        )


def load_pretrained(auto_class, folder: Path | str, key: str, trust: bool = False, **kwargs: Any):
    """``auto_class.from_pretrained`` with the safe defaults; errors are one line naming
    ``key`` (the config key of the model, e.g. judge.model)."""
    if not kwargs.get("gguf_file"):
        check_remote_code(folder, trust, key)
    options = {"trust_remote_code": trust, **kwargs}
    if not getattr(auto_class, "__name__", "").endswith("Tokenizer"):
        options["weights_only"] = True
    try:
        return auto_class.from_pretrained(folder, **options)
    except pickle.UnpicklingError as error:
        raise UserError(
            f"{key}: {folder}: a .bin weights file that holds more than tensors is refused "
            f"(loaded with weights_only=True: {first_line(error)}); use safetensors"
        ) from error
    except (OSError, ValueError) as error:
        raise UserError(f"{key}: cannot load {folder}: {first_line(error)}") from error


def load_tokenizer(folder: Path | str, key: str, trust: bool = False, **kwargs: Any):
    """The tokenizer, its pad token the end-of-sequence token where it has none."""
    from transformers import AutoTokenizer

    tokenizer = load_pretrained(AutoTokenizer, folder, key, trust, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_tokenizer_fits(model, tokenizer, folder: Path | str) -> None:
    """A tokenizer from another model (a larger vocabulary) fails here, not as an index
    error deep inside the first forward pass."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise UserError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model's embedding "
            f"table has {rows} rows: the tokenizer belongs to another model"
        )
