"""Every per-rule environment (envs/*.yaml) resolves: its pip packages, pins included, are
installable together on its Python, according to the package index.

conda itself cannot run on the machines this project is built and tested on, so the conda part
of an env (python, pip and, for envs/torch.yaml, llama-cpp-python from conda-forge) is only
checked for pins (tests/test_cluster.py); the pip part is resolved by pip's dry run against
PyPI, which downloads package metadata and installs nothing.
"""

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from conftest import ROOT
from sppoflow.environments import env_spec

ENVS = sorted((ROOT / "envs").glob("*.yaml"))


@pytest.fixture(scope="module")
def package_index():
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=20).close()
    except OSError as error:
        pytest.skip(f"the package index is not reachable: {error}")


def resolve(env_file, folder):
    """Start pip's dry run of an env's pip section (the envs resolve side by side: each waits
    on the index, not on the CPU); returns (process, report path), or a reason to skip."""
    python, packages = env_spec(env_file)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != here:
        return f"{env_file.name} is for Python {python}; this is Python {here}"
    requirements = folder / f"{env_file.stem}.txt"
    requirements.write_text("\n".join(packages) + "\n")
    report = folder / f"{env_file.stem}.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "-r", str(requirements)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PIP_CONSTRAINT": ""},  # not this machine's pip constraints
    )  # fmt: skip
    return process, report, packages


@pytest.fixture(scope="module")
def resolutions(package_index, tmp_path_factory):
    folder = tmp_path_factory.mktemp("envs")
    started = {env.stem: resolve(env, folder) for env in ENVS}
    results = {}
    for name, job in started.items():
        if isinstance(job, str):
            results[name] = job
            continue
        process, report, packages = job
        _, stderr = process.communicate()
        results[name] = (process.returncode, stderr, report, packages)
    return results


@pytest.mark.parametrize("env_file", ENVS, ids=[e.stem for e in ENVS])
def test_environment_resolves(env_file, resolutions):
    result = resolutions[env_file.stem]
    if isinstance(result, str):
        pytest.skip(result)
    returncode, stderr, report, packages = result
    errors = [line for line in stderr.splitlines() if not line.startswith("WARNING")]
    assert returncode == 0, f"{env_file.name} does not resolve:\n" + "\n".join(errors)
    installed = {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    for pin in packages:
        name, version = pin.split("==")
        name = name.split("[")[0].lower().replace("_", "-")
        assert installed[name].split("+")[0] == version, (pin, installed[name])
