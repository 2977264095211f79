"""The summary stage: one table across rounds (and methods), and what the judge rewards in
practice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from sppoflow.errors import UserError
from sppoflow.evaluate.round_metrics import OPPONENTS, read_round_metrics


def round_row(metrics_path: Path, stats_path: Path, log_path: Path) -> dict:
    metrics = read_round_metrics(metrics_path)
    primary = metrics.primary
    row: dict = {"method": metrics.method, "round": metrics.round, "judge": primary.backend}
    for opponent in OPPONENTS:
        v = primary.against(opponent)
        if v is None:
            continue
        row[f"win_rate_vs_{opponent}"] = v.win_rate
        row[f"win_rate_vs_{opponent}_ci_low"] = v.win_rate_ci_low
        row[f"win_rate_vs_{opponent}_ci_high"] = v.win_rate_ci_high
        for key in ("lc_win_rate", "lc_win_rate_ci_low", "lc_win_rate_ci_high", "length_coef"):
            row[f"{key}_vs_{opponent}"] = getattr(v, key)
        row[f"mean_prob_vs_{opponent}"] = v.mean_prob
    for name, judge in metrics.judges.items():
        if name != metrics.primary_name:
            row[f"win_rate_vs_base_{name}"] = judge.base.win_rate
            row[f"lc_win_rate_vs_base_{name}"] = judge.base.lc_win_rate
    if metrics.objective is not None:
        for key, value in asdict(metrics.objective.round).items():
            if key != "n_responses":
                row[f"eval_{key}"] = value
    row.update(
        n_eval_prompts=primary.base.n_prompts,
        mean_response_tokens=primary.base.mean_tokens,
        base_response_tokens=primary.base.mean_opponent_tokens,
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


def judge_reward_row(judgements_path: Path, round_number: int, method: str | None = None) -> dict:
    """A row of judge_rewards.tsv: how the primary judge's verdict against the base moves
    with length and with prompt overlap."""
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
            judge_reward_row(path, n, method)
            for path, n, method in zip(judgements, table["round"], table["method"], strict=True)
        ]
    )
    # rows stay in the order given (each method's rounds in turn)
    return table, rewards
