"""The preference interface, the embedded relevance judge, and the score stage."""

import numpy as np
import pandas as pd
import pytest

from sppoflow.errors import UserError
from sppoflow.score.judges import (
    JudgeSettings,
    PairwiseJudge,
    PointwiseJudge,
    build_judge,
    sigmoid,
)
from sppoflow.score.preferences import score_samples


@pytest.fixture(scope="module")
def judge():
    return build_judge(JudgeSettings(device="cpu", dtype="float32", temperature=0.05))


PROMPT = "How do I bake bread at home?"
ON_TOPIC = "Mix flour, water, yeast and salt, knead the dough, let it rise, then bake the bread."
OFF_TOPIC = "The stock market closed higher today after the central bank's announcement."
LOOP = "the the the the the the the the the the the the the the the the"


def test_relevance_ranks_on_topic_first_and_loops_last(judge):
    [scores] = judge.scores([PROMPT], [[OFF_TOPIC, ON_TOPIC, LOOP]])
    assert scores[1] > scores[0] and scores[1] > scores[2]
    assert np.all((scores > -1) & (scores < 1))


def test_logit_matrix_is_scaled_score_difference(judge):
    [scores] = judge.scores([PROMPT], [[OFF_TOPIC, ON_TOPIC]])
    [L] = judge.logit_matrices([PROMPT], [[OFF_TOPIC, ON_TOPIC]])
    assert L[1, 0] == pytest.approx((scores[1] - scores[0]) / 0.05)
    assert np.allclose(L, -L.T) and np.all(np.diag(L) == 0)


def test_scores_do_not_depend_on_batch_size(judge):
    responses = [[ON_TOPIC, OFF_TOPIC, LOOP, "Bread needs an oven."]] * 2
    prompts = [PROMPT, "What moves stock prices?"]
    big = judge.scores(prompts, responses)
    judge.batch_size = 1
    try:
        small = judge.scores(prompts, responses)
    finally:
        judge.batch_size = 64
    for a, b in zip(big, small, strict=True):
        assert np.allclose(a, b, atol=1e-5)


def test_score_stage_writes_every_ordered_pair(judge):
    samples = pd.DataFrame(
        {
            "prompt_id": ["x"] * 3 + ["y"] * 2,
            "prompt": [PROMPT] * 3 + ["Why?"] * 2,
            "response_idx": [0, 1, 2, 0, 1],
            "response": [ON_TOPIC, OFF_TOPIC, LOOP, "a", "b"],
        }
    )
    prefs = score_samples(judge, samples)
    assert len(prefs) == 3 * 2 + 2 * 1
    assert set(zip(prefs.prompt_id, prefs.i, prefs.j, strict=True)) == {
        ("x", 0, 1),
        ("x", 1, 0),
        ("x", 0, 2),
        ("x", 2, 0),
        ("x", 1, 2),
        ("x", 2, 1),
        ("y", 0, 1),
        ("y", 1, 0),
    }
    assert np.allclose(prefs.prob, sigmoid(prefs.logit))
    x = prefs[prefs.prompt_id == "x"].set_index(["i", "j"])
    assert x.loc[(0, 1), "prob"] > 0.5  # the on-topic answer beats the off-topic one


def test_score_stage_needs_two_responses(judge):
    samples = pd.DataFrame(
        {"prompt_id": ["x"], "prompt": ["q"], "response_idx": [0], "response": ["a"]}
    )
    with pytest.raises(UserError, match="fewer than 2 responses"):
        score_samples(judge, samples)


def test_unknown_backend_is_refused():
    with pytest.raises(UserError, match=r"judge\.backend: unknown value 'oracle'"):
        build_judge(JudgeSettings(backend="oracle"))


class LengthScorer(PointwiseJudge):
    def scores(self, prompts, responses):
        return [np.array([len(r) for r in group], dtype=float) for group in responses]


class FirstPositionJudge(PairwiseJudge):
    """Prefers whatever comes first, a little more when it is longer: position-biased."""

    def pair_logits(self, prompts, first, second):
        return np.array([1.0 + 0.1 * (len(a) - len(b)) for a, b in zip(first, second, strict=True)])


def test_pointwise_interface_compare_and_matrix():
    scorer = LengthScorer(temperature=2.0)
    comparison = scorer.compare(["q", "q"], ["aaaa", "a"], ["aa", "aa"])
    assert comparison.prob == pytest.approx(sigmoid(np.array([1.0, -0.5])))
    assert comparison.reward_a.tolist() == [4.0, 1.0]


def test_pairwise_interface_asks_both_orders_and_reports_flips():
    judge = FirstPositionJudge()
    [L] = judge.logit_matrices(["q"], [["aaa", "a"]])
    assert L[0, 1] == pytest.approx(1.2) and L[1, 0] == pytest.approx(0.8)
    comparison = judge.compare(["q"], ["aaa"], ["a"])
    # averaged over the orders: (sigmoid(1.2) + sigmoid(-0.8)) / 2
    assert comparison.prob[0] == pytest.approx((sigmoid(1.2) + sigmoid(-0.8)) / 2)
    assert comparison.flipped[0]  # it says "first" both times: the verdict follows the order
