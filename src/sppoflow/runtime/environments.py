"""The per-rule environments of ``envs/``, as conda env files and as plain virtual environments.

Snakemake makes a rule's conda environment from its env file (``--sdm conda``) and then runs
the post-deploy script beside it, if there is one. Where conda is not at hand, ``make_venv``
makes the same environment as a venv from the env file's pip section, with the same
post-deploy script, so that both ways give the same packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import yaml

from sppoflow.atomic import write_text_atomically
from sppoflow.errors import UserError

STAMP = ".sppo-environment.json"


def env_spec(env_file: Path) -> tuple[str, list[str]]:
    """(the Python version, the pip requirements) of a conda env file."""
    spec = yaml.safe_load(Path(env_file).read_text())
    dependencies = spec.get("dependencies", [])
    pythons = [d.split("=", 1)[1] for d in dependencies if str(d).startswith("python=")]
    pips = [d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d]
    if len(pythons) != 1 or len(pips) != 1:
        raise UserError(f"{env_file}: expected one python= pin and one pip section")
    return pythons[0], list(pips[0])


def post_deploy_script(env_file: Path) -> Path | None:
    """The script Snakemake runs in a new environment: ``<env>.post-deploy.sh`` beside it."""
    script = Path(env_file).with_suffix(".post-deploy.sh")
    return script if script.exists() else None


def environment_digest(env_file: Path, pip_args: list[str] | tuple[str, ...] = ()) -> str:
    """What a made environment depends on: its env file, its post-deploy script, the Python
    it is made with and the arguments pip was given."""
    digest = hashlib.sha256(Path(env_file).read_bytes())
    script = post_deploy_script(env_file)
    if script:
        digest.update(script.read_bytes())
    digest.update(json.dumps([sys.executable, list(pip_args)]).encode())
    return digest.hexdigest()


def venv_python(folder: Path) -> Path:
    return Path(folder) / "bin" / "python"


def venv_is_current(
    env_file: Path, folder: Path, pip_args: list[str] | tuple[str, ...] = ()
) -> bool:
    stamp = Path(folder) / STAMP
    if not stamp.exists() or not venv_python(folder).exists():
        return False
    return json.loads(stamp.read_text()).get("sha256") == environment_digest(env_file, pip_args)


def make_venv(
    env_file: Path, folder: Path, pip_args: list[str] | tuple[str, ...] = (), log=sys.stderr
) -> Path:
    """Make (or bring up to date) a venv with ``env_file``'s pip packages; returns its python.

    A venv already made from the same env file and post-deploy script is left as it is.
    """
    env_file, folder = Path(env_file), Path(folder)
    python_version, requirements = env_spec(env_file)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python_version != here:
        raise UserError(
            f"{env_file} is for Python {python_version}, and this is Python {here}: run "
            f"this with Python {python_version}"
        )
    if venv_is_current(env_file, folder, pip_args):
        print(f"{folder} is up to date with {env_file}", file=log, flush=True)
        return venv_python(folder)
    # made anew: packages an older env file had, or another env file's, do not linger
    venv.create(folder, with_pip=True, clear=True)
    python = venv_python(folder)
    folder.joinpath("requirements.txt").write_text("\n".join(requirements) + "\n")
    print(f"installing {len(requirements)} pinned packages of {env_file} into {folder}",
          file=log, flush=True)  # fmt: skip
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(folder / "requirements.txt"), *pip_args], folder, log)  # fmt: skip
    script = post_deploy_script(env_file)
    if script:
        print(f"running {script}", file=log, flush=True)
        run(["bash", str(script)], folder, log)
    stamp = {"env_file": str(env_file), "sha256": environment_digest(env_file, pip_args)}
    write_text_atomically(folder / STAMP, json.dumps(stamp) + "\n")  # the venv is whole
    return python


def run(command: list[str], folder: Path, log) -> None:
    """A step of making the venv, with the venv's bin first on PATH (as if activated)."""
    bin_dir = str(Path(folder).resolve() / "bin")
    env = {**os.environ, "VIRTUAL_ENV": str(Path(folder).resolve()),
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}  # fmt: skip
    env.pop("PYTHONHOME", None)
    done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise UserError(f"{' '.join(command)} failed (exit {done.returncode}) in {folder}")


def generation_env(sample: dict, gpus: int) -> str:
    """The conda environment file of a job that generates (relative to a rule file): vLLM pins
    its own torch and transformers, so its jobs get their own, the CUDA build for a job with
    GPUs and the CPU build for one without."""
    if sample["backend"] != "vllm":
        return "../../envs/torch.yaml"
    return "../../envs/vllm.yaml" if gpus else "../../envs/vllm-cpu.yaml"
