"""The report's figures for `snakemake --report`: did SPPO work, and why.

Each function reads stage outputs and writes one PNG under results/ (matplotlib, no display);
the rules mark them for the report with a caption (workflow/report/*.rst). Its HTML pages are
in sppoflow.report.pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sppoflow.atomic import write_atomically
from sppoflow.evaluate.round_metrics import RoundMetrics
from sppoflow.report.summary import judge_correlations, pooled_rewards, primary_against_base
from sppoflow.tables import EVAL_JUDGEMENTS, PAIRS, read_table

STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False}


def _save(fig, path: Path) -> None:
    """The figure as ``path``, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    write_atomically(path, lambda partial: fig.savefig(partial, format=path.suffix[1:]))
    plt.close(fig)


# -- per round -------------------------------------------------------------------------------


def training_curves(log_path: Path, title: str, out: Path) -> None:
    """Loss, log-ratios against their targets, the winner-loser margin (the implicit reward
    margin DPO and IPO train) and its accuracy, learning rate and gradient norm per step."""
    log = pd.read_csv(log_path)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(15, 6.4))
        axes = axes.ravel()
        axes[0].plot(log["step"], log["loss"], color="black")
        axes[0].set(title="loss", xlabel="step")
        for name, color in (("winner", "tab:green"), ("loser", "tab:red")):
            axes[1].plot(log["step"], log[f"logratio_{name}"], color=color, label=f"{name}")
            if log[f"target_{name}"].notna().any():
                axes[1].plot(
                    log["step"], log[f"target_{name}"], color=color, ls="--", label=f"{name} target"
                )
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[1].set(title="log pi/pi_t against targets", xlabel="step")
        axes[1].legend(fontsize=7)
        if "reward_margin" in log:  # logs written before the baselines lack these columns
            margin = log["logratio_winner"] - log["logratio_loser"]
            axes[2].plot(log["step"], margin, color="tab:olive", label="h = l_w - l_l")
            if log["target_margin"].notna().any():
                axes[2].plot(
                    log["step"], log["target_margin"], color="tab:olive", ls="--", label="target"
                )
            axes[2].axhline(0, color="grey", lw=0.5)
            axes[2].legend(fontsize=7)
            axes[3].plot(log["step"], log["reward_accuracy"], color="tab:cyan")
            axes[3].set(ylim=(-0.05, 1.05))
        axes[2].set(title="winner-loser log-ratio margin", xlabel="step")
        axes[3].set(title="reward accuracy (share of pairs with h > 0)", xlabel="step")
        axes[4].plot(log["step"], log["learning_rate"], color="tab:blue")
        axes[4].set(title="learning rate", xlabel="step")
        axes[5].plot(log["step"], log["grad_norm"], color="tab:purple")
        axes[5].set(title="gradient norm (before clipping)", xlabel="step")
        fig.suptitle(f"{title}: training")
        _save(fig, out)


def win_rate_estimates(pairs_path: Path, stats_path: Path, title: str, out: Path) -> None:
    """Distribution of the estimated win rates of the trained winners and losers."""
    pairs = read_table(pairs_path, PAIRS)
    stats = pd.read_parquet(stats_path).iloc[0]
    no_difference = stats["n_no_preference"] / max(int(stats["n_prompts"]), 1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        bins = np.linspace(0, 1, 21)
        ax.hist(pairs["p_winner"], bins=bins, alpha=0.6, color="tab:green", label="p_w (winner)")
        ax.hist(pairs["p_loser"], bins=bins, alpha=0.6, color="tab:red", label="p_l (loser)")
        ax.axvline(0.5, color="grey", lw=0.8)
        ax.set(xlabel="estimated win rate against the policy", ylabel="prompts")
        ax.set_title(
            f"{title}: {len(pairs)} pairs; judge saw no difference on "
            f"{no_difference:.0%} of {int(stats['n_prompts'])} prompts",
            fontsize=9,
        )
        ax.legend(fontsize=8)
        _save(fig, out)


# -- across rounds ---------------------------------------------------------------------------


def by_method(metrics: list[RoundMetrics]) -> dict[str, list[RoundMetrics]]:
    """Each method's metrics in round order, methods in the order first seen."""
    grouped: dict[str, list[RoundMetrics]] = {}
    for m in metrics:
        grouped.setdefault(m.method_name, []).append(m)
    return {name: sorted(rows, key=lambda m: m.round) for name, rows in grouped.items()}


def win_rates(metrics: list[RoundMetrics], png: Path) -> None:
    """Win rate against the base per round, per method and judge (one panel a judge), with
    95% CIs; the length-controlled rate dashed; with one method also against the previous
    round."""
    methods = by_method(metrics)
    judges = metrics[0].judges
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = [(name, "base", rows) for name, rows in methods.items()]
    if len(methods) == 1:
        lines.append((next(iter(methods)), "previous", next(iter(methods.values()))))
    rounds = sorted({m.round for m in metrics})
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(judges), figsize=(6.5 * len(judges) + 2, 3.8), squeeze=False
        )
        for ax, judge in zip(axes[0], judges, strict=True):
            for n, (name, opponent, rows) in enumerate(lines):
                # a round judged against the base alone has no verdicts against the previous
                rows = [m for m in rows if m.against(opponent, judge) is not None]
                if not rows:
                    continue
                values = [m.against(opponent, judge) for m in rows]
                x = np.array([m.round for m in rows]) + 0.06 * (n - (len(lines) - 1) / 2)
                rate = np.array([v.win_rate for v in values])
                low = rate - np.array([v.win_rate_ci_low for v in values])
                high = np.array([v.win_rate_ci_high for v in values]) - rate
                against = "base" if opponent == "base" else "previous round"
                label = f"{name} vs {against}" if len(methods) > 1 else f"vs {against}"
                color = colors[n % len(colors)]
                ax.errorbar(x, rate, yerr=[low, high], fmt="o-", color=color, capsize=4,
                            label=label)  # fmt: skip
                if opponent == "base":
                    ax.plot(x, [v.lc_win_rate for v in values], ls="--", marker="x", color=color)
            ax.plot([], [], ls="--", marker="x", color="grey", label="length-controlled")
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            backend = judges[judge].backend
            ax.set(xlabel="round", ylabel="win rate (ties half), 95% CI", ylim=(0, 1),
                   xticks=rounds, title=f"judge: {judge} ({backend})")  # fmt: skip
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        _save(fig, png)


