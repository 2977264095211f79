"""The config Snakemake would run with, outside Snakemake (for scripts and tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

from sppoflow.config.merging import merged
from sppoflow.config.validation import validate
from sppoflow.errors import UserError
from sppoflow.schema import ROOT


def load_configs(files: list[Path], overrides: list[str] = ()) -> dict:
    """The config Snakemake would run with: ``files`` merged in order (config/config.yaml,
    the embedded default, when none is given, as the Snakefile does), then ``key=value``
    overrides (values read as YAML), validated."""
    config: dict = {}
    for path in files or [ROOT / "config" / "config.yaml"]:
        if not Path(path).is_file():
            raise UserError(f"config file {path} not found")
        config = merged(config, yaml.safe_load(Path(path).read_text()) or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--config {item}: give key=value")
        config = merged(config, {key: yaml.safe_load(value)})
    return validate(config)
