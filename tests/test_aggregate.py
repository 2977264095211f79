"""The aggregation SQL against a worked example (docs/algorithm.md, section 4)."""

import math

import numpy as np
import pandas as pd
import pytest

from sppoflow.aggregate.win_rates import AggregateSettings, aggregate
from sppoflow.errors import UserError

# Prompt "a": K = 3 with a position-biased pairwise judge (L is not antisymmetric).
L = np.array([[0.0, 1.0, 2.0], [-0.5, 0.0, 0.4], [-1.5, 0.2, 0.0]])
# Prompt "b": two responses the judge cannot tell apart.


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def tables():
    samples = pd.DataFrame(
        {
            "prompt_id": ["a", "a", "a", "b", "b"],
            "prompt": ["pa"] * 3 + ["pb"] * 2,
            "response_idx": [0, 1, 2, 0, 1],
            "response": ["a0", "a1", "a2", "b0", "b1"],
            "response_token_ids": [[1], [2], [3], [4], [5]],
            "prompt_tokens": [5] * 5,
            "response_tokens": [10, 20, 30, 40, 50],
            "finish_reason": ["stop", "stop", "length", "stop", "stop"],
        }
    )
    rows = [("a", i, j, L[i, j]) for i in range(3) for j in range(3) if i != j]
    rows += [("b", 0, 1, 0.0), ("b", 1, 0, 0.0)]
    preferences = pd.DataFrame(rows, columns=["prompt_id", "i", "j", "logit"])
    preferences["prob"] = preferences["logit"].map(sigmoid)
    return samples, preferences


def test_score_estimator_matches_the_worked_example():
    samples, preferences = tables()
    result = aggregate(samples, preferences, AggregateSettings("strength", 0.001), round_number=2)
    a = result.win_rates[result.win_rates.prompt_id == "a"].set_index("response_idx")
    # s_i = (1/K) sum_j (L[i,j] - L[j,i]), by hand
    assert a["strength"].tolist() == pytest.approx([5 / 3, -1.3 / 3, -3.7 / 3])
    s = a["strength"].to_numpy()
    expected = [np.mean([sigmoid(s[i] - s[j]) for j in range(3)]) for i in range(3)]
    assert a["win_rate_strength"].tolist() == pytest.approx(expected)
    assert a["win_rate"].tolist() == pytest.approx(expected)
    assert a["win_rate_strength"].iloc[0] == pytest.approx(
        (0.5 + sigmoid(5 / 3 + 1.3 / 3) + sigmoid(5 / 3 + 3.7 / 3)) / 3
    )
    assert a["is_winner"].tolist() == [True, False, False]
    assert a["is_loser"].tolist() == [False, False, True]

    pairs = result.pairs.set_index("prompt_id")
    assert list(pairs.index) == ["a"]  # "b" has no preference
    pair = pairs.loc["a"]
    assert (pair.winner_idx, pair.loser_idx, pair.winner, pair.loser) == (0, 2, "a0", "a2")
    assert pair.q == pytest.approx(sigmoid(2.9))  # sigmoid(s_w - s_l) = sigmoid(5/3 + 3.7/3)
    assert pair.p_winner == pytest.approx(expected[0])
    assert pair.p_loser == pytest.approx(expected[2])
    assert pair.spread == pytest.approx(expected[0] - expected[2])

    stats = result.stats.iloc[0]
    assert stats["round"] == 2
    assert (stats.n_prompts, stats.n_responses, stats.n_pairs, stats.n_no_preference) == (
        2,
        5,
        1,
        1,
    )
    assert stats.mean_response_tokens == pytest.approx(30.0)
    assert stats.share_truncated == pytest.approx(0.2)