def lengths(metrics: list[RoundMetrics], png: Path) -> None:
    """Response length per round, and the raw against the length-controlled win rate (the
    primary judge, against the base), per method."""
    methods = by_method(metrics)
    base_tokens = metrics[0].primary.base.mean_opponent_tokens
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
        for n, (name, rows) in enumerate(methods.items()):
            rounds = [0] + [m.round for m in rows]
            tokens = [base_tokens] + [m.primary.base.mean_tokens for m in rows]
            left.plot(rounds, tokens, "o-", label=name)
            for kind, key, ls in (
                ("raw", "win_rate", "-"),
                ("length-controlled", "lc_win_rate", "--"),
            ):
                values = [m.primary.base for m in rows]
                rate = np.array([getattr(v, key) for v in values])
                low = rate - np.array([getattr(v, f"{key}_ci_low") for v in values])
                high = np.array([getattr(v, f"{key}_ci_high") for v in values]) - rate
                x = np.array(rounds[1:]) + (-0.06 if kind == "raw" else 0.06) + 0.02 * n
                right.errorbar(
                    x,
                    rate,
                    yerr=[low, high],
                    fmt="o",
                    ls=ls,
                    capsize=4,
                    color=f"C{n}",
                    label=f"{name}, {kind}",
                )
        rounds = sorted({0} | {m.round for m in metrics})
        left.set(xlabel="round (0 = base model)", ylabel="mean response tokens", xticks=rounds)
        left.legend(fontsize=7)
        right.axhline(0.5, color="grey", lw=0.8, ls=":")
        right.set(xlabel="round", ylabel="win rate against the base", ylim=(0, 1))
        right.set_xticks(rounds[1:])
        right.legend(fontsize=7)
        _save(fig, png)


def judge_rewards_figure(judgement_paths: Sequence[Path], rounds: Sequence, png: Path) -> None:
    """What the (primary) judge rewards: its score (or verdict) against length and prompt
    repetition, and for pairwise judges how often swapping the pair flips the verdict.
    ``rounds`` label the files: round numbers, or "method, round" names."""
    frames = []
    for path, round_number in zip(judgement_paths, rounds, strict=True):
        rows = primary_against_base(read_table(path, EVAL_JUDGEMENTS))
        frames.append(rows.assign(round=round_number))
    data = pd.concat(frames, ignore_index=True)
    pointwise = data["reward"].notna().all()
    with plt.rc_context(STYLE):
        # a pointwise judge gives one score per response, so there is no order to swap
        fig, axes = plt.subplots(1, 2 if pointwise else 3, figsize=(10 if pointwise else 15, 3.8))
        correlations = judge_correlations(data)
        if pointwise:
            for label, g in pooled_rewards(data).groupby("round", sort=False):
                label = label if label == "base" else round_label(label)
                axes[0].scatter(g["tokens"], g["reward"], s=10, alpha=0.6, label=label)
                axes[1].scatter(g["overlap"], g["reward"], s=10, alpha=0.6, label=label)
            corr_len = correlations["corr_reward_length"]
            corr_overlap = correlations["corr_reward_overlap"]
            axes[0].set(xlabel="response tokens", ylabel="judge reward")
            axes[1].set(xlabel="share of the prompt's words repeated", ylabel="judge reward")
        else:
            length_gap = data["tokens"] - data["opponent_tokens"]
            overlap_gap = data["overlap"] - data["opponent_overlap"]
            for r, g in data.groupby("round", sort=False):
                axes[0].scatter(
                    length_gap[g.index], g["prob"], s=10, alpha=0.6, label=round_label(r)
                )
                axes[1].scatter(overlap_gap[g.index], g["prob"], s=10, alpha=0.6)
            corr_len = correlations["corr_prob_length_gap"]
            corr_overlap = correlations["corr_prob_overlap_gap"]
            axes[0].set(xlabel="length gap (round - base, tokens)", ylabel="P(round > base)")
            axes[1].set(xlabel="prompt-repetition gap (round - base)", ylabel="P(round > base)")
        axes[0].set_title(f"length: Spearman {_corr(corr_len)}", fontsize=9)
        axes[1].set_title(f"repeating the prompt: Spearman {_corr(corr_overlap)}", fontsize=9)
        axes[0].legend(fontsize=7)
        if pointwise:
            fig.suptitle("pointwise judge: swapping a pair cannot flip its verdict", fontsize=9)
        else:
            flips = data.groupby("round", sort=False)["order_flipped"].mean()
            axes[2].bar(range(len(flips)), flips.values, color="tab:purple")
            axes[2].set_xticks(range(len(flips)), [str(r) for r in flips.index], fontsize=7)
            axes[2].set(xlabel="round", ylabel="share of verdicts", ylim=(0, 1))
            axes[2].set_title("verdict flips when the pair is swapped", fontsize=9)
        _save(fig, png)


def round_label(label) -> str:
    return label if isinstance(label, str) else f"round {label}"


def _corr(value: float) -> str:
    return f"{value:+.2f}" if np.isfinite(value) else "n/a (no variation)"
