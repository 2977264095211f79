"""Cluster scale without a cluster: what the SLURM executor would be asked for, the local GPU
limits, per-rule environments and the accelerate configs."""

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from helpers import ROOT, snakemake

PAPER = ROOT / "config" / "paper" / "mistral-7b-instruct-v0.2.yaml"
GPU_RULES = {"sample", "score", "train", "eval_generate", "evaluate"}
LOCAL_RULES = {"fetch_model", "prompt_pool", "round_prompts", "aggregate"}
LOCAL_RULES |= {"summary", "round_figures", "report_figures", "export_alpaca_eval", "duckdb_views"}
LOCAL_RULES |= {"throughput_table"}
# local rules of evaluate.question_sets, which the paper configs leave off
QUESTION_SET_EXPORTS = {"export_question_set_answers", "export_lm_eval"}
GATHER_RULES = {"gather_samples", "gather_preferences", "gather_eval_responses"}
SLURM_ENV = {"SPPO_SLURM_ACCOUNT": "sppo-lab", "SPPO_SLURM_PARTITION": "cpu",
             "SPPO_SLURM_GPU_PARTITION": "gpu", "SPPO_SLURM_GPU_MODEL": "h100"}  # fmt: skip


def planned_resources(output: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the resources of each of its jobs, as a dry run reports them."""
    found: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and line:
            pairs = (item.split("=", 1) for item in line.group(1).split(", "))
            found.setdefault(head.group(1), []).append(dict(pairs))
    return found


def dry_run(tmp_path, *args, env=None):
    (tmp_path / "config").symlink_to(ROOT / "config")
    run = snakemake(tmp_path, "-n", "-p", "--cores", "64", *args, env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout + run.stderr


def sbatch_call(rule: str, resources: dict[str, str]) -> str:
    """The sbatch command the SLURM executor plugin builds from a job's resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    values = {k: int(v) if v.isdigit() else v for k, v in resources.items()}

    class Resources(SimpleNamespace):
        def get(self, key, default=None):
            return getattr(self, key, default)

    job = SimpleNamespace(
        resources=Resources(**values), threads=8, name=rule, is_group=lambda: False
    )
    params = {
        "run_uuid": "uuid",
        "slurm_logfile": "log",
        "comment_str": rule,
        "workdir": None,
        "account": f"-A {values.get('slurm_account', '')}",
        "partition": f"-p {values.get('slurm_partition', '')}",
    }
    return get_submit_command(job, params) + set_gres_string(job)


def test_slurm_profile_asks_for_gpus_only_where_the_model_runs(tmp_path):
    """The paper's plan under the SLURM profile, without conda (the profile no longer needs
    it): every model job's sbatch line, as the SLURM plugin's own builder writes it."""
    output = dry_run(
        tmp_path,
        "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"),
        "--configfile", str(PAPER),
        "--config", "rounds=3",
        env=SLURM_ENV,
    )  # fmt: skip
    assert "Using workflow specific profile" in output and "profiles/slurm" in output
    planned = planned_resources(output)
    assert set(planned) == GPU_RULES | LOCAL_RULES | GATHER_RULES | {"base_model", "all"}
    paper = yaml.safe_load(PAPER.read_text())["resources"]
    stage = {"eval_generate": "evaluate"}
    for rule in GPU_RULES:
        want = paper[stage.get(rule, rule)]
        for job in planned[rule]:
            assert int(job["gpu"]) == want["gpu"], rule
            assert int(job["mem_mb"]) == want["mem_mb"], rule
            assert int(job["runtime"]) == want["runtime"], rule  # first attempt
            assert job["slurm_partition"] == "gpu" and job["gpu_model"] == "h100"
            call = sbatch_call(rule, job)
            assert f"--gpus=h100:{want['gpu']}" in call, call
            assert f"--mem {want['mem_mb']}" in call and f"-t {want['runtime']}" in call
            assert "-A sppo-lab" in call and "-p gpu" in call and "--nodes=1" in call
            assert "--ntasks-per-gpu" not in call  # it would split an srun into one task per GPU
    train_line = "-t 720 --mem 400000 --nodes=1 --cpus-per-task=8 --gpus=h100:8"
    assert train_line in sbatch_call("train", planned["train"][0])
    assert train_line in (ROOT / "docs" / "clusters.md").read_text()  # the line the docs show
    [base_model] = planned["base_model"]
    call = sbatch_call("base_model", base_model)
    assert "--gpus" not in call and "--mem " in call and "-p cpu" in call
    for rule in LOCAL_RULES | GATHER_RULES:  # run on the submit host: no slurm placement
        assert all("slurm_partition" not in job for job in planned[rule]), rule
    assert local_rules(tmp_path, {"shards": 8}) == LOCAL_RULES | GATHER_RULES | QUESTION_SET_EXPORTS
    assert len(planned["train"]) == 3 and len(planned["sample"]) == 3 * 8
    # training starts one process per GPU through accelerate, with the shipped ZeRO-3 config
    assert re.search(
        r"with_gpus\.py 8 --process-per-gpu --accelerate-config \S+/config/accelerate/"
        r"deepspeed_zero3\.yaml -- \S+/scripts/train\.py .*--global-batch-size 64",
        output,
    )
    # vLLM spans the job's GPUs; the shards split the work
    assert re.search(r"scripts/sample\.py .*--backend vllm .*--tensor-parallel-size 1", output)
    assert re.search(r"scripts/score\.py .*--shard 7 --shards 8", output)


