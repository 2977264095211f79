"""The question files of Arena-Hard's and MT-Bench's question sets, as their own tools publish them.

- Arena-Hard (github.com/lmarena/arena-hard-auto), ``data/<bench>/question.jsonl``: one
  question a line. Since arena-hard-auto's v2.0 release (2025) a question is
  ``{uid, category, prompt, ...}`` (its v0.1 questions were rewritten the same way); its 2024
  releases wrote ``{question_id, category, turns: [{content}]}``. Answers are written in the
  layout of the release whose questions were given (``sppoflow.report.answer_exports``).
- MT-Bench (github.com/lm-sys/FastChat, ``fastchat/llm_judge/data/mt_bench/question.jsonl``):
  ``{question_id, category, turns: [str, str]}``, two user turns a question.

A question's id keeps the type the file gives it (MT-Bench's are integers): the tools look
answers up by it. Nothing here imports torch or pandas, so the config check can use it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppoflow.errors import UserError

ARENA_HARD = "arena_hard"
MT_BENCH = "mt_bench"
QUESTION_SETS = (ARENA_HARD, MT_BENCH)

# The question layouts: arena-hard-auto's current one and its 2024 one (which MT-Bench shares)
UID = "uid"
QUESTION_ID = "question_id"

WHERE_FROM = {
    ARENA_HARD: "arena-hard-auto's data/arena-hard-v2.0/question.jsonl (or arena-hard-v0.1's)",
    MT_BENCH: "FastChat's fastchat/llm_judge/data/mt_bench/question.jsonl",
}

# FastChat's MT-Bench answers are sampled at a temperature per category
# (fastchat/llm_judge/common.py, temperature_config); other categories get 0.7.
MT_BENCH_TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
MT_BENCH_OTHER_TEMPERATURE = 0.7


@dataclass(frozen=True)
class Question:
    id: int | str  # as the question file writes it
    category: str
    turns: tuple[str, ...]  # the user's messages, one a turn


def question_layout(question_set: str, record: dict[str, Any]) -> str | None:
    """Which layout a question line has (UID or QUESTION_ID), None if neither."""
    if question_set == ARENA_HARD and UID in record and isinstance(record.get("prompt"), str):
        return UID
    turns = record.get("turns")
    if QUESTION_ID in record and isinstance(turns, list) and turns:
        plain = all(isinstance(t, str) for t in turns)
        contents = all(isinstance(t, dict) and isinstance(t.get("content"), str) for t in turns)
        if (question_set == MT_BENCH and plain) or (question_set == ARENA_HARD and contents):
            return QUESTION_ID
    return None


def expected_fields(question_set: str) -> str:
    if question_set == MT_BENCH:
        return "question_id and turns (a list of strings)"
    return "uid and prompt, or question_id and turns (a list of {content})"


def _question(layout: str, record: dict[str, Any]) -> Question:
    if layout == UID:
        return Question(record[UID], str(record.get("category", "")), (record["prompt"],))
    turns = record["turns"]
    texts = tuple(t if isinstance(t, str) else t["content"] for t in turns)
    return Question(record[QUESTION_ID], str(record.get("category", "")), texts)


def read_questions(path: Path | str, question_set: str) -> tuple[str, list[Question]]:
    """(layout, questions) of a question set's question file, in the file's order; every line
    must have the first line's layout, and every id must be unique."""
    path = Path(path)
    if question_set not in QUESTION_SETS:
        choices = ", ".join(QUESTION_SETS)
        raise UserError(f"unknown question set '{question_set}' (choose {choices})")
    if not path.is_file():
        raise UserError(f"{path}: question file not found ({WHERE_FROM[question_set]})")
    layout, questions = None, []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is text
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}, line {number}: not JSON ({error})") from None
        found = question_layout(question_set, record) if isinstance(record, dict) else None
        if found is None or (layout is not None and found != layout):
            raise UserError(
                f"{path}, line {number}: not a {question_set} question: expected "
                f"{expected_fields(question_set) if layout is None else layout + ' like line 1'}"
            )
        layout = found
        questions.append(_question(layout, record))
    if not questions:
        raise UserError(f"{path}: no questions")
    # ids are compared as text: the answers and both tools' files key them that way
    counts = Counter(str(q.id) for q in questions)
    twice = sorted(i for i, n in counts.items() if n > 1)
    if twice:
        raise UserError(f"{path}: question id(s) {', '.join(twice)} given twice")
    return layout, questions


def check_question_file(path: Path, question_set: str, key: str) -> None:
    """A config's question file, read whole (80 to 750 questions) before any job runs."""
    if not path.is_file():
        raise UserError(f"config error: {key}: {path} is not a file ({WHERE_FROM[question_set]})")
    try:
        read_questions(path, question_set)
    except UserError as error:
        raise UserError(f"config error: {key}: {error}") from None


def conventional_temperature(question_set: str, question: Question) -> float:
    """The temperature the question set's own answer scripts sample a question at: FastChat's
    per-category table for MT-Bench; greedy for Arena-Hard, whose answer config
    (config/gen_answer_config.yaml of its 2024 releases) sets temperature 0.0."""
    if question_set == MT_BENCH:
        return MT_BENCH_TEMPERATURES.get(question.category, MT_BENCH_OTHER_TEMPERATURE)
    return 0.0
