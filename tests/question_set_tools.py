"""The question sets' own tools, as far as they run here: FastChat's answer loader, a checker
that reads arena-hard-auto's answers the way its loader and scorers do, and lm-eval's
command line. Shared by the unit tests of the writers and the workflow run's test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from helpers import BIN

# Small question files in each tool's published layout
MT_BENCH_QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Make it rhyme."]},
    {"question_id": 82, "category": "math", "turns": ["What is 2 + 2?", "And times 3?"]},
    {"question_id": 83, "category": "stem", "turns": ["Name a noble gas.", "Why is it inert?"]},
]
ARENA_HARD_QUESTIONS = [  # arena-hard-auto since its v2.0 release
    {"uid": "0a1b", "category": "hard_prompt", "subcategory": "coding", "prompt": "Sort a list."},
    {"uid": "2c3d", "category": "creative_writing", "subcategory": "poem", "prompt": "A limerick."},
]
ARENA_HARD_2024_QUESTIONS = [  # its 2024 releases
    {"question_id": "q1", "category": "arena-hard-v0.1", "turns": [{"content": "Hi"}]},
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def fastchat_loader():
    """FastChat's own functions of ``fastchat.llm_judge.common`` (pip install --no-deps
    fschat): ``load_model_answers``, ``load_questions`` and ``check_data``, the check
    gen_judgment.py runs before judging (every model answered every question). Their module
    also imports the API clients (openai, anthropic) and FastChat's model adapters (torch,
    transformers) for its judging code; stand-ins take their place while it is imported, so
    the code that runs is FastChat's own and nothing else is needed."""
    try:
        import fastchat  # noqa: F401
    except ImportError:
        pytest.skip("needs FastChat: pip install --no-deps fschat (the test extra has it)")
    adapter = types.ModuleType("fastchat.model.model_adapter")
    adapter.get_conversation_template = adapter.load_model = adapter.add_model_args = None
    adapter.ANTHROPIC_MODEL_LIST = adapter.OPENAI_MODEL_LIST = ()
    stand_ins = {"fastchat.model.model_adapter": adapter}
    for name in ("openai", "anthropic"):
        stand_ins[name] = types.ModuleType(name)
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update({k: v for k, v in stand_ins.items() if saved[k] is None})
    try:
        from fastchat.llm_judge.common import check_data, load_model_answers, load_questions
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
    return types.SimpleNamespace(
        load_model_answers=load_model_answers, load_questions=load_questions, check_data=check_data
    )


def read_arena_hard_answers(folder: Path) -> dict[str, dict]:
    """arena-hard-auto's answers as its tools read them (mirroring ``load_model_answers`` of
    utils/completion.py, and utils.py in its 2024 releases; the tool is not on PyPI): every
    <model>.jsonl of the folder is a model, each line an answer keyed by the question's
    ``uid`` (2024: ``question_id``). The fields its judging and scoring read are checked:
    gen_judgment.py takes ``messages[-1]["content"]["answer"]`` and ``model`` (2024:
    ``choices[0]["turns"]`` contents and ``model_id``); show_result.py's style control reads
    ``metadata``, the 2024 one ``turns[*]["token_len"]``."""
    models = {}
    for path in sorted(folder.glob("*.jsonl")):
        answers = {}
        for line in path.read_text(encoding="ascii").splitlines():
            answer = json.loads(line)
            if "uid" in answer:
                assert answer["model"] == path.stem
                assert answer["messages"][-1]["role"] == "assistant"
                assert isinstance(answer["messages"][-1]["content"]["answer"], str)
                assert answer["messages"][-2]["role"] == "user"
                assert isinstance(answer["metadata"]["token_len"], int)
                assert isinstance(answer["ans_id"], str) and answer["tstamp"] == 0
                answers[answer["uid"]] = answer
            else:
                assert answer["model_id"] == path.stem
                [choice] = answer["choices"]
                assert choice["index"] == 0 and choice["turns"]
                for turn in choice["turns"]:
                    assert isinstance(turn["content"], str) and isinstance(turn["token_len"], int)
                assert isinstance(answer["answer_id"], str) and answer["tstamp"] == 0
                answers[answer["question_id"]] = answer
        models[path.stem] = answers
    return models


def lm_eval_command() -> Path:
    found = shutil.which("lm_eval", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.skip("needs lm-evaluation-harness: pip install lm_eval (the test extra has it)")
    return Path(found)


def lm_eval_flags() -> set[str]:
    """Every flag ``lm_eval --help`` lists for an evaluation (since lm_eval 0.4.10 the flags
    are the run subcommand's; the command without one is run)."""
    command = lm_eval_command()
    text = subprocess.run([command, "--help"], capture_output=True, text=True).stdout
    if re.search(r"^\s+run\s", text, re.M):
        text = subprocess.run([command, "run", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"(--[a-z][a-z_-]*)", text))


def lm_eval_parse(arguments: list[str]):
    """lm-eval's own parser reading ``arguments`` (no evaluation runs), where this lm_eval has
    it in process (0.4.10 on: lm_eval._cli.HarnessCLI); None otherwise."""
    try:
        from lm_eval._cli import HarnessCLI
    except ImportError:
        return None
    argv = sys.argv
    sys.argv = ["lm_eval", *arguments]
    try:
        return HarnessCLI().parse_args()
    finally:
        sys.argv = argv