def local_rules(tmp_path, config: dict) -> set[str]:
    """Rules that run on the submit host, never as sbatch jobs (Snakemake's own list)."""
    return set(workflow_of(tmp_path / "local", config)._localrules)


def sbatch_jobs(tmp_path, config: dict) -> Counter:
    """rule -> jobs that the SLURM profile submits with sbatch, for the paper's 3 rounds."""
    folder = tmp_path / f"plan-{config.get('shards', 1)}"
    folder.mkdir()
    output = dry_run(folder, "--workflow-profile", str(ROOT / "workflow/profiles/slurm"),
                     "--configfile", str(PAPER), "--config", "rounds=3",
                     *(f"{k}={v}" for k, v in config.items()))  # fmt: skip
    planned = Counter(re.findall(r"^(?:local)?rule (\w+):", output, re.M))
    local = local_rules(tmp_path / f"rules-{config.get('shards', 1)}", config)
    return Counter({r: n for r, n in planned.items() if r not in local and r != "all"})


def test_only_model_jobs_are_submitted_to_slurm(tmp_path):
    one = sbatch_jobs(tmp_path, {"shards": 1})
    assert one == {"base_model": 1, "sample": 3, "score": 3, "train": 3, "eval_generate": 4,
                   "evaluate": 3}  # fmt: skip
    assert sum(one.values()) == 17  # 34 before the small jobs ran on the submit host
    eight = sbatch_jobs(tmp_path, {"shards": 8})
    assert eight == {"base_model": 1, "sample": 24, "score": 24, "train": 3,
                     "eval_generate": 32, "evaluate": 3}  # fmt: skip


def test_the_paper_plans_shards_go_to_slurm_as_job_arrays(tmp_path):
    """The profile's slurm-array-jobs: each round's shards of sample, score and eval_generate
    are one submission (the plugin submits a rule's jobs that are ready together as an array),
    so the paper plan's 87 sbatch jobs are 17 submissions."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    arrays = {rule.strip() for rule in profile["slurm-array-jobs"].split(",")}
    assert arrays == {"sample", "score", "eval_generate"}
    output = dry_run(tmp_path, "--workflow-profile", str(ROOT / "workflow/profiles/slurm"),
                     "--configfile", str(PAPER), "--config", "rounds=3", "shards=8")  # fmt: skip
    local = local_rules(tmp_path / "rules", {"shards": 8}) | {"all"}
    singles, arrays_of = 0, Counter()  # plain jobs; jobs per (array rule, round and chain)
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head or head.group(1) in local:
            continue
        if head.group(1) not in arrays:
            singles += 1
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M).group(1)
        arrays_of[(head.group(1), re.sub(r",? ?shard=\d+", "", wildcards))] += 1
    assert singles + sum(arrays_of.values()) == 87
    assert set(arrays_of.values()) == {8}  # each array holds a stage's 8 shards of a round
    assert singles + len(arrays_of) == 17  # base_model, train x 3, evaluate x 3; 10 arrays


def test_runtime_grows_with_each_retry():
    from sppoflow.runtime.placement import runtime_for

    minutes = runtime_for(720)
    assert [minutes(None, attempt) for attempt in (1, 2, 3)] == [720, 1440, 2160]


def test_one_machine_caps_gpu_requests_at_its_gpu_count(tmp_path):
    """The default workflow profile declares 1 GPU: the paper's 8-GPU training then runs on
    the one GPU there is (one process; global_batch_size keeps the optimizer step)."""
    output = dry_run(tmp_path, "--configfile", str(PAPER), "--config", "rounds=1")
    assert "profiles/default" in output
    assert planned_resources(output)["train"][0]["gpu"] == "1"
    assert re.search(r"with_gpus\.py 1 --process-per-gpu", output)
    (tmp_path / "eight").mkdir()
    eight = dry_run(tmp_path / "eight", "--configfile", str(PAPER), "--config", "rounds=1",
                    "--resources", "gpu=8")  # fmt: skip
    assert planned_resources(eight)["train"][0]["gpu"] == "8"
    assert planned_resources(eight)["sample"][0]["gpu"] == "1"


def test_environment_files_pin_every_package():
    files = set((ROOT / "envs").glob("*.yaml"))
    assert {f.stem for f in files} >= {"torch", "train", "vllm", "vllm-cpu", "data"}
    for env in files:
        spec = yaml.safe_load(env.read_text())
        assert spec["name"].startswith("sppo-") and "conda-forge" in spec["channels"]
        deps = spec["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        conda = [d for d in deps if isinstance(d, str)]
        assert all(re.fullmatch(r"[\w.-]+=[\w.]+", d) for d in conda), (env, conda)
        assert all(re.fullmatch(r"[\w.\[\]-]+==[\w.]+", d) for d in pip), (env, pip)
    vllm = yaml.safe_load((ROOT / "envs" / "vllm.yaml").read_text())["dependencies"][-1]["pip"]
    assert "vllm==0.33.0" in vllm and "torch==2.14.0" in vllm  # vLLM's own torch


def workflow_of(folder: Path, config: dict):
    """The parsed workflow, through Snakemake's API (no conda, no jobs)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").symlink_to(ROOT / "config")
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(config=config),
            storage_settings=StorageSettings(),
            snakefile=ROOT / "workflow" / "Snakefile",
            workdir=folder,
        )
        return workflow._workflow


