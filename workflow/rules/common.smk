# Snakemake's side of the workflow: the validated config, the jobs' environment, and the
# lookups the rules need. What a rule passes its stage script comes from the library
# (sppoflow.workflow.stage_args, one method per param) and where files live from
# sppoflow.workflow.layout. No rules here.

import os
import shlex
import sys
from pathlib import Path

SRC = Path(workflow.basedir).parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from sppoflow.benchmarks import BENCHMARKS
from sppoflow.config import (
    PROMPT_FILE_TYPES,
    recorded_config,
    validate as validate_config,
)
from sppoflow.errors import UserError
from sppoflow.hub import remember_launch_settings
from sppoflow.job_errors import failure_lines
from sppoflow.methods import method_of_chain
from sppoflow.placement import (
    check_overrides,
    check_sbatch_paths,
    placement,
    runtime_for,
)
from sppoflow.plan_cost import plan_cost
from sppoflow.provenance import (
    COMMIT_VARIABLE,
    CONFIG_VARIABLE,
    config_json,
    git_commit,
)
from sppoflow.workflow import layout
from sppoflow.workflow.stage_args import StageArgs

try:
    config.update(validate_config(config))
    check_overrides(
        config["resources"]["train"]["nodes"],
        workflow.resource_settings.overwrite_resources or {},
    )
except UserError as error:
    raise WorkflowError(str(error)) from None

# A job that cannot fit on the GPU it asks for is one line now, not an out-of-memory error in
# the middle of the run (scripts/plan_cost.py prints the whole plan); cluster jobs, which parse
# this file again, do not repeat it.
if workflow.is_main_process:
    for line in plan_cost(config, environ=os.environ).warnings():
        print(line, file=sys.stderr)

ROUNDS = list(range(1, config["rounds"] + 1))
SHARDS = config["shards"]
# Each rule's params call ARGS: ARGS.sample(wildcards) is the sample job's flags, and so on.
ARGS = StageArgs(config)
# Methods side by side (config methods): each method's rounds live under results/{chain},
# chain "methods/<name>/"; a single method's under results/ itself (chain ""). Round 0 (the
# base model) and round 1's samples, preferences and pairs are every method's.
METHODS = ARGS.methods
SIDE_BY_SIDE = ARGS.side_by_side

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
    chain=layout.CHAIN_PATTERN,


def print_job_failures(snakemake_logs):
    """After a failed run: each failed job's rule, log file and the line that says why."""
    lines = failure_lines(snakemake_logs)
    if lines:
        print(
            "\nFailed jobs, with the line of their log that says why:", file=sys.stderr
        )
        for line in lines:
            print(f"  {line}", file=sys.stderr)


def check_paths_for_sbatch():
    """With the SLURM executor: every path a submitted job's command line holds (the folder,
    the Snakefile, the config files, each job's files) is one the plugin can pass."""
    if workflow.executor_plugin.name != "slurm":
        return
    paths = [Path.cwd(), workflow.main_snakefile, *workflow.configfiles]
    for job in workflow.dag.needrun_jobs():
        paths += [*job.input, *job.output]
    try:
        check_sbatch_paths(paths)
    except UserError as error:
        raise WorkflowError(str(error)) from None


def script(name):
    return str(Path(workflow.basedir).parent / "scripts" / f"{name}.py")


