"""Find a judge's files: an embedded PyPI package, a local folder, or a hub id."""

from __future__ import annotations

from pathlib import Path

from sppoflow import embedded
from sppoflow.errors import UserError, first_line
from sppoflow.sources import is_hub_id


def resolve_judge_folder(reference: str, revision: str | None = None) -> Path:
    """The local folder holding the judge model's files (downloaded or from the hub cache)."""
    if embedded.is_embedded(reference):
        return embedded.embedded_model(reference)[1]
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    if not is_hub_id(reference):
        raise UserError(f"judge.model: folder {reference} not found")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(reference, revision=revision))
    except Exception as error:  # offline, unknown repo, gated repo: all end here
        raise UserError(
            f"judge.model: cannot get {reference} from the hub: {first_line(error)}"
        ) from error
