"""The metrics.json contract: what the writers write reads back equal, the layout is byte for byte
the one readers and DuckDB users know, and a broken file stops with one line naming the key."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from sppoflow.errors import UserError
from sppoflow.evaluate.judging import summarise, verdicts
from sppoflow.evaluate.length_control import length_controlled_win_rate
from sppoflow.evaluate.round_metrics import (
    HeadToHead,
    Objective,
    Pair,
    ResponseMeasures,
    read_head_to_head,
    read_round_metrics,
    round_metrics_text,
    write_head_to_head,
    write_round_metrics,
)
from sppoflow.evaluate.statistics import mean_with_ci

N = 12
JUDGES = {"training": "pairrm", "second": "reward_model"}
MEASURES = ResponseMeasures(
    n_responses=N,
    mean_tokens=40.5,
    truncated_share=0.25,
    mean_prompt_overlap=0.5,
    mean_repetition=0.05,
    loop_share=0.0,
)
OBJECTIVE = Objective(round=MEASURES, base=replace(MEASURES, mean_tokens=30.0))


def judgements(opponents=("base", "previous"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for judge in JUDGES:
        for opponent in opponents:
            prob = rng.choice([0.2, 0.5, 0.7, 0.9], N)
            frames.append(
                pd.DataFrame(
                    {
                        "judge": judge,
                        "opponent": opponent,
                        "prob": prob,
                        "outcome": np.where(prob == 0.5, 0.5, (prob > 0.5).astype(float)),
                        "tokens": rng.integers(20, 120, N),
                        "opponent_tokens": rng.integers(20, 120, N),
                        "order_flipped": rng.uniform(0, 1, N) < 0.2
                        if judge == "training"
                        else np.nan,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def todays_layout(judgements: pd.DataFrame, round_number: int, method: str) -> dict:
    """metrics.json as evaluation.summarise and scripts/evaluate.py built it before the
    contract (commit b0606db), kept here as the reference the writer must match."""

    def old_verdicts(rows: pd.DataFrame) -> dict:
        metrics = {}
        for opponent, group in rows.groupby("opponent", sort=False):
            win_rate, win_low, win_high = mean_with_ci(group["outcome"].to_numpy())
            prob, prob_low, prob_high = mean_with_ci(group["prob"].to_numpy())
            lc = length_controlled_win_rate(
                group["outcome"].to_numpy(),
                group["tokens"].to_numpy(),
                group["opponent_tokens"].to_numpy(),
            )
            flips = group["order_flipped"].mean()
            metrics[f"vs_{opponent}"] = {
                "n_prompts": len(group),
                "win_rate": win_rate,
                "win_rate_ci_low": win_low,
                "win_rate_ci_high": win_high,
                "lc_win_rate": lc.win_rate,
                "lc_win_rate_ci_low": lc.ci_low,
                "lc_win_rate_ci_high": lc.ci_high,
                "length_coef": lc.length_coef,
                "wins": int((group["outcome"] == 1).sum()),
                "ties": int((group["outcome"] == 0.5).sum()),
                "losses": int((group["outcome"] == 0).sum()),
                "mean_prob": prob,
                "mean_prob_ci_low": prob_low,
                "mean_prob_ci_high": prob_high,
                "mean_tokens": float(group["tokens"].mean()),
                "mean_opponent_tokens": float(group["opponent_tokens"].mean()),
                "order_flip_rate": None if np.isnan(flips) else float(flips),
            }
        return metrics

    primary = next(iter(JUDGES))
    by_judge = {
        name: {"backend": backend, **old_verdicts(judgements[judgements["judge"] == name])}
        for name, backend in JUDGES.items()
    }
    metrics: dict = {"round": round_number, "method": method}
    metrics.update(judge=JUDGES[primary], judge_name=primary)
    metrics.update({k: v for k, v in by_judge[primary].items() if k != "backend"})
    metrics["judges"] = by_judge
    metrics["objective"] = {
        "round": {"n_responses": N, "mean_tokens": 40.5, "truncated_share": 0.25,
                  "mean_prompt_overlap": 0.5, "mean_repetition": 0.05, "loop_share": 0.0},
        "base": {"n_responses": N, "mean_tokens": 30.0, "truncated_share": 0.25,
                 "mean_prompt_overlap": 0.5, "mean_repetition": 0.05, "loop_share": 0.0},
    }  # fmt: skip
    return metrics


def round_metrics(opponents=("base", "previous")):
    return replace(summarise(judgements(opponents), 2, JUDGES, "sppo"), objective=OBJECTIVE)


def test_the_writer_writes_todays_layout_byte_for_byte(tmp_path):
    path = tmp_path / "metrics.json"
    write_round_metrics(path, round_metrics())
    expected = json.dumps(todays_layout(judgements(), 2, "sppo"), indent=2) + "\n"
    assert path.read_bytes() == expected.encode()
    layout = json.loads(path.read_text())
    assert list(layout) == [
        "round", "method", "judge", "judge_name", "vs_base", "vs_previous", "judges", "objective"
    ]  # fmt: skip
    assert list(layout["judges"]["second"]) == ["backend", "vs_base", "vs_previous"]
    assert layout["vs_base"] == layout["judges"]["training"]["vs_base"]
    assert layout["judges"]["second"]["vs_base"]["order_flip_rate"] is None


@pytest.mark.parametrize("opponents", [("base", "previous"), ("base",)], ids=["both", "base"])
def test_round_metrics_read_back_equal(tmp_path, opponents):
    metrics = round_metrics(opponents)
    write_round_metrics(tmp_path / "metrics.json", metrics)
    assert read_round_metrics(tmp_path / "metrics.json") == metrics
    no_objective = replace(metrics, objective=None, method=None)
    write_round_metrics(tmp_path / "bare.json", no_objective)
    assert read_round_metrics(tmp_path / "bare.json") == no_objective
    assert no_objective.method_name == "policy"


def test_head_to_head_reads_back_equal(tmp_path):
    rows = judgements(("dpo",))
    h2h = HeadToHead(
        round=3,
        methods=("sppo", "dpo"),
        pairs=(
            Pair("sppo", "dpo", {n: verdicts(g) for n, g in rows.groupby("judge", sort=False)}),
        ),
    )
    write_head_to_head(tmp_path / "h2h.json", h2h)
    assert read_head_to_head(tmp_path / "h2h.json") == h2h
    layout = json.loads((tmp_path / "h2h.json").read_text())
    assert list(layout) == ["round", "methods", "pairs"]
    assert list(layout["pairs"][0]) == ["method", "opponent", "judges"]


def test_the_single_judge_layout_still_reads(tmp_path):
    """Files from before evaluation judges: no "judges"; the top level is the one judge."""
    layout = todays_layout(judgements(), 2, "sppo")
    for key in ("judges", "judge_name", "objective"):
        del layout[key]
    (tmp_path / "metrics.json").write_text(json.dumps(layout))
    metrics = read_round_metrics(tmp_path / "metrics.json")
    assert list(metrics.judges) == ["training"] and metrics.primary.backend == "pairrm"
    assert metrics.against("previous") == round_metrics().against("previous")
    assert metrics.objective is None


def broken(tmp_path, change) -> str:
    """The one-line error of reading a written metrics.json after ``change`` to its JSON."""
    layout = json.loads(round_metrics_text(round_metrics()))
    change(layout)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(layout))
    with pytest.raises(UserError) as error:
        read_round_metrics(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["judges"]["training"]["vs_base"].pop("win_rate"),
            "judges.training.vs_base: no key win_rate",
        ),
        (
            lambda m: m["judges"]["second"]["vs_previous"].update(mean_prob="0.5"),
            "judges.second.vs_previous.mean_prob: expected a number, found str",
        ),
        (
            lambda m: m["judges"]["second"]["vs_base"].update(wins=1.5),
            "judges.second.vs_base.wins: expected an integer, found float",
        ),
        (lambda m: m.pop("round"), "no key round"),
        (lambda m: m["judges"]["training"].pop("backend"), "judges.training: no key backend"),
        (lambda m: m["objective"]["base"].pop("loop_share"), "objective.base: no key loop_share"),
        (lambda m: m.update(judges={}), "judges: no judge"),
    ],
    ids=["missing", "string", "float-count", "round", "backend", "objective", "no-judge"],
)
def test_a_broken_file_names_the_file_and_the_key(tmp_path, change, message):
    assert broken(tmp_path, change) == message


def test_unreadable_json_and_broken_head_to_head_are_one_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"round": 1,')
    with pytest.raises(UserError, match=r"metrics\.json: cannot read metrics: Expecting"):
        read_round_metrics(path)
    with pytest.raises(UserError, match=r"missing\.json: cannot read metrics"):
        read_round_metrics(tmp_path / "missing.json")
    path.write_text(json.dumps({"round": 3, "methods": ["a", "b"], "pairs": [{"method": "a"}]}))
    with pytest.raises(UserError, match=r"metrics\.json: pairs\[0\]: no key opponent$"):
        read_head_to_head(path)
