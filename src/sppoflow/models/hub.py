"""Download the run's hub models once, on the submit host, before any cluster job starts.

Compute nodes often have no internet, and a gated model needs a token that should stay on the
machine the user works on; so the workflow's fetch rules (local rules) put every hub model the
run needs into the hub cache (``HF_HOME``, which the compute nodes must see), and the model
jobs run with ``HF_HUB_OFFLINE=1``, reading from that cache. The token is read by
huggingface_hub from ``HF_TOKEN`` or ``huggingface-cli login``; it is never written anywhere.
Embedded and local models need nothing and are only recorded.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from sppoflow.errors import UserError, first_line
from sppoflow.models import embedded
from sppoflow.models.sources import resolve_source

log = logging.getLogger(__name__)

# Files a model job never reads: other frameworks' weights, raw consolidated checkpoints
# (Llama's original/ folder alone is 16 GB; Mistral's consolidated.*), GGUF and ONNX exports.
SKIPPED = [
    "original/*",
    "consolidated*",
    "*.pth",
    "*.gguf",
    "*.onnx",
    "onnx/*",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "tf_model*",
    "flax_model*",
    "openvino/*",
    "coreml/*",
]
TOKENIZER_AND_CONFIG = ["*.json", "*.model", "*.txt", "*.tiktoken", "tokenizer*", "*.jinja"]


HUB_SETTINGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def remember_launch_settings(environ=os.environ) -> str:
    """Keep the hub settings Snakemake was started with for the rules that download.

    Every job runs with the hub offline (the workflow's shell prefix); the download rules run
    ``$SPPO_HUB_ACCESS <command>``, an ``env`` call that restores these settings (unset ones
    unset). Returns that reference: a constant, so the user's settings never re-run a job.
    """
    unset, assign = [], []
    for name in HUB_SETTINGS:
        value = environ.get(name)
        if value is not None and re.fullmatch(r"[\w.-]*", value):
            assign.append(f"{name}={value}")
        else:
            unset += ["-u", name]
    environ["SPPO_HUB_ACCESS"] = " ".join(["env", *unset, *assign])
    return "$SPPO_HUB_ACCESS"


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def download(repo: str, revision: str | None, allow: list[str] | None = None) -> Path:
    """A hub repo's snapshot in the local cache (downloaded unless the hub is offline)."""
    from huggingface_hub import HfApi, snapshot_download

    ignore = list(SKIPPED)
    try:
        if not hub_offline() and allow is None:
            files = HfApi().list_repo_files(repo, revision=revision)
            if any(f.endswith(".safetensors") for f in files):
                ignore += ["*.bin", "*.pt"]  # the same weights twice
        folder = snapshot_download(
            repo, revision=revision, allow_patterns=allow, ignore_patterns=ignore
        )
    except Exception as error:  # offline cache miss, unknown or gated repo, network: all here
        hint = (
            " (the hub is offline here, HF_HUB_OFFLINE=1, and the model is not in the cache)"
            if hub_offline()
            else " (a gated model needs HF_TOKEN or `huggingface-cli login` on this machine)"
        )
        raise UserError(f"cannot fetch {repo} from the hub: {first_line(error)}{hint}") from error
    return Path(folder)


def local_folder(reference: str, revision: str | None = None, key: str = "judge.model") -> Path:
    """The folder holding a model's files: the embedded package's, a local folder, or the
    hub id's snapshot (from the hub cache, where fetch_model put it). ``key`` names the
    model's config key in errors."""
    try:
        source = resolve_source(reference)
    except UserError as error:
        raise UserError(f"{key}: {error}") from None
    if source.kind != "hub":
        return Path(source.folder)
    try:
        return download(reference, revision)
    except UserError as error:
        raise UserError(f"{key}: {error}") from None


def backbone_of(folder: Path) -> str | None:
    """The hub id whose config and tokenizer a checkpoint borrows: the original PairRM layout
    (llm-blender/PairRM) names its DeBERTa backbone instead of shipping its config."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    raw = json.loads(config.read_text())
    name = raw.get("model_name") if "ranker_type" in raw else None
    if not name or Path(name).expanduser().exists():
        return None
    return name


def fetch(reference: str, revision: str | None = None) -> dict:
    """Make ``reference`` available offline; what was found, for the run's records."""
    record = {"reference": reference, "revision": revision}
    if embedded.is_embedded(reference):  # shipped in a package the model jobs' env holds
        return {**record, "kind": "embedded"}
    source = resolve_source(reference)
    record["kind"] = source.kind
    if source.kind != "hub":
        return {**record, "folder": source.folder}
    log.info("fetching %s (revision %s)", reference, revision or "main")
    folder = download(reference, revision)
    record.update(folder=str(folder), commit=folder.name)
    backbone = backbone_of(folder)
    if backbone:
        log.info("%s borrows config and tokenizer from %s: fetching those", reference, backbone)
        extra = download(backbone, None, allow=TOKENIZER_AND_CONFIG)
        record["borrows"] = {"reference": backbone, "folder": str(extra), "commit": extra.name}
    files = sorted(p.name for p in folder.iterdir())
    log.info("%s at commit %s: %s", reference, folder.name, ", ".join(files))
    return record
