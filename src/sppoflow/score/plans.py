"""Judging plans (judge.comparisons): which ordered pairs of a prompt's K responses the score
stage asks the judge about. A pairwise judge (PairRM, an LLM judge) costs one forward pass per
ordered pair, so the plan sets the score stage's cost:

* ``all``: every ordered pair, K(K-1), the paper's and the default;
* ``circular``: each response against the next one (the last against the first), in both
  orders: 2K pairs, as pairwise generative reward models are run in NeMo RL;
* ``anchor``: every response against the first one, in both orders: 2(K-1) pairs.

Every plan asks both orders of each pair it asks, so a position-biased judge is debiased the
same way in each. Positions are those of the prompt's responses in response order. Plans
coincide for small K: at K = 3 circular is every pair, at K = 2 every plan is the one pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from sppoflow.errors import UserError, check_choice

COMPARISONS = ("all", "circular", "anchor")


def planned_pairs(k: int, comparisons: str) -> list[tuple[int, int]]:
    """The ordered pairs (i, j), positions 0..k-1, that ``comparisons`` judges, sorted."""
    return list(_planned(k, comparisons))


@cache  # a round asks for the same few (K, plan) for every prompt
def _planned(k: int, comparisons: str) -> tuple[tuple[int, int], ...]:
    check_choice("judge.comparisons", comparisons, COMPARISONS)
    if comparisons == "all" or k <= 2:
        edges = {(i, j) for i in range(k) for j in range(k) if i != j}
    elif comparisons == "circular":
        edges = {(i, (i + 1) % k) for i in range(k)}
    else:
        edges = {(i, 0) for i in range(1, k)}
    return tuple(sorted(edges | {(j, i) for i, j in edges}))


def check_plan(prompts: Iterable[tuple[object, int, set[tuple[int, int]]]]) -> str:
    """The judging plan that every prompt's judged pairs follow exactly, given (prompt id, K,
    its judged pairs as positions). A prompt whose pairs follow no plan (a pair missing, one
    judged that no plan asks for), or prompts that follow different plans, are one-line
    errors. Where plans coincide (K below 4) the first of ``COMPARISONS`` that fits is named."""
    possible = set(COMPARISONS)
    for prompt_id, k, pairs in prompts:
        matching = {c for c in COMPARISONS if set(_planned(k, c)) == pairs}
        if not matching:
            nearest = min(COMPARISONS, key=lambda c: len(set(planned_pairs(k, c)) ^ pairs))
            expected = set(planned_pairs(k, nearest))
            raise UserError(
                f"preferences of prompt {prompt_id} hold {len(pairs)} ordered pairs of its {k} "
                f"responses, which no judging plan asks for (judge.comparisons {nearest}: "
                f"{len(expected - pairs)} missing, {len(pairs - expected)} not planned); "
                "re-run the score stage"
            )
        if not possible & matching:
            raise UserError(
                f"preferences of prompt {prompt_id} follow judge.comparisons "
                f"{' or '.join(sorted(matching))}, the prompts before it "
                f"{' or '.join(sorted(possible))}: re-run the score stage"
            )
        possible &= matching
    return next(c for c in COMPARISONS if c in possible)
