"""The README stays true: its first two commands, CI's command; config/README.md is the schema's."""

import re

from helpers import ROOT
from sppoflow.workflow.config_reference import reference

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
    assert second.endswith("&& pytest -n 2 --dist loadgroup")


def test_the_config_reference_is_the_schemas():
    written = (ROOT / "config" / "README.md").read_text()
    assert written == reference(), (
        "run: python -m sppoflow.workflow.config_reference > config/README.md"
    )
    for key in ("train.lora.r", "resources.train.gpu", "cpu_threads", "policy.trust_remote_code"):
        assert f"| `{key}` |" in written
    assert "config/README.md" in README
