"""Config validation: defaults, one-line errors naming the key, and agreement with the stages."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from bad_configs import BAD_CONFIGS
from sppoflow.aggregate.win_rates import AggregateSettings
from sppoflow.config.validation import validate
from sppoflow.errors import UserError
from sppoflow.evaluate.question_set_answers import AnswerSettings
from sppoflow.prompts.pool import PoolSettings
from sppoflow.sample.settings import SamplingSettings
from sppoflow.schema import load_schema, nested_fields
from sppoflow.score.judges import JudgeSettings
from sppoflow.train.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


def test_empty_config_gets_every_default():
    config = validate({})
    assert config["rounds"] == 3
    assert config["policy"]["model"] == "embedded:smollm2-135m-instruct"
    assert config["sample"]["k"] == 5 and config["train"]["loss"] == "sppo"


def test_shipped_config_is_valid_and_complete():
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert validate(raw)["rounds"] == 3


@pytest.mark.parametrize(
    ("section", "settings_type", "skip"),
    [
        # the job's GPU count; the interpreter that runs the stage
        ("sample", SamplingSettings, {"tensor_parallel_size", "vllm_python"}),
        (
            "evaluate",
            SamplingSettings,
            # the evaluation's judges are the evaluate stage's, not the generation's; its
            # question_sets are the question_set_answers stage's and the exports'
            {
                "k",
                "backend",
                "gpu_memory_utilization",
                "tensor_parallel_size",
                "training_judge",
                "judges",
                "question_sets",
            },
        ),
        ("judge", JudgeSettings, set()),
        ("aggregate", AggregateSettings, set()),
        ("train", TrainSettings, {"accelerate_config"}),  # read by the launcher, not the stage
        ("prompts", PoolSettings, set()),
    ],
)
def test_schema_and_stage_settings_agree(section, settings_type, skip):
    """Every stage flag has a config key and every key a flag (so nothing is silently ignored)."""
    schema = dict(load_schema()["properties"][section]["properties"])
    if "lora" in schema:  # train.lora.<key> is the flag --lora-<key> (enabled: --lora)
        schema.update(nested_fields("lora", schema.pop("lora")["properties"]))
    fields = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(settings_type)
    }
    if section == "prompts":  # the pool's settings are a subset of the section
        assert set(fields) <= set(schema)
        return
    assert set(schema) - skip == set(fields) - skip
    if section != "evaluate":
        for name, default in fields.items():
            if name not in skip:  # a list setting may default to one plain value
                expected = [schema[name]["default"]] if isinstance(default, list) else None
                assert schema[name]["default"] == default or expected == default, name


@pytest.mark.parametrize(
    ("config", "message"),
    [
        *BAD_CONFIGS,
        ({"sampel": {"k": 3}}, "'sampel' was unexpected"),
        ({"train": {"train_on": "all", "loss": "sppo_hard"}}, "train.train_on=all"),
        ({"rounds": 4, "prompts": {"per_round": ["a.jsonl"]}}, "lists 1 sources but rounds=4"),
        ({"train": {"dpo_beta": 0}}, "train.dpo_beta: 0 is less than or equal to the minimum of 0"),
        ({"train": {"tau": 0.1}}, "train.tau was renamed to train.ipo_tau"),
        (
            {"train": {"beta": 0.001}},
            "train.beta was renamed to train.dpo_beta (DPO's beta; SPPO's",
        ),
        ({"train": {"pairs": "all"}}, "train.pairs was renamed to train.train_on"),
        ({"judge": {"tau": 0.05}}, "judge.tau was renamed to judge.temperature"),
        (
            {"evaluate": {"benchmarks": {"mt_bench": "question.jsonl"}}},
            "evaluate.benchmarks was renamed to evaluate.question_sets",
        ),
        (
            {"resources": {"train": {"nodes": 2, "gpu": 0}}},
            "resources.train.nodes is 2: a train job over several nodes runs one process per GPU",
        ),
        ({"resources": {"train": {"nodes": 0}}}, "resources.train.nodes: 0 is less than"),
        (
            {"methods": [{"name": "a"}, {"name": "dpo", "train": {"loss": "dpo", "beta": 0.1}}]},
            "methods.1.train.beta was renamed to train.dpo_beta",
        ),
        (
            {"evaluate": {"judges": [{"name": "rm", "tau": 1}]}},
            "evaluate.judges.0.tau was renamed to judge.temperature",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key(config, message):
    with pytest.raises(UserError) as error:
        validate(config)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_question_set_answers_settings_are_the_schemas():
    """evaluate.question_sets: the question files and tasks name the jobs' inputs and exports;
    sampling is the question_set_answers stage's one setting of its own."""
    schema = load_schema()["properties"]["evaluate"]["properties"]["question_sets"]["properties"]
    fields = {f.name: f.default for f in dataclasses.fields(AnswerSettings)}
    assert fields == {"sampling": schema["sampling"]["default"]}
    assert set(schema) == {"arena_hard", "mt_bench", "lm_eval_tasks", "sampling"}


def test_each_loss_has_its_own_parameter():
    def reward_beta(settings):
        return settings.method().reward_beta(settings)

    assert reward_beta(TrainSettings(eta=1000)) == 1 / 1000
    assert reward_beta(TrainSettings(loss="dpo", dpo_beta=0.3)) == 0.3
    assert reward_beta(TrainSettings(loss="ipo", ipo_tau=0.05)) == 0.05
    assert TrainSettings(loss="sppo_hard", eta=1000).objective() == "sppo_hard, eta 1000"
    assert TrainSettings(loss="dpo", dpo_beta=0.3).objective() == "dpo, beta 0.3"
