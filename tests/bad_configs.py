"""The bad-input cases of the workflow's config: each must fail with a line that names the
key (tests/test_config.py runs them through validate, tests/test_workflow.py through
Snakemake)."""

# The bad-input cases: each config must fail with a line that names the key.
BAD_CONFIGS = [
    ({"rounds": 0}, "config error: rounds: 0 is less than the minimum of 1"),
    (
        {"policy": {"model": "/nope/model"}},
        "config error: policy.model: /nope/model does not exist (a hub id is org/name)",
    ),
    (
        {"judge": {"backend": "reward_model", "model": "./models/rm"}},
        "config error: judge.model: ./models/rm does not exist (a hub id is org/name)",
    ),
    (
        {"prompts": {"source": "absent.jsonl"}},
        "config error: prompts.source: absent.jsonl does not exist",
    ),
    (
        {"prompts": {"column": "instruction"}},
        "config error: prompts.source: config/prompts/instructions.jsonl has no column "
        "'instruction' (columns: prompt, category); set prompts.column",
    ),
    ({"sample": {"k": 1}}, "config error: sample.k: 1 is less than the minimum of 2"),
    ({"judge": {"backend": "oracle"}}, "config error: judge.backend: 'oracle' is not one of"),
    ({"train": {"loss": "kto"}}, "config error: train.loss: 'kto' is not one of"),
    ({"train": {"loss": "dpo"}}, "config error: train.loss=dpo needs train.dpo_beta > 0"),
    (
        {"methods": [{"name": "sppo"}, {"name": "sppo", "train": {"eta": 5}}]},
        "config error: methods: the name 'sppo' is given twice",
    ),
    (
        {"methods": [{"name": "sppo"}, {"name": "kto", "train": {"loss": "kto"}}]},
        "config error: methods.1.train.loss: 'kto' is not one of",
    ),
    (
        {"methods": [{"name": "sppo"}, {"name": "dpo", "train": {"loss": "dpo"}}]},
        "config error: method dpo: train.loss=dpo needs train.dpo_beta > 0",
    ),
    (
        {"methods": [{"name": "a", "train": {"learning_rte": 1}}]},
        "config error: methods.0.train: Additional properties are not allowed ('learning_rte'",
    ),
    (
        {"evaluate": {"judges": [{"name": "pm", "backend": "oracle"}]}},
        "config error: evaluate.judges.0.backend: 'oracle' is not one of",
    ),
    (
        {"evaluate": {"judges": [{"name": "training"}]}},
        "config error: evaluate.judges.0.name: 'training' names the training judge",
    ),
    ({"sample": {"backend": "tgi"}}, "config error: sample.backend: 'tgi' is not one of"),
    (
        {"train": {"accelerate_config": "absent.yaml"}},
        "config error: train.accelerate_config: absent.yaml does not exist",
    ),
    (
        {"resources": {"train": {"gpu": -1}}},
        "config error: resources.train.gpu: -1 is less than the minimum of 0",
    ),
    ({"train": {"lora": {"r": 0}}}, "config error: train.lora.r: 0 is less than the minimum of 1"),
    (
        {"sample": {"backend": "vllm", "vllm_python": "/nope/bin/python"}},
        "config error: sample.vllm_python: /nope/bin/python does not exist",
    ),
]
