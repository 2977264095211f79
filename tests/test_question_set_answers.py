"""Answers to Arena-Hard's and MT-Bench's question sets: their question files, the
turn-by-turn generation (turn 2 continues the conversation with the model's own first
answer, through the chat template) on both backends, the temperatures, and the config's
checks of the question files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from question_set_tools import (
    ARENA_HARD_2024_QUESTIONS,
    ARENA_HARD_QUESTIONS,
    MT_BENCH_QUESTIONS,
    write_jsonl,
)
from sppoflow.config.validation import validate
from sppoflow.errors import UserError
from sppoflow.evaluate.question_set_answers import (
    answer_questions,
    conversation_budget,
    conversation_so_far,
)
from sppoflow.evaluate.question_sets import (
    ARENA_HARD,
    MT_BENCH,
    QUESTION_ID,
    UID,
    Question,
    read_questions,
)
from sppoflow.models.chat import encode_conversations
from sppoflow.sample.settings import SamplingSettings
from sppoflow.sample.transformers_backend import generate
from sppoflow.tables import QUESTION_SET_ANSWERS


@pytest.fixture
def question_files(tmp_path) -> dict[str, Path]:
    return {
        MT_BENCH: write_jsonl(tmp_path / "mt_bench.jsonl", MT_BENCH_QUESTIONS),
        ARENA_HARD: write_jsonl(tmp_path / "arena_hard.jsonl", ARENA_HARD_QUESTIONS),
        "arena_2024": write_jsonl(tmp_path / "arena_2024.jsonl", ARENA_HARD_2024_QUESTIONS),
    }


def settings(**overrides) -> SamplingSettings:
    base = {"k": 1, "max_new_tokens": 8, "batch_size": 4, "seed": 0, "dtype": "float32"}
    return SamplingSettings(**{**base, "device": "cpu", **overrides})


def test_each_tools_question_file_is_read_with_its_ids_and_turns(question_files):
    layout, questions = read_questions(question_files[MT_BENCH], MT_BENCH)
    assert layout == QUESTION_ID and [q.id for q in questions] == [81, 82, 83]  # ints stay ints
    assert questions[0] == Question(81, "writing", ("Write a haiku.", "Make it rhyme."))
    layout, questions = read_questions(question_files[ARENA_HARD], ARENA_HARD)
    assert layout == UID and questions[1] == Question("2c3d", "creative_writing", ("A limerick.",))
    layout, questions = read_questions(question_files["arena_2024"], ARENA_HARD)
    assert layout == QUESTION_ID and questions == [Question("q1", "arena-hard-v0.1", ("Hi",))]


def test_a_question_file_of_another_tool_or_with_an_id_twice_is_refused(question_files, tmp_path):
    with pytest.raises(UserError, match=r"line 1: not a mt_bench question: expected question_id"):
        read_questions(question_files[ARENA_HARD], MT_BENCH)
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl", [*ARENA_HARD_QUESTIONS, *ARENA_HARD_2024_QUESTIONS]
    )
    with pytest.raises(UserError, match=r"line 3: not a arena_hard question: expected uid like"):
        read_questions(mixed, ARENA_HARD)
    twice = write_jsonl(tmp_path / "twice.jsonl", [MT_BENCH_QUESTIONS[0]] * 2)
    with pytest.raises(UserError, match="question id\\(s\\) 81 given twice"):
        read_questions(twice, MT_BENCH)
    with pytest.raises(UserError, match=r"question file not found .*FastChat"):
        read_questions(tmp_path / "absent.jsonl", MT_BENCH)


class Recorder:
    """A stand-in backend: answers each prompt with a text naming its turn, and records what
    it was asked (the prompts table and the settings of each call)."""

    def __init__(self):
        self.calls: list[tuple[pd.DataFrame, SamplingSettings]] = []

    def __call__(self, prompts: pd.DataFrame, asked: SamplingSettings) -> pd.DataFrame:
        self.calls.append((prompts, asked))
        return pd.DataFrame(
            {
                "prompt_id": prompts["prompt_id"],
                "prompt": prompts["prompt"],
                "response_idx": 0,
                "response": [f"answer to {p}" for p in prompts["prompt"]],
                "response_token_ids": [[1, 2]] * len(prompts),
                "prompt_tokens": 10,
                "response_tokens": 2,
                "finish_reason": "stop",
            }
        )


def test_the_second_turn_continues_the_conversation_with_the_first_answer():
    questions = read_questions_from(MT_BENCH_QUESTIONS)
    recorder = Recorder()
    answers = answer_questions(MT_BENCH, questions, recorder, settings())
    QUESTION_SET_ANSWERS.check(answers, "answers")
    assert answers[["question_id", "turn"]].values.tolist() == [
        ["81", 1], ["81", 2], ["82", 1], ["82", 2], ["83", 1], ["83", 2],
    ]  # fmt: skip
    turn_two = pd.concat([p for p, _ in recorder.calls if len(p.messages.iloc[0]) == 3])
    messages = turn_two.set_index("prompt_id").loc["81", "messages"]
    assert messages == [
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "answer to Write a haiku."},
        {"role": "user", "content": "Make it rhyme."},
    ]
    assert conversation_so_far(questions[0], []) == [{"role": "user", "content": "Write a haiku."}]


def read_questions_from(records: list[dict]) -> list[Question]:
    return [Question(r["question_id"], r["category"], tuple(r["turns"])) for r in records]


def test_conventional_temperatures_are_fastchats_for_mt_bench_and_greedy_for_arena_hard():
    recorder = Recorder()
    answers = answer_questions(
        MT_BENCH,
        read_questions_from(MT_BENCH_QUESTIONS),
        recorder,
        settings(temperature=0.9, top_p=0.5),
    )
    by_question = answers.groupby("question_id")["temperature"].unique().map(list).to_dict()
    assert by_question == {"81": [0.7], "82": [0.0], "83": [0.1]}  # writing, math, stem
    # one call per turn and temperature, each at top-p 1 and one answer a prompt
    assert len(recorder.calls) == 6
    assert {(s.top_p, s.k) for _, s in recorder.calls} == {(1.0, 1)}
    recorder = Recorder()
    arena = [Question("u", "creative_writing", ("A poem.",))]
    answers = answer_questions(ARENA_HARD, arena, recorder, settings(temperature=0.9))
    assert answers["temperature"].tolist() == [0.0]
    recorder = Recorder()
    answer_questions(
        MT_BENCH,
        read_questions_from(MT_BENCH_QUESTIONS),
        recorder,
        settings(temperature=0.9, top_p=0.5),
        sampling="evaluate",
    )
    assert {(s.temperature, s.top_p) for _, s in recorder.calls} == {(0.9, 0.5)}
    assert len(recorder.calls) == 2  # one call per turn


def test_turn_two_is_generated_from_the_templated_conversation_on_the_tiny_model(tiny_model):
    """The second turn's prompt is [turn 1, the model's answer, turn 2] through the chat
    template: its tokens are that conversation's, with the first answer's tokens inside."""
    model, tokenizer = tiny_model
    questions = read_questions_from(MT_BENCH_QUESTIONS[:1])

    def generate_turn(prompts, asked):
        return generate(model, tokenizer, prompts, asked)

    answers = answer_questions(MT_BENCH, questions, generate_turn, settings(max_new_tokens=10))
    first, second = answers.itertuples(index=False)
    assert first.response and first.finish_reason == "length"
    conversation = [
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": first.response},
        {"role": "user", "content": "Make it rhyme."},
    ]
    [ids] = encode_conversations(tokenizer, [conversation])
    assert second.prompt_tokens == len(ids)
    answer_ids = tokenizer(first.response, add_special_tokens=False)["input_ids"]
    assert any(ids[i : i + len(answer_ids)] == answer_ids for i in range(len(ids)))
    # seeded: the same answers again
    again = answer_questions(MT_BENCH, questions, generate_turn, settings(max_new_tokens=10))
    assert again["response"].tolist() == answers["response"].tolist()
    budget = conversation_budget(tokenizer, questions, None, max_new_tokens=10)
    assert budget >= second.prompt_tokens + 10


def test_the_vllm_backend_answers_every_turn_from_one_engine(fake_vllm, tiny_model_dir):
    from sppoflow.sample.vllm_backend import VllmEngine, policy_tokenizer

    questions = read_questions_from(MT_BENCH_QUESTIONS)
    tokenizer = policy_tokenizer(str(tiny_model_dir))
    asked = settings(backend="vllm", max_new_tokens=6)
    budget = conversation_budget(tokenizer, questions, "Be brief.", asked.max_new_tokens)
    engine = VllmEngine(str(tiny_model_dir), asked, budget, tokenizer)

    def generate_turn(prompts, turn_settings):
        return engine.generate(prompts, turn_settings, "Be brief.")

    answers = answer_questions(MT_BENCH, questions, generate_turn, asked)
    [started] = fake_vllm.read_text().splitlines()  # one engine for both turns
    assert json.loads(started)["max_model_len"] == budget
    for question in questions:
        first, second = answers[answers.question_id == str(question.id)].itertuples(index=False)
        conversation = conversation_so_far(question, [first.response])
        [ids] = encode_conversations(tokenizer, [conversation], "Be brief.")
        assert second.prompt_tokens == len(ids) <= budget - asked.max_new_tokens


def test_question_files_are_valid_config(question_files):
    given = {"mt_bench": str(question_files[MT_BENCH]), "lm_eval_tasks": ["leaderboard"]}
    checked = validate({"evaluate": {"question_sets": given}})["evaluate"]["question_sets"]
    assert checked == {**given, "arena_hard": None, "sampling": "conventional"}
    off = {"arena_hard": None, "mt_bench": None, "lm_eval_tasks": None}
    assert validate({})["evaluate"]["question_sets"] == {**off, "sampling": "conventional"}


@pytest.mark.parametrize(
    ("question_sets", "message"),
    [
        ({"mt_bench": "absent.jsonl"}, "mt_bench: absent.jsonl does not exist"),
        (
            {"mt_bench": "{arena_hard}"},
            "mt_bench: {arena_hard}, line 1: not a mt_bench question: expected question_id and "
            "turns (a list of strings)",
        ),
        ({"mt_bench": "{broken}"}, "mt_bench: {broken}, line 3: not JSON"),
        ({"mt_bench": "{latin1}"}, "mt_bench: {latin1}: not UTF-8 text (unexpected end of data"),
        ({"mt_bench": "{twice}"}, "mt_bench: {twice}: question id(s) 81 given twice"),
        ({"arena_hard": "{folder}"}, "arena_hard: {folder} is not a file (arena-hard-auto's"),
        ({"lm_eval_tasks": []}, "lm_eval_tasks: [] should be non-empty"),
        ({"lm_eval_tasks": ["a b"]}, "lm_eval_tasks.0: 'a b' does not match"),
        ({"sampling": "greedy"}, "sampling: 'greedy' is not one of"),
    ],
)
def test_a_bad_question_set_setting_is_one_line_naming_the_key(
    question_files, tmp_path, question_sets, message
):
    lines = question_files[MT_BENCH].read_text().splitlines()
    (tmp_path / "broken.jsonl").write_text("\n".join([*lines[:2], "{not json"]) + "\n")
    (tmp_path / "latin1.jsonl").write_bytes(lines[0].encode() + b"\n" + "caf\xe9".encode("latin-1"))
    text_id = lines[0].replace('"question_id": 81', '"question_id": "81"')
    (tmp_path / "twice.jsonl").write_text(lines[0] + "\n" + text_id + "\n")
    places = {"arena_hard": question_files[ARENA_HARD], "folder": tmp_path}
    places |= {name: tmp_path / f"{name}.jsonl" for name in ("broken", "latin1", "twice")}
    given = {k: v.format(**places) if isinstance(v, str) else v for k, v in question_sets.items()}
    with pytest.raises(UserError) as error:
        validate({"evaluate": {"question_sets": given}})
    assert f"config error: evaluate.question_sets.{message.format(**places)}" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_plan_counts_the_question_set_answers_of_every_round(question_files):
    from sppoflow.workflow.plan_cost import plan_cost

    config = validate({"rounds": 2, "evaluate": {"question_sets": {
        "mt_bench": str(question_files[MT_BENCH]), "arena_hard": str(question_files[ARENA_HARD]),
    }}})  # fmt: skip
    answered = [(s.stage, s.round, s.amount) for s in plan_cost(config).stages]
    response = min(config["sample"]["max_new_tokens"], 450)  # the plan's assumed length
    mt_bench = [(r, a) for stage, r, a in answered if stage == "mt_bench_answers"]
    assert mt_bench == [(r, 6 * response) for r in (0, 1, 2)]  # 3 questions, 2 turns each
    assert [r for stage, r, _ in answered if stage == "arena_hard_answers"] == [0, 1, 2]
