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


def method_of(metrics: dict) -> str:
    return metrics.get("method") or "policy"


def judges_of(metrics: dict) -> dict[str, dict]:
    """A round's verdicts per judge (metrics of a single judge have no "judges" entry): the
    one reader of metrics.json's verdicts, for the summary table and the report's."""
    single = {metrics.get("judge_name", "training"): {**metrics, "backend": metrics["judge"]}}
    return metrics.get("judges") or single


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
    for name, verdicts in judges_of(metrics).items():
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


def pooled_rewards(rows: pd.DataFrame) -> pd.DataFrame:
    """A pointwise judge's reward of each response once: the base model's (once per prompt,
    ``round`` "base") and the rounds' (``rows`` against the base, with a ``round`` column)."""
    base = rows.drop_duplicates("prompt_id")[["opponent_tokens", "opponent_overlap"]]
    base = base.assign(reward=rows.drop_duplicates("prompt_id")["opponent_reward"], round="base")
    base.columns = ["tokens", "overlap", "reward", "round"]
    return pd.concat([base, rows[["tokens", "overlap", "reward", "round"]]], ignore_index=True)


def judge_correlations(rows: pd.DataFrame) -> dict[str, float]:
    """What the judge rewards, as Spearman correlations: of its verdicts against the base
    with the length and prompt-overlap gaps, and (pointwise judges) of its rewards with
    length and overlap. ``rows``: the primary judge against the base, with a ``round``."""
    length_gap = rows["tokens"] - rows["opponent_tokens"]
    overlap_gap = rows["overlap"] - rows["opponent_overlap"]
    result = {
        "corr_prob_length_gap": rank_correlation(rows["prob"], length_gap),
        "corr_prob_overlap_gap": rank_correlation(rows["prob"], overlap_gap),
    }
    if rows["reward"].notna().all():
        pooled = pooled_rewards(rows)
        result["corr_reward_length"] = rank_correlation(pooled["reward"], pooled["tokens"])
        result["corr_reward_overlap"] = rank_correlation(pooled["reward"], pooled["overlap"])
    return result


def judge_rewards(judgements_path: Path, round_number: int, method: str | None = None) -> dict:
    """How the judge's verdict against the base moves with length and with prompt overlap."""
    rows = primary_against_base(pd.read_parquet(judgements_path)).assign(round=round_number)
    return {
        "method": method,
        "round": round_number,
        **judge_correlations(rows),
        "mean_overlap": rows["overlap"].mean(),
        "base_mean_overlap": rows["opponent_overlap"].mean(),
    }


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
