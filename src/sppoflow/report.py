"""Figures and tables for `snakemake --report`: did SPPO work, and why.

Each function reads stage outputs and writes one file under results/; the rules mark them for
the report with a caption (workflow/report/*.rst). Plots are PNG (matplotlib, no display).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from sppoflow.summary import rank_correlation
from sppoflow.tables import EVAL_JUDGEMENTS, PAIRS, SAMPLES, read_table
from sppoflow.versions import package_versions

STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False}


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
        "td.text{white-space:pre-wrap;max-width:32em;font-size:90%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h2>{html.escape(title)}</h2>{body}</body></html>\n"
    )


def read_metrics(paths: Sequence[Path]) -> list[dict]:
    return sorted((json.loads(Path(p).read_text()) for p in paths), key=lambda m: m["round"])


# -- per round -------------------------------------------------------------------------------


def training_curves(log_path: Path, round_number: int, out: Path) -> None:
    """Loss, log-ratios against their targets, learning rate and gradient norm per step."""
    log = pd.read_csv(log_path)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
        axes[0].plot(log["step"], log["loss"], color="black")
        axes[0].set(title="loss", xlabel="step")
        for name, color in (("winner", "tab:green"), ("loser", "tab:red")):
            axes[1].plot(log["step"], log[f"logratio_{name}"], color=color, label=f"{name}")
            axes[1].plot(
                log["step"], log[f"target_{name}"], color=color, ls="--", label=f"{name} target"
            )
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[1].set(title="log pi/pi_t against targets", xlabel="step")
        axes[1].legend(fontsize=7)
        axes[2].plot(log["step"], log["learning_rate"], color="tab:blue")
        axes[2].set(title="learning rate", xlabel="step")
        axes[3].plot(log["step"], log["grad_norm"], color="tab:purple")
        axes[3].set(title="gradient norm (before clipping)", xlabel="step")
        fig.suptitle(f"Round {round_number}: training")
        _save(fig, out)


def win_rate_estimates(pairs_path: Path, stats_path: Path, round_number: int, out: Path) -> None:
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
            f"Round {round_number}: {len(pairs)} pairs; judge saw no difference on "
            f"{no_difference:.0%} of {int(stats['n_prompts'])} prompts",
            fontsize=9,
        )
        ax.legend(fontsize=8)
        _save(fig, out)


# -- across rounds ---------------------------------------------------------------------------


def win_rate_table(metrics: list[dict]) -> pd.DataFrame:
    rows = []
    for m in metrics:
        for opponent in ("base", "previous"):
            v = m.get(f"vs_{opponent}")
            if not v:
                continue
            rows.append(
                {
                    "round": m["round"],
                    "against": "base model" if opponent == "base" else f"round {m['round'] - 1}",
                    "win rate": v["win_rate"],
                    "95% CI": f"[{v['win_rate_ci_low']:.3f}, {v['win_rate_ci_high']:.3f}]",
                    "length-controlled": v.get("lc_win_rate"),
                    "LC 95% CI": f"[{v['lc_win_rate_ci_low']:.3f}, {v['lc_win_rate_ci_high']:.3f}]"
                    if v.get("lc_win_rate") is not None
                    else "",
                    "wins / ties / losses": f"{v['wins']} / {v['ties']} / {v['losses']}",
                    "mean P": v["mean_prob"],
                    "tokens (round / opponent)": f"{v['mean_tokens']:.0f} / "
                    f"{v['mean_opponent_tokens']:.0f}",
                }
            )
    return pd.DataFrame(rows)


def win_rates(metrics: list[dict], png: Path, table_html: Path) -> None:
    rounds = [m["round"] for m in metrics]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        for offset, opponent, color, label in (
            (-0.08, "base", "tab:blue", "against the base model"),
            (0.08, "previous", "tab:orange", "against the previous round"),
        ):
            values = [m[f"vs_{opponent}"] for m in metrics]
            rate = np.array([v["win_rate"] for v in values])
            low = rate - np.array([v["win_rate_ci_low"] for v in values])
            high = np.array([v["win_rate_ci_high"] for v in values]) - rate
            x = np.array(rounds) + offset
            ax.errorbar(x, rate, yerr=[low, high], fmt="o-", color=color, capsize=4, label=label)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set(xlabel="round", ylabel="win rate (ties half), 95% CI", ylim=(0, 1), xticks=rounds)
        ax.legend(fontsize=8)
        _save(fig, png)
    table = win_rate_table(metrics)
    body = table.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
    table_html.write_text(_page("Win rates per round", body))


def lengths(metrics: list[dict], png: Path) -> None:
    """Response length per round, and the raw against the length-controlled win rate."""
    rounds = [0] + [m["round"] for m in metrics]
    tokens = [metrics[0]["vs_base"]["mean_opponent_tokens"]] + [
        m["vs_base"]["mean_tokens"] for m in metrics
    ]
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
        left.bar(rounds, tokens, color=["grey"] + ["tab:blue"] * len(metrics))
        left.set(xlabel="round (0 = base model)", ylabel="mean response tokens", xticks=rounds)
        for name, key, color in (
            ("raw", "win_rate", "tab:blue"),
            ("length-controlled", "lc_win_rate", "tab:green"),
        ):
            values = [m["vs_base"] for m in metrics]
            rate = np.array([v[key] for v in values])
            low = rate - np.array([v[f"{key}_ci_low"] for v in values])
            high = np.array([v[f"{key}_ci_high"] for v in values]) - rate
            x = np.array(rounds[1:]) + (-0.06 if name == "raw" else 0.06)
            right.errorbar(x, rate, yerr=[low, high], fmt="o-", color=color, capsize=4, label=name)
        right.axhline(0.5, color="grey", lw=0.8, ls="--")
        right.set(xlabel="round", ylabel="win rate against the base", ylim=(0, 1))
        right.set_xticks(rounds[1:])
        right.legend(fontsize=8)
        _save(fig, png)


def judge_rewards(judgement_paths: Sequence[Path], rounds: Sequence[int], png: Path) -> None:
    """What the judge rewards: its score (or verdict) against length and prompt repetition,
    and for pairwise judges how often swapping the pair flips the verdict."""
    frames = []
    for path, round_number in zip(judgement_paths, rounds, strict=True):
        rows = read_table(path, EVAL_JUDGEMENTS)
        frames.append(rows[rows["opponent"] == "base"].assign(round=round_number))
    data = pd.concat(frames, ignore_index=True)
    pointwise = data["score"].notna().all()
    with plt.rc_context(STYLE):
        # a pointwise judge gives one score per response, so there is no order to swap
        fig, axes = plt.subplots(1, 2 if pointwise else 3, figsize=(10 if pointwise else 15, 3.8))
        if pointwise:
            base = data.drop_duplicates("prompt_id")
            points = [
                ("base", base["opponent_tokens"], base["opponent_overlap"], base["opponent_score"])
            ]
            points += [
                (f"round {r}", g["tokens"], g["overlap"], g["score"])
                for r, g in data.groupby("round")
            ]
            for label, tokens, overlap, score in points:
                axes[0].scatter(tokens, score, s=10, alpha=0.6, label=label)
                axes[1].scatter(overlap, score, s=10, alpha=0.6, label=label)
            scores = pd.concat([p[3] for p in points])
            corr_len = rank_correlation(scores, pd.concat([p[1] for p in points]))
            corr_overlap = rank_correlation(scores, pd.concat([p[2] for p in points]))
            axes[0].set(xlabel="response tokens", ylabel="judge score")
            axes[1].set(xlabel="share of the prompt's words repeated", ylabel="judge score")
        else:
            length_gap = data["tokens"] - data["opponent_tokens"]
            overlap_gap = data["overlap"] - data["opponent_overlap"]
            for r, g in data.groupby("round"):
                axes[0].scatter(length_gap[g.index], g["prob"], s=10, alpha=0.6, label=f"round {r}")
                axes[1].scatter(overlap_gap[g.index], g["prob"], s=10, alpha=0.6)
            corr_len = rank_correlation(data["prob"], length_gap)
            corr_overlap = rank_correlation(data["prob"], overlap_gap)
            axes[0].set(xlabel="length gap (round - base, tokens)", ylabel="P(round > base)")
            axes[1].set(xlabel="prompt-repetition gap (round - base)", ylabel="P(round > base)")
        axes[0].set_title(f"length: Spearman {_corr(corr_len)}", fontsize=9)
        axes[1].set_title(f"repeating the prompt: Spearman {_corr(corr_overlap)}", fontsize=9)
        axes[0].legend(fontsize=7)
        if pointwise:
            fig.suptitle("pointwise judge: swapping a pair cannot flip its verdict", fontsize=9)
        else:
            flips = data.groupby("round")["order_flipped"].mean()
            axes[2].bar(flips.index, flips.values, color="tab:purple")
            axes[2].set(xlabel="round", ylabel="share of verdicts", ylim=(0, 1), xticks=flips.index)
            axes[2].set_title("verdict flips when the pair is swapped", fontsize=9)
        _save(fig, png)


def _corr(value: float) -> str:
    return f"{value:+.2f}" if np.isfinite(value) else "n/a (no variation)"


def examples(
    base_path: Path, round_paths: Sequence[Path], rounds: Sequence[int], out: Path, n: int = 8
) -> None:
    """Prompt, base answer and each round's answer, for the first n evaluation prompts."""
    base = read_table(base_path, SAMPLES).set_index("prompt_id")
    answers = [read_table(p, SAMPLES).set_index("prompt_id")["response"] for p in round_paths]
    head = "".join(f"<th>round {r}</th>" for r in rounds)
    rows = []
    for prompt_id in sorted(base.index)[:n]:
        cells = [base.at[prompt_id, "prompt"], base.at[prompt_id, "response"]]
        cells += [a.get(prompt_id, "") for a in answers]
        rows.append(
            "<tr>"
            + "".join(f"<td class='text'>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    body = (
        f"<table><tr><th>prompt</th><th>base model</th>{head}</tr>{''.join(rows)}</table>"
        f"<p>{min(n, len(base))} of {len(base)} held-out prompts, in prompt-id order.</p>"
    )
    out.write_text(_page("Example responses", body))


def config_page(config: dict, out: Path, training: dict[int, dict] | None = None) -> None:
    """The validated config, and package versions: of this report job and, from each round's
    model/sppo_training.json, of the environment that trained it (rules may differ in env)."""
    columns = {"report job": package_versions()}
    for round_number, summary in sorted((training or {}).items()):
        columns[f"round {round_number} training"] = summary.get("versions", {})
    names = list(dict.fromkeys(name for versions in columns.values() for name in versions))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{html.escape(v.get(name, 'not recorded'))}</td>" for v in columns.values())
        + "</tr>"
        for name in names
    )
    body = (
        "<h3>Config (validated, defaults filled in)</h3>"
        f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>"
        f"<h3>Package versions</h3><table><tr><th>package</th>{head}</tr>{rows}</table>"
    )
    out.write_text(_page("Config and versions", body))
