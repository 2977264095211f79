# Helpers shared by the rules: config validation, paths, and the command-line flags each
# stage script receives. No rules here.

import json
import shlex
import sys
from pathlib import Path

SRC = Path(workflow.basedir).parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from sppoflow.config import (
    PROMPT_FILE_TYPES,
    TRAINING_JUDGE,
    load_schema,
    recorded_config,
    shipped_file,
    split_run_only,
    validate as validate_config,
)
from sppoflow.errors import UserError
from sppoflow.hub import remember_launch_settings
from sppoflow.job_errors import failure_lines
from sppoflow.methods import method_of_chain, methods as configured_methods
from sppoflow.placement import placement as job_placement, runtime_for
from sppoflow.provenance import (
    COMMIT_VARIABLE,
    CONFIG_VARIABLE,
    config_json,
    git_commit,
)

try:
    config.update(
        validate_config(
            config,
            load_schema(Path(workflow.basedir) / "schemas" / "config.schema.yaml"),
        )
    )
except UserError as error:
    raise WorkflowError(str(error)) from None

ROUNDS = list(range(1, config["rounds"] + 1))
SHARDS = config["shards"]
# Methods side by side (config methods): each method's rounds live under results/{chain},
# chain "methods/<name>/"; a single method's under results/ itself (chain ""). Round 0 (the
# base model) and round 1's samples, preferences and pairs are every method's.
METHODS = configured_methods(config)
SIDE_BY_SIDE = len(METHODS) > 1

# Jobs never reach the hub: fetch_model and prompt_pool (local rules, run on the submit host)
# first put what the run needs into the hub cache, with the hub settings Snakemake was started
# with (HUB_ACCESS); every other job runs offline and reads from that cache. Cluster nodes need
# no internet and no token. Each job also gets the config (less its run-only settings) and the
# project's commit, which it records with its outputs (sppoflow.provenance). Snakemake
# formats the prefix like a shell command, hence the doubled braces.
PROVENANCE = {
    CONFIG_VARIABLE: config_json(recorded_config(config)),
    COMMIT_VARIABLE: git_commit() or "",
}
shell.prefix(
    "set -euo pipefail; export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "
    + " ".join(
        f"{name}={shlex.quote(value)}".replace("{", "{{").replace("}", "}}")
        for name, value in PROVENANCE.items()
    )
    + "; "
)
HUB_ACCESS = remember_launch_settings()


wildcard_constraints:
    it=r"\d+",
    shard=r"\d+",
    chain=r"(|methods/[A-Za-z][A-Za-z0-9_.-]*/)",


def print_job_failures(snakemake_logs):
    """After a failed run: each failed job's rule, log file and the line that says why."""
    lines = failure_lines(snakemake_logs)
    if lines:
        print(
            "\nFailed jobs, with the line of their log that says why:", file=sys.stderr
        )
        for line in lines:
            print(f"  {line}", file=sys.stderr)


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


# --cpu-threads for the jobs that compute with torch: a recorded param, since it changes their
# results on a CPU (see the schema's cpu_threads)
CPU_THREADS = flags({"cpu_threads": config["cpu_threads"]})


def system_prompt_flag():
    prompt = config["policy"]["system_prompt"]
    return f"--system-prompt {shlex.quote(prompt)}" if prompt else ""


def script(name):
    return str(Path(workflow.basedir).parent / "scripts" / f"{name}.py")


def round_dir(chain, it):
    """The folder of round ``it`` of a chain of rounds; round 0 is the base model, every
    chain's."""
    return "results/iter0" if int(it) == 0 else f"results/{chain}iter{it}"


def sampling_dir(chain, it):
    """Where a round's samples, preferences and pairs live: round 1 samples the base model,
    so with methods side by side they are every method's, under results/iter1."""
    return "results/iter1" if int(it) == 1 else round_dir(chain, it)


def method_files(pattern, rounds=None):
    """``pattern`` (with {chain} and {it}) for every method and round."""
    return [
        pattern.format(chain=m.chain, it=it)
        for m in METHODS
        for it in (rounds or ROUNDS)
    ]


def method_stats():
    """aggregate_stats.parquet of every method's rounds (round 1's is shared)."""
    return [
        f"{sampling_dir(m.chain, it)}/aggregate_stats.parquet"
        for m in METHODS
        for it in ROUNDS
    ]


