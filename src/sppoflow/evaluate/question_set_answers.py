"""A round's answers to a question set's questions, from its model through either sampling
backend (sppoflow.sample.transformers_backend, sppoflow.sample.vllm_backend).

Turn t of a question is answered from the conversation so far: the user's turns 1..t and the
model's own answers to turns 1..t-1, rendered by the model's chat template
(sppoflow.models.chat), so
MT-Bench's second turn sees the first answer as the model wrote it. The questions are asked a
turn at a time, all of them together, in groups that share a temperature: a generation batch
samples at one temperature.

``sampling`` says which temperatures: ``conventional`` is each question set's own (MT-Bench:
FastChat's per-category table; Arena-Hard: greedy), with top-p 1 as those tools sample;
``evaluate`` is the evaluation's temperature and top-p for every question.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sppoflow.evaluate.question_sets import Question, conventional_temperature
from sppoflow.models.chat import MESSAGES, Message, encode_conversations
from sppoflow.sample.settings import SamplingSettings
from sppoflow.schema import config_section, declared
from sppoflow.tables import QUESTION_SET_ANSWERS

CONVENTIONAL = "conventional"
# (prompts: prompt_id, prompt, messages; settings) -> a SAMPLES table with one row a prompt
TurnGenerator = Callable[[pd.DataFrame, SamplingSettings], pd.DataFrame]


@config_section("evaluate", "question_sets")
class AnswerSettings:
    sampling: str = declared()


def sampling_of(
    question_set: str, question: Question, settings: SamplingSettings, sampling: str
) -> tuple[float, float]:
    """(temperature, top_p) of a question's answers."""
    if sampling == CONVENTIONAL:
        return conventional_temperature(question_set, question), 1.0
    return settings.temperature, settings.top_p


def conversation_so_far(question: Question, answers: Sequence[str]) -> list[Message]:
    """The messages that turn len(answers) + 1 of ``question`` continues."""
    messages: list[Message] = []
    for asked, answered in zip(question.turns, answers, strict=False):
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    messages.append({"role": "user", "content": question.turns[len(answers)]})
    return messages


def answer_questions(
    question_set: str,
    questions: Sequence[Question],
    generate_turn: TurnGenerator,
    settings: SamplingSettings,
    sampling: str = CONVENTIONAL,
) -> pd.DataFrame:
    """Every turn of every question answered once: a QUESTION_SET_ANSWERS table, in the question
    file's order and then by turn."""
    answers: dict[str, list[str]] = {str(q.id): [] for q in questions}
    rows = []
    for turn in range(1, max(len(q.turns) for q in questions) + 1):
        groups: dict[tuple[float, float], list[Question]] = {}
        for question in questions:
            if len(question.turns) >= turn:
                key = sampling_of(question_set, question, settings, sampling)
                groups.setdefault(key, []).append(question)
        for (temperature, top_p), group in sorted(groups.items()):
            prompts = pd.DataFrame(
                {
                    "prompt_id": [str(q.id) for q in group],
                    "prompt": [q.turns[turn - 1] for q in group],
                    MESSAGES: [conversation_so_far(q, answers[str(q.id)]) for q in group],
                }
            )
            asked = replace(settings, k=1, temperature=temperature, top_p=top_p)
            generated = generate_turn(prompts, asked).set_index("prompt_id")
            for question in group:
                sample = generated.loc[str(question.id)]
                answers[str(question.id)].append(sample["response"])
                rows.append(
                    {
                        "question_id": str(question.id),
                        "category": question.category,
                        "turn": turn,
                        "prompt": question.turns[turn - 1],
                        "temperature": temperature,
                        **{c: sample[c] for c in QUESTION_SET_ANSWERS.columns if c in sample},
                    }
                )
    order = {str(q.id): n for n, q in enumerate(questions)}
    frame = pd.DataFrame.from_records(rows, columns=list(QUESTION_SET_ANSWERS.columns))
    frame = frame.sort_values(["question_id", "turn"], key=_by(order, "question_id"))
    return frame.reset_index(drop=True)


def _by(order: dict[str, int], column: str):
    return lambda values: values.map(order) if values.name == column else values


def context_length(model_folder: Path | str) -> int | None:
    """The longest sequence the model takes (its config's max_position_embeddings), or None
    where the config does not say."""
    path = Path(model_folder) / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config = config.get("text_config") or config
    return config.get("max_position_embeddings")


def conversation_budget(
    tokenizer, questions: Sequence[Question], system_prompt: str | None, max_new_tokens: int
) -> int:
    """Tokens enough for any request of a question's turns, prompt and answer (what a vLLM
    engine is started with): the longest question with empty answers, each answer fed back
    counted at twice its generated tokens (re-encoding a decoded answer seldom changes its
    length, and never doubles it in practice), and the last answer."""
    longest = 0
    for question in questions:
        empty = conversation_so_far(question, [""] * (len(question.turns) - 1))
        [ids] = encode_conversations(tokenizer, [empty], system_prompt)
        longest = max(longest, len(ids) + (2 * len(question.turns) - 1) * max_new_tokens)
    return longest
