"""The Snakemake workflow: the job graph of a dry run, lint, and a real 2-round run on a tiny
random model in a temp directory."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import BAD_CONFIGS, BIN, ROOT, snakemake
from sppoflow.tables import (
    EVAL_JUDGEMENTS,
    PAIRS,
    PREFERENCES,
    PROMPT_POOL,
    PROMPTS,
    RESPONSE_WIN_RATES,
    SAMPLES,
    read_table,
)


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


@pytest.fixture
def default_workdir(tmp_path):
    (tmp_path / "config").symlink_to(ROOT / "config")
    return tmp_path


def test_planning_the_workflow_does_not_import_torch(default_workdir):
    """Parsing the Snakefile checks the config (train settings included) without torch or
    transformers: a dry run or a cluster's submission host stays light."""
    run = snakemake(default_workdir, "-n", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert run.returncode == 0, run.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "sppoflow.training.settings" in imported  # the check ran, in this process
    assert not imported & {"torch", "transformers"}


def test_dry_run_of_three_rounds_plans_the_sppo_graph(default_workdir):
    run = snakemake(default_workdir, "-n", "--config", "rounds=3")
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout + run.stderr)
    counts = Counter(rule for rule, _, _ in jobs)
    assert counts == {
        "fetch_model": 2,
        "base_model": 1,
        "prompt_pool": 1,
        "round_prompts": 3,
        "sample": 3,
        "score": 3,
        "aggregate": 3,
        "train": 3,
        "eval_generate": 4,
        "evaluate": 3,
        "summary": 1,
        "round_figures": 3,
        "report_figures": 1,
        "export_alpaca_eval": 4,
        "duckdb_views": 1,
        "throughput_table": 1,
        "all": 1,
    }
    producer = {out: rule for rule, _, outs in jobs for out in outs}

    def inputs_of(rule, output):
        [(ins)] = [ins for r, ins, outs in jobs if r == rule and output in outs]
        return {i: producer.get(i) for i in ins}

    # round t samples from, and trains, round t-1's model; round 1 starts from the base model
    assert (
        inputs_of("sample", "results/iter1/samples.parquet")["results/iter0/model"] == "base_model"
    )
    for it in (2, 3):
        sample_in = inputs_of("sample", f"results/iter{it}/samples.parquet")
        assert sample_in[f"results/iter{it - 1}/model"] == "train"
        assert sample_in[f"results/prompts/train_iter{it}.parquet"] == "round_prompts"
        train_in = inputs_of("train", f"results/iter{it}/model")
        assert train_in[f"results/iter{it - 1}/model"] == "train"
        assert train_in[f"results/iter{it}/pairs.parquet"] == "aggregate"
    # hub models are fetched (on the submit host) before the jobs that read them
    assert inputs_of("base_model", "results/iter0/model") == {
        "results/hub/policy.json": "fetch_model"
    }
    assert inputs_of("score", "results/iter2/preferences.parquet")["results/hub/judge.json"] == (
        "fetch_model"
    )
    evaluate_in = inputs_of("evaluate", "results/iter3/eval/metrics.json")
    assert evaluate_in["results/iter0/eval/responses.parquet"] == "eval_generate"
    assert evaluate_in["results/iter2/eval/responses.parquet"] == "eval_generate"
    summary_in = inputs_of("summary", "results/summary/metrics.tsv")
    assert {f"results/iter{it}/eval/metrics.json" for it in (1, 2, 3)} <= set(summary_in)


# Every bad config's message is checked in-process (tests/test_config.py); these go through
# the snakemake command line too, one of each kind of check: the schema, a path, a rule that
# spans keys, the vLLM environment's python.
BAD_CONFIGS_BY_KIND = [BAD_CONFIGS[i] for i in (0, 1, 8, -1)]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS_BY_KIND)
def test_bad_config_stops_the_workflow_before_any_job(default_workdir, config, message):
    (default_workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(default_workdir, "-n", "--configfile", "bad.yaml")
    assert run.returncode != 0
    assert message in run.stderr + run.stdout
    assert not (default_workdir / "results").exists()


def test_vllm_jobs_run_the_python_of_the_vllm_environment(default_workdir):
    python = default_workdir / "vllm-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    sample = f"{{backend: vllm, vllm_python: {python}}}"
    run = snakemake(default_workdir, "-n", "-p", "--config", "rounds=1", f"sample={sample}")
    assert run.returncode == 0, run.stderr
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "sample.py" in line]
    assert len(lines) == 3  # round 1's samples, rounds 0 and 1's evaluation responses
    for line in lines:
        assert f"-- {python} " in line and "--backend vllm" in line, line
        assert "--vllm-python" not in line


