"""Judging plans (judge.comparisons): which ordered pairs the score stage asks a judge about,
and the aggregate stage's estimators on the judged pairs only, naming the plan they saw and
refusing preferences that follow no plan."""

import math

import numpy as np
import pandas as pd
import pytest

from sppoflow.aggregate.win_rates import AggregateSettings, aggregate
from sppoflow.errors import UserError
from sppoflow.score.judges import PairwiseJudge
from sppoflow.score.plans import COMPARISONS, check_plan, planned_pairs
from sppoflow.score.preferences import score_samples

K = 5
REWARDS = {"a": [0.3, 2.0, -1.0, 0.8, -0.4], "b": [1.1, -0.2, 0.5, 2.4, 0.0]}


def test_each_plan_asks_both_orders_of_its_pairs():
    counts = {c: len(planned_pairs(K, c)) for c in COMPARISONS}
    assert counts == {"all": K * (K - 1), "circular": 2 * K, "anchor": 2 * (K - 1)}
    for comparisons in COMPARISONS:
        pairs = set(planned_pairs(K, comparisons))
        assert all((j, i) in pairs and i != j for i, j in pairs)
    assert set(planned_pairs(K, "anchor")) == {(i, 0) for i in range(1, K)} | {
        (0, i) for i in range(1, K)
    }
    assert (K - 1, 0) in planned_pairs(K, "circular")  # the circle closes
    # small K: the plans coincide where they must
    assert planned_pairs(3, "circular") == planned_pairs(3, "all")
    assert planned_pairs(2, "anchor") == planned_pairs(2, "all") == [(0, 1), (1, 0)]


class BradleyTerryPairs(PairwiseJudge):
    """A pairwise judge whose logit is r_i - r_j (a stand-in for PairRM, which needs the
    hub), recording every pair it is asked."""

    name = "bt-pairs"

    def __init__(self):
        self.asked = []

    def pair_logits(self, prompts, first, second):
        self.asked += list(zip(prompts, first, second, strict=True))
        return np.array([reward(a) - reward(b) for a, b in zip(first, second, strict=True)])

    def compare(self, prompts, first, second):
        raise NotImplementedError


def reward(response: str) -> float:
    prompt, idx = response.split("-")
    return REWARDS[prompt][int(idx)]


def samples() -> pd.DataFrame:
    rows = [
        {
            "prompt_id": pid, "prompt": f"question {pid}", "response_idx": i,
            "response": f"{pid}-{i}", "response_token_ids": [i + 1], "prompt_tokens": 4,
            "response_tokens": 10 + i, "finish_reason": "stop",
        }
        for pid in REWARDS
        for i in range(K)
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("comparisons", COMPARISONS)
def test_the_score_stage_asks_only_the_planned_pairs_and_aggregate_names_the_plan(comparisons):
    judge = BradleyTerryPairs()
    preferences = score_samples(judge, samples(), comparisons=comparisons)
    planned = len(planned_pairs(K, comparisons))
    assert len(judge.asked) == len(preferences) == 2 * planned  # two prompts
    result = aggregate(samples(), preferences, AggregateSettings("direct", 0.0))
    assert result.stats["comparisons"].tolist() == [comparisons]
    rates = result.win_rates.set_index(["prompt_id", "response_idx"])["win_rate_direct"]
    for pid, rewards in REWARDS.items():
        for i in range(K):
            partners = [j for a, j in planned_pairs(K, comparisons) if a == i]
            expected = np.mean([1 / (1 + math.exp(rewards[j] - rewards[i])) for j in partners])
            assert rates[(pid, i)] == pytest.approx(expected)
    assert result.pairs["q"].notna().all()  # an unjudged winner/loser pair gets the strength's q


def test_the_strength_of_a_partial_plan_is_the_mean_over_its_partners():
    """s_i = (K-1)/K mean over the judged partners of L[i,j] - L[j,i]; with every pair judged
    it is the authors' (1/K) sum."""
    for comparisons in COMPARISONS:
        preferences = score_samples(BradleyTerryPairs(), samples(), comparisons=comparisons)
        result = aggregate(samples(), preferences, AggregateSettings("strength", 0.0))
        strength = result.win_rates.set_index(["prompt_id", "response_idx"])["strength"]
        rewards = REWARDS["a"]
        for i in range(K):
            partners = [j for a, j in planned_pairs(K, comparisons) if a == i]
            margins = [2 * (rewards[i] - rewards[j]) for j in partners]
            assert strength[("a", i)] == pytest.approx((K - 1) / K * np.mean(margins))


def test_preferences_that_follow_no_plan_or_two_plans_are_one_line():
    preferences = score_samples(BradleyTerryPairs(), samples(), comparisons="circular")
    missing = preferences.drop(index=3)
    with pytest.raises(UserError, match=r"prompt a hold 9 ordered pairs of its 5 responses, which"
                                         r" no judging plan asks for \(judge.comparisons circular: "
                                         r"1 missing, 0 not planned\)"):  # fmt: skip
        aggregate(samples(), missing, AggregateSettings("direct", 0.0))
    anchor = score_samples(BradleyTerryPairs(), samples(), comparisons="anchor")
    mixed = pd.concat([preferences[preferences.prompt_id == "a"], anchor[anchor.prompt_id == "b"]])
    with pytest.raises(UserError, match=r"prompt b follow judge.comparisons anchor, the prompts"):
        aggregate(samples(), mixed, AggregateSettings("direct", 0.0))
    assert check_plan([("x", 3, set(planned_pairs(3, "all")))]) == "all"
