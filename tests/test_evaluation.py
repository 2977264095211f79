"""Win rates with ties counting half, confidence intervals, and the judgement table."""

import numpy as np
import pandas as pd
import pytest

from sppoflow.errors import UserError
from sppoflow.evaluate import judging
from sppoflow.evaluate.judging import judge_against, judges_from, summarise
from sppoflow.evaluate.statistics import mean_with_ci, outcomes
from sppoflow.evaluate.text_measures import objective_measures, prompt_overlap, repetition
from sppoflow.score.judges import JudgeSettings, PointwiseJudge
from sppoflow.tables import EVAL_JUDGEMENTS


class LengthScorer(PointwiseJudge):
    def scores(self, prompts, responses):
        return [np.array([len(r) for r in group], dtype=float) for group in responses]


class BrevityScorer(PointwiseJudge):
    def scores(self, prompts, responses):
        return [-np.array([len(r) for r in group], dtype=float) for group in responses]


def responses(texts):
    return pd.DataFrame(
        {
            "prompt_id": [f"p{n}" for n in range(len(texts))],
            "prompt": [f"question {n} about cats" for n in range(len(texts))],
            "response_idx": 0,
            "response": texts,
            "response_tokens": [len(t) for t in texts],
            "finish_reason": ["length" if len(t) > 20 else "stop" for t in texts],
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
    rows = judge_against(LengthScorer(temperature=1.0), ours, base, "base").assign(judge="length")
    EVAL_JUDGEMENTS.check(rows, "judgements")
    assert rows.outcome.tolist() == [1.0, 0.5, 0.0]
    assert rows.overlap.iloc[0] == pytest.approx(2 / 4)  # about, cats of question, 0, about, cats
    metrics = summarise(rows, 1, {"length": "reward_model"}, "sppo")
    assert (metrics.method, metrics.primary_name, metrics.primary.backend) == (
        "sppo",
        "length",
        "reward_model",
    )
    vs = metrics.primary.base
    assert (vs.wins, vs.ties, vs.losses) == (1, 1, 1)
    assert vs.win_rate == pytest.approx(0.5)
    assert vs.order_flip_rate is None  # pointwise judges have no order
    assert metrics.primary.previous is None  # judged against the base only


def test_prompt_overlap_ignores_stop_words():
    assert prompt_overlap("What is the boiling point of water?", "Water boils at 100 C.") == 1 / 3
    assert prompt_overlap("the a an", "anything") == 0.0


def test_mismatched_prompts_are_refused():
    with pytest.raises(UserError, match="cover different prompts"):
        judge_against(LengthScorer(), responses(["a", "b"]), responses(["a"]), "base")


def test_repetition_counts_repeated_word_4grams():
    assert repetition("one two three four five six") == 0.0
    assert repetition("short") == 0.0  # no 4-gram at all
    # 7 4-grams (abcd bcda cdab dabc abcd bcda cdab), the last 3 repeat earlier ones
    assert repetition("a b c d a b c d a b") == pytest.approx(3 / 7)
    loop = " ".join(["I am sorry."] * 20)
    assert repetition(loop) > 0.9
    words = ["a", "b", "c", "d", "a", "b", "c", "d"]
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    assert repetition(" ".join(words)) == pytest.approx((len(grams) - len(set(grams))) / len(grams))


def test_objective_measures_by_hand():
    table = responses(["a short answer", "a very long answer that was cut off", "no no no no no"])
    measures = objective_measures(table)
    assert measures.n_responses == 3
    assert measures.mean_tokens == pytest.approx(np.mean([14, 35, 14]))
    assert measures.truncated_share == pytest.approx(1 / 3)
    assert measures.loop_share == pytest.approx(1 / 3)  # "no no no no no": 1 of 2 repeats
    assert measures.mean_repetition == pytest.approx((0 + 0 + 0.5) / 3)


def test_every_judge_judges_every_opponent_and_the_first_leads(monkeypatch):
    built = {"length": LengthScorer(temperature=1.0), "brevity": BrevityScorer(temperature=1.0)}
    monkeypatch.setattr(judging, "build_judge", lambda settings: built[settings.model])
    judges = {"training": JudgeSettings(model="length"), "second": JudgeSettings(model="brevity")}
    ours = responses(["long answer about cats", "x"])
    opponents = {"base": responses(["short", "a longer base answer"]), "previous": ours}
    rows = judging.judge_all(judges, ours, opponents)
    assert len(rows) == 2 * 2 * 2
    metrics = summarise(rows, 2, {"training": "relevance", "second": "reward_model"}, "dpo")
    # the two judges disagree: the gap a second judge is there to show
    assert metrics.primary_name == "training" and list(metrics.judges) == ["training", "second"]
    assert metrics.against("base").win_rate == 0.5 and metrics.against("base").wins == 1
    assert metrics.against("base", "second").wins == 1
    assert metrics.against("previous", "second").ties == 2
    assert metrics.judges["second"].backend == "reward_model"


def test_judges_from_json_or_flags():
    flags = JudgeSettings(model="m")
    assert judges_from(None, flags) == {"training": flags}
    judges = judges_from('{"a": {"backend": "pairrm", "model": "x"}}', flags)
    assert judges["a"].backend == "pairrm" and judges["a"].model == "x"
    with pytest.raises(UserError, match="--judges: not a JSON object"):
        judges_from('{"a": {"colour": 1}}', flags)
