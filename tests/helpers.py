"""Paths and helpers the tests share: running a stage script or Snakemake, the tiny test
config, comparing weights and outputs, reading a dry run's plan."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


SCRIPTS = ROOT / "scripts"


SNAKEFILE = ROOT / "workflow" / "Snakefile"


BIN = Path(sys.executable).parent


def fake_hub_cache(cache: Path, repo_id: str, files_from: Path) -> None:
    """Lay out a model in the hub cache format, as a download would have left it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in files_from.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())


def script_parser(name: str):
    """The argument parser of ``scripts/<name>.py``, built in this process (the script's
    module imported as it is, its ``build_parser()`` called)."""
    import importlib.util

    if str(SCRIPTS) not in sys.path:
        sys.path.append(str(SCRIPTS))  # the scripts' own _bootstrap
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def run_script(name, *args, cwd=ROOT):
    """A stage script run by hand, as a user would."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


_HELP_DRIVER = """
import contextlib, io, json, runpy, sys
answers = {}
for script in sys.argv[1:]:
    before = set(sys.modules)
    sys.argv, sys.path[0] = [script, "--help"], script.rsplit("/", 1)[0]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as done:
        code = done.code or 0
    loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before} & HEAVY)
    answers[script] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                       "loaded": loaded}
print(json.dumps(answers))
"""


def helps_in_one_process(scripts: list[Path]) -> dict[str, dict]:
    """Each script's ``--help``, run as ``__main__`` (``python script --help``) one after the
    other in one Python process, so that torch is imported once for all of them. Per script
    name: its exit code, stdout, stderr, and which of torch and transformers it loaded first."""
    driver = "HEAVY = {'torch', 'transformers'}" + _HELP_DRIVER
    done = subprocess.run(
        [sys.executable, "-c", driver, *map(str, scripts)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    import json

    return {Path(s).name: a for s, a in json.loads(done.stdout.splitlines()[-1]).items()}


def error_line(run) -> str:
    """The one line a failed stage prints: exit status 2, ``error: ...``, no traceback."""
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


IN_E2E_TEST = [False]  # set by conftest.pytest_runtest_setup: whether an e2e test runs

# Snakemake arguments that plan, check or report without running a job.
NO_JOBS = ("-n", "--dry-run", "--lint", "--report", "--list-params-changes")


def snakemake(workdir, *args, env=None, clean_env=False, snakefile=SNAKEFILE):
    """Run the workflow's Snakefile (or ``snakefile``) in ``workdir`` with this environment's
    snakemake (in ``env`` alone with ``clean_env``, else in this process's environment plus
    ``env``).
    Only a test of the e2e tier runs jobs (it asks for the ``run_snakemake`` fixture, or one
    that runs the workflow); elsewhere a command that would run jobs is refused, so that the
    fast tier stays what it says."""
    if not IN_E2E_TEST[0] and not any(arg in NO_JOBS for arg in args):
        raise AssertionError(
            f"snakemake {' '.join(map(str, args))} runs jobs: ask for the run_snakemake fixture"
        )
    env = {**({} if clean_env else os.environ), **(env or {})}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(snakefile), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
    )


# The tiny config in .test/ (2 rounds of 6 prompts, K = 3, 12 new tokens, judge chunks of 2
# prompts), with its prompt file's absolute path for runs in other folders.
TEST_DIR = ROOT / ".test"


TINY_CONFIG = yaml.safe_load((TEST_DIR / "config" / "config.yaml").read_text())
TINY_CONFIG["prompts"]["source"] = str(TEST_DIR / TINY_CONFIG["prompts"]["source"])


def tiny_workdir(folder: Path, model_dir: Path) -> Path:
    """``folder`` laid out as .test/ (its config and data), with the tiny model at the path
    the config names."""
    shutil.copytree(TEST_DIR / "config", folder / "config")
    shutil.copytree(TEST_DIR / "data", folder / "data")
    (folder / "resources").mkdir()
    (folder / "resources" / "tiny-llama").symlink_to(model_dir)
    return folder


def weights(folder: Path) -> dict:
    """The tensors of the model saved in ``folder``."""
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    """The models saved in ``a`` and ``b`` hold the same tensors, bit for bit."""
    import torch

    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


# Files under results/ that record when or how fast, not what: left out of the comparison.
TIMING = ("/logs/", "/timings/", "results/tracking/")


DATABASE = "results/sppo.duckdb"


def output_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every output under ``folder``/results but the timing records; the DuckDB
    database by the rows of its views (DuckDB writes different bytes on every write)."""
    hashes = {}
    for path in sorted((folder / "results").rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part in f"/{name}" for part in TIMING):
            continue
        if name == DATABASE:
            hashes[name] = database_hash(folder)
        else:
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def database_hash(folder: Path) -> str:
    """sha256 of every view's rows in a run's database, in a fixed order (read from the run's
    folder, where the views' relative paths resolve)."""
    from sppoflow.report.exports import query

    digest = hashlib.sha256()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        views = query(Path(DATABASE), "SELECT view_name FROM duckdb_views() WHERE NOT internal")
        for view in sorted(views["view_name"]):
            rows = query(Path(DATABASE), f'SELECT * FROM "{view}"')
            rows = rows.astype(str).sort_values(list(rows.columns)).to_csv(index=False)
            digest.update(f"{view}\n{rows}".encode())
    finally:
        os.chdir(cwd)
    return digest.hexdigest()


def package_index_problem() -> str | None:
    """Why the package index cannot be reached, or None when it can."""
    import urllib.request

    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=20).close()
    except OSError as error:
        return f"the package index is not reachable: {error}"
    return None


def planned_jobs(output):
    """(rule, inputs, outputs) for each job of a dry run's report."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        files = {}
        for key in ("input", "output"):
            found = re.search(rf"^\s+{key}: (.*)$", block, re.M)
            files[key] = found.group(1).split(", ") if found else []
        jobs.append((head.group(1), files["input"], files["output"]))
    return jobs
