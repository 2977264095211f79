"""Training methods side by side (config ``methods``), and where each one's rounds live.

Every method starts from the same base model and is sampled, judged and evaluated on the
same prompts. What does not depend on the method is done once: the base model, its
evaluation responses, and round 1's samples, preferences and pairs (round 1 samples the base
model for every method). From round 1's training on, each method has its own chain of rounds
under ``results/methods/<name>/iter<t>/``. A config with no method list, or one method, keeps
the single chain under ``results/iter<t>/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sppoflow import layout
from sppoflow.config.merging import merged


@dataclass(frozen=True)
class Method:
    name: str
    train: dict  # the train section with the method's own settings in place
    chain: str  # the folder prefix of its rounds under results/: "" or "methods/<name>/"


def methods(config: dict) -> list[Method]:
    """The validated config's methods; a single-method config gives one, named after its
    loss unless the list names it."""
    listed = config.get("methods") or []
    if not listed:
        return [Method(config["train"]["loss"], config["train"], "")]
    side_by_side = len(listed) > 1
    return [
        Method(
            m["name"],
            merged(config["train"], m.get("train", {})),
            layout.chain(m["name"], side_by_side),
        )
        for m in listed
    ]


def method_of_chain(config: dict, chain: str) -> Method:
    """The method whose rounds live under ``results/<chain>``."""
    for method in methods(config):
        if method.chain == chain:
            return method
    raise KeyError(f"no method has its rounds under results/{chain}")
