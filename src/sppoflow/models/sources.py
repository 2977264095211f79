"""Where a policy model comes from: the embedded package, a local folder or file, or the hub.

Kept free of torch and transformers, so that the submit host's fetch step can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sppoflow.errors import UserError
from sppoflow.models import embedded

# a hub repository id: "name" (canonical models such as gpt2) or "org/name"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_path(reference: str) -> bool:
    """A reference the user meant as a local path: it exists, starts like a path, or has more
    than one "/" (no hub id does)."""
    return (
        Path(reference).expanduser().exists()
        or reference.startswith(("/", ".", "~"))
        or reference.count("/") > 1
    )


def is_hub_id(reference: str) -> bool:
    """A model or dataset id on the hub (and not a local path)."""
    return not looks_like_path(reference) and HUB_ID.match(reference) is not None


def missing_local_path(reference: str) -> bool:
    """A local path (neither embedded nor a hub id) that does not exist: checkable before
    any job runs."""
    if embedded.is_embedded(reference) or is_hub_id(reference):
        return False
    return not Path(reference).expanduser().exists()


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
    if not is_hub_id(reference):
        raise UserError(f"model path {reference} does not exist")
    return ModelSource(reference, "hub", reference)
