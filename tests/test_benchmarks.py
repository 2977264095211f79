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
    rates = read_throughput(results).set_index(["stage", "work", "round"])
    for it in range(1, config["rounds"] + 1):
        samples = pd.read_parquet(results / f"iter{it}" / "samples.parquet")
        assert rates.loc[("sample", "generation", it), "amount"] == samples.response_tokens.sum()
        assert rates.loc[("sample", "generation", it), "unit"] == "generated tokens"
        preferences = pd.read_parquet(results / f"iter{it}" / "preferences.parquet")
        assert rates.loc[("score", "score", it), "amount"] == len(preferences)
        trained = json.loads((results / f"iter{it}" / "model" / "sppo_training.json").read_text())
        assert rates.loc[("train", "train", it), "amount"] > 0
        steps = f"{trained['steps']} steps on 1 process(es)"
        assert rates.loc[("train", "train", it), "what"] == steps
    responses = pd.read_parquet(results / "iter0" / "eval" / "responses.parquet")
    generated = responses.response_tokens.sum()
    assert rates.loc[("eval_generate", "generation", 0), "amount"] == generated
    table = throughput(read_throughput(results), read_timings(results))
    assert (table.per_s > table.per_job_s).all()  # the job's load and start come on top
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "stages.py"), "--run", str(results)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "throughput: per_s over the work itself" in done.stdout
    assert "wall time / floor: " in done.stdout  # the Snakemake log beside the results


def test_every_compute_stage_logs_its_flops_against_a_measured_peak(tiny_run, tiny_model_dir):
    """sample, eval_generate, score, train (and its reference pass) and evaluate log their
    arithmetic, counted from the model's shapes, and its share of this CPU's measured peak;
    stages.py adds it up into the run's floor."""
    import pandas as pd

    from sppoflow.runtime.flops import TRAINING_PASSES, folder_shapes, forward_flops_per_token
    from sppoflow.runtime.job_records import compute_by_work, read_compute, read_throughput

    folder, config = tiny_run
    results = folder / "results"
    compute = read_compute(results)
    works = set(zip(compute.stage, compute.work, strict=True))
    stages = ["sample", "eval_generate", "score", "train", "train", "evaluate"]
    names = ["generation", "generation", "score", "train", "reference", "evaluate"]
    assert set(zip(stages, names, strict=True)) <= works
    assert compute["peak"].gt(0).all() and compute["flops"].gt(0).all()
    assert compute["source"].str.match(r"measured: \w+ matmuls of the model's shapes").all()
    per_token = forward_flops_per_token(folder_shapes(tiny_model_dir))
    logged = compute.set_index(["stage", "work", "round"])["flops"]
    rates = read_throughput(results).set_index(["stage", "work", "round"])["amount"]
    for it in range(1, config["rounds"] + 1):
        samples = pd.read_parquet(results / f"iter{it}" / "samples.parquet")
        prompts = samples.drop_duplicates("prompt_id").prompt_tokens.sum()
        expected = per_token * (prompts + samples.response_tokens.sum())
        assert logged["sample", "generation", it] == pytest.approx(expected, rel=1e-3)
        trained = rates["train", "train", it]
        assert logged["train", "train", it] == pytest.approx(
            TRAINING_PASSES * per_token * trained, rel=1e-3
        )
    shares = compute_by_work(compute)["share_of_peak"]
    assert shares.gt(0).all(), shares
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "stages.py"), "--run", str(results), "--wall", "100"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    floor = compute_by_work(compute)["floor_s"].sum()
    assert f"floor {floor:.1f} s at the measured peaks" in done.stdout
    assert f"wall time / floor: 100 s / {floor:.0f} s = x{100 / floor:.2f} (wall time: --wall)" in (
        done.stdout
    )


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
