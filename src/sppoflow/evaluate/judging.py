"""The evaluate stage: a round's responses on held-out prompts against an opponent's.

The opponent is the base model (its responses generated once and reused), the previous
round, or (head to head) another method's final round. Each judge gives P(round > opponent |
x) per prompt (both orders for pairwise judges); a prompt is a win above 1/2, a tie at 1/2
(ties count half) and a loss below. Judges other than the training judge see whether a gain
is the training judge's alone; measures that need no judge (length, truncation, repeating
the prompt, repetition loops) are kept beside the verdicts."""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from sppoflow.errors import UserError
from sppoflow.evaluate.length_control import length_controlled_win_rate
from sppoflow.evaluate.round_metrics import JudgeVerdicts, RoundMetrics, Verdicts
from sppoflow.evaluate.statistics import mean_with_ci, outcomes
from sppoflow.evaluate.text_measures import prompt_overlap, repetition
from sppoflow.runtime.throughput import log_rate
from sppoflow.score.judges import Judge, JudgeSettings, build_judge


def judge_against(
    judge: Judge,
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    opponent: str,
) -> pd.DataFrame:
    """EVAL_JUDGEMENTS rows for one opponent; both tables are samples tables with K = 1."""
    merged = ours.merge(theirs, on="prompt_id", suffixes=("", "_opp"), validate="one_to_one")
    if len(merged) != len(ours) or len(merged) != len(theirs):
        raise UserError(
            f"evaluation responses cover different prompts ({len(ours)} vs {len(theirs)} "
            f"against {opponent}); regenerate them from the same eval prompts"
        )
    prompts = merged["prompt"].tolist()
    comparison = judge.compare(
        prompts, merged["response"].tolist(), merged["response_opp"].tolist()
    )
    nan = np.full(len(merged), np.nan)
    return pd.DataFrame(
        {
            "prompt_id": merged["prompt_id"],
            "opponent": opponent,
            "prob": comparison.prob,
            "outcome": outcomes(comparison.prob),
            "tokens": merged["response_tokens"],
            "opponent_tokens": merged["response_tokens_opp"],
            "overlap": [
                prompt_overlap(p, r) for p, r in zip(prompts, merged["response"], strict=True)
            ],
            "opponent_overlap": [
                prompt_overlap(p, r) for p, r in zip(prompts, merged["response_opp"], strict=True)
            ],
            "repetition": merged["response"].map(repetition),
            "opponent_repetition": merged["response_opp"].map(repetition),
            "reward": comparison.reward_a if comparison.reward_a is not None else nan,
            "opponent_reward": comparison.reward_b if comparison.reward_b is not None else nan,
            "order_flipped": comparison.flipped if comparison.flipped is not None else nan,
        }
    )


def judges_from(judges_json: str | None, flag_settings: JudgeSettings) -> dict[str, JudgeSettings]:
    """The evaluation judges: a JSON object of name -> judge settings (as the workflow passes
    them), else the judge of the stage's flags, named as the training judge."""
    from sppoflow.score import TRAINING_JUDGE

    if not judges_json:
        return {TRAINING_JUDGE: flag_settings}
    try:
        return {name: JudgeSettings(**values) for name, values in json.loads(judges_json).items()}
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        raise UserError(f"--judges: not a JSON object of judge name -> settings: {error}") from None


def add_judge_arguments(parser) -> None:
    """The outputs of a judging stage and its judges' flags: --judges (JSON), or the judge
    flags of one judge."""
    from sppoflow.cli import add_settings

    parser.add_argument("--judgements", required=True, help="per-prompt judgements to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument(
        "--judges", default=None, help="JSON object: judge name -> judge settings (overrides flags)"
    )
    add_settings(parser, JudgeSettings)


def judge_all(
    judges: Mapping[str, JudgeSettings], ours: pd.DataFrame, opponents: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """EVAL_JUDGEMENTS rows of every judge against every opponent; one judge in memory at a
    time."""
    frames = []
    for name, settings in judges.items():
        judge = build_judge(settings)
        start, judged = time.perf_counter(), 0
        for opponent, theirs in opponents.items():
            frames.append(judge_against(judge, ours, theirs, opponent).assign(judge=name))
            judged += len(frames[-1])
        seconds = time.perf_counter() - start
        log_rate("evaluate", judged, "prompts judged", seconds, f"judge {name}, both orders")
        judge.log_compute("evaluate", seconds)
        del judge
        gc.collect()
    return pd.concat(frames, ignore_index=True)


def summarise(
    judgements: pd.DataFrame,
    round_number: int,
    backends: Mapping[str, str],
    method: str | None = None,
) -> RoundMetrics:
    """Verdicts per judge and opponent; the first judge of ``backends`` (name -> backend) is
    the primary one."""
    judges = {}
    for name, backend in backends.items():
        rows = judgements[judgements["judge"] == name]
        by_opponent = {o: verdicts(g) for o, g in rows.groupby("opponent", sort=False)}
        judges[name] = JudgeVerdicts(backend, by_opponent["base"], by_opponent.get("previous"))
    return RoundMetrics(round_number, method, judges)


def verdicts(judgements: pd.DataFrame) -> Verdicts:
    """One judge's verdicts against one opponent: win rate and mean preference with 95% CIs,
    the length-controlled win rate, lengths."""
    win_rate, win_low, win_high = mean_with_ci(judgements["outcome"].to_numpy())
    prob, prob_low, prob_high = mean_with_ci(judgements["prob"].to_numpy())
    lc = length_controlled_win_rate(
        judgements["outcome"].to_numpy(),
        judgements["tokens"].to_numpy(),
        judgements["opponent_tokens"].to_numpy(),
    )
    return Verdicts(
        n_prompts=len(judgements),
        win_rate=win_rate,
        win_rate_ci_low=win_low,
        win_rate_ci_high=win_high,
        lc_win_rate=lc.win_rate,
        lc_win_rate_ci_low=lc.ci_low,
        lc_win_rate_ci_high=lc.ci_high,
        length_coef=lc.length_coef,
        wins=int((judgements["outcome"] == 1).sum()),
        ties=int((judgements["outcome"] == 0.5).sum()),
        losses=int((judgements["outcome"] == 0).sum()),
        mean_prob=prob,
        mean_prob_ci_low=prob_low,
        mean_prob_ci_high=prob_high,
        mean_tokens=float(judgements["tokens"].mean()),
        mean_opponent_tokens=float(judgements["opponent_tokens"].mean()),
        order_flip_rate=_finite_or_none(judgements["order_flipped"].mean()),
    )


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a metric that does not apply is null."""
    return None if value is None or not math.isfinite(value) else float(value)