def conda_envs_of_rules(tmp_path, config: dict) -> dict[str, str]:
    """rule -> the env file Snakemake resolves for it (through its API: no conda needed)."""
    workflow = workflow_of(tmp_path, config)
    return {r.name: Path(str(r.conda_env)).name for r in workflow.rules if r.conda_env}


@pytest.mark.parametrize(
    ("backend", "gpus", "generation"),
    [("transformers", 1, "torch.yaml"), ("vllm", 1, "vllm.yaml"), ("vllm", 0, "vllm-cpu.yaml")],
)
def test_each_rule_gets_its_environment(tmp_path, backend, gpus, generation):
    """vLLM's CUDA build for generation jobs with GPUs, its CPU build for jobs without."""
    resources = {stage: {"gpu": gpus} for stage in ("sample", "evaluate")}
    config = {"sample": {"backend": backend}, "shards": 2, "resources": resources}
    envs = conda_envs_of_rules(tmp_path, config)
    assert envs == {
        "base_model": "torch.yaml",
        "prompt_pool": "data.yaml",
        "round_prompts": "data.yaml",
        "sample": generation,
        "eval_generate": generation,
        "question_set_answers": generation,
        "score": "torch.yaml",
        "evaluate": "torch.yaml",
        "train": "train.yaml",
        "aggregate": "data.yaml",
        "summary": "data.yaml",
        **dict.fromkeys(["round_figures", "report_figures", "export_alpaca_eval"], "data.yaml"),
        **dict.fromkeys(["export_question_set_answers", "export_lm_eval"], "data.yaml"),
        "duckdb_views": "data.yaml",
        "throughput_table": "data.yaml",
        "fetch_model": "data.yaml",
        **dict.fromkeys(GATHER_RULES, "data.yaml"),
    }


@pytest.mark.parametrize("name", ["multi_gpu", "deepspeed_zero3", "fsdp"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "config" / "accelerate" / f"{name}.yaml"))
    kind = {"multi_gpu": "MULTI_GPU", "deepspeed_zero3": "DEEPSPEED", "fsdp": "FSDP"}[name]
    assert config.distributed_type.value == kind and config.num_machines == 1
    if name == "deepspeed_zero3":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.deepspeed_config["zero3_save_16bit_model"] is True


