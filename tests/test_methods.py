"""Methods side by side (config methods): SPPO beside iterative DPO, IPO and INPO from the same
base model, prompts and round-1 samples. The 4-method plan of the shipped comparison config,
and a real 2-method, 2-round run on the tiny model."""

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import ROOT, TINY_CONFIG, planned_jobs, snakemake
from sppoflow.tables import EVAL_JUDGEMENTS, PAIRS, SAMPLES, read_table

METHODS = ("sppo", "dpo", "ipo", "inpo")


def test_four_methods_share_round_one_and_the_base_then_run_their_own_chains(tmp_path):
    (tmp_path / "config").symlink_to(ROOT / "config")
    run = snakemake(tmp_path, "-n", "--configfile", "config/config.yaml", "config/compare.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = planned_jobs(run.stdout + run.stderr)
    counts = Counter(rule for rule, _, _ in jobs)
    # round 1's sampling, scoring and aggregation once; rounds 2-3 once per method
    methods = len(METHODS)
    assert counts["sample"] == counts["score"] == counts["aggregate"] == 1 + 2 * methods
    assert counts["train"] == counts["evaluate"] == counts["round_figures"] == 3 * methods
    assert counts["eval_generate"] == 1 + 3 * methods  # the base model's responses once
    assert counts["base_model"] == counts["head_to_head"] == counts["report_figures"] == 1
    outputs = {rule: [] for rule in counts}
    for rule, _, outs in jobs:
        outputs[rule].extend(outs)
    assert "results/iter1/samples.parquet" in outputs["sample"]
    assert not any("iter2" in out and "methods/" not in out for out in outputs["sample"])
    producer = {out: rule for rule, _, outs in jobs for out in outs}
    inputs = {tuple(outs): ins for _, ins, outs in jobs}
    for method in METHODS:
        chain = f"results/methods/{method}"
        [round_one] = [ins for outs, ins in inputs.items() if f"{chain}/iter1/model" in outs]
        # every method's round 1 starts from the base model and trains on the shared pairs
        assert {"results/iter0/model", "results/iter1/pairs.parquet"} <= set(round_one)
        assert producer["results/iter1/pairs.parquet"] == "aggregate"
        [round_two] = [
            ins for outs, ins in inputs.items() if f"{chain}/iter2/samples.parquet" in outs
        ]
        assert f"{chain}/iter1/model" in round_two  # round 2 samples the method's own model
        [evaluation] = [
            ins for outs, ins in inputs.items() if f"{chain}/iter1/eval/metrics.json" in outs
        ]
        assert "results/iter0/eval/responses.parquet" in evaluation
    [head_to_head] = [
        ins
        for outs, ins in inputs.items()
        if any("head_to_head" in o for o in outs)
        and "results/methods/head_to_head/metrics.json" in outs
    ]
    assert {f"results/methods/{m}/iter3/eval/responses.parquet" for m in METHODS} <= set(
        head_to_head
    )


def test_lint_is_clean_with_methods_side_by_side(tmp_path):
    (tmp_path / "config").symlink_to(ROOT / "config")
    run = snakemake(tmp_path, "--lint", "--configfile", "config/config.yaml", "config/compare.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Congratulations" in run.stdout + run.stderr


TWO_METHODS = [{"name": "sppo"}, {"name": "dpo", "train": {"loss": "dpo", "dpo_beta": 0.5}}]


@pytest.fixture(scope="module")
def tiny_methods_run(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("tiny-methods")
    config = {**TINY_CONFIG, "policy": {"model": str(tiny_model_dir)}, "methods": TWO_METHODS}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(folder, "--configfile", "config.yaml", "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    return folder


def test_two_methods_two_rounds_on_the_tiny_model(tiny_methods_run):
    from sppoflow.report.exports import query

    results = tiny_methods_run / "results"
    shared = read_table(results / "iter1/samples.parquet", SAMPLES)
    assert len(shared) == 6 * 3
    assert not (results / "iter2").exists() and not (results / "iter1/model").exists()
    pairs = read_table(results / "iter1/pairs.parquet", PAIRS)
    logs = {}
    for method in ("sppo", "dpo"):
        chain = results / "methods" / method
        for it in (1, 2):
            d = chain / f"iter{it}"
            assert (d / "model/model.safetensors").is_file()
            trained = json.loads((d / "model/sppo_training.json").read_text())
            assert trained["settings"]["loss"] == method
            logs[method, it] = pd.read_csv(d / "train_log.csv")
            judgements = read_table(d / "eval/judgements.parquet", EVAL_JUDGEMENTS)
            assert set(judgements.opponent) == {"base", "previous"}
            assert set(judgements.judge) == {"training"}
            metrics = json.loads((d / "eval/metrics.json").read_text())
            assert metrics["method"] == method and metrics["round"] == it
            assert metrics["objective"]["round"]["n_responses"] == 6
            assert (d / "report/training.png").stat().st_size > 10_000
        samples = read_table(chain / "iter2/samples.parquet", SAMPLES)
        assert len(samples) == 18
        assert not (chain / "iter1/samples.parquet").exists()  # round 1's are shared
        assert (
            len(
                json.loads(
                    (results / f"export/methods/{method}/alpaca_eval_iter2.json").read_text()
                )
            )
            == 6
        )
    # both methods trained round 1 on the same pairs, each with its own loss
    assert len(logs["sppo", 1]) == len(logs["dpo", 1]) == len(pairs)
    assert logs["dpo", 1].target_winner.isna().all()
    assert logs["sppo", 1].target_winner.notna().all()
    assert not logs["sppo", 1].loss.equals(logs["dpo", 1].loss)
    # and sampled round 2 from their own models
    sppo_two = read_table(results / "methods/sppo/iter2/samples.parquet", SAMPLES)
    dpo_two = read_table(results / "methods/dpo/iter2/samples.parquet", SAMPLES)
    assert set(sppo_two.prompt_id) == set(dpo_two.prompt_id)
    assert sppo_two.response.tolist() != dpo_two.response.tolist()

    head = json.loads((results / "methods/head_to_head/metrics.json").read_text())
    assert [(p["method"], p["opponent"]) for p in head["pairs"]] == [("sppo", "dpo")]
    assert head["pairs"][0]["judges"]["training"]["n_prompts"] == 6
    summary = pd.read_csv(results / "summary/metrics.tsv", sep="\t")
    assert list(zip(summary["method"], summary["round"], strict=True)) == [
        ("sppo", 1),
        ("sppo", 2),
        ("dpo", 1),
        ("dpo", 2),
    ]
    assert {"eval_loop_share", "reward_accuracy_last"} <= set(summary)
    report = results / "report"
    assert "<td>dpo</td>" in (report / "win_rates.html").read_text()
    assert "sppo" in (report / "head_to_head.html").read_text()
    examples = (report / "examples.html").read_text()
    assert "<th>sppo, round 2</th>" in examples and "<th>dpo, round 1</th>" in examples

    cwd = os.getcwd()
    os.chdir(tiny_methods_run)
    try:
        database = Path("results/sppo.duckdb")
        rates = query(database, "SELECT * FROM win_rates ORDER BY method, round, opponent")
        assert list(zip(rates["method"], rates["round"], strict=True)) == [
            ("dpo", 1),
            ("dpo", 1),
            ("dpo", 2),
            ("dpo", 2),
            ("sppo", 1),
            ("sppo", 1),
            ("sppo", 2),
            ("sppo", 2),
        ]
        # round 1's shared samples belong to both methods; round 2's to each its own
        samples = query(
            database, "SELECT method, round, count(*) AS n FROM samples GROUP BY ALL ORDER BY ALL"
        )
        assert samples.values.tolist() == [
            ["dpo", 1, 18],
            ["dpo", 2, 18],
            ["sppo", 1, 18],
            ["sppo", 2, 18],
        ]
        base = query(
            database,
            "SELECT method, count(*) AS n FROM eval_responses WHERE round = 0 "
            "GROUP BY ALL ORDER BY ALL",
        )
        assert base.values.tolist() == [["dpo", 6], ["sppo", 6]]
        head_rows = query(database, "SELECT count(*) AS n FROM head_to_head")
        assert head_rows["n"].iloc[0] == 6
    finally:
        os.chdir(cwd)

    page_run = snakemake(
        tiny_methods_run, "--configfile", "config.yaml", "--report", "results/report.html"
    )
    assert page_run.returncode == 0, page_run.stderr[-3000:]
    page = (results / "report.html").read_text()
    assert "methods head to head" in page and "dpo, round 2" in page