def alpaca_generator(wildcards):
    """The model's name in an AlpacaEval file: <method>-iter<t>; side by side, round 0 is
    base-iter0."""
    if int(wildcards.it) == 0 and SIDE_BY_SIDE:
        return "base-iter0"
    return f"{method_of_chain(config, wildcards.chain).name}-iter{wildcards.it}"


def head_to_head_metrics():
    return ["results/methods/head_to_head/metrics.json"] if SIDE_BY_SIDE else []


def head_to_head_report():
    """Methods side by side: the report's table of the final rounds against each other."""
    if not SIDE_BY_SIDE:
        return {}
    table = report(
        "results/report/head_to_head.html",
        caption="../report/head_to_head.rst",
        category="1. Did it work",
        labels={"figure": "methods head to head"},
    )
    return {"head_to_head": table}


def report_config(wildcards):
    """The report's config page: the config that made the results (no run-only settings, no
    shards) and the rounds, keys sorted, so that how jobs ran never re-runs the report.
    """
    shown = {"rounds": config["rounds"], **recorded_config(config)}
    return shlex.quote(json.dumps(shown, sort_keys=True))


def head_to_head_flag(wildcards, input):
    return f"--head-to-head {input.head_to_head}" if SIDE_BY_SIDE else ""


def previous_model(wildcards):
    return f"{round_dir(wildcards.chain, int(wildcards.it) - 1)}/model"


def previous_eval_responses(wildcards):
    return f"{round_dir(wildcards.chain, int(wildcards.it) - 1)}/eval/responses.parquet"


def round_samples(wildcards):
    return f"{sampling_dir(wildcards.chain, wildcards.it)}/samples.parquet"


def round_pairs(wildcards):
    return f"{sampling_dir(wildcards.chain, wildcards.it)}/pairs.parquet"


def round_win_rates(wildcards):
    return f"{sampling_dir(wildcards.chain, wildcards.it)}/response_win_rates.parquet"


def round_stats(wildcards):
    return f"{sampling_dir(wildcards.chain, wildcards.it)}/aggregate_stats.parquet"


def method_label(wildcards):
    """A chain's round as the report names it: "round 2", or "dpo, round 2"."""
    name = method_of_chain(config, wildcards.chain).name
    return f"{name}, round {wildcards.it}" if SIDE_BY_SIDE else f"Round {wildcards.it}"


def local_prompt_files(wildcards):
    """Prompt files become inputs, so a missing one is reported before anything runs."""
    prompts = config["prompts"]
    sources = [prompts["source"], prompts["eval_source"], *prompts["per_round"]]
    return [s for s in sources if s and Path(s).suffix.lower() in PROMPT_FILE_TYPES]


def base_model_args(wildcards):
    policy = config["policy"]
    keys = ("model", "revision", "chat_template", "dtype", "trust_remote_code")
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
    skip = ("backend", "gpu_memory_utilization", "vllm_python")
    return f"{flags(settings, skip=skip)} {engine_flags()} {system_prompt_flag()}"


def eval_generate_args(wildcards):
    evaluate = flags({**config["evaluate"], "k": 1}, skip=("training_judge", "judges"))
    return f"{evaluate} {engine_flags()} {system_prompt_flag()}"


def judge_args(wildcards):
    return flags(split_run_only("judge", config["judge"])[0])


def judge_run_only_args(wildcards):
    """The judge's batch sizes and device: how fast it runs, not what it writes (Unrecorded,
    so that changing them re-runs nothing)."""
    return Unrecorded(flags(split_run_only("judge", config["judge"])[1]))


def evaluation_judges():
    """The evaluation's judges as {name: settings}: the training judge (unless
    evaluate.training_judge is off), then evaluate.judges. The score stage's chunking is left
    out, so that changing it never re-runs an evaluation."""
    judges = {}
    if config["evaluate"]["training_judge"]:
        judges[TRAINING_JUDGE] = config["judge"]
    for judge in config["evaluate"]["judges"]:
        judges[judge["name"]] = {k: v for k, v in judge.items() if k != "name"}
    return {
        name: {k: v for k, v in settings.items() if k != "prompts_per_chunk"}
        for name, settings in judges.items()
    }


def evaluation_judge_records():
    """The hub records (fetch_model) of the evaluation judges' models."""
    records = ["results/hub/judge.json"] if config["evaluate"]["training_judge"] else []
    return records + [
        f"results/hub/eval_judge_{j['name']}.json" for j in config["evaluate"]["judges"]
    ]


