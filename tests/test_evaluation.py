"""Win rates with ties counting half, confidence intervals, and the judgement table."""

import numpy as np
import pandas as pd
import pytest

from sppoflow.errors import UserError
from sppoflow.evaluation import judge_against, mean_with_ci, outcomes, prompt_overlap, summarise
from sppoflow.preference import PointwisePreferenceModel
from sppoflow.tables import EVAL_JUDGEMENTS


class LengthScorer(PointwisePreferenceModel):
    def scores(self, prompts, responses):
        return [np.array([len(r) for r in group], dtype=float) for group in responses]


def responses(texts):
    return pd.DataFrame(
        {
            "prompt_id": [f"p{n}" for n in range(len(texts))],
            "prompt": [f"question {n} about cats" for n in range(len(texts))],
            "response_idx": 0,
            "response": texts,
            "response_tokens": [len(t) for t in texts],
        }
    )


def test_outcomes_count_ties_half():
    assert outcomes(np.array([0.9, 0.5, 0.1, 0.5000000001])).tolist() == [1, 0.5, 0, 0.5]


def test_confidence_interval_by_hand():
    mean, low, high = mean_with_ci(np.array([1.0, 0.0, 1.0, 1.0]))
    half = 1.959964 * np.std([1, 0, 1, 1], ddof=1) / 2
    assert (mean, low, high) == pytest.approx((0.75, 0.75 - half, 0.75 + half))


def test_judge_against_and_summary():
    ours = responses(["long answer about cats", "same", "x"])
    base = responses(["short", "same", "a longer base answer"])
    rows = judge_against(LengthScorer(tau=1.0), ours, base, "base")
    EVAL_JUDGEMENTS.check(rows, "judgements")
    assert rows.outcome.tolist() == [1.0, 0.5, 0.0]
    assert rows.overlap.iloc[0] == pytest.approx(2 / 4)  # about, cats of question, 0, about, cats
    metrics = summarise(rows, round_number=1, judge_name="length")
    vs = metrics["vs_base"]
    assert (vs["wins"], vs["ties"], vs["losses"]) == (1, 1, 1)
    assert vs["win_rate"] == pytest.approx(0.5)
    assert vs["order_flip_rate"] is None  # pointwise judges have no order


def test_prompt_overlap_ignores_stop_words():
    assert prompt_overlap("What is the boiling point of water?", "Water boils at 100 C.") == 1 / 3
    assert prompt_overlap("the a an", "anything") == 0.0


def test_mismatched_prompts_are_refused():
    with pytest.raises(UserError, match="cover different prompts"):
        judge_against(LengthScorer(), responses(["a", "b"]), responses(["a"]), "base")