def test_rounds_from_the_command_line_are_validated(default_workdir):
    run = snakemake(default_workdir, "-n", "--config", "rounds=0")
    assert run.returncode != 0
    assert "config error: rounds: 0 is less than the minimum of 1" in run.stderr + run.stdout


def test_lint_is_clean(default_workdir):
    run = snakemake(default_workdir, "--lint")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Congratulations" in run.stdout + run.stderr


def test_rule_files_are_snakefmt_clean():
    run = subprocess.run(
        [str(BIN / "snakefmt"), "--check", str(ROOT / "workflow")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_rule_that_runs_a_job_times_it():
    """benchmark: on every rule (but the target rule all), so the stages benchmark can read
    each job's time."""
    text = "".join(p.read_text() for p in sorted((ROOT / "workflow").rglob("*.smk")))
    rules = re.split(r"(?m)^[ \t]*rule (?=\w+:)", text)[1:]
    untimed = [r.split(":")[0] for r in rules if "benchmark:" not in r]
    assert not untimed, untimed


def test_two_rounds_on_a_tiny_model_then_nothing_to_do_then_one_more_round(tiny_run):
    tmp_path, config = tiny_run
    results = tmp_path / "results"

    pool = read_table(results / "prompts/pool.parquet", PROMPT_POOL)
    eval_prompts = read_table(results / "prompts/eval.parquet", PROMPTS)
    assert len(eval_prompts) == 6 and len(pool) == 40  # .test/data/prompts.jsonl
    rounds = [read_table(results / f"prompts/train_iter{it}.parquet", PROMPTS) for it in (1, 2)]
    assert not set(rounds[0].prompt_id) & set(rounds[1].prompt_id)

    assert (results / "iter0/model/model.safetensors").is_file()
    for it in (1, 2):
        d = results / f"iter{it}"
        samples = read_table(d / "samples.parquet", SAMPLES)
        assert len(samples) == 6 * 3
        assert set(samples.prompt_id) == set(rounds[it - 1].prompt_id)
        assert len(read_table(d / "preferences.parquet", PREFERENCES)) == 6 * 3 * 2
        assert len(read_table(d / "response_win_rates.parquet", RESPONSE_WIN_RATES)) == 18
        pairs = read_table(d / "pairs.parquet", PAIRS)
        assert 0 < len(pairs) <= 6
        stats = pd.read_parquet(d / "aggregate_stats.parquet")
        assert stats["round"].iloc[0] == it and stats["n_pairs"].iloc[0] == len(pairs)
        assert (d / "model/model.safetensors").is_file()
        assert (d / "model/tokenizer.json").is_file() and (
            d / "model/chat_template.jinja"
        ).is_file()
        log = pd.read_csv(d / "train_log.csv")
        assert {"loss", "learning_rate", "grad_norm", "logratio_winner", "target_loser"} <= set(log)
        assert not (d / "train_state").exists()
        read_table(d / "eval/responses.parquet", SAMPLES)
        judgements = read_table(d / "eval/judgements.parquet", EVAL_JUDGEMENTS)
        assert set(judgements.opponent) == {"base", "previous"}
        metrics = json.loads((d / "eval/metrics.json").read_text())
        for opponent in ("vs_base", "vs_previous"):
            m = metrics[opponent]
            assert m["win_rate_ci_low"] <= m["win_rate"] <= m["win_rate_ci_high"]
            assert m["n_prompts"] == 6
        for rule in ("sample", "score", "aggregate", "train", "eval_generate", "evaluate"):
            assert (d / f"logs/{rule}.log").is_file()
            assert (d / f"benchmarks/{rule}.tsv").is_file()
    read_table(results / "iter0/eval/responses.parquet", SAMPLES)
    summary = pd.read_csv(results / "summary/metrics.tsv", sep="\t")
    assert summary["round"].tolist() == [1, 2]
    assert {
        "win_rate_vs_base",
        "win_rate_vs_base_ci_low",
        "win_rate_vs_previous",
        "mean_response_tokens",
        "n_pairs",
        "train_loss_last",
    } <= set(summary)
    rewards = pd.read_csv(results / "summary/judge_rewards.tsv", sep="\t")
    assert {"corr_reward_length", "corr_reward_overlap"} <= set(rewards)

    again = snakemake(tmp_path, "--cores", "2")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # where a job runs, how big it is and how fast it goes never re-run it
    bigger = {
        **config,
        "resources": {"train": {"gpu": 2, "mem_mb": 64000, "runtime": 60}},
        "judge": {**config["judge"], "batch_size": 7, "max_batch_tokens": 512, "device": "auto"},
        "train": {**config["train"], "checkpoint_steps": 2, "gradient_checkpointing": True},
    }
    (tmp_path / "bigger.yaml").write_text(yaml.safe_dump(bigger))
    moved = snakemake(tmp_path, "-n", "--configfile", "bigger.yaml", "--resources", "gpu=4")
    assert moved.returncode == 0 and "Nothing to be done" in moved.stdout + moved.stderr
    # a training setting re-runs training from round 1 on, but not round 1's sampling
    changed = {**config, "train": {**config["train"], "learning_rate": 2.0e-3}}
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    replan = snakemake(tmp_path, "-n", "--configfile", "changed.yaml")
    assert replan.returncode == 0, replan.stderr
    rerun = Counter(rule for rule, _, _ in planned_jobs(replan.stdout + replan.stderr))
    assert rerun["train"] == 2 and rerun["sample"] == 1 and "prompt_pool" not in rerun
    assert "Params have changed since last execution" in replan.stdout + replan.stderr

    more = snakemake(tmp_path, "--config", "rounds=3", "-n")
    assert more.returncode == 0, more.stderr
    jobs = planned_jobs(more.stdout + more.stderr)
    assert Counter(rule for rule, _, _ in jobs) == {
        "round_prompts": 1,
        "sample": 1,
        "score": 1,
        "aggregate": 1,
        "train": 1,
        "eval_generate": 1,
        "evaluate": 1,
        "summary": 1,
        "round_figures": 1,
        "report_figures": 1,
        "export_alpaca_eval": 1,
        "duckdb_views": 1,
        "throughput_table": 1,
        "all": 1,
    }
    across_rounds = ("summary", "report_figures", "duckdb_views", "throughput_table", "all")
    assert all(
        "iter3" in " ".join(outs) or rule in across_rounds or "train_iter3" in outs[0]
        for rule, _, outs in jobs
    )


@pytest.mark.parametrize(
    "paper", ["mistral-7b-instruct-v0.2", "llama-3-8b-instruct", "gemma-2-9b-it"]
)
def test_paper_configs_plan_every_round_with_pairrm(tmp_path, paper):
    configfile = ROOT / "config" / "paper" / f"{paper}.yaml"
    run = snakemake(tmp_path, "-n", "-p", "--configfile", str(configfile), "--config", "rounds=3")
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    jobs = planned_jobs(output)
    counts = Counter(rule for rule, _, _ in jobs)
    assert counts["score"] == counts["sample"] == 3 * 8  # 8 shards per round, as the authors
    assert counts["gather_preferences"] == 3 and counts["train"] == 3
    scored = re.findall(r"scripts/score\.py .*?--backend (\S+) --model (\S+)", output)
    assert len(scored) == 3 * 8  # the score shards of rounds 1-3
    assert set(scored) == {("pairrm", "llm-blender/PairRM-hf")}
    evaluated = re.findall(r"scripts/evaluate\.py .*?--judges '(\{.*?\}\})'", output)
    assert len(evaluated) == 3  # evaluate of rounds 1-3, by the training judge alone
    for judges in map(json.loads, evaluated):
        assert list(judges) == ["training"]
        assert judges["training"]["backend"] == "pairrm"
        assert judges["training"]["model"] == "llm-blender/PairRM-hf"
    assert "--temperature 0.05" not in output  # nothing leaks in from the CPU demo's config
    assert "--per-round UCLA-AGI/data-mistral-7b-instruct-sppo-iter1" in output


REPORT_ITEMS = {  # category -> labels of its items (the per-round ones once per round)
    "1. Did it work": [
        "win rate per round",
        "win rate table",
        "length and length-controlled win rate",
    ],
    "2. Training": ["training curves", "estimated win rates p_w, p_l"],
    "3. What the judge rewards": ["judge against length, repetition, order"],
    "4. Examples": ["example responses"],
    "5. Run": ["config and versions", "throughput per stage"],
}
REPORT_FILES = [
    *("win_rates.png", "win_rates.html", "length.png", "judge_rewards.png"),
    *("examples.html", "config.html", "training.png", "win_rate_estimates.png"),
    "throughput.html",
]


@pytest.fixture(scope="module")
def tiny_report(tiny_run):
    folder, _ = tiny_run
    run = snakemake(folder, "--report", "results/report.html")
    assert run.returncode == 0, run.stderr[-3000:]
    return folder / "results" / "report.html"


def test_report_holds_every_item(tiny_run, tiny_report):
    folder, _ = tiny_run
    results = folder / "results"
    for it in (1, 2):
        for name in ("training.png", "win_rate_estimates.png"):
            assert (results / f"iter{it}/report" / name).stat().st_size > 10_000
    page = tiny_report.read_text()
    for category, labels in REPORT_ITEMS.items():
        assert category in page
        assert all(label in page for label in labels), category
    assert all(name in page for name in REPORT_FILES)
    assert "Round 1" in page and "Round 2" in page  # per-round subcategories
    assert "length-controlled" in page and "swap places" in page  # the captions
    table = (results / "report/win_rates.html").read_text()
    assert "length-controlled" in table and "base model" in table and "round 1" in table
    examples = (results / "report/examples.html").read_text()
    assert examples.count("<tr>") == 1 + 6 and "<th>round 2</th>" in examples
    versions = (results / "report/config.html").read_text()
    assert "transformers" in versions and "snakemake" in versions and "k: 3" in versions
    assert "round 2 training" in versions  # the trainer's environment, from sppo_training.json
    rates = (results / "benchmarks/throughput.html").read_text()
    for stage in ("sample", "score", "train", "eval_generate"):
        assert f"<td>{stage}</td>" in rates
    assert "generated tokens" in rates and "MFU unknown on this device" in rates
    metrics = json.loads((results / "iter2/eval/metrics.json").read_text())["vs_base"]
    assert 0 <= metrics["lc_win_rate_ci_low"] <= metrics["lc_win_rate"] <= 1


def test_exports_for_alpaca_eval_and_duckdb(tiny_run):
    from sppoflow.exports import query

    folder, _ = tiny_run
    results = folder / "results"
    for it in (0, 1, 2):
        records = json.loads((results / f"export/alpaca_eval_iter{it}.json").read_text())
        responses = read_table(results / f"iter{it}/eval/responses.parquet", SAMPLES)
        assert len(records) == len(responses) == 6
        assert {r["generator"] for r in records} == {f"sppo-iter{it}"}
        assert set(responses.prompt) == {r["instruction"] for r in records}
        assert set(responses.response) == {r["output"] for r in records}
    cwd = os.getcwd()
    os.chdir(folder)  # the views read the parquet files relative to the run folder
    try:
        database = Path("results/sppo.duckdb")
        rates = query(database, "SELECT * FROM win_rates")
        assert len(rates) == 4 and set(rates["round"]) == {1, 2}
        counts = query(database, "SELECT round, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1")
        assert counts["n"].tolist() == [18, 18]
        steps = query(database, "SELECT round, max(step) AS steps FROM train_log GROUP BY 1")
        assert len(steps) == 2
        tables = set(query(database, "SELECT view_name FROM duckdb_views() WHERE NOT internal")
                     ["view_name"])  # fmt: skip
        assert {
            "samples",
            "preferences",
            "pairs",
            "response_win_rates",
            "eval_judgements",
            "provenance",
        } <= tables
    finally:
        os.chdir(cwd)


def test_report_renders_in_headless_chromium(tiny_report, tmp_path):
    """Open the report as a reader would, show each plot and check it is drawn."""
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (the test command installs them)")
    from browser import open_report, show_item, shown_plot_stats

    with open_report(tiny_report) as browser:
        shown = [
            ("1. Did it work", None, "win rate per round"),
            ("1. Did it work", None, "length and length-controlled win rate"),
            ("2. Training", "Round 1", "training curves"),
            ("3. What the judge rewards", None, "judge against length, repetition, order"),
        ]
        for category, subcategory, label in shown:
            image = show_item(browser, category, subcategory, label)
            width, height = browser.execute_script(
                "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image
            )
            assert width > 300 and height > 150, label  # decoded: not a broken image
            shot = tmp_path / f"{label[:20].replace(' ', '_')}.png"
            browser.save_screenshot(str(shot))
            colours, dark_share = shown_plot_stats(shot, image.rect)
            assert colours > 20 and 0.001 < dark_share < 0.5, (label, colours, dark_share)
