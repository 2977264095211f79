"""The flags each rule passes its stage script (sppoflow.workflow.stage_args), in process: every
config setting reaches its stage's settings through them, and run-only settings stay out of
what decides a rerun."""

from __future__ import annotations

import dataclasses
import json
import shlex
from types import SimpleNamespace

import pytest
import yaml

from helpers import ROOT, script_parser
from sppoflow import layout
from sppoflow.cli import settings_from
from sppoflow.config.run_only import run_only_settings
from sppoflow.config.validation import validate
from sppoflow.sample.settings import SamplingSettings
from sppoflow.score.judges import JudgeSettings
from sppoflow.train.settings import TrainSettings
from sppoflow.workflow.stage_args import StageArgs, Unrecorded, flags, round_seed

DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
COMPARE = yaml.safe_load((ROOT / "config" / "compare.yaml").read_text())


def parsed(name: str, *texts) -> SimpleNamespace:
    """The stage script's own parser reading what the rule passes (plus its required paths)."""
    required = {
        "sample": "--model m --prompts p --out o",
        "score": "--samples s --out o",
        "train": "--model m --samples s --pairs-table p --win-rates w --out o --log l "
        "--state-dir d",
        "aggregate": "--samples s --preferences p --win-rates w --pairs p2 --stats s2",
    }[name]
    return script_parser(name).parse_args(shlex.split(" ".join([required, *map(str, texts)])))


def job(it=1, chain=""):
    return SimpleNamespace(it=str(it), chain=chain)


@pytest.fixture(scope="module")
def args():
    return StageArgs(validate(DEFAULT), run_group="demo")


def test_flags_write_each_kind_of_value_as_argparse_reads_it():
    text = flags(
        {"a_b": 1, "on": True, "off": False, "none": None, "names": ["x", "y z"], "empty": []}
    )
    assert text == "--a-b 1 --on --no-off --names x 'y z'"
    assert flags({"a": 1, "b": 2}, skip=("a",)) == "--b 2"


def test_each_round_samples_with_its_own_seed(args):
    assert round_seed(0, "3") == 3000
    seeds = {parsed("sample", args.sample(job(it))).seed for it in (1, 2, 3)}
    assert seeds == {1000, 2000, 3000}


def test_every_sample_setting_reaches_the_sampling_settings(args):
    config = args.config
    settings = settings_from(SamplingSettings, parsed("sample", args.sample(job(2))))
    for field in dataclasses.fields(SamplingSettings):
        if field.name in config["sample"] and field.name != "seed":
            assert getattr(settings, field.name) == config["sample"][field.name], field.name
    evaluation = settings_from(SamplingSettings, parsed("sample", args.eval_generate(job(2))))
    assert evaluation.k == 1 and evaluation.seed == config["evaluate"]["seed"]
    assert evaluation.backend == config["sample"]["backend"]


def test_every_judge_setting_is_passed_once_and_only_run_only_ones_are_unrecorded(args):
    judge = args.config["judge"]
    recorded, run_only = args.judge(job()), args.judge_run_only(job())
    assert isinstance(run_only, Unrecorded) and not isinstance(recorded, Unrecorded)
    settings = settings_from(JudgeSettings, parsed("score", recorded, run_only))
    for key, value in judge.items():
        assert getattr(settings, key) == value, key
    for key in run_only_settings()["judge"]:
        flag = f"--{key.replace('_', '-')}"
        assert flag not in recorded and (judge[key] is None or flag in str(run_only))


def test_train_flags_hold_the_lora_settings_and_leave_run_only_ones_unrecorded(args):
    train = {**DEFAULT["train"], "lora": {"enabled": True, "r": 4}, "max_steps": 5}
    config = {**DEFAULT, "train": train}
    args = StageArgs(validate(config), run_group="demo")
    recorded, run_only = args.train(job()), args.train_run_only(job())
    assert "--checkpoint-steps" not in recorded and "--checkpoint-steps 0" in str(run_only)
    assert "--accelerate-config" not in recorded and args.train_launch(job()) == ""
    namespace = parsed("train", recorded, run_only)
    settings = settings_from(TrainSettings, namespace)
    assert settings.lora and settings.lora_r == 4 and settings.max_steps == 5
    assert settings.learning_rate == config["train"]["learning_rate"]
    assert namespace.system_prompt is None


def test_tracking_names_the_round_and_its_folder_without_a_rerun(args):
    tracking = args.tracking(job(2))
    assert isinstance(tracking, Unrecorded)
    assert f"--tracking-dir {layout.tracking_dir('', 2)}" in str(tracking)
    assert "--run-group demo" in str(tracking) and "--run-name" not in str(tracking)


def test_methods_side_by_side_get_their_own_train_settings_and_names():
    args = StageArgs(validate({**DEFAULT, **COMPARE}), run_group="demo")
    assert args.side_by_side and args.method_names() == "sppo dpo ipo inpo"
    dpo = job(2, layout.chain("dpo", side_by_side=True))
    assert args.method_name(dpo) == "dpo"
    assert "--loss dpo" in args.train(dpo) and "--run-name dpo-iter2" in str(args.tracking(dpo))
    assert args.round_model(job(0)) == "base-iter0"
    assert args.round_model(dpo) == "dpo-iter2"
    assert args.chain_of_model("dpo") == dpo.chain and args.chain_of_model("base") == ""