def test_direct_estimator_averages_both_orders_without_the_self_term():
    samples, preferences = tables()
    result = aggregate(samples, preferences, AggregateSettings("direct", 0.001))
    a = result.win_rates[result.win_rates.prompt_id == "a"].set_index("response_idx")
    P = np.vectorize(sigmoid)(L)
    expected = [
        np.mean([(P[i, j] + 1 - P[j, i]) / 2 for j in range(3) if j != i]) for i in range(3)
    ]
    assert a["win_rate_direct"].tolist() == pytest.approx(expected)
    assert a["win_rate"].tolist() == pytest.approx(expected)
    # response 0 beats 1 by (sigmoid(1.0) + 1 - sigmoid(-0.5)) / 2 and 2 by ... by hand:
    assert expected[0] == pytest.approx(
        ((sigmoid(1.0) + sigmoid(0.5)) / 2 + (sigmoid(2.0) + sigmoid(1.5)) / 2) / 2
    )
    pair = result.pairs.set_index("prompt_id").loc["a"]
    assert (pair.winner_idx, pair.loser_idx) == (0, 2)
    assert pair.q == pytest.approx((P[0, 2] + 1 - P[2, 0]) / 2)
    # the score-based win rates are still reported beside the direct ones
    assert a["win_rate_strength"].notna().all()


def test_min_spread_drops_weak_preferences(caplog):
    samples, preferences = tables()
    with caplog.at_level("WARNING"):
        result = aggregate(samples, preferences, AggregateSettings("strength", 0.01))
    assert result.pairs.prompt_id.tolist() == ["a"] and result.stats.iloc[0].n_no_preference == 1
    assert (
        "1 of 2 prompts give no pair: their responses tie (spread 0 or below min_spread=0.01)"
        in caplog.text
    )
    with pytest.raises(UserError, match=r"below aggregate\.min_spread=0\.99"):
        aggregate(samples, preferences, AggregateSettings("strength", 0.99))


def test_a_prompt_whose_responses_all_tie_gives_no_pair(caplog):
    samples, preferences = tables()  # prompt b's two responses tie
    with caplog.at_level("WARNING"):
        result = aggregate(samples, preferences, AggregateSettings())
    assert result.pairs.prompt_id.tolist() == ["a"]
    assert "1 of 2 prompts give no pair: their responses tie (spread 0)" in caplog.text
    preferences["logit"], preferences["prob"] = 0.0, 0.5
    with pytest.raises(UserError) as error:
        aggregate(samples, preferences, AggregateSettings())
    assert str(error.value) == (
        "no training pair: the responses of all 2 prompts tie (win-rate spread 0); the judge "
        "cannot tell them apart, or the policy gives one answer K times"
    )


def test_incomplete_preferences_are_refused():
    samples, preferences = tables()
    with pytest.raises(UserError, match="ordered pairs"):
        aggregate(samples, preferences.iloc[1:], AggregateSettings())


def test_unknown_estimator_is_refused():
    samples, preferences = tables()
    with pytest.raises(UserError, match=r"aggregate\.estimator: unknown value 'mean'"):
        aggregate(samples, preferences, AggregateSettings("mean"))


@pytest.mark.parametrize("estimator", ["strength", "direct"])
def test_the_result_does_not_depend_on_the_order_of_the_rows(estimator):
    """Sums over a prompt's responses run in response order, not in the order the rows (or a
    hash join's output) arrive: the same tables give the same bits, however shuffled."""
    rng = np.random.default_rng(0)
    rows = [
        (f"p{n}", i, j, float(rng.normal(scale=3)))
        for n in range(40)
        for i in range(5)
        for j in range(5)
        if i != j
    ]
    preferences = pd.DataFrame(rows, columns=["prompt_id", "i", "j", "logit"])
    preferences["prob"] = 1 / (1 + np.exp(-preferences["logit"]))
    samples = pd.DataFrame(
        [(f"p{n}", f"q{n}", k, f"r{k}", [k], 5, 10 + k, "stop")
         for n in range(40) for k in range(5)],
        columns=["prompt_id", "prompt", "response_idx", "response", "response_token_ids",
                 "prompt_tokens", "response_tokens", "finish_reason"],
    )  # fmt: skip
    settings = AggregateSettings(estimator, 0.001)
    first = aggregate(samples, preferences, settings)
    for seed in range(5):
        shuffled = preferences.sample(frac=1, random_state=seed).reset_index(drop=True)
        again = aggregate(samples.sample(frac=1, random_state=seed), shuffled, settings)
        pd.testing.assert_frame_equal(again.win_rates, first.win_rates, check_exact=True)
        pd.testing.assert_frame_equal(again.pairs, first.pairs, check_exact=True)
        pd.testing.assert_frame_equal(again.stats, first.stats, check_exact=True)
