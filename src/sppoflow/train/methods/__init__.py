"""The training methods, one module each, and their registry: ``train.loss`` names one.

Adding a method is adding a module here that defines a :class:`TrainingMethod` (its
parameters, the data and reference log-probabilities it reads, its loss over a
:class:`Batch`'s named terms and its implicit reward), and listing it below; its parameters
go into the config schema under ``train``, as every setting does. ``train.loss``'s choices,
the checks, the step log's columns and the docs' table of losses follow from here.
"""

from __future__ import annotations

from sppoflow.errors import check_choice
from sppoflow.train.methods import dpo, inpo, ipo, sppo
from sppoflow.train.methods.base import (
    ALL,
    BASE,
    POLICY,
    WINNER_LOSER,
    Batch,
    LossTerms,
    Parameter,
    TrainingMethod,
    implicit_reward,
)

REGISTRY: dict[str, TrainingMethod] = {
    method.name: method for method in (*sppo.METHODS, dpo.METHOD, ipo.METHOD, inpo.METHOD)
}
LOSSES = tuple(REGISTRY)
REFERENCE_NAMES = {POLICY: "pi_t (the round's start)", BASE: "pi_ref (the base model)"}
TRAIN_ON = (WINNER_LOSER, ALL)


def method_named(name: str) -> TrainingMethod:
    """The method ``train.loss`` names; an unknown name is a one-line error."""
    check_choice("train.loss", name, LOSSES)
    return REGISTRY[name]


def docs_table() -> str:
    """The table of methods in docs/methods.md (a test keeps the two equal)."""
    rows = [
        "| `train.loss` | loss per prompt | parameters | `train.train_on` | reference "
        "log-probabilities | module |",
        "|---|---|---|---|---|---|",
    ]
    for method in REGISTRY.values():
        parameters = ", ".join(f"`train.{p.field}` ({p.symbol})" for p in method.parameters)
        references = ", ".join(REFERENCE_NAMES[r] for r in method.references)
        module = type(method).__module__.replace(".", "/")
        rows.append(
            f"| `{method.name}` | {method.summary} | {parameters} | "
            f"{', '.join(method.data)} | {references} | `src/{module}.py` |"
        )
    return "\n".join(rows) + "\n"


__all__ = [
    "ALL",
    "BASE",
    "LOSSES",
    "POLICY",
    "REGISTRY",
    "TRAIN_ON",
    "WINNER_LOSER",
    "Batch",
    "LossTerms",
    "Parameter",
    "TrainingMethod",
    "docs_table",
    "implicit_reward",
    "method_named",
]
