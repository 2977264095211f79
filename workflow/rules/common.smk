# Helpers shared by the rules: config validation, paths, and the command-line flags each
# stage script receives. No rules here.

import json
import shlex
import sys
from pathlib import Path

SRC = Path(workflow.basedir).parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from sppoflow.config import load_schema, shipped_file, validate as validate_config
from sppoflow.errors import UserError
from sppoflow.hub import remember_launch_settings
from sppoflow.placement import placement as job_placement, runtime_for

try:
    config.update(
        validate_config(config, load_schema(Path(workflow.basedir) / "schemas" / "config.schema.yaml"))
    )
except UserError as error:
    raise WorkflowError(str(error)) from None

ROUNDS = list(range(1, config["rounds"] + 1))
PROMPT_FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")
SHARDS = config["shards"]

# Jobs never reach the hub: fetch_model and prompt_pool (local rules, run on the submit host)
# first put what the run needs into the hub cache, with the hub settings Snakemake was started
# with (HUB_ACCESS); every other job runs offline and reads from that cache. Cluster nodes need
# no internet and no token.
shell.prefix("set -euo pipefail; export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; ")
HUB_ACCESS = remember_launch_settings()


wildcard_constraints:
    it=r"\d+",
    shard=r"\d+",


def flags(settings, skip=()):
    """A config section as --flags for a stage script (None values are left out)."""
    parts = []
    for key, value in settings.items():
        if key in skip or value is None:
            continue
        name = key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, list):
            if value:
                parts.append(f"--{name} {' '.join(shlex.quote(str(v)) for v in value)}")
        else:
            parts.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(parts)


def system_prompt_flag():
    prompt = config["policy"]["system_prompt"]
    return f"--system-prompt {shlex.quote(prompt)}" if prompt else ""


def script(name):
    return str(Path(workflow.basedir).parent / "scripts" / f"{name}.py")


def model_of_round(it):
    return f"results/iter{it}/model"


def previous_model(wildcards):
    return model_of_round(int(wildcards.it) - 1)


def previous_eval_responses(wildcards):
    return f"results/iter{int(wildcards.it) - 1}/eval/responses.parquet"


def local_prompt_files(wildcards):
    """Prompt files become inputs, so a missing one is reported before anything runs."""
    prompts = config["prompts"]
    sources = [prompts["source"], prompts["eval_source"], *prompts["per_round"]]
    return [s for s in sources if s and Path(s).suffix.lower() in PROMPT_FILE_TYPES]


def base_model_args(wildcards):
    policy = config["policy"]
    keys = ("model", "revision", "chat_template", "dtype")
    return flags({k: policy[k] for k in keys})


def pool_args(wildcards):
    prompts = config["prompts"]
    return flags(prompts, skip=("n_per_round",))


def round_prompts_args(wildcards):
    n = config["prompts"]["n_per_round"]
    return f"--round {wildcards.it} --n-per-round {'all' if n is None else n}"


def engine_flags():
    """The generation engine (vLLM's tensor parallel size comes from the job's GPUs, in the
    shell command, so that changing the GPU count does not re-run anything)."""
    sample = config["sample"]
    return flags({k: sample[k] for k in ("backend", "gpu_memory_utilization")})


def sample_args(wildcards):
    settings = dict(config["sample"])
    settings["seed"] = settings["seed"] + 1000 * int(wildcards.it)
    skip = ("backend", "gpu_memory_utilization")
    return f"{flags(settings, skip=skip)} {engine_flags()} {system_prompt_flag()}"


def eval_generate_args(wildcards):
    evaluate = flags({**config["evaluate"], "k": 1})
    return f"{evaluate} {engine_flags()} {system_prompt_flag()}"


def judge_args(wildcards):
    return flags(config["judge"])


def evaluate_judge_args(wildcards):
    """The judge settings less the score stage's chunking, so that it never re-runs evaluate."""
    return flags(config["judge"], skip=("prompts_per_chunk",))


def aggregate_args(wildcards):
    return f"{flags(config['aggregate'])} --round {wildcards.it}"


def train_args(wildcards):
    train = config["train"]
    lora = {("lora" if k == "enabled" else f"lora_{k}"): v for k, v in train["lora"].items()}
    settings = flags(train, skip=("lora", "accelerate_config", "report_to"))
    return f"{settings} {flags(lora)} {system_prompt_flag()}"


class Unrecorded:
    """A param value that Snakemake's params trigger leaves out (it records plain values
    only): for flags that say where a job reports, not what it computes."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


def tracking_args(wildcards):
    """train.report_to and the round's tracking folder, which outlives train_state; W&B groups
    the rounds by the working directory's name. Unrecorded, so that turning TensorBoard or W&B
    on or off never re-runs training."""
    tracking = {
        "report_to": config["train"]["report_to"],
        "tracking_dir": f"results/tracking/iter{wildcards.it}",
        "run_group": Path.cwd().name,
    }
    return Unrecorded(flags(tracking))


def train_launch(wildcards):
    """One process per GPU; DDP unless train.accelerate_config names DeepSpeed or FSDP."""
    accelerate_config = config["train"]["accelerate_config"]
    if not accelerate_config:
        return ""
    return f"--accelerate-config {shlex.quote(str(shipped_file(accelerate_config)))}"


def fetch_args(wildcards):
    """The model and revision of config section policy or judge."""
    return flags({k: config[wildcards.role][k] for k in ("model", "revision")})


# -- data-parallel shards (config shards): sample, score and eval_generate -------------------


def stage_output(path, name):
    """A sharded stage's output: ``path`` with one shard; otherwise the shard's own file,
    temporary (gathered into ``path`` by a local rule, then deleted)."""
    return path if SHARDS == 1 else temp(shard_file(name))


def shard_file(name):
    return f"results/iter{{it}}/shards/{name}.{{shard}}-of-{SHARDS}.parquet"


def shard_files(name):
    return expand(shard_file(name), shard=range(SHARDS), allow_missing=True)


def job_file(path):
    """A log or benchmark path of a job that may be one shard of several."""
    if SHARDS == 1:
        return path
    stem, extension = path.rsplit(".", 1)
    return f"{stem}.{{shard}}-of-{SHARDS}.{extension}"


def shard_flags(wildcards):
    return "" if SHARDS == 1 else f"--shard {wildcards.shard} --shards {SHARDS}"


def round_files(pattern):
    return [pattern.format(it=it) for it in ROUNDS]


def generation_env():
    """vLLM pins its own torch and transformers, so its rules get their own environment."""
    return "../../envs/vllm.yaml" if config["sample"]["backend"] == "vllm" else "../../envs/torch.yaml"


def gpus(stage):
    return config["resources"][stage]["gpus"]


def placement(stage=None):
    """slurm_account / slurm_partition / gpu_model from SPPO_SLURM_* (see sppoflow.placement)."""
    return job_placement(gpus(stage) if stage else 0)


def mem_mb(stage):
    return config["resources"][stage]["mem_mb"]


def runtime(stage):
    """Minutes for a job of ``stage``, growing with each retry."""
    return runtime_for(config["resources"][stage]["runtime"])
