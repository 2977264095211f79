"""The summary stage: one table across rounds (and methods), and what the judge rewards in
practice."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sppoflow.errors import UserError


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read metrics: {error}") from error


def round_row(metrics_path: Path, stats_path: Path, log_path: Path) -> dict:
    metrics = _read_json(metrics_path)
    row: dict = {"method": metrics.get("method"), "round": metrics["round"]}
    row["judge"] = metrics["judge"]
    for opponent in ("base", "previous"):
        m = metrics.get(f"vs_{opponent}")
        if not m:
            continue
        row[f"win_rate_vs_{opponent}"] = m["win_rate"]
        row[f"win_rate_vs_{opponent}_ci_low"] = m["win_rate_ci_low"]
        row[f"win_rate_vs_{opponent}_ci_high"] = m["win_rate_ci_high"]
        for key in ("lc_win_rate", "lc_win_rate_ci_low", "lc_win_rate_ci_high", "length_coef"):
            row[f"{key}_vs_{opponent}"] = m.get(key)
        row[f"mean_prob_vs_{opponent}"] = m["mean_prob"]
    for name, verdicts in metrics.get("judges", {}).items():
        if name != metrics.get("judge_name") and "vs_base" in verdicts:
            row[f"win_rate_vs_base_{name}"] = verdicts["vs_base"]["win_rate"]
            row[f"lc_win_rate_vs_base_{name}"] = verdicts["vs_base"].get("lc_win_rate")
    for key, value in metrics.get("objective", {}).get("round", {}).items():
        if key != "n_responses":
            row[f"eval_{key}"] = value
    base = metrics["vs_base"]
    row.update(
        n_eval_prompts=base["n_prompts"],
        mean_response_tokens=base["mean_tokens"],
        base_response_tokens=base["mean_opponent_tokens"],
    )
    stats = pd.read_parquet(stats_path).iloc[0]
    for column in (
        "n_prompts",
        "n_pairs",
        "n_no_preference",
        "mean_spread",
        "mean_p_winner",
        "mean_p_loser",
        "share_truncated",
    ):
        row[f"train_{column}" if column == "n_prompts" else column] = stats[column]
    log = pd.read_csv(log_path)
    last = log.iloc[-1]
    row.update(
        train_steps=int(last["step"]),
        train_loss_first=float(log["loss"].iloc[0]),
        train_loss_last=float(last["loss"]),
        logratio_winner_last=float(last["logratio_winner"]),
        logratio_loser_last=float(last["logratio_loser"]),
        reward_accuracy_last=float(last.get("reward_accuracy", float("nan"))),
    )
    return row


def rank_correlation(a: pd.Series, b: pd.Series) -> float:
    """Spearman's rank correlation (Pearson's on ranks; no SciPy needed)."""
    return float(a.rank().corr(b.rank()))


def primary_against_base(rows: pd.DataFrame) -> pd.DataFrame:
    """The primary (first) judge's verdicts against the base model."""
    rows = rows[rows["opponent"] == "base"]
    if "judge" in rows:
        rows = rows[rows["judge"] == rows["judge"].iloc[0]]
    return rows


def judge_rewards(judgements_path: Path, round_number: int, method: str | None = None) -> dict:
    """How the judge's verdict against the base moves with length and with prompt overlap."""
    rows = primary_against_base(pd.read_parquet(judgements_path))
    length_gap = rows["tokens"] - rows["opponent_tokens"]
    overlap_gap = rows["overlap"] - rows["opponent_overlap"]
    result = {
        "method": method,
        "round": round_number,
        "corr_prob_length_gap": rank_correlation(rows["prob"], length_gap),
        "corr_prob_overlap_gap": rank_correlation(rows["prob"], overlap_gap),
        "mean_overlap": rows["overlap"].mean(),
        "base_mean_overlap": rows["opponent_overlap"].mean(),
    }
    if rows["reward"].notna().all():
        scores = pd.concat([rows["reward"], rows["opponent_reward"]], ignore_index=True)
        tokens = pd.concat([rows["tokens"], rows["opponent_tokens"]], ignore_index=True)
        overlap = pd.concat([rows["overlap"], rows["opponent_overlap"]], ignore_index=True)
        result["corr_score_length"] = rank_correlation(scores, tokens)
        result["corr_score_overlap"] = rank_correlation(scores, overlap)
    return result


def summarise_rounds(
    metrics: Sequence[Path], stats: Sequence[Path], logs: Sequence[Path], judgements: Sequence[Path]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not (len(metrics) == len(stats) == len(logs) == len(judgements)):
        raise UserError("summary needs the same number of metrics, stats, logs and judgement files")
    table = pd.DataFrame([round_row(*paths) for paths in zip(metrics, stats, logs, strict=True)])
    rewards = pd.DataFrame(
        [
            judge_rewards(path, n, method)
            for path, n, method in zip(judgements, table["round"], table["method"], strict=True)
        ]
    )
    # rows stay in the order given (each method's rounds in turn)
    return table, rewards