def test_the_evaluation_judges_and_what_decides_their_rerun(args):
    judges = json.loads(shlex.split(str(args.evaluate_judges()))[1])
    assert list(judges) == ["training"] and "prompts_per_chunk" not in judges["training"]
    decided = json.loads(args.judged_by())
    assert "batch_size" not in decided["training"] and "model" in decided["training"]
    assert args.evaluation_judge_records() == ["results/hub/judge.json"]


def test_the_report_shows_the_recorded_config_with_its_rounds(args):
    shown = json.loads(shlex.split(args.report_config())[0])
    assert shown["rounds"] == 3 and "resources" not in shown and "shards" not in shown
    assert "checkpoint_steps" not in shown["train"]


def test_aggregate_and_prompt_flags(args):
    aggregate = parsed("aggregate", args.aggregate(job(2)))
    assert aggregate.round == 2 and aggregate.min_spread == DEFAULT["aggregate"]["min_spread"]
    assert args.round_prompts(job(3)) == "--round 3 --n-per-round 64"
    assert "--n-per-round" not in args.pool()


def test_layout_of_rounds_and_shards():
    chain = layout.chain("ipo", side_by_side=True)
    assert layout.round_dir(chain, 0) == "results/iter0"
    assert layout.sampling_dir(chain, 1) == "results/iter1"
    assert layout.sampling_dir(chain, 2) == "results/methods/ipo/iter2"
    assert layout.job_file("a/logs/sample.log", 1) == "a/logs/sample.log"
    assert layout.job_file("a/logs/sample.log", 4) == "a/logs/sample.{shard}-of-4.log"


def question_set_config(**question_sets) -> dict:
    evaluate = {**DEFAULT.get("evaluate", {}), "question_sets": {"lm_eval_tasks": ["leaderboard"]}}
    evaluate["question_sets"].update(question_sets)
    return validate({**DEFAULT, "evaluate": evaluate})


def test_question_set_answers_get_the_evaluations_generation_settings():
    """The evaluation's generation settings reach the stage's own parser; with the
    question sets' own temperatures, evaluate's temperature and top-p stay out of what decides a
    rerun, and the question sets' settings never reach eval_generate."""
    from sppoflow.evaluate.question_set_answers import AnswerSettings

    args = StageArgs(question_set_config(), run_group="demo")
    required = "--question-set mt_bench --model m --questions q --out o"
    parser = script_parser("question_set_answers")
    text = args.question_set_answers(job(2))
    namespace = parser.parse_args(shlex.split(f"{required} {text}"))
    evaluate = args.config["evaluate"]
    generation = settings_from(SamplingSettings, namespace)
    assert generation.k == 1 and generation.seed == evaluate["seed"]
    assert generation.max_new_tokens == evaluate["max_new_tokens"]
    assert generation.backend == args.config["sample"]["backend"]
    assert settings_from(AnswerSettings, namespace).sampling == "conventional"
    assert "--temperature" not in text and "--top-p" not in text
    assert "question_sets" not in args.eval_generate(job(2))
    assert args.eval_generate(job(2)) == StageArgs(validate(DEFAULT)).eval_generate(job(2))
    args = StageArgs(question_set_config(sampling="evaluate"), run_group="demo")
    text = args.question_set_answers(job(2))
    namespace = parser.parse_args(shlex.split(f"{required} {text}"))
    assert settings_from(SamplingSettings, namespace).temperature == evaluate["temperature"]
    assert settings_from(AnswerSettings, namespace).sampling == "evaluate"


def test_the_lm_eval_export_gets_the_rounds_model_tasks_and_precision():
    config = question_set_config(lm_eval_tasks=["leaderboard_ifeval", "leaderboard_bbh"])
    config["policy"]["system_prompt"] = "Be brief."
    args = StageArgs(config, run_group="demo")
    required = "lm-eval --model results/iter3/model --out o.sh"
    flags = f"{required} {args.lm_eval(job(3))}"
    namespace = script_parser("export").parse_args(shlex.split(flags))
    assert namespace.name == "sppo-iter3" and namespace.dtype == config["evaluate"]["dtype"]
    assert namespace.tasks == ["leaderboard_ifeval", "leaderboard_bbh"]
    assert namespace.system_prompt == "Be brief." and namespace.trust_remote_code is False
    side_by_side = StageArgs(validate({**DEFAULT, **COMPARE}), run_group="demo")
    dpo = job(2, layout.chain("dpo", side_by_side=True))
    assert side_by_side.round_model(dpo) == "dpo-iter2"
    assert side_by_side.round_model(job(0)) == "base-iter0"
    assert layout.answer_file("mt_bench", "dpo-iter2") == (
        "results/export/mt_bench/model_answer/dpo-iter2.jsonl"  # every model in one folder
    )
    assert layout.lm_eval_file("", 0) == "results/export/lm_eval_iter0.sh"
    assert layout.question_set_answers(dpo.chain, 0, "arena_hard") == (
        "results/iter0/eval/arena_hard_answers.parquet"
    )