def test_with_gpus_help_and_plain_run():
    script = str(ROOT / "scripts" / "with_gpus.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "CUDA_VISIBLE_DEVICES" in shown.stdout
    ran = subprocess.run(
        [sys.executable, script, "0", "--", sys.executable, "-c",
         "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.strip() == "''"
    failed = subprocess.run([sys.executable, script, "1", "--", "false"], capture_output=True)
    assert failed.returncode == 1  # the command's exit code comes back
    show_argv = ["-c", "import sys; print(sys.argv)"]
    one_process = subprocess.run(
        [sys.executable, script, "1", "--process-per-gpu", "--", *show_argv],
        capture_output=True,
        text=True,
    )
    assert one_process.returncode == 0 and one_process.stdout.strip() == "['-c']"


def test_paper_resources_are_in_the_schema():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    resources = schema["properties"]["resources"]["properties"]
    stages = {name for name, spec in resources.items() if spec.get("type") == "object"}
    assert stages == {"sample", "score", "train", "evaluate"}
    assert Path(ROOT / "workflow" / "profiles" / "default" / "config.yaml").is_file()


def test_a_four_node_train_job_gets_eight_gpus_and_one_launcher_on_each(tmp_path):
    """resources.train.nodes 4 x gpu 8 on the paper config: the train job's sbatch line (the
    SLURM plugin's own builder, from the dry run's resources) and its srun line."""
    paper = yaml.safe_load(PAPER.read_text())
    paper["resources"]["train"].update(nodes=4, gpu=8)
    (tmp_path / "four_nodes.yaml").write_text(yaml.safe_dump(paper))
    output = dry_run(
        tmp_path,
        "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"),
        "--configfile", str(tmp_path / "four_nodes.yaml"), "--config", "rounds=1",
        env=SLURM_ENV,
    )  # fmt: skip
    [train] = planned_resources(output)["train"]
    call = sbatch_call("train", train)
    line = "-t 720 --mem 400000 --nodes=4 --ntasks=4 --cpus-per-task=8 --gres=gpu:h100:8"
    assert call.endswith(line), call
    assert "--gpus" not in call and "--ntasks-per-gpu" not in call
    assert "-p gpu" in call  # the GPU partition
    assert line in (ROOT / "docs" / "clusters.md").read_text()  # the line the docs show
    assert train["mpi"] == "srun"  # the plugin's job step leaves starting the tasks to the rule
    guard = re.search(r"(\[ -n \"\$\{SLURM_JOB_ID:-\}\" \] \|\| \{.*?\}); exec srun", output, re.M)
    assert guard, output[-3000:]  # outside an allocation the job stops at once, saying why
    (tmp_path / "results/iter1/logs").mkdir(parents=True)
    stopped = subprocess.run(
        ["bash", "-c", guard.group(1)], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}
    )
    assert stopped.returncode == 2
    assert (tmp_path / "results/iter1/logs/train.log").read_text() == (
        "error: resources.train.nodes is 4: a train job over several nodes runs under SLURM "
        "(the slurm profile)\n"
    )
    overridden = snakemake(tmp_path, "-n", "--cores", "4", "--configfile", "four_nodes.yaml",
                           "--set-resources", "train:gpu=4")  # fmt: skip
    assert overridden.returncode != 0
    assert (
        "set-resources train: gpu: a train job over several"
        in overridden.stdout + overridden.stderr
    )
    assert re.search(
        r"exec srun --nodes=4 --ntasks=4 --ntasks-per-node=1 --cpus-per-task=8 "
        r"--gres=gpu:h100:8 --kill-on-bad-exit=1 --label python \S+/scripts/with_gpus\.py 8 "
        r"--process-per-gpu --accelerate-config \S+/deepspeed_zero3\.yaml --nodes 4 -- "
        r"\S+/scripts/train\.py ",
        output,
    ), output[-3000:]


def test_one_rule_gets_a_partition_of_its_own_through_set_resources(tmp_path):
    """Partitions per kind of job come from SPPO_SLURM_PARTITION / SPPO_SLURM_GPU_PARTITION;
    one rule elsewhere is the profile's set-resources (here on the command line)."""
    output = dry_run(
        tmp_path,
        "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"),
        "--configfile", str(PAPER), "--config", "rounds=1",
        "--set-resources", "train:slurm_partition=a100-80g",
        env=SLURM_ENV,
    )  # fmt: skip
    planned = planned_resources(output)
    assert {job["slurm_partition"] for job in planned["train"]} == {"a100-80g"}
    assert "-p a100-80g" in sbatch_call("train", planned["train"][0])
    for rule in GPU_RULES - {"train"}:
        assert {job["slurm_partition"] for job in planned[rule]} == {"gpu"}, rule
    assert {job["slurm_partition"] for job in planned["base_model"]} == {"cpu"}


def test_paths_the_slurm_plugin_cannot_pass_are_found():
    from sppoflow.errors import UserError
    from sppoflow.runtime.placement import check_sbatch_paths, sbatch_unsafe_path

    fine = ["/home/me/My Projects (v2)/sppo", "results/iter1/model"]
    assert sbatch_unsafe_path(fine) is None
    check_sbatch_paths(fine)
    for name in ("runs $(date)", "a `b`", "back\\slash", "$HOME", "it's", 'a "b"'):
        assert sbatch_unsafe_path([*fine, f"/tmp/{name}/x"]) == f"/tmp/{name}/x"
    with pytest.raises(UserError, match=r"cannot submit a job with the path '/tmp/\$x'"):
        check_sbatch_paths(["/tmp/$x"])
