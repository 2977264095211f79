"""A round's question-set answers in the files each question set's own tool reads, and its
lm-evaluation-harness command.

- MT-Bench (FastChat's ``fastchat/llm_judge``, read by ``common.load_model_answers``): a JSON
  line a question, ``{question_id, answer_id, model_id, choices: [{index: 0, turns: [str,
  ...]}], tstamp}``, a string per turn.
- Arena-Hard (arena-hard-auto, read by its ``load_model_answers``), in the layout of the
  release the questions come from. Questions with a ``uid`` (its v2.0 release on):
  ``{uid, ans_id, model, messages: [{role, content}, ..., {role: assistant, content: {answer}}],
  tstamp, metadata: {token_len}}``. Questions with a ``question_id`` (its 2024 releases):
  ``{question_id, answer_id, model_id, choices: [{index: 0, turns: [{content, token_len}]}],
  tstamp}``.

Reruns must write the same bytes (tests/test_reproducibility.py hashes every output), so two
fields the tools fill with one-off values are derived instead: ``tstamp`` is 0 (the tools
write the time of generation, which none of their loaders or scorers reads), and the answer's
id is the start of a sha256 of the model's name, the question's id and the answer's turns
(the tools write a random uuid, which nothing looks up): an unchanged answer keeps its id, a
changed one gets another. ``token_len`` counts the model's own tokens; arena-hard-auto's style
control compares tiktoken lengths and markdown counts, which its ``add_markdown_info.py``
writes over ours (docs/report.md). The files are ASCII (other characters escaped), since
FastChat opens them with the platform's default encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from sppoflow.atomic import write_text_atomically
from sppoflow.errors import UserError
from sppoflow.evaluate.question_sets import ARENA_HARD, UID, Question, read_questions
from sppoflow.tables import QUESTION_SET_ANSWERS, read_table

TSTAMP = 0.0
ANSWER_ID_LENGTH = 22  # as long as the tools' shortuuid ids


def answer_id(model: str, question_id: int | str, turns: list[str]) -> str:
    text = json.dumps([model, question_id, turns])
    return hashlib.sha256(text.encode()).hexdigest()[:ANSWER_ID_LENGTH]


def turns_of(questions: list[Question], answers: pd.DataFrame, source: str) -> list[list[dict]]:
    """Each question's answer rows, turn by turn; a question or turn without an answer, or an
    answer to a question the file does not have, is an error naming ``source``."""
    rows: dict[str, dict[int, dict]] = {}
    for row in answers.to_dict("records"):
        rows.setdefault(row["question_id"], {})[int(row["turn"])] = row
    known = {str(q.id) for q in questions}
    unknown = sorted(set(rows) - known)
    if unknown:
        raise UserError(f"{source}: answers to questions the question file lacks: {unknown[:3]}")
    ordered = []
    for question in questions:
        found = rows.get(str(question.id), {})
        missing = [t for t in range(1, len(question.turns) + 1) if t not in found]
        if missing:
            raise UserError(f"{source}: question {question.id} has no answer to turn {missing[0]}")
        ordered.append([found[t] for t in range(1, len(question.turns) + 1)])
    return ordered


def mt_bench_records(
    questions: list[Question], answers: list[list[dict]], model: str
) -> list[dict[str, Any]]:
    records = []
    for question, turns in zip(questions, answers, strict=True):
        texts = [t["response"] for t in turns]
        records.append(
            {
                "question_id": question.id,
                "answer_id": answer_id(model, question.id, texts),
                "model_id": model,
                "choices": [{"index": 0, "turns": texts}],
                "tstamp": TSTAMP,
            }
        )
    return records


def arena_hard_records(
    layout: str,
    questions: list[Question],
    answers: list[list[dict]],
    model: str,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    records = []
    for question, turns in zip(questions, answers, strict=True):
        texts = [t["response"] for t in turns]
        tokens = sum(int(t["response_tokens"]) for t in turns)
        if layout == UID:
            system = [{"role": "system", "content": system_prompt}] if system_prompt else []
            messages = [*system, {"role": "user", "content": question.turns[0]}]
            messages.append({"role": "assistant", "content": {"answer": texts[-1]}})
            records.append(
                {
                    "uid": question.id,
                    "ans_id": answer_id(model, question.id, texts),
                    "model": model,
                    "messages": messages,
                    "tstamp": TSTAMP,
                    "metadata": {"token_len": tokens},
                }
            )
        else:
            records.append(
                {
                    "question_id": question.id,
                    "answer_id": answer_id(model, question.id, texts),
                    "model_id": model,
                    "choices": [
                        {
                            "index": 0,
                            "turns": [
                                {"content": t["response"], "token_len": int(t["response_tokens"])}
                                for t in turns
                            ],
                        }
                    ],
                    "tstamp": TSTAMP,
                }
            )
    return records


def write_answers(
    question_set: str,
    questions_path: Path,
    answers_path: Path,
    out: Path,
    system_prompt: str | None = None,
) -> int:
    """The answers file of one round, named after its model (``out``'s stem, as the tools
    name a model after its file); returns the number of questions."""
    layout, questions = read_questions(questions_path, question_set)
    answers = turns_of(questions, read_table(answers_path, QUESTION_SET_ANSWERS), str(answers_path))
    model = out.stem
    if question_set == ARENA_HARD:
        records = arena_hard_records(layout, questions, answers, model, system_prompt)
    else:
        records = mt_bench_records(questions, answers, model)
    write_text_atomically(out, "".join(json.dumps(r) + "\n" for r in records))
    return len(records)


# lm-eval's hf models take these precisions; auto is ours (sppoflow.runtime.devices), which
# is bf16 on
# the GPUs lm-eval runs on, and the precision the leaderboard evaluated bf16 models in.
LM_EVAL_DTYPES = {
    "auto": "bfloat16",
    "bfloat16": "bfloat16",
    "float16": "float16",
    "float32": "float32",
}


def lm_eval_arguments(
    model: str,
    tasks: list[str],
    dtype: str,
    output: str,
    trust_remote_code: bool = False,
    system_prompt: str | None = None,
) -> list[str]:
    """lm-eval's arguments, as the Open LLM Leaderboard v2 ran chat models: its hf model in
    ``dtype``, automatic batch size, the model's chat template with few-shot examples as turns
    of the conversation, every sample logged."""
    model_args = f"pretrained={model},dtype={LM_EVAL_DTYPES[dtype]}"
    if trust_remote_code:
        model_args += ",trust_remote_code=True"
    arguments = ["--model", "hf", "--model_args", model_args, "--tasks", ",".join(tasks)]
    arguments += ["--batch_size", "auto", "--apply_chat_template", "--fewshot_as_multiturn"]
    if system_prompt:
        arguments += ["--system_instruction", system_prompt]
    return [*arguments, "--output_path", output, "--log_samples"]


def lm_eval_script(
    model: Path,
    name: str,
    tasks: list[str],
    dtype: str,
    out: Path,
    trust_remote_code: bool = False,
    system_prompt: str | None = None,
) -> str:
    """A bash script that runs lm-eval on a round's model. Its paths are the run folder's
    (the current folder), found from the script's own place when it runs: the file does not
    depend on where the run lies (reruns elsewhere write the same bytes) and still works
    after the run folder is copied to another machine."""
    here = os.path.abspath(".")
    up = os.path.relpath(here, os.path.abspath(out.parent))
    model_path = os.path.relpath(os.path.abspath(model), here)
    output = os.path.relpath(os.path.abspath(out.parent / "lm_eval" / name), here)
    arguments = lm_eval_arguments(
        f"$RUN/{model_path}", tasks, dtype, f"$RUN/{output}", trust_remote_code, system_prompt
    )
    lines = ["lm_eval"]
    for argument in arguments:
        quoted = f'"{argument}"' if "$RUN/" in argument else shlex.quote(argument)
        if argument.startswith("--"):
            lines.append(quoted)
        else:
            lines[-1] += f" {quoted}"
    command = " \\\n  ".join([*lines, '"$@"'])
    return (
        "#!/usr/bin/env bash\n"
        f"# lm-evaluation-harness on {name}: tasks {', '.join(tasks)}, written by the SPPO\n"
        "# workflow (evaluate.question_sets.lm_eval_tasks; leaderboard is the Open LLM\n"
        "# Leaderboard v2). Run it on a GPU machine with lm_eval 0.4.3 or later and the\n"
        "# tasks' datasets within reach (GPQA is gated: that machine's hub login); more\n"
        f"# lm_eval flags go after it. Results: {output}/.\n"
        "# It reads no API key and holds none.\n"
        "set -euo pipefail\n"
        f'RUN="$(cd "$(dirname "$0")/{up}" && pwd)"  # the run folder\n'
        f"exec {command}\n"
    )


def write_lm_eval_script(out: Path, **settings: Any) -> None:
    write_text_atomically(out, lm_eval_script(out=out, **settings))
    out.chmod(0o755)
