"""The README stays true: its first two commands, CI's command, and the config reference."""

import re

from conftest import ROOT
from sppoflow.config import load_schema

README = (ROOT / "README.md").read_text()


def bash_blocks():
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def test_first_command_installs_and_runs_the_main_job():
    first = bash_blocks()[0].strip()
    assert first.startswith("python3 -m venv .venv")
    assert first.endswith("snakemake --cores all --config rounds=3")


def test_ci_runs_exactly_the_second_command():
    second = bash_blocks()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert second == ci
    assert second.endswith("&& pytest")


def leaf_keys(spec: dict, prefix: str = "") -> list[str]:
    """Dotted names of the schema's leaf keys (objects with properties are walked into)."""
    if spec.get("type") == "object" and spec.get("properties"):
        return [
            key
            for name, sub in spec["properties"].items()
            for key in leaf_keys(sub, f"{prefix}.{name}" if prefix else name)
        ]
    return [prefix]


def test_every_config_key_is_documented():
    keys = leaf_keys(load_schema())
    assert "train.lora.r" in keys and "resources.train.gpus" in keys
    missing = [k for k in keys if f"| `{k}` |" not in README]
    assert not missing, missing
