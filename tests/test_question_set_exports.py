"""The question-set answers in each tool's own files, read back by the tools' loaders (FastChat's
own; arena-hard-auto's reads mirrored, tests/question_set_tools.py), the same bytes on every
rerun, and the lm-eval command, checked against lm-eval's own command line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from helpers import run_script
from question_set_tools import (
    ARENA_HARD_2024_QUESTIONS,
    ARENA_HARD_QUESTIONS,
    MT_BENCH_QUESTIONS,
    fastchat_loader,
    lm_eval_command,
    lm_eval_flags,
    lm_eval_parse,
    read_arena_hard_answers,
    write_jsonl,
)
from sppoflow.errors import UserError
from sppoflow.evaluate.question_sets import ARENA_HARD, MT_BENCH
from sppoflow.report.answer_exports import write_answers, write_lm_eval_script
from sppoflow.tables import QUESTION_SET_ANSWERS, write_table


def answers_table(questions: list[dict], turns: int, text: str = "answer") -> pd.DataFrame:
    rows = []
    for question in questions:
        question_id = question.get("uid", question.get("question_id"))
        for turn in range(1, turns + 1):
            response = f"{text} {turn} to {question_id}: café"
            rows.append(
                {
                    "question_id": str(question_id),
                    "category": question["category"],
                    "turn": turn,
                    "prompt": "asked",
                    "temperature": 0.0,
                    "response": response,
                    "response_token_ids": [7] * len(response.split()),
                    "prompt_tokens": 20,
                    "response_tokens": len(response.split()),
                    "finish_reason": "stop",
                }
            )
    return pd.DataFrame(rows, columns=list(QUESTION_SET_ANSWERS.columns))


def export(tmp_path: Path, question_set: str, questions: list[dict], turns: int, model: str, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    question_file = write_jsonl(tmp_path / f"{question_set}_questions.jsonl", questions)
    answers = tmp_path / f"{question_set}_answers.parquet"
    write_table(
        answers_table(questions, turns, kw.pop("text", "answer")), answers, QUESTION_SET_ANSWERS
    )
    out = tmp_path / "export" / question_set / "model_answer" / f"{model}.jsonl"
    assert write_answers(question_set, question_file, answers, out, **kw) == len(questions)
    return out


def test_mt_bench_answers_are_read_back_by_fastchats_loader(tmp_path):
    fastchat = fastchat_loader()
    out = export(tmp_path, MT_BENCH, MT_BENCH_QUESTIONS, turns=2, model="sppo-iter2")
    export(tmp_path, MT_BENCH, MT_BENCH_QUESTIONS, turns=2, model="sppo-iter0", text="base")
    loaded = fastchat.load_model_answers(str(out.parent))
    assert set(loaded) == {"sppo-iter0", "sppo-iter2"}
    questions = fastchat.load_questions(str(tmp_path / "mt_bench_questions.jsonl"), None, None)
    fastchat.check_data(questions, loaded, {}, sorted(loaded), {})
    for question in questions:  # what gen_judgment.py looks up: answers by the question's id
        answer = loaded["sppo-iter2"][question["question_id"]]
        assert answer["model_id"] == "sppo-iter2" and answer["tstamp"] == 0
        [choice] = answer["choices"]
        qid = question["question_id"]
        assert choice["turns"] == [f"answer 1 to {qid}: café", f"answer 2 to {qid}: café"]
    assert out.read_bytes().isascii()  # FastChat opens it with the platform's encoding


def test_arena_hard_answers_follow_the_layout_of_the_questions_release(tmp_path):
    out = export(
        tmp_path,
        ARENA_HARD,
        ARENA_HARD_QUESTIONS,
        turns=1,
        model="dpo-iter1",
        system_prompt="Be brief.",
    )
    [(model, answers)] = read_arena_hard_answers(out.parent).items()
    assert model == "dpo-iter1" and set(answers) == {"0a1b", "2c3d"}
    answer = answers["2c3d"]
    assert answer["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "A limerick."},
        {"role": "assistant", "content": {"answer": "answer 1 to 2c3d: café"}},
    ]
    assert answer["metadata"] == {"token_len": 5}
    older = tmp_path / "2024"
    older.mkdir()
    out = export(older, ARENA_HARD, ARENA_HARD_2024_QUESTIONS, turns=1, model="dpo-iter1")
    [answer] = read_arena_hard_answers(out.parent)["dpo-iter1"].values()
    assert answer["question_id"] == "q1"
    assert answer["choices"] == [
        {"index": 0, "turns": [{"content": "answer 1 to q1: café", "token_len": 5}]}
    ]


def test_answer_files_are_the_same_bytes_on_a_rerun_and_ids_follow_the_content(tmp_path):
    first = export(tmp_path / "a", MT_BENCH, MT_BENCH_QUESTIONS, 2, "sppo-iter1")
    again = export(tmp_path / "b", MT_BENCH, MT_BENCH_QUESTIONS, 2, "sppo-iter1")
    assert first.read_bytes() == again.read_bytes()
    other = export(tmp_path / "c", MT_BENCH, MT_BENCH_QUESTIONS, 2, "sppo-iter1", text="other")
    ids = [json.loads(line)["answer_id"] for line in first.read_text().splitlines()]
    changed = [json.loads(line)["answer_id"] for line in other.read_text().splitlines()]
    assert len(set(ids)) == 3 and not set(ids) & set(changed)


def test_a_missing_turn_or_an_unknown_question_is_an_error(tmp_path):
    questions = write_jsonl(tmp_path / "q.jsonl", MT_BENCH_QUESTIONS)
    answers = tmp_path / "a.parquet"
    one_turn = answers_table(MT_BENCH_QUESTIONS, turns=1)
    write_table(one_turn, answers, QUESTION_SET_ANSWERS)
    with pytest.raises(UserError, match="question 81 has no answer to turn 2"):
        write_answers(MT_BENCH, questions, answers, tmp_path / "m.jsonl")
    stray = answers_table([{"question_id": 99, "category": "x"}], turns=2)
    full = pd.concat([answers_table(MT_BENCH_QUESTIONS, turns=2), stray])
    write_table(full, answers, QUESTION_SET_ANSWERS)
    with pytest.raises(UserError, match=r"answers to questions the question file lacks: \['99'\]"):
        write_answers(MT_BENCH, questions, answers, tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def written_lm_eval(folder: Path, out: str = "results/export/lm_eval_iter2.sh", **settings):
    """A round's lm-eval script, written from ``folder`` (the run folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {
        "model": Path("results/iter2/model"),
        "name": "sppo-iter2",
        "tasks": ["leaderboard"],
        "dtype": "auto",
    }
    with contextlib.chdir(folder):
        write_lm_eval_script(Path(out), **{**defaults, **settings})
    return folder / out


