"""Validate a config against the JSON schema, filling in defaults; old keys get one line.

Errors are one line that names the offending key, e.g.
``config error: sample.k: 1 is less than the minimum of 2``."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema

from sppoflow.config.consistency import check_consistency
from sppoflow.config.merging import _plain
from sppoflow.errors import UserError
from sppoflow.schema import load_schema
from sppoflow.score import TRAINING_JUDGE


def _with_defaults(validator_class):
    """A validator that writes each property's default into the instance before descending."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def key_of(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


# Old keys (section, key) and what replaced them: a config that still uses one gets one line.
RENAMED = {
    ("train", "tau"): "train.ipo_tau",
    ("train", "beta"): "train.dpo_beta (DPO's beta; SPPO's beta is 1/train.eta)",
    ("train", "pairs"): "train.train_on",
    ("judge", "tau"): "judge.temperature",
    ("evaluate", "benchmarks"): "evaluate.question_sets",
}


def check_renamed(config: Mapping[str, Any]) -> None:
    """A renamed key fails with its new name, wherever the section's keys are given: the
    section itself, a method's train settings, an evaluation judge, evaluate's sections."""
    places = [(s, s, config.get(s)) for s in ("train", "judge", "evaluate")]
    for n, method in enumerate(config.get("methods") or []):
        places.append(("train", f"methods.{n}.train", (method or {}).get("train")))
    for n, judge in enumerate((config.get("evaluate") or {}).get("judges") or []):
        places.append(("judge", f"evaluate.judges.{n}", judge))
    for section, at, settings in places:
        for key in settings if isinstance(settings, Mapping) else ():
            if (section, key) in RENAMED:
                raise UserError(f"config error: {at}.{key} was renamed to {RENAMED[section, key]}")


def validate(config: Mapping[str, Any], schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with defaults filled in, or raise UserError."""
    schema = schema or load_schema()
    instance = _plain(config)
    check_renamed(instance)
    _check_against(instance, schema, DefaultFillingValidator)
    _check_parts(instance, schema)
    check_consistency(instance)
    return schema_order(instance, schema)


def schema_order(value: Any, schema: dict) -> Any:
    """``value`` with every section's keys in the schema's order, whatever order the config
    file gave them in: the flags a rule passes, and so its params, do not change with it."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(value, dict) and properties:
        ordered = {k: schema_order(value[k], properties[k]) for k in properties if k in value}
        return {**ordered, **{k: v for k, v in value.items() if k not in properties}}
    if isinstance(value, list) and isinstance(schema, dict) and "items" in schema:
        return [schema_order(v, schema["items"]) for v in value]
    return value


def _check_against(instance: Any, schema: dict, validator_class, at: str = "") -> None:
    """One line for the first error, its key prefixed with ``at`` (a part's place)."""
    errors = sorted(
        validator_class(schema).iter_errors(instance),
        key=lambda e: (len(list(e.absolute_path)), key_of(e)),
    )
    if errors:
        error = errors[0]
        key = ".".join(filter(None, [at, *map(str, error.absolute_path)])) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"config error: {key}: {error.message}{more}")


def _check_parts(config: dict, schema: dict) -> None:
    """Parts that take the keys of another section: each method's train settings (checked
    as given, since the train section fills the rest) and each evaluation judge (its
    defaults filled in from the judge section's schema)."""
    sections = schema["properties"]
    names = [method["name"] for method in config["methods"]]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"config error: methods: the name '{duplicate}' is given twice")
    for n, method in enumerate(config["methods"]):
        _check_against(
            method["train"],
            sections["train"],
            jsonschema.Draft202012Validator,
            f"methods.{n}.train",
        )
    judges = config["evaluate"]["judges"]
    names = [judge["name"] for judge in judges]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"config error: evaluate.judges: the name '{duplicate}' is given twice")
    for n, judge in enumerate(judges):
        if judge["name"] == TRAINING_JUDGE:
            raise UserError(
                f"config error: evaluate.judges.{n}.name: '{TRAINING_JUDGE}' names the training "
                "judge (evaluate.training_judge); give this one another name"
            )
        settings = {k: v for k, v in judge.items() if k != "name"}
        _check_against(settings, sections["judge"], DefaultFillingValidator, f"evaluate.judges.{n}")
        judge.update(settings)
    if not config["evaluate"]["training_judge"] and not judges:
        raise UserError(
            "config error: evaluate.training_judge: false leaves no judge; list evaluate.judges"
        )
