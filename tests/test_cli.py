"""Every stage script runs by hand: --help works and bad input is one clear line."""

import json
import subprocess
import sys

import pytest

from helpers import SCRIPTS, error_line, helps_in_one_process, run_script, script_parser

STAGES = ["base_model", "prompts", "sample", "score", "aggregate", "train", "evaluate", "summary"]
STAGES += ["fetch", "gather", "head_to_head", "plan_cost"]


@pytest.mark.parametrize("stage", STAGES)
def test_help(stage):
    """Each script's --help, built in process (the scripts run as processes in the e2e tier)."""
    text = script_parser(stage).format_help()
    assert text.startswith("usage:") and "stage" in text


def test_a_stage_script_answers_help_as_a_process():
    run = run_script("aggregate", "--help")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: aggregate.py") and "aggregate stage" in run.stdout


def test_every_script_answers_help_before_loading_torch():
    """``--help`` and a bad argument answer in a second, before torch and transformers load
    (several seconds each): every script run as ``__main__``, one after another."""
    scripts = sorted(p for p in SCRIPTS.glob("*.py") if not p.name.startswith("_"))
    answers = helps_in_one_process(scripts)
    assert set(answers) == {p.name for p in scripts}
    for name, answer in answers.items():
        assert answer["code"] == 0 and answer["stdout"].startswith("usage:"), (name, answer)
        assert answer["loaded"] == [], f"{name} --help loaded {answer['loaded']}"


def test_make_venv_explains_itself_and_refuses_an_env_file_for_another_python(tmp_path):
    script = str(SCRIPTS / "make_venv.py")
    helped = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "envs/vllm-cpu.yaml" in helped.stdout
    env_file = tmp_path / "other.yaml"
    env_file.write_text("dependencies:\n  - python=2.7\n  - pip:\n      - six==1.16.0\n")
    done = subprocess.run(
        [sys.executable, script, str(env_file), str(tmp_path / "venv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "is for Python 2.7" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_missing_prompt_file(tmp_path):
    run = run_script(
        "prompts",
        "pool",
        "--source",
        tmp_path / "absent.jsonl",
        "--pool",
        tmp_path / "pool.parquet",
        "--eval",
        tmp_path / "eval.parquet",
    )
    assert error_line(run) == f"error: prompt file {tmp_path / 'absent.jsonl'} not found"
    assert not (tmp_path / "pool.parquet").exists()


def test_empty_prompt_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    run = run_script(
        "prompts",
        "pool",
        "--source",
        tmp_path / "empty.jsonl",
        "--pool",
        tmp_path / "pool.parquet",
        "--eval",
        tmp_path / "eval.parquet",
    )
    assert error_line(run) == f"error: {tmp_path / 'empty.jsonl'}: prompt file is empty"


def test_missing_prompt_column(tmp_path):
    (tmp_path / "q.jsonl").write_text(json.dumps({"question": "why?"}) + "\n")
    run = run_script(
        "prompts",
        "pool",
        "--source",
        tmp_path / "q.jsonl",
        "--column",
        "text",
        "--pool",
        tmp_path / "pool.parquet",
        "--eval",
        tmp_path / "eval.parquet",
    )
    assert "no column 'text' (columns: question); set prompts.column" in error_line(run)


def test_unreadable_model_path(tmp_path):
    run = run_script("base_model", "--model", tmp_path / "no-model", "--out", tmp_path / "out")
    assert error_line(run) == f"error: model path {tmp_path / 'no-model'} does not exist"


def test_k_below_two_is_refused_by_the_score_stage(tmp_path):
    import pandas as pd

    pd.DataFrame(
        {
            "prompt_id": ["a"],
            "prompt": ["q"],
            "response_idx": [0],
            "response": ["r"],
            "response_token_ids": [[1]],
            "prompt_tokens": [1],
            "response_tokens": [1],
            "finish_reason": ["stop"],
        }
    ).to_parquet(tmp_path / "samples.parquet")
    run = run_script(
        "score",
        "--samples",
        tmp_path / "samples.parquet",
        "--out",
        tmp_path / "prefs.parquet",
        "--device",
        "cpu",
    )
    assert "pairwise preferences need K >= 2" in error_line(run)


def test_wrong_table_is_named(tmp_path):
    import pandas as pd

    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "odd.parquet")
    run = run_script(
        "aggregate",
        "--samples",
        tmp_path / "odd.parquet",
        "--preferences",
        tmp_path / "odd.parquet",
        "--win-rates",
        tmp_path / "r",
        "--pairs",
        tmp_path / "p",
        "--stats",
        tmp_path / "s",
    )
    assert error_line(run).startswith(f"error: {tmp_path / 'odd.parquet'}: not a samples table")


def test_unknown_loss_is_refused_by_the_train_stage(tmp_path):
    run = run_script(
        "train",
        "--model",
        "m",
        "--samples",
        "s",
        "--pairs-table",
        "p",
        "--win-rates",
        "r",
        "--out",
        "o",
        "--log",
        "l",
        "--state-dir",
        "d",
        "--loss",
        "kto",
    )
    assert run.returncode == 2 and "invalid choice: 'kto'" in run.stderr


def test_head_to_head_needs_a_responses_file_per_method(tmp_path):
    run = run_script(
        "head_to_head", "--methods", "sppo", "dpo", "--responses", "a.parquet", "--round", "3",
        "--judgements", tmp_path / "j.parquet", "--metrics", tmp_path / "m.json",
    )  # fmt: skip
    assert "two or more --methods and one --responses file for each" in error_line(run)
    assert not (tmp_path / "j.parquet").exists() and not (tmp_path / "m.json").exists()