def in_shell(text):
    """``text`` as one word of a rule's shell line (Snakemake formats the line: braces
    doubled). Every path a rule puts there is quoted, so a folder named `my runs (v2)` or
    `$(...)` is a name, never a command."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


# -- jobs that compute with torch, on GPUs where they have them -------------------------------


def gpus(stage):
    return config["resources"][stage]["gpu"]


def gpu_job(stage):
    """The resources of a job of ``stage`` (config resources.<stage>): its GPUs (on each of
    its nodes), memory, a time limit that grows with each retry, and its SLURM account,
    partition and GPU model (SPPO_SLURM_*, see sppoflow.placement)."""
    resources = config["resources"][stage]
    return {
        **placement(resources["gpu"], nodes=resources.get("nodes", 1)),
        "mem_mb": resources["mem_mb"],
        "runtime": runtime_for(resources["runtime"]),
    }


def on_gpus(command, launch="", nodes=1):
    """The shell line of a torch job: ``command`` started on the job's GPUs by with_gpus.py
    (``launch``: one process per GPU), with its thread counts and its log. ``exec`` lets a
    SIGTERM (a SLURM time limit) reach the wrapper, which passes it on and waits. A job over
    several ``nodes`` starts a wrapper on each with srun, one task per node, each line of
    the log headed by its node's task number; outside a SLURM allocation it stops at once,
    saying so in its log."""
    with_gpus = in_shell(script("with_gpus"))
    wrapper = f"exec python {with_gpus} {{resources.gpu}} {launch}".rstrip()
    if nodes > 1:
        wrapper = (
            '[ -n "${{SLURM_JOB_ID:-}}" ] || {{ echo "error: resources.train.nodes is'
            f' {nodes}: a train job over several nodes runs under SLURM (the slurm profile)"'
            " > {log:q}; exit 2; }}; "
            f"exec srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1"
            " --cpus-per-task={threads} --gres={resources.gres} --kill-on-bad-exit=1 --label"
            f" python {with_gpus} {{resources.gpus_per_node}} {launch}"
            f" --nodes {nodes}"
        )
    return f"{wrapper} -- {command} --threads {{threads}} {{params.cpu_threads}} > {{log:q}} 2>&1"


def generation_env(stage):
    """vLLM pins its own torch and transformers, so its rules get their own environment: the
    CUDA build for a job with GPUs, the CPU build for a job without."""
    if config["sample"]["backend"] != "vllm":
        return "../../envs/torch.yaml"
    return "../../envs/vllm.yaml" if gpus(stage) else "../../envs/vllm-cpu.yaml"


# -- data-parallel shards (config shards): sample, score and eval_generate -------------------


def stage_output(path, name):
    """A sharded stage's output: ``path`` with one shard; otherwise the shard's own file,
    temporary (gathered into ``path`` by a local rule, then deleted)."""
    return path if SHARDS == 1 else temp(layout.shard_file(name, SHARDS))


def shard_files(name):
    return expand(
        layout.shard_file(name, SHARDS), shard=range(SHARDS), allow_missing=True
    )


def job_file(path):
    return layout.job_file(path, SHARDS)


def shard_flags(wildcards):
    return "" if SHARDS == 1 else f"--shard {wildcards.shard} --shards {SHARDS}"


# -- the files of a method's rounds -------------------------------------------------------------


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
        f"{layout.sampling_dir(m.chain, it)}/aggregate_stats.parquet"
        for m in METHODS
        for it in ROUNDS
    ]


def previous_model(wildcards):
    return f"{layout.round_dir(wildcards.chain, int(wildcards.it) - 1)}/model"


def previous_eval_responses(wildcards):
    previous = layout.round_dir(wildcards.chain, int(wildcards.it) - 1)
    return f"{previous}/eval/responses.parquet"


def sampled(name):
    """An input function: file ``name`` of the round's sampling folder (round 1's is every
    method's)."""

    def path(wildcards):
        return f"{layout.sampling_dir(wildcards.chain, wildcards.it)}/{name}"

    return path


def local_prompt_files(wildcards):
    """Prompt files become inputs, so a missing one is reported before anything runs."""
    prompts = config["prompts"]
    sources = [prompts["source"], prompts["eval_source"], *prompts["per_round"]]
    return [s for s in sources if s and Path(s).suffix.lower() in PROMPT_FILE_TYPES]


# -- answers for common benchmarks (evaluate.benchmarks) -------------------------------------

BENCHMARK_NAMES = "|".join(BENCHMARKS)


def question_file(wildcards):
    """The benchmark's question file (evaluate.benchmarks.<benchmark>)."""
    path = config["evaluate"]["benchmarks"][wildcards.benchmark]
    if not path:
        raise WorkflowError(f"evaluate.benchmarks.{wildcards.benchmark} is not set")
    return str(Path(path).expanduser())


def round_benchmark_answers(wildcards):
    """The answers table of the round whose model an answer file is named after."""
    chain = ARGS.chain_of_model(wildcards.name)
    return layout.benchmark_answers(chain, wildcards.it, wildcards.benchmark)


def benchmark_exports():
    """The default target's share: every round's answers for each configured benchmark (round
    0's once) and its lm-eval command."""
    benchmarks = config["evaluate"]["benchmarks"]
    rounds = [("", 0)] + [(m.chain, it) for m in METHODS for it in ROUNDS]
    files = []
    for chain, it in rounds:
        model = ARGS.model_name(chain, it)
        files += [layout.answer_file(b, model) for b in BENCHMARKS if benchmarks[b]]
        if benchmarks["lm_eval_tasks"]:
            files.append(layout.lm_eval_file(chain, it))
    return files


# -- the report -----------------------------------------------------------------------------


def method_label(wildcards):
    """A chain's round as the report names it: "round 2", or "dpo, round 2"."""
    name = method_of_chain(config, wildcards.chain).name
    return f"{name}, round {wildcards.it}" if SIDE_BY_SIDE else f"Round {wildcards.it}"


def head_to_head_metrics():
    return [f"{layout.HEAD_TO_HEAD}/metrics.json"] if SIDE_BY_SIDE else []


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


def head_to_head_flag(wildcards, input):
    return f"--head-to-head {shlex.join(input.head_to_head)}" if SIDE_BY_SIDE else ""
