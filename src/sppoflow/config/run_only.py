"""Settings that change where or how fast a job runs, not what it writes (``run_only`` in
the schema), and the config that the outputs record without them."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sppoflow.schema import load_schema

# Left out of the recorded config as well as the run-only sections: shards splits a stage into
# jobs whose rows are the same as one job's, and rounds only adds or drops rounds; a round's
# outputs depend on neither (raising rounds keeps the earlier rounds' config hash).
UNRECORDED_KEYS = ("shards", "rounds")


@functools.cache
def run_only_settings() -> dict[str, tuple[str, ...]]:
    """{section: its keys} that the schema marks ``run_only``: settings that change where or
    how fast a job runs, not what it writes. Changing one re-runs nothing, and the config
    recorded with each output (sppoflow.provenance) leaves them out. A section marked
    run_only (resources) is left out whole."""
    sections = load_schema()["properties"]
    return {
        name: tuple(k for k, spec in section.get("properties", {}).items() if spec.get("run_only"))
        for name, section in sections.items()
        if any(spec.get("run_only") for spec in section.get("properties", {}).values())
    }


def run_only_sections() -> tuple[str, ...]:
    return tuple(k for k, spec in load_schema()["properties"].items() if spec.get("run_only"))


def split_run_only(section: str, settings: Mapping[str, Any]) -> tuple[dict, dict]:
    """(the settings that decide a job's result, the run-only ones) of a config section (or
    of an evaluation judge or a method's train settings)."""
    run_only = run_only_settings().get(section, ())
    result = {k: v for k, v in settings.items() if k not in run_only}
    return result, {k: v for k, v in settings.items() if k in run_only}


def recorded_config(config: Mapping[str, Any]) -> dict:
    """The validated config without its run-only settings: what the outputs record."""
    unrecorded = (*UNRECORDED_KEYS, *run_only_sections())
    recorded = {k: v for k, v in config.items() if k not in unrecorded}
    for section in run_only_settings():
        recorded[section] = split_run_only(section, config[section])[0]
    recorded["evaluate"] = {
        **config["evaluate"],
        "judges": [split_run_only("judge", j)[0] for j in config["evaluate"]["judges"]],
    }
    recorded["methods"] = [
        {**m, "train": split_run_only("train", m.get("train", {}))[0]} for m in config["methods"]
    ]
    return recorded
