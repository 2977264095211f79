"""What a run leaves for people and tools: the tiny run's HTML report (every item, rendered in
headless Chromium) and its exports (AlpacaEval files, the DuckDB views)."""

import json
import os
from pathlib import Path

import pytest

from conftest import snakemake
from sppoflow.tables import SAMPLES, read_table

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
