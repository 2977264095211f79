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


def test_every_config_key_is_documented():
    schema = load_schema()["properties"]
    keys = [
        f"{section}.{key}" if spec.get("type") == "object" else section
        for section, spec in schema.items()
        for key in (spec.get("properties") or {None: None})
    ]
    missing = [k for k in keys if f"| `{k}` |" not in README]
    assert not missing, missing