def method_name(wildcards):
    return method_of_chain(config, wildcards.chain).name


def evaluate_judge_args(wildcards):
    """--judges with every setting; Unrecorded, since judged_by is what decides a rerun."""
    return Unrecorded(f"--judges {shlex.quote(json.dumps(evaluation_judges()))}")


def judged_by(wildcards):
    """The evaluation judges' settings that decide the verdicts (no batch sizes, no
    device): a recorded param, so that changing one re-runs the evaluations."""
    return json.dumps(
        {
            name: split_run_only("judge", s)[0]
            for name, s in evaluation_judges().items()
        },
        sort_keys=True,
    )


def aggregate_args(wildcards):
    return f"{flags(config['aggregate'])} --round {wildcards.it}"


def train_args(wildcards):
    train = method_of_chain(config, wildcards.chain).train
    lora = {
        ("lora" if k == "enabled" else f"lora_{k}"): v for k, v in train["lora"].items()
    }
    result, _ = split_run_only("train", train)
    settings = flags(result, skip=("lora", "accelerate_config"))
    return f"{settings} {flags(lora)} {system_prompt_flag()}"


def train_run_only_args(wildcards):
    """Checkpoint interval and gradient checkpointing: Unrecorded, so that changing them
    never re-runs training (train.report_to goes with tracking_args)."""
    train = method_of_chain(config, wildcards.chain).train
    return Unrecorded(flags(split_run_only("train", train)[1], skip=("report_to",)))


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
        "tracking_dir": f"results/tracking/{wildcards.chain}iter{wildcards.it}",
        "run_name": (
            f"{method_name(wildcards)}-iter{wildcards.it}" if SIDE_BY_SIDE else None
        ),
        "run_group": Path.cwd().name,
    }
    return Unrecorded(flags(tracking))


def train_launch(wildcards):
    """One process per GPU; DDP unless train.accelerate_config names DeepSpeed or FSDP."""
    accelerate_config = method_of_chain(config, wildcards.chain).train[
        "accelerate_config"
    ]
    if not accelerate_config:
        return ""
    return f"--accelerate-config {shlex.quote(str(shipped_file(accelerate_config)))}"


def fetch_args(wildcards):
    """The model and revision of config section policy or judge, or of an evaluation judge
    (role eval_judge_<name>)."""
    role = wildcards.role
    if role.startswith("eval_judge_"):
        [section] = [
            j
            for j in config["evaluate"]["judges"]
            if j["name"] == role[len("eval_judge_") :]
        ]
    else:
        section = config[role]
    return flags({k: section[k] for k in ("model", "revision")})


# -- data-parallel shards (config shards): sample, score and eval_generate -------------------


def stage_output(path, name):
    """A sharded stage's output: ``path`` with one shard; otherwise the shard's own file,
    temporary (gathered into ``path`` by a local rule, then deleted)."""
    return path if SHARDS == 1 else temp(shard_file(name))


def shard_file(name):
    return f"results/{{chain}}iter{{it}}/shards/{name}.{{shard}}-of-{SHARDS}.parquet"


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


def generation_env(stage):
    """vLLM pins its own torch and transformers, so its rules get their own environment: the
    CUDA build for a job with GPUs, the CPU build for a job without."""
    if config["sample"]["backend"] != "vllm":
        return "../../envs/torch.yaml"
    return "../../envs/vllm.yaml" if gpus(stage) else "../../envs/vllm-cpu.yaml"


def generation_python(wildcards):
    """The generation rules' interpreter: sample.vllm_python (a venv with vLLM, where conda
    is not used) for the vllm backend, else the job's python. Unrecorded: where vLLM is
    installed is no reason to re-run."""
    sample = config["sample"]
    python = sample["vllm_python"] if sample["backend"] == "vllm" else None
    return Unrecorded(
        shlex.quote(str(Path(python).expanduser())) if python else "python"
    )


def gpus(stage):
    return config["resources"][stage]["gpu"]


def placement(stage=None):
    """slurm_account / slurm_partition / gpu_model from SPPO_SLURM_* (see sppoflow.placement)."""
    return job_placement(gpus(stage) if stage else 0)


def mem_mb(stage):
    return config["resources"][stage]["mem_mb"]


def runtime(stage):
    """Minutes for a job of ``stage``, growing with each retry."""
    return runtime_for(config["resources"][stage]["runtime"])
