"""Where a policy model comes from: the embedded package, a local folder or file, or the hub.

Kept free of torch and transformers, so that the submit host's fetch step can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sppoflow import embedded
from sppoflow.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is 'embedded', 'local' or 'hub'."""

    reference: str
    kind: str
    folder: str  # local folder, or the hub id
    gguf_file: str | None = None


def resolve_source(reference: str) -> ModelSource:
    """Classify a ``policy.model`` value; a path that does not exist is an error, not a hub id."""
    if embedded.is_embedded(reference):
        model, folder = embedded.embedded_model(reference)
        return ModelSource(reference, "embedded", str(folder), model.gguf_file)
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(reference, "local", str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json: not a transformers model")
        return ModelSource(reference, "local", str(path))
    if path.exists():
        raise UserError(f"model path {path} is neither a model folder nor a .gguf file")
    looks_like_path = reference.startswith(("/", ".", "~")) or reference.count("/") > 1
    if looks_like_path or not HUB_ID.match(reference):
        raise UserError(f"model path {reference} does not exist")
    return ModelSource(reference, "hub", reference)
