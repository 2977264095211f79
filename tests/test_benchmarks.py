"""The benchmark scripts: each starts, the per-stage table reads a real run's files, the cost
model's arithmetic (the figures themselves are printed by the benchmarks, never asserted on
time; the GPU check has tests/test_gpu_check.py)."""

import argparse
import json
import subprocess
import sys

import pytest

from helpers import ROOT, helps_in_one_process

BENCHMARKS = ROOT / "benchmarks"  # importable: pytest's pythonpath (pyproject.toml)


# the benchmarks are the files run as scripts; the others are their modules (gpu_sections.py)
SCRIPTS = sorted(
    p.name for p in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()
)


@pytest.fixture(scope="module")
def helps():
    return helps_in_one_process([BENCHMARKS / s for s in SCRIPTS])


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_explains_itself(script, helps):
    done = helps[script]
    assert done["code"] == 0, done["stderr"]
    assert done["stdout"].startswith("usage:")


def test_stages_reads_the_benchmark_files_of_a_run(tiny_run):
    from stages import per_stage, read_timings

    folder, config = tiny_run
    jobs = read_timings(folder / "results")
    rounds = config["rounds"]
    train = jobs[jobs.stage == "train"]
    assert sorted(train["round"]) == list(range(1, rounds + 1))
    assert (jobs.seconds > 0).all()
    summary = per_stage(jobs)
    assert summary.loc["sample", "jobs"] == rounds
    assert summary["share"].sum() == pytest.approx(1.0)


def test_every_model_stage_logs_its_throughput_and_stages_prints_it(tiny_run):
    """Generated tokens/s of sample and eval_generate, pairs/s of score, trained tokens/s of
    train, in the job logs (timing records, outside the outputs that reruns repeat bit for
    bit); the generated and judged counts are those of the stage's output."""
    import pandas as pd

    from sppoflow.runtime.job_records import read_throughput, read_timings, throughput

    folder, config = tiny_run
    results = folder / "results"
    rates = read_throughput(results).set_index(["stage", "round"])
    for it in range(1, config["rounds"] + 1):
        samples = pd.read_parquet(results / f"iter{it}" / "samples.parquet")
        assert rates.loc[("sample", it), "amount"] == samples.response_tokens.sum()
        assert rates.loc[("sample", it), "unit"] == "generated tokens"
        preferences = pd.read_parquet(results / f"iter{it}" / "preferences.parquet")
        assert rates.loc[("score", it), "amount"] == len(preferences)
        trained = json.loads((results / f"iter{it}" / "model" / "sppo_training.json").read_text())
        assert rates.loc[("train", it), "amount"] > 0
        assert rates.loc[("train", it), "what"] == (
            f"{trained['steps']} steps on 1 process(es), MFU unknown on this device"
        )  # no known peak on a CPU
    responses = pd.read_parquet(results / "iter0" / "eval" / "responses.parquet")
    assert rates.loc[("eval_generate", 0), "amount"] == responses.response_tokens.sum()
    table = throughput(read_throughput(results), read_timings(results))
    assert (table.per_s > table.per_job_s).all()  # the job's load and start come on top
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "stages.py"), "--run", str(results)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "throughput: per_s over the work itself" in done.stdout


def test_cost_model_arithmetic():
    from cost_model import round_cost

    args = argparse.Namespace(
        prompts=1000, k=3, params=1e9, prompt_tokens=100, response_tokens=200, gpus=2,
        gen_tokens_per_s=1000.0, peak_flops=1e15, train_mfu=0.5, ranking_mfu=0.25,
    )  # fmt: skip
    cost = round_cost(args)
    assert cost["generation"] == pytest.approx(1000 * 3 * 200 / (2 * 1000))
    assert cost["pairs"] == 1000 * 3 * 2
    assert cost["tokens trained"] == 2 * 1000 * 300
    assert cost["training"] == pytest.approx(10 * 1e9 * 600_000 / (2 * 1e15 * 0.5))
    pair_flop = 2 * 0.435e9 * 500 + 24 * 3 * 4 * 500**2 * 1024
    assert cost["ranking"] == pytest.approx(6000 * pair_flop / (2 * 1e15 * 0.25))


def test_methods_cost_counts_the_shared_work_once_per_separate_run():
    import pandas as pd

    from stages import methods_cost

    jobs = pd.DataFrame(
        {
            "stage": ["sample", "train", "train", "train", "head_to_head"],
            "method": ["shared", "sppo", "dpo", "dpo", "head_to_head"],
            "seconds": [100.0, 10.0, 20.0, 30.0, 5.0],
        }
    )
    cost = methods_cost(jobs).set_index("part")["seconds"]
    assert cost["shared by every method"] == 100.0
    assert cost["sppo alone"] == 10.0 and cost["dpo alone"] == 50.0
    assert cost["this run (job time)"] == 100 + 60 + 5
    assert cost["2 separate runs (estimate)"] == 60 + 2 * 100
    assert methods_cost(jobs[jobs.method == "shared"]) is None  # a single method's run
