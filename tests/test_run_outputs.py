"""What a run leaves for people and tools: the tiny run's HTML report (every item, rendered in
headless Chromium) and its exports (AlpacaEval files, the DuckDB views, the answers for common
question sets read back by the question sets' tools)."""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from helpers import planned_jobs, snakemake
from question_set_tools import (
    ARENA_HARD_QUESTIONS,
    MT_BENCH_QUESTIONS,
    fastchat_loader,
    read_arena_hard_answers,
    write_jsonl,
)
from sppoflow.tables import QUESTION_SET_ANSWERS, SAMPLES, read_table

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
    rates = (results / "timings/throughput.html").read_text()
    for stage in ("sample", "score", "train", "eval_generate"):
        assert f"<td>{stage}</td>" in rates
    assert "generated tokens" in rates and "GFLOP/s" in rates and "share of peak" in rates
    metrics = json.loads((results / "iter2/eval/metrics.json").read_text())["vs_base"]
    assert 0 <= metrics["lc_win_rate_ci_low"] <= metrics["lc_win_rate"] <= 1


def test_exports_for_alpaca_eval_and_duckdb(tiny_run):
    from sppoflow.report.exports import query

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


def test_question_set_answers_of_each_round_are_read_back_by_the_tools(
    tiny_run, run_snakemake, tmp_path
):
    """The tiny run, with small question files of MT-Bench and Arena-Hard and lm-eval's
    leaderboard configured: only the new jobs run (and the report, which shows the config);
    every round's answers are read back by FastChat's loader and as arena-hard-auto reads
    them, and every round has its lm-eval command."""
    fastchat = fastchat_loader()  # skips without FastChat, before any job runs
    folder, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(folder, run, symlinks=True)  # keeps the files' times: nothing is stale
    write_jsonl(run / "data" / "mt_bench.jsonl", MT_BENCH_QUESTIONS)
    write_jsonl(run / "data" / "arena_hard.jsonl", ARENA_HARD_QUESTIONS)
    config = yaml.safe_load((run / "config" / "config.yaml").read_text())
    config["evaluate"]["question_sets"] = {
        "mt_bench": "data/mt_bench.jsonl",
        "arena_hard": "data/arena_hard.jsonl",
        "lm_eval_tasks": ["leaderboard"],
    }
    (run / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    plan = run_snakemake(run, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert Counter(rule for rule, _, _ in planned_jobs(plan.stdout + plan.stderr)) == {
        "question_set_answers": 6,  # rounds 0, 1, 2 of both question sets
        "export_question_set_answers": 6,
        "export_lm_eval": 3,
        "report_figures": 1,
        "all": 1,
    }
    # the answer jobs mostly load their model: two at a time (cpu_threads keeps the bits)
    done = run_snakemake(run, "--cores", "2", "--resources", "gpu=2")
    assert done.returncode == 0, done.stderr[-5000:]
    results = run / "results"
    models = {f"sppo-iter{it}" for it in (0, 1, 2)}
    loaded = fastchat.load_model_answers(str(results / "export/mt_bench/model_answer"))
    assert set(loaded) == models
    questions = fastchat.load_questions(str(run / "data" / "mt_bench.jsonl"), None, None)
    fastchat.check_data(questions, loaded, {}, sorted(models), {})  # gen_judgment's check
    for model, answers in loaded.items():
        assert set(answers) == {81, 82, 83}  # the question file's ids, integers
        table = read_table(results / f"iter{model[-1]}/eval/mt_bench_answers.parquet",
                           QUESTION_SET_ANSWERS)  # fmt: skip
        for question_id, answer in answers.items():
            turns = table[table.question_id == str(question_id)].sort_values("turn")
            assert answer["choices"][0]["turns"] == turns["response"].tolist()
            assert len(turns) == 2 and turns["prompt_tokens"].is_monotonic_increasing
    arena = read_arena_hard_answers(results / "export/arena_hard/model_answer")
    assert set(arena) == models and all(set(a) == {"0a1b", "2c3d"} for a in arena.values())
    for it in (0, 1, 2):
        script = (results / f"export/lm_eval_iter{it}.sh").read_text()
        assert f"$RUN/results/iter{it}/model," in script and "--tasks leaderboard" in script


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
