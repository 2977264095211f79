"""Rules of a config that span keys, which the schema cannot say."""

from __future__ import annotations

from pathlib import Path

from sppoflow.config.paths import check_local_paths, shipped_file
from sppoflow.errors import UserError
from sppoflow.schema import section_values


def train_settings(train: dict):
    """The train section (or a method's) as the train stage's settings, checked."""
    from sppoflow.train.settings import TrainSettings

    checked = TrainSettings(**section_values(TrainSettings, train))
    checked.check()
    return checked


def check_consistency(config: dict) -> None:
    """Rules that span keys, which the schema cannot say."""
    from sppoflow.config.chains import methods

    try:
        train_settings(config["train"])
    except UserError as error:
        raise UserError(f"config error: {error}") from None
    for method in methods(config):
        try:
            train_settings(method.train)
        except UserError as error:
            raise UserError(f"config error: method {method.name}: {error}") from None
    accelerate_config = config["train"]["accelerate_config"]
    if accelerate_config and shipped_file(accelerate_config) is None:
        raise UserError(
            f"config error: train.accelerate_config: {accelerate_config} does not exist"
        )
    train_job = config["resources"]["train"]
    if train_job["nodes"] > 1 and train_job["gpu"] < 1:
        raise UserError(
            f"config error: resources.train.nodes is {train_job['nodes']}: a train job over "
            "several nodes runs one process per GPU; set resources.train.gpu (GPUs per node) "
            "to 1 or more"
        )
    per_round = config["prompts"]["per_round"]
    if per_round and len(per_round) < config["rounds"]:
        raise UserError(
            f"config error: prompts.per_round lists {len(per_round)} sources "
            f"but rounds={config['rounds']}"
        )
    if not per_round and config["prompts"]["n_per_round"] is None:
        raise UserError(
            "config error: prompts.n_per_round must be set when one source feeds all rounds"
        )
    check_local_paths(config)
    check_vllm_python(config["sample"])


def check_vllm_python(sample: dict) -> None:
    python = sample["vllm_python"]
    if sample["backend"] == "vllm" and python and not Path(python).expanduser().is_file():
        raise UserError(
            f"config error: sample.vllm_python: {python} does not exist (make the environment "
            "with `python scripts/make_venv.py envs/vllm-cpu.yaml .venvs/vllm-cpu`, or "
            "envs/vllm.yaml on a GPU machine)"
        )
