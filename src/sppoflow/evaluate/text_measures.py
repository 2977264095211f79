"""Measures of a response that need no judge: its length, its overlap with the prompt and
its repetition loops."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

from sppoflow.evaluate.round_metrics import ResponseMeasures

WORD = re.compile(r"[a-z0-9]+")


STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "what",
        "why",
        "with",
        "you",
        "your",
    ]
)


def prompt_overlap(prompt: str, response: str) -> float:
    """Share of the prompt's distinct content words that the response repeats."""
    words = set(WORD.findall(prompt.lower())) - STOP_WORDS
    if not words:
        return 0.0
    return len(words & set(WORD.findall(response.lower()))) / len(words)


NGRAM = 4


LOOP_SHARE = 0.5


def repetition(response: str) -> float:
    """Share of the response's word 4-grams that repeat an earlier one (0: none; a response
    stuck in a loop comes near 1)."""
    words = WORD.findall(response.lower())
    grams = [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
    if not grams:
        return 0.0
    return (len(grams) - len(Counter(grams))) / len(grams)


def objective_measures(responses: pd.DataFrame) -> ResponseMeasures:
    """What needs no judge, over a samples table of evaluation responses: mean tokens, the
    share cut at max_new_tokens, how much of the prompt a response repeats, and repetition
    loops (responses whose 4-grams are at least half repeats)."""
    loops = responses["response"].map(repetition)
    overlap = [
        prompt_overlap(p, r)
        for p, r in zip(responses["prompt"], responses["response"], strict=True)
    ]
    return ResponseMeasures(
        n_responses=len(responses),
        mean_tokens=float(responses["response_tokens"].mean()),
        truncated_share=float((responses["finish_reason"] == "length").mean()),
        mean_prompt_overlap=float(np.mean(overlap)),
        mean_repetition=float(loops.mean()),
        loop_share=float((loops >= LOOP_SHARE).mean()),
    )
