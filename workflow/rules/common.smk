# Snakemake's side of the workflow: the validated config, the jobs' environment, resources
# and shell lines. What a rule passes its stage script comes from the library
# (sppoflow.workflow.stage_args: ARGS), the files it reads from sppoflow.workflow.run_files
# (FILES) and where files live from sppoflow.layout. No rules here.

import os
import shlex
import sys
from pathlib import Path

SRC = Path(workflow.basedir).parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from sppoflow import layout
from sppoflow.config.run_only import recorded_config
from sppoflow.config.validation import validate as validate_config
from sppoflow.errors import UserError
from sppoflow.evaluate.question_sets import QUESTION_SETS
from sppoflow.models.hub import remember_launch_settings
from sppoflow.provenance import job_environment
from sppoflow.runtime import environments
from sppoflow.runtime.job_errors import print_failures
from sppoflow.runtime.placement import (
    check_overrides,
    check_sbatch_paths,
    placement,
    stage_resources,
)
from sppoflow.workflow.plan_cost import plan_cost
from sppoflow.workflow.run_files import RunFiles
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
ARGS = StageArgs(config)  # ARGS.sample(wildcards): the sample job's flags, and so on
FILES = RunFiles(
    config, ARGS
)  # FILES.previous_model(wildcards): a train job's input, ...
# Methods side by side (config methods): each method's rounds live under results/{chain},
# chain "methods/<name>/"; a single method's under results/ itself (chain ""). Round 0 (the
# base model) and round 1's samples, preferences and pairs are every method's.
METHODS = ARGS.methods
SIDE_BY_SIDE = ARGS.side_by_side


def in_shell(text):
    """``text`` as one word of a rule's shell line (Snakemake formats the line: braces
    doubled). Every path a rule puts there is quoted, so a folder named `my runs (v2)` or
    `$(...)` is a name, never a command."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


# Jobs never reach the hub: fetch_model and prompt_pool (local rules, run on the submit host)
# first put what the run needs into the hub cache, with the hub settings Snakemake was started
# with (HUB_ACCESS); every other job runs offline and reads from that cache. Each job also gets
# the config (less its run-only settings) and the project's commit, which it records with its
# outputs (sppoflow.provenance).
JOB_ENVIRONMENT = job_environment(recorded_config(config))
shell.prefix(
    "set -euo pipefail; export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "
    + " ".join(f"{name}={in_shell(value)}" for name, value in JOB_ENVIRONMENT.items())
    + "; "
)
HUB_ACCESS = remember_launch_settings()


wildcard_constraints:
    it=r"\d+",
    shard=r"\d+",
    chain=layout.CHAIN_PATTERN,


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


# -- jobs that compute with torch, on GPUs where they have them -------------------------------


def gpus(stage):
    return config["resources"][stage]["gpu"]


def gpu_job(stage):
    """A job's resources (sppoflow.runtime.placement.stage_resources)."""
    return stage_resources(config["resources"][stage])


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
    return environments.generation_env(config["sample"], gpus(stage))


# -- data-parallel shards (config shards): sample, score and eval_generate -------------------


def stage_output(path, name):
    """A sharded stage's output: ``path`` with one shard; otherwise the shard's own file,
    temporary (gathered into ``path`` by a local rule, then deleted)."""
    return path if SHARDS == 1 else temp(layout.shard_file(name, SHARDS))


def shard_files(name):
    return expand(
        layout.shard_file(name, SHARDS), shard=range(SHARDS), allow_missing=True
    )


# -- answers for Arena-Hard's and MT-Bench's question sets (evaluate.question_sets) -------------------------------------

QUESTION_SET_NAMES = "|".join(QUESTION_SETS)


def question_file(wildcards):
    """The question set's question file (evaluate.question_sets.<question_set>)."""
    path = config["evaluate"]["question_sets"][wildcards.question_set]
    if not path:
        raise WorkflowError(
            f"evaluate.question_sets.{wildcards.question_set} is not set"
        )
    return str(Path(path).expanduser())


# -- the report -----------------------------------------------------------------------------


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
