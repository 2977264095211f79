"""The report's HTML pages for `snakemake --report`: win-rate tables, the methods head to
head, example responses, the config and versions, throughput. Its figures are in
sppoflow.report.figures."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml

from sppoflow.atomic import write_text_atomically
from sppoflow.evaluate.round_metrics import OPPONENTS, HeadToHead, RoundMetrics, Verdicts
from sppoflow.report.figures import round_label
from sppoflow.tables import SAMPLES, read_table
from sppoflow.versions import package_versions


def page(title: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
        "td.text{white-space:pre-wrap;max-width:32em;font-size:90%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h2>{html.escape(title)}</h2>{body}</body></html>\n"
    )


def _ci(v: Verdicts, key: str) -> str:
    return f"[{getattr(v, f'{key}_ci_low'):.3f}, {getattr(v, f'{key}_ci_high'):.3f}]"


def win_rate_table(metrics: list[RoundMetrics]) -> pd.DataFrame:
    rows = []
    for m in metrics:
        for judge, verdicts in m.judges.items():
            for opponent in OPPONENTS:
                v = verdicts.against(opponent)
                if v is None:
                    continue
                rows.append(
                    {
                        "method": m.method_name,
                        "round": m.round,
                        "judge": f"{judge} ({verdicts.backend})",
                        "against": "base model" if opponent == "base" else f"round {m.round - 1}",
                        "win rate": v.win_rate,
                        "95% CI": _ci(v, "win_rate"),
                        "length-controlled": v.lc_win_rate,
                        "LC 95% CI": _ci(v, "lc_win_rate"),
                        "wins / ties / losses": f"{v.wins} / {v.ties} / {v.losses}",
                        "mean P": v.mean_prob,
                        "tokens (round / opponent)": f"{v.mean_tokens:.0f} / "
                        f"{v.mean_opponent_tokens:.0f}",
                    }
                )
    return pd.DataFrame(rows)


OBJECTIVE_COLUMNS = {
    "mean_tokens": "mean tokens",
    "truncated_share": "cut at max tokens",
    "mean_prompt_overlap": "prompt words repeated",
    "mean_repetition": "repeated 4-grams",
    "loop_share": "repetition loops",
}


def objective_table(metrics: list[RoundMetrics]) -> pd.DataFrame:
    """Measures that need no judge, per method and round; round 0 is the base model."""
    rows = []
    for m in metrics:
        if m.objective is None:
            continue
        if not rows:
            rows.append({"method": "base model", "round": 0, **asdict(m.objective.base)})
        rows.append({"method": m.method_name, "round": m.round, **asdict(m.objective.round)})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).rename(columns=OBJECTIVE_COLUMNS)
    return table[["method", "round", *OBJECTIVE_COLUMNS.values()]]


def win_rate_page(metrics: list[RoundMetrics], out: Path) -> None:
    """Every judge's win rates per round (and method) against each opponent, with the
    measures that need no judge."""
    body = win_rate_table(metrics).to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
    objective = objective_table(metrics)
    if len(objective):
        body += (
            "<h3>Measures that need no judge</h3>"
            + objective.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
            + "<p>Shares of the held-out responses: cut at max_new_tokens; the prompt's "
            "content words repeated; word 4-grams that repeat an earlier one; loops (at least "
            "half the 4-grams repeated). Round 0 is the base model.</p>"
        )
    write_text_atomically(out, page("Win rates per round", body))


def head_to_head(h2h: HeadToHead, table_html: Path) -> None:
    """The methods' final rounds against each other, per judge."""
    rows = []
    for pair in h2h.pairs:
        for judge, v in pair.judges.items():
            rows.append(
                {
                    "method": pair.method,
                    "against": pair.opponent,
                    "judge": judge,
                    "win rate": v.win_rate,
                    "95% CI": _ci(v, "win_rate"),
                    "length-controlled": v.lc_win_rate,
                    "LC 95% CI": _ci(v, "lc_win_rate"),
                    "wins / ties / losses": f"{v.wins} / {v.ties} / {v.losses}",
                    "tokens (method / against)": f"{v.mean_tokens:.0f} / "
                    f"{v.mean_opponent_tokens:.0f}",
                }
            )
    body = pd.DataFrame(rows).to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
    body += (
        f"<p>Round {h2h.round} of each method, on the same held-out prompts; a win "
        "rate above 0.5 favours the method of the row.</p>"
    )
    write_text_atomically(table_html, page("The methods head to head", body))


def examples(
    base_path: Path, round_paths: Sequence[Path], rounds: Sequence, out: Path, n: int = 8
) -> None:
    """Prompt, base answer and each round's (of each method's) answer, for the first n
    evaluation prompts; ``rounds`` label the files (numbers, or "method, round" names)."""
    base = read_table(base_path, SAMPLES).set_index("prompt_id")
    answers = [read_table(p, SAMPLES).set_index("prompt_id")["response"] for p in round_paths]
    head = "".join(f"<th>{html.escape(round_label(r))}</th>" for r in rounds)
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
    write_text_atomically(out, page("Example responses", body))


def config_page(config: dict, out: Path, training: dict | None = None) -> None:
    """The validated config, and package versions: of this report job and, from each round's
    model/sppo_training.json (keyed by round number or "method, round" name), of the
    environment that trained it (rules may differ in env)."""
    columns = {"report job": package_versions()}
    for label, summary in (training or {}).items():
        columns[f"{round_label(label)} training"] = summary.get("versions", {})
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
    write_text_atomically(out, page("Config and versions", body))


def throughput_page(table: pd.DataFrame, out: Path) -> None:
    """The stages' rates (sppoflow.runtime.job_records.throughput): per stage, method, round
    and work, with FLOP/s and the share of the device's peak."""
    shown = table.rename(
        columns={
            "amount": "done",
            "per_s": "per second of work",
            "per_job_s": "per second of job",
            "gflop_per_s": "GFLOP/s",
            "what": "measured",
        }
    )
    if "share_of_peak" in shown:
        shown["share of peak"] = shown.pop("share_of_peak").map(
            lambda v: "" if pd.isna(v) else f"{v:.0%}"
        )
    body = (
        "<p>Generated tokens/s (sample, eval_generate), judged pairs/s (score), judged prompts/s "
        "(evaluate), trained tokens/s (train) and the tokens/s of the reference passes before "
        "training. Per second of work counts the stage's own work, as each job logged it; per "
        "second of job divides by the jobs' whole wall time, the model's load and the engine's "
        "start included. Shards are summed. GFLOP/s counts the work's arithmetic from the "
        "model's shapes (2 FLOPs per weight of every linear layer per token, 3 times that for "
        "a trained token); the share of peak divides it by the device's peak: a GPU's data "
        "sheet, or on a CPU a measured matmul of the model's shapes at the job's precision and "
        "thread count.</p>"
        + shown.to_html(index=False, float_format=lambda v: f"{v:.1f}", border=0, na_rep="")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out, page("Throughput", body))
