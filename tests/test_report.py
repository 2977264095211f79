"""Report figures and tables on synthetic stage outputs: both judge kinds, HTML escaping,
and the script's errors. The end-to-end report is in test_workflow.py."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import ROOT
from sppoflow.errors import UserError
from sppoflow.evaluate.judging import summarise
from sppoflow.evaluate.round_metrics import (
    HeadToHead,
    Objective,
    Pair,
    ResponseMeasures,
    write_round_metrics,
)
from sppoflow.report import figures, pages
from sppoflow.tables import EVAL_JUDGEMENTS, SAMPLES, write_table

N = 40


def judgements(
    pairwise: bool, seed: int, longer_by: float = 0.0, judges=("training",)
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for judge, opponent in [(j, o) for j in judges for o in ("base", "previous")]:
        tokens = rng.integers(20, 120, N) + longer_by
        opponent_tokens = rng.integers(20, 120, N)
        prob = rng.uniform(0.05, 0.95, N)
        score = np.full(N, np.nan) if pairwise else rng.uniform(0, 1, N)
        frames.append(
            pd.DataFrame(
                {
                    "prompt_id": [f"p{i:016x}" for i in range(N)],
                    "judge": judge,
                    "opponent": opponent,
                    "prob": prob,
                    "outcome": np.where(prob > 0.5, 1.0, 0.0),
                    "tokens": tokens,
                    "opponent_tokens": opponent_tokens,
                    "overlap": rng.uniform(0, 1, N),
                    "opponent_overlap": rng.uniform(0, 1, N),
                    "repetition": rng.uniform(0, 0.3, N),
                    "opponent_repetition": rng.uniform(0, 0.3, N),
                    "reward": score,
                    "opponent_reward": np.full(N, np.nan) if pairwise else rng.uniform(0, 1, N),
                    "order_flipped": rng.uniform(0, 1, N) < 0.2 if pairwise else np.nan,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def responses(text: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt_id": [f"p{i:016x}" for i in range(N)],
            "prompt": [f"question {i} <b>bold?</b>" for i in range(N)],
            "response_idx": 0,
            "response": [f"{text} {i}" for i in range(N)],
            "response_token_ids": [[1, 2, 3]] * N,
            "prompt_tokens": 10,
            "response_tokens": 3,
            "finish_reason": "stop",
        }
    )


@pytest.mark.parametrize("pairwise", [False, True], ids=["pointwise", "pairwise"])
def test_judge_rewards_draws_both_judge_kinds(tmp_path, pairwise):
    paths = []
    for round_number in (1, 2):
        path = tmp_path / f"judgements{round_number}.parquet"
        write_table(judgements(pairwise, round_number), path, EVAL_JUDGEMENTS)
        paths.append(path)
    png = tmp_path / "judge.png"
    figures.judge_rewards_figure(paths, [1, 2], png)
    with Image.open(png) as image:
        width, height = image.size
    # the pairwise figure has a third panel: how often swapping the pair flips the verdict
    assert (width > 1500) == pairwise and height > 300


def test_win_rate_table_and_plots_from_evaluation_metrics(tmp_path):
    metrics = [
        summarise(judgements(True, r, longer_by=10 * r), r, {"training": "pairrm"}, "sppo")
        for r in (1, 2, 3)
    ]
    table = pages.win_rate_table(metrics)
    assert len(table) == 6
    assert table["against"].tolist()[:4] == ["base model", "round 0", "base model", "round 1"]
    first = metrics[0].primary.base
    assert table.loc[0, "win rate"] == first.win_rate
    assert table.loc[0, "length-controlled"] == first.lc_win_rate
    assert table.loc[0, "wins / ties / losses"] == f"{first.wins} / 0 / {first.losses}"
    figures.win_rates(metrics, tmp_path / "w.png")
    pages.win_rate_page(metrics, tmp_path / "w.html")
    figures.lengths(metrics, tmp_path / "l.png")
    page = (tmp_path / "w.html").read_text()
    assert "<table" in page and "length-controlled" in page and "round 2" in page
    for name in ("w.png", "l.png"):
        with Image.open(tmp_path / name) as image:
            assert image.size[0] > 500


def test_methods_and_judges_side_by_side(tmp_path):
    """Two methods, two judges: a panel per judge, a row per method, round, judge and
    opponent, the measures that need no judge, and the head-to-head table."""
    judges = {"training": "relevance", "second": "pairrm"}
    measures = ResponseMeasures(
        n_responses=N,
        mean_tokens=40.0,
        truncated_share=0.1,
        mean_prompt_overlap=0.5,
        mean_repetition=0.05,
        loop_share=0.0,
    )
    objective = Objective(round=measures, base=replace(measures, mean_tokens=30.0))
    metrics = []
    for method in ("sppo", "dpo"):
        for r in (1, 2):
            m = summarise(judgements(True, r, judges=tuple(judges)), r, judges, method)
            metrics.append(replace(m, objective=objective))
    assert metrics[0].primary_name == "training" and metrics[0].primary.backend == "relevance"
    assert list(metrics[0].judges) == ["training", "second"]
    table = pages.win_rate_table(metrics)
    assert len(table) == 2 * 2 * 2 * 2
    assert set(table["method"]) == {"sppo", "dpo"} and set(table["judge"]) == {
        "training (relevance)",
        "second (pairrm)",
    }
    objective_rows = pages.objective_table(metrics)
    assert objective_rows["method"].tolist() == ["base model", "sppo", "sppo", "dpo", "dpo"]
    assert objective_rows["mean tokens"].tolist() == [30.0, 40.0, 40.0, 40.0, 40.0]
    figures.win_rates(metrics, tmp_path / "w.png")
    pages.win_rate_page(metrics, tmp_path / "w.html")
    figures.lengths(metrics, tmp_path / "l.png")
    with Image.open(tmp_path / "w.png") as image:
        assert image.size[0] > 1200  # one panel per judge
    page = (tmp_path / "w.html").read_text()
    assert "Measures that need no judge" in page and "repetition loops" in page
    verdicts = {"training": metrics[1].against("base"), "second": metrics[1].against("previous")}
    h2h = HeadToHead(round=2, methods=("sppo", "dpo"), pairs=(Pair("sppo", "dpo", verdicts),))
    pages.head_to_head(h2h, tmp_path / "h2h.html")
    page = (tmp_path / "h2h.html").read_text()
    assert page.count("<td>sppo</td>") == 2 and page.count("<td>dpo</td>") == 2
    assert f"{metrics[1].against('base').win_rate:.3f}" in page


def test_examples_escape_html_and_align_rounds(tmp_path):
    base, later = tmp_path / "base.parquet", tmp_path / "r1.parquet"
    write_table(responses("base answer"), base, SAMPLES)
    write_table(responses("round answer <script>").iloc[::-1], later, SAMPLES)
    out = tmp_path / "examples.html"
    pages.examples(base, [later], [1], out, n=3)
    page = out.read_text()
    assert page.count("<tr>") == 1 + 3
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page and "<script>" not in page
    # the round's answer sits in the row of its own prompt, whatever the file order
    row = page.split("<tr>")[2]
    assert "question 0 " in row and "base answer 0<" in row and "&lt;script&gt; 0<" in row
    assert "3 of 40 held-out prompts" in page


def test_training_curves_and_estimates(tmp_path):
    steps = np.arange(1, 9)
    log = pd.DataFrame(
        {
            "step": steps,
            "epoch": steps / 8,
            "loss": 10 / steps,
            "learning_rate": 5e-5 * (1 - steps / 9),
            "grad_norm": 100 / steps,
            "logratio_winner": np.linspace(0, 2, 8),
            "logratio_loser": np.linspace(0, -2, 8),
            "target_winner": 2.5,
            "target_loser": -2.5,
        }
    )
    log.to_csv(tmp_path / "log.csv", index=False)
    figures.training_curves(tmp_path / "log.csv", "Round 1", tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10_000
    # a baseline's log: no per-response targets, a margin target (IPO), reward accuracy
    log = log.assign(
        target_winner=np.nan,
        target_loser=np.nan,
        target_margin=4.0,
        reward_margin=0.1 * (log.logratio_winner - log.logratio_loser),
        reward_accuracy=np.linspace(0, 1, 8),
    )
    log.to_csv(tmp_path / "ipo.csv", index=False)
    figures.training_curves(tmp_path / "ipo.csv", "ipo, round 1", tmp_path / "ipo.png")
    with Image.open(tmp_path / "ipo.png") as image:
        assert image.size[1] > 600  # two rows of panels


def test_bad_judgements_file_is_named(tmp_path):
    broken = tmp_path / "judgements.parquet"
    pd.DataFrame({"prompt_id": ["p0"]}).to_parquet(broken)
    with pytest.raises(UserError, match=r"judgements\.parquet"):
        figures.judge_rewards_figure([broken], [1], tmp_path / "j.png")


def test_report_script_needs_one_file_per_round(tmp_path):
    metrics = tmp_path / "metrics.json"
    write_round_metrics(metrics, summarise(judgements(True, 1), 1, {"training": "pairrm"}))
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/report.py"), "summary", "--metrics", str(metrics),
         "--judgements", "a.parquet", "b.parquet", "--responses", "c.parquet",
         "--out-dir", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2
    assert "one --judgements file (and --models folder) per round" in run.stderr
    assert not (tmp_path / "out").exists()


def test_config_page_shows_the_config_and_each_environments_versions(tmp_path):
    out = tmp_path / "config.html"
    training = {1: {"versions": {"torch": "9.9.9", "deepspeed": "0.1"}}, 2: {}}
    pages.config_page({"rounds": 2, "judge": {"backend": "pairrm"}}, out, training)
    page = out.read_text()
    assert "backend: pairrm" in page and "rounds: 2" in page
    assert "<th>report job</th><th>round 1 training</th><th>round 2 training</th>" in page
    torch_row = page.split("<td>torch</td>")[1].split("</tr>")[0]
    assert "9.9.9" in torch_row and "not recorded" in torch_row  # round 2 recorded none