def run_with_fake_lm_eval(script: Path, tmp_path: Path, *extra: str) -> list[str]:
    """What the script hands lm_eval, through bash: a stand-in lm_eval on the PATH writes
    its arguments down."""
    fake = tmp_path / "fake-bin"
    fake.mkdir(exist_ok=True)
    recorded = tmp_path / "argv.json"
    (fake / "lm_eval").write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(recorded)!r}, 'w'))\n"
    )
    (fake / "lm_eval").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(
        ["bash", str(script), *extra], capture_output=True, text=True, env=env, cwd="/"
    )
    assert run.returncode == 0, run.stderr
    return json.loads(recorded.read_text())


def test_the_lm_eval_command_uses_only_flags_lm_eval_knows(tmp_path):
    """lm_eval --help lists every flag the written command passes, and (where this lm_eval
    has its parser in process) lm-eval's own parser reads the command as meant; no
    evaluation runs."""
    lm_eval_command()  # skips without lm_eval
    run = tmp_path / "run"
    script = written_lm_eval(run, system_prompt="Be 'brief'.", trust_remote_code=True)
    arguments = run_with_fake_lm_eval(script, tmp_path, "--limit", "2")
    model_args = f"pretrained={run}/results/iter2/model,dtype=bfloat16,trust_remote_code=True"
    assert arguments == [
        "--model", "hf", "--model_args", model_args, "--tasks", "leaderboard",
        "--batch_size", "auto", "--apply_chat_template", "--fewshot_as_multiturn",
        "--system_instruction", "Be 'brief'.",
        "--output_path", f"{run}/results/export/lm_eval/sppo-iter2", "--log_samples",
        "--limit", "2",
    ]  # fmt: skip
    used = {a for a in arguments if a.startswith("--")}
    assert used <= lm_eval_flags(), used - lm_eval_flags()
    parsed = lm_eval_parse(arguments)
    if parsed is not None:
        assert parsed.tasks == ["leaderboard"] and parsed.batch_size == "auto"
        assert parsed.model_args["pretrained"] == f"{run}/results/iter2/model"
        assert parsed.apply_chat_template and parsed.fewshot_as_multiturn and parsed.log_samples


def test_the_lm_eval_script_is_the_same_wherever_the_run_lies(tmp_path):
    """Its paths are found from its own place when it runs: two run folders write the same
    bytes, and each script runs lm_eval on its own folder's model."""
    first = written_lm_eval(tmp_path / "a", tasks=["leaderboard_ifeval", "leaderboard_bbh"])
    second = written_lm_eval(tmp_path / "b", tasks=["leaderboard_ifeval", "leaderboard_bbh"])
    assert first.read_bytes() == second.read_bytes() and os.access(first, os.X_OK)
    text = first.read_text()
    assert "key" not in text.lower().replace("reads no api key and holds none", "")
    for folder, script in ((tmp_path / "a", first), (tmp_path / "b", second)):
        arguments = run_with_fake_lm_eval(script, tmp_path)
        assert arguments[3].startswith(f"pretrained={folder}/results/iter2/model,")
        assert arguments[5] == "leaderboard_ifeval,leaderboard_bbh"
    deeper = written_lm_eval(  # a method's, side by side: deeper down
        tmp_path / "c",
        out="results/export/methods/dpo/lm_eval_iter2.sh",
        model=Path("results/methods/dpo/iter2/model"),
        dtype="float16",
    )
    arguments = run_with_fake_lm_eval(deeper, tmp_path)
    model = tmp_path / "c" / "results/methods/dpo/iter2/model"
    assert arguments[3] == f"pretrained={model},dtype=float16"


def test_the_export_script_writes_each_question_sets_file(tmp_path):
    questions = write_jsonl(tmp_path / "q.jsonl", MT_BENCH_QUESTIONS)
    answers = tmp_path / "a.parquet"
    write_table(answers_table(MT_BENCH_QUESTIONS, turns=2), answers, QUESTION_SET_ANSWERS)
    out = tmp_path / "mt_bench" / "model_answer" / "sppo-iter1.jsonl"
    run = run_script("export", "answers", "--question-set", "mt_bench", "--questions", questions,
                     "--answers", answers, "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{out}: 3 answers of sppo-iter1"
    assert len(out.read_text().splitlines()) == 3
