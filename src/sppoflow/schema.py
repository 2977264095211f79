"""The config schema, and the stages' settings classes whose fields it declares.

``workflow/schemas/config.schema.yaml`` is the one place a config setting is written down:
its type, default, description and choices. A stage's settings class names its config
section once, and each field's name gives its key in that section::

    @config_section("aggregate")
    class AggregateSettings:
        estimator: str = declared()      # aggregate.estimator: default, help and choices
        min_spread: float = declared()

A field named ``<object>_<key>`` is the key ``<key>`` of a nested object (``lora_r`` is
``train.lora.r``), and a field named as the object is its ``enabled`` switch (``lora``).
This module imports nothing of the package but its errors, so any module may use it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SWITCH = "enabled"  # the key of a nested object that a field named as the object holds

T = TypeVar("T")


def load_schema(path: Path = SCHEMA) -> dict:
    """The schema at ``path``; the project's own is read once (callers must not change it)."""
    return _project_schema() if path == SCHEMA else yaml.safe_load(path.read_text())


@functools.cache
def _project_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def setting(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    """A field that is not a config setting, with the help text (and choices) of its flag."""
    return _field(default, help, choices, {})


def _field(default: Any, help: str, choices: Sequence[str] | None, extra: dict) -> Any:
    metadata = {"help": help, "choices": list(choices) if choices else None, **extra}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class _Declared:
    listed: bool
    choices: Sequence[str] | None


def declared(*, listed: bool = False, choices: Sequence[str] | None = None) -> Any:
    """A field that is the config setting of its name in its class's section.

    ``listed``: a list field whose schema default may be one plain value; ``choices``: where
    the schema's enum is conditional (the class's own list is then the one checked)."""
    return _Declared(listed, tuple(choices) if choices else None)


def key_path(section: dict, name: str) -> tuple[str, ...]:
    """The schema keys, within ``section``, of the field ``name`` (see the module's doc)."""
    properties = section["properties"]
    if name in properties and "properties" not in properties[name]:
        return (name,)
    if name in properties and SWITCH in properties[name]["properties"]:
        return (name, SWITCH)
    for prefix, spec in properties.items():
        rest = name.removeprefix(f"{prefix}_")
        if rest != name and rest in spec.get("properties", {}):
            return (prefix, rest)
    raise TypeError(f"no config setting in this section is named by the field '{name}'")


def config_section(*section: str, **dataclass_options: Any):
    """Make the class a dataclass whose :func:`declared` fields are the settings of config
    section ``section`` (e.g. "train", or "evaluate", "question_sets"): each one's default,
    help and choices come from the schema, and its metadata holds its key path."""

    def decorate(cls: type[T]) -> type[T]:
        spec: dict = load_schema()
        for part in section:
            spec = spec["properties"][part]
        for name, value in list(vars(cls).items()):
            if isinstance(value, _Declared):
                setattr(cls, name, _declared_field(spec, name, value, section))
        return dataclasses.dataclass(cls, **dataclass_options)

    return decorate


def _declared_field(section_spec: dict, name: str, declared_as: _Declared, section) -> Any:
    path = key_path(section_spec, name)
    spec = section_spec
    for part in path:
        spec = spec["properties"][part]
    default = spec["default"]
    if declared_as.listed and not isinstance(default, list):
        default = [default]
    enum = spec.get("enum") or spec.get("items", {}).get("enum") or []
    help_text = " ".join(spec["description"].split()).replace("%", "%%")
    choices = declared_as.choices or [v for v in enum if v is not None] or None
    return _field(default, help_text, choices, {"section": section, "key": path})


def config_key(field: dataclasses.Field) -> tuple[str, ...] | None:
    """The full key path of a declared field (("train", "lora", "r")); None for others."""
    if "key" not in field.metadata:
        return None
    return (*field.metadata["section"], *field.metadata["key"])


def section_values(settings_type: type, section: Mapping[str, Any]) -> dict[str, Any]:
    """A config section's values by the field names of ``settings_type`` (its declared
    fields whose keys the section holds): what builds the class, or its ``--flags``."""
    values = {}
    for field in dataclasses.fields(settings_type):
        if "key" not in field.metadata:
            continue
        value: Any = section
        for part in field.metadata["key"]:
            if not isinstance(value, Mapping) or part not in value:
                break
            value = value[part]
        else:
            values[field.name] = value
    return values


def nested_fields(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A nested object's values (``train.lora``) by the names of the fields that declare
    them: its switch is the field ``name``, every other key ``<name>_<key>``."""
    return {(name if key == SWITCH else f"{name}_{key}"): value for key, value in values.items()}
