"""Every per-rule environment (envs/*.yaml) resolves: its pip packages, pins included, are
installable together on its Python, according to the package index.

conda itself cannot run on the machines this project is built and tested on, so the conda part
of an env (python, pip and, for envs/torch.yaml, llama-cpp-python from conda-forge) is only
checked for pins (tests/test_cluster.py); the pip part is resolved by pip's dry run against
PyPI, which downloads package metadata and installs nothing.
"""

import json
import shutil
import sys

import pytest

from env_resolutions import ENVS, STARTED, start_resolving


@pytest.fixture(scope="module")
def resolutions():
    start_resolving()
    if "unreachable" in STARTED:
        pytest.skip(STARTED["unreachable"])
    results = {}
    for env in ENVS:
        job = STARTED[env.stem]
        if isinstance(job, str):
            results[env.stem] = job
            continue
        process, report, packages = job
        process.wait()
        stderr = report.with_suffix(".log").read_text()
        results[env.stem] = (process.returncode, stderr, report, packages)
    yield results
    shutil.rmtree(STARTED["folder"], ignore_errors=True)


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


def test_make_venv_runs_the_post_deploy_script_inside_and_remakes_only_on_change(tmp_path):
    """The venv twin of Snakemake's conda envs (scripts/make_venv.py), offline: an env with
    no pip packages, whose post-deploy script records the python it ran with."""
    from sppoflow.runtime.environments import make_venv, venv_is_current

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    env_file = tmp_path / "tiny.yaml"
    env_file.write_text(f"dependencies:\n  - python={here}\n  - pip: []\n")
    script = tmp_path / "tiny.post-deploy.sh"
    script.write_text('python -c "import sys; print(sys.prefix)" > "$VIRTUAL_ENV/ran-in"\n')
    folder = tmp_path / "venv"
    python = make_venv(env_file, folder, log=sys.stderr)
    assert python == folder / "bin" / "python" and python.exists()
    assert (folder / "ran-in").read_text().strip() == str(folder.resolve())
    assert venv_is_current(env_file, folder)
    (folder / "ran-in").unlink()
    make_venv(env_file, folder, log=sys.stderr)  # unchanged: left alone
    assert not (folder / "ran-in").exists()
    script.write_text(script.read_text() + "# changed\n")
    assert not venv_is_current(env_file, folder)
    make_venv(env_file, folder, log=sys.stderr)
    assert (folder / "ran-in").exists()
