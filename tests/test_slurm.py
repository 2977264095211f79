"""The cluster path on a real SLURM controller: a two-node cluster with two fake GPUs per node
and an accounting database (tests/slurm_cluster.py) runs the tiny workflow through
workflow/profiles/slurm.

What only a GPU would change is faked: torch runs on the CPU and ignores the fake devices in
CUDA_VISIBLE_DEVICES. Everything else is real: sbatch, the SLURM executor plugin, its job
step, squeue, time limits, SIGTERM, retries.

No test races a clock: a train job that must meet its time limit (or lose its node) is held
in its second step (tests/training_hold.py) until the test has cut its time limit and seen
the job get SIGTERM (or failed the node), however long the machine took to get there.
"""

import json
import os
import re
import shutil
import subprocess
import threading
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import BIN, ROOT, assert_same_weights, output_hashes, snakemake, tiny_workdir, weights

from odd_folder import nothing_ran, odd_clone
from training_hold import TrainingHold, wait_for_line

PROFILE = ROOT / "workflow" / "profiles" / "slurm"
MODEL_RULES = {"base_model", "sample", "score", "train", "eval_generate", "evaluate"}
TRAIN_MINUTES = 10  # resources.train.runtime: the held job's limit is cut to 1 minute
SIGTERM_SAID = "got SIGTERM: saving a checkpoint after this step"


def slurm_args(*extra: str) -> list[str]:
    return [
        "--workflow-profile", str(PROFILE),
        "--slurm-status-command", "squeue",  # as the profile says: works without accounting
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        "--max-threads", "2",  # the threads of the local run, so the numbers are the same
        *extra,
    ]  # fmt: skip


def slurm_env(cluster, folder: Path, hold: TrainingHold) -> dict[str, str]:
    return {
        **cluster.env(),
        "SPPO_SLURM_ACCOUNT": "sppo-test",
        "SPPO_SLURM_PARTITION": "cpu",
        "SPPO_SLURM_GPU_PARTITION": "gpu",
        "SPPO_FAULT_FAIL_FIRST": str(folder / "score-failed-once"),
        **hold.env(),
    }


class Background(threading.Thread):
    """``run()`` in a thread; ``result()`` is what it returned (or raises what it raised)."""

    def __init__(self, target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.outcome: list = []

    def run(self) -> None:
        try:
            self.outcome.append(self.target())
        except BaseException as error:  # raised again in the test, by result()
            self.outcome.append(error)

    def result(self):
        self.join()
        if isinstance(self.outcome[0], BaseException):
            raise self.outcome[0]
        return self.outcome[0]


def while_running(snakemake_run, hold: TrainingHold, meanwhile):
    """``snakemake_run()`` in the background while ``meanwhile(running)`` acts on its held
    train job; whatever happens, nothing stays held. Returns the run's result."""
    running = Background(snakemake_run)
    running.start()
    try:
        meanwhile(running)
    finally:
        hold.release()
    return running.result()


def cut_by_its_time_limit(cluster, hold: TrainingHold, log: Path, since: int, run: Background):
    """Once the train job is held in its step 2, its time limit is cut to 1 minute (as root,
    with scontrol): SLURM then ends it as at any time limit, SIGTERM first. The step is
    released once the job says it got the signal, so that it saves that step and stops."""
    hold.wait_held(run.is_alive)
    [job] = [j for j in jobs_by_rule(cluster, since)["train"] if j["JobState"] == "RUNNING"]
    limit = ["scontrol", "update", f"JobId={job['JobId']}", "TimeLimit=1"]
    subprocess.run(limit, check=True, capture_output=True)
    wait_for_line(log, SIGTERM_SAID, run.is_alive)
    hold.release()


def jobs_by_rule(cluster, since: int = 0) -> dict[str, list[dict]]:
    """SLURM's own records of the jobs submitted after job id ``since``, by rule name."""
    found = defaultdict(list)
    for job in cluster.jobs():
        match = re.match(r"rule_(\w+?)(?:_wildcards_(\S+))?$", job.get("Comment", ""))
        if match and int(job["JobId"]) > since:
            # the plugin joins the wildcard values with "_"; a single method's chain is ""
            wildcards = (match.group(2) or "").lstrip("_")
            found[match.group(1)].append({**job, "wildcards": wildcards})
    return found


def last_job_id(cluster) -> int:
    return max((int(job["JobId"]) for job in cluster.jobs()), default=0)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tiny_model_dir, tmp_path_factory):
    """Round 1 of the tiny workflow through the SLURM profile, in 2 shards per stage, with
    its train job ended by its time limit in step 2 and the first score job failing, from a
    folder whose name has spaces and parentheses (which the plugin passes)."""
    folder = tiny_workdir(tmp_path_factory.mktemp("slurm run (v2)"), tiny_model_dir)
    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    config.update(rounds=1, shards=2, resources={"train": {"runtime": TRAIN_MINUTES}})
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    since = last_job_id(slurm_cluster)
    hold = TrainingHold(folder / "train-held")
    log = folder / "results/iter1/logs/train.log"
    with slurm_cluster.watch() as watcher:
        run = while_running(
            lambda: snakemake(
                folder, "--configfile", "config.yaml", *slurm_args(),
                env=slurm_env(slurm_cluster, folder, hold),
            ),
            hold,
            lambda running: cut_by_its_time_limit(slurm_cluster, hold, log, since, running),
        )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    return folder, run.stdout + run.stderr, jobs_by_rule(slurm_cluster, since), watcher


def assert_same_files(ours: Path, theirs: Path, names: list[str]) -> None:
    for name in names:
        a, b = pd.read_parquet(ours / name), pd.read_parquet(theirs / name)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)


def test_every_model_job_is_an_sbatch_job_with_the_gpus_it_asked_for(slurm_run):
    _, output, jobs, _ = slurm_run
    assert set(jobs) == MODEL_RULES  # the small jobs ran on the submit host
    assert "localrule aggregate" in output and "localrule gather_samples" in output
    for rule, records in jobs.items():
        for job in records:
            asked = 0 if rule == "base_model" else 1
            partition = "gpu" if asked else "cpu"  # SPPO_SLURM_GPU_PARTITION for GPU jobs
            assert job["Account"] == "sppo-test" and job["Partition"] == partition, job
            assert job["NumNodes"] == "1", job
            assert job["gpus"] == str(asked), (rule, job)  # allocated, from JOB_GRES
    shards = defaultdict(int)
    for rule in ("sample", "score", "eval_generate"):
        for job in jobs[rule]:
            if job["JobState"] == "COMPLETED":
                shards[(rule, job["wildcards"].rsplit("_", 1)[0])] += 1
    assert set(shards.values()) == {2}  # two shard jobs per stage and round
    assert len(shards) == 1 + 1 + 2  # sample and score of round 1, eval of rounds 0-1


def test_outputs_equal_a_local_run_bit_for_bit(slurm_run, tiny_run):
    """Same config, one machine without SLURM and one shard per stage, against SLURM with two
    shards per stage (jobs with 8 cores, not 2), a time-limited and resumed training and a
    retried score job: every file of rounds 0 and 1 is the same to the byte."""
    folder, _, _, _ = slurm_run
    local, _ = tiny_run
    ours, theirs = output_hashes(folder), output_hashes(local)
    rounds_0_and_1 = [
        name
        for name in ours
        if name.startswith(("results/iter0/", "results/iter1/", "results/prompts/", "results/hub/"))
    ]
    assert len(rounds_0_and_1) > 25
    assert [n for n in rounds_0_and_1 if ours[n] != theirs.get(n)] == []
    for it in (1,):
        ours, theirs = folder / f"results/iter{it}", local / f"results/iter{it}"
        assert_same_files(ours, theirs, ["samples.parquet", "preferences.parquet",
                                         "pairs.parquet", "eval/responses.parquet"])  # fmt: skip
        assert_same_weights(ours / "model", theirs / "model")
        log, local_log = pd.read_csv(ours / "train_log.csv"), pd.read_csv(theirs / "train_log.csv")
        assert log.step.tolist() == list(range(1, len(log) + 1))  # every step once
        assert log.loss.tolist() == local_log.loss.tolist()
    assert not list(folder.glob("results/iter*/shards/*.parquet"))  # temporary, gathered


def test_two_sample_shards_ran_at_once_on_different_gpus(slurm_run):
    _, _, jobs, watcher = slurm_run
    shards = [j for j in jobs["sample"] if j["wildcards"].startswith("1_")]
    assert len(shards) == 2
    first, second = sorted(shards, key=lambda j: j["StartTime"])
    assert second["StartTime"] < first["EndTime"], (first, second)  # side by side
    seen = {watcher.node_gpus.get(j["JobId"]) for j in shards}
    assert len(seen) == 2 and None not in seen, watcher.node_gpus  # each its own GPU (of a node)
    assert all(re.fullmatch(r"[\w-]+:[01]", gpu) for gpu in seen), seen


def test_a_train_job_killed_by_its_time_limit_resumes_from_its_sigterm_checkpoint(slurm_run):
    folder, _, jobs, _ = slurm_run
    round_one = sorted(
        (j for j in jobs["train"] if j["wildcards"] == "1"), key=lambda j: int(j["JobId"])
    )
    assert [j["JobState"] for j in round_one] == ["TIMEOUT", "COMPLETED"], round_one
    # the first cut to 1 minute by the test; the retry's is runtime x attempt
    assert [j["TimeLimit"] for j in round_one] == ["00:01:00", f"00:{2 * TRAIN_MINUTES}:00"]
    log = (folder / "results/iter1/logs/train.log").read_text()
    resumed = re.search(r"resuming from \S+/train_state/checkpoints/checkpoint-(\d+)", log)
    assert resumed, log[-3000:]
    assert resumed.group(1) == "2"  # saved on SIGTERM in step 2: no periodic checkpoints
    assert not (folder / "results/iter1/train_state").exists()


def submissions(records: list[dict]) -> list[str]:
    """The sbatch submissions behind SLURM's job records: an array job's elements are one."""
    return sorted({r.get("ArrayJobId") or r["JobId"] for r in records}, key=int)


def test_shards_are_job_arrays_and_a_failed_element_is_resubmitted_alone(slurm_run):
    """The profile submits each round's shards of a stage as one array job; the element that
    fails its first attempt (the fault injected into one score job) is resubmitted as a job of
    its own, and its sibling is not run again."""
    folder, output, jobs, _ = slurm_run
    for rule in ("sample", "eval_generate"):
        arrays = defaultdict(list)
        for job in jobs[rule]:
            arrays[job.get("ArrayJobId")].append(job["ArrayTaskId"])
        assert None not in arrays and all(sorted(t) == ["1", "2"] for t in arrays.values())
    score = sorted(jobs["score"], key=lambda j: int(j["JobId"]))
    [array] = {j["ArrayJobId"] for j in score if j.get("ArrayJobId")}
    elements = {j["ArrayTaskId"]: j["JobState"] for j in score if j.get("ArrayJobId") == array}
    assert sorted(elements.values()) == ["COMPLETED", "FAILED"], elements
    [retry] = [j for j in score if not j.get("ArrayJobId")]
    assert (retry["JobState"], retry["ExitCode"]) == ("COMPLETED", "0:0")
    assert int(retry["JobId"]) > int(array)
    assert (folder / "score-failed-once").exists()
    # base_model, eval arrays of rounds 0 and 1, the sample and score arrays, the score retry,
    # train and its retry after the time limit, evaluate: 9 submissions for 13 jobs
    every = [job for records in jobs.values() for job in records]
    assert len(every) == 13 and len(submissions(every)) == 9
    assert "Submitted array job with Snakemake IDs" in output


def copy_run(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(folder, target, symlinks=True)
    return target


def test_two_and_three_score_shards_give_the_same_preferences_on_the_nodes_left(
    slurm_run, slurm_cluster, tmp_path
):
    """Re-scoring in 3 shards with a node excluded (the plugin's --slurm-exclude-failed-nodes,
    as after a node failure): every job runs on the other node, and the preferences are the
    same bit for bit."""
    folder, _, _, _ = slurm_run
    run = copy_run(folder, tmp_path)
    before = pd.read_parquet(run / "results/iter1/preferences.parquet")
    since = last_job_id(slurm_cluster)
    excluded = slurm_cluster.nodes[1:]
    exclude = ["--slurm-exclude-failed-nodes", ",".join(excluded)] if excluded else []
    rescored = snakemake(
        run, "results/iter1/preferences.parquet", "--configfile", "config.yaml",
        *slurm_args("--forcerun", "score", "--rerun-triggers", "mtime", *exclude),
        "--config", "shards=3",
        env={**slurm_cluster.env(), "SPPO_SLURM_PARTITION": "debug"},
    )  # fmt: skip
    assert rescored.returncode == 0, (rescored.stdout + rescored.stderr)[-4000:]
    jobs = jobs_by_rule(slurm_cluster, since)
    assert set(jobs) == {"score"} and len(jobs["score"]) == 3  # one array of 3 shards
    assert sorted(j["ArrayTaskId"] for j in jobs["score"]) == ["1", "2", "3"]
    if excluded:
        for job in jobs["score"]:
            assert job["ExcNodeList"] == excluded[0] and job["NodeList"] == "sppo-n1", job
    after = pd.read_parquet(run / "results/iter1/preferences.parquet")
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def retrain(
    folder: Path,
    cluster,
    settings: dict,
    hold: TrainingHold | None = None,
    extra: tuple[str, ...] = (),
    meanwhile=None,
):
    """Round 1's train job again, on the SLURM cluster, with ``settings`` as resources.train
    (and ``extra`` snakemake arguments), its first process held by ``hold`` while
    ``meanwhile(since, running)`` acts on it; returns SLURM's records of the train jobs it
    submitted, and the GPUs they were seen on."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["resources"]["train"] = settings
    (folder / "retrain.yaml").write_text(yaml.safe_dump(config))
    since = last_job_id(cluster)
    env = {**cluster.env(), "SPPO_SLURM_PARTITION": "debug", **(hold.env() if hold else {})}

    def run():
        return snakemake(
            folder, "results/iter1/model", "--configfile", "retrain.yaml",
            *slurm_args("--forcerun", "train", "--rerun-triggers", "mtime", *extra), env=env,
        )  # fmt: skip

    with cluster.watch() as watcher:
        if hold:
            retrained = while_running(run, hold, lambda running: meanwhile(since, running))
        else:
            retrained = run()
    assert retrained.returncode == 0, (retrained.stdout + retrained.stderr)[-4000:]
    jobs = sorted(jobs_by_rule(cluster, since)["train"], key=lambda j: int(j["JobId"]))
    return jobs, watcher


@pytest.fixture(scope="module")
def two_gpu_round(slurm_run, slurm_cluster, tmp_path_factory):
    """Round 1 trained again by a train job with 2 GPUs on one node (with the SLURM plugin's
    efficiency report, where the cluster keeps accounting records)."""
    run = copy_run(slurm_run[0], tmp_path_factory.mktemp("two-gpus"))
    one_process = weights(run / "results/iter1/model")
    report = (
        "--slurm-efficiency-report",
        "--slurm-efficiency-report-path",
        str(run / "efficiency"),
    )
    extra = () if slurm_cluster.no_accounting_why else report
    jobs, watcher = retrain(run, slurm_cluster, {"gpu": 2}, extra=extra)
    return run, one_process, jobs, watcher


def test_a_two_gpu_train_job_gets_one_node_and_two_processes(two_gpu_round):
    run, one_process, [job], watcher = two_gpu_round
    assert job["gpus"] == "2" and job["NumNodes"] == "1"
    assert watcher.gpu_idx.get(job["JobId"]) == "0-1"
    log = (run / "results/iter1/logs/train.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=0,1 (set by the scheduler)" in log
    assert "on 2 process(es) (gloo)" in log
    record = json.loads((run / "results/iter1/model/sppo_training.json").read_text())
    assert record["processes"] == 2 and record["global_batch_size"] == 2
    assert record["steps"] == 3  # 6 prompts, 2 per step (1 on each process)
    two_processes = weights(run / "results/iter1/model")
    assert two_processes.keys() == one_process.keys()
    assert any(not one_process[k].equal(two_processes[k]) for k in one_process)  # retrained


def test_the_efficiency_report_gives_each_job_steps_cpu_and_memory_use(
    two_gpu_round, slurm_cluster
):
    """The plugin's --slurm-efficiency-report (profile key slurm-efficiency-report) from the
    cluster's accounting records (sacct): the train job's step, its rule, CPU efficiency and
    peak memory against the memory asked for."""
    if slurm_cluster.no_accounting_why:
        pytest.skip(f"no accounting database here: {slurm_cluster.no_accounting_why}")
    run, _, [job], _ = two_gpu_round
    [report] = (run / "efficiency").glob("efficiency_report_*.csv")
    rows = pd.read_csv(report, dtype={"JobID": str})
    [step] = rows[rows.JobID == f"{job['JobId']}.0"].to_dict("records")  # the job step
    assert step["RuleName"] == "rule_train_wildcards__1"
    assert 0 < step["CPU Efficiency (%)"] <= 100 * step["NCPUS"]
    assert 200 < step["MaxRSS_MB"] < 32000 == step["RequestedMem_MB"]  # torch, a tiny model
    assert step["Memory Usage (%)"] == pytest.approx(100 * step["MaxRSS_MB"] / 32000, abs=0.01)


def test_a_two_node_train_job_resumes_after_its_time_limit_and_equals_two_processes_on_one(
    two_gpu_round, slurm_cluster, tmp_path
):
    """resources.train.nodes 2 with 1 GPU each: one task per node (SLURM's records), a launcher
    on each meeting at the first, ended by its time limit in step 2 (held there until then),
    saved on SIGTERM by the processes of both nodes (a checkpoint is put in place only once
    every process has written its part), resumed from it on both nodes by the retry; the
    weights are bit for bit those of the 2-process run on one node."""
    if len(slurm_cluster.nodes) < 2:
        pytest.skip(f"the local cluster has one node here ({slurm_cluster.one_node_why})")
    one_node, _, _, _ = two_gpu_round
    run = copy_run(one_node, tmp_path)
    settings = {"nodes": 2, "gpu": 1, "runtime": TRAIN_MINUTES}
    hold = TrainingHold(tmp_path / "held")
    log = run / "results/iter1/logs/train.log"

    def time_limit(since, running):
        cut_by_its_time_limit(slurm_cluster, hold, log, since, running)

    jobs, watcher = retrain(run, slurm_cluster, settings, hold, meanwhile=time_limit)
    assert [j["JobState"] for j in jobs] == ["TIMEOUT", "COMPLETED"], jobs
    for job in jobs:
        assert (job["NumNodes"], job["NumTasks"], job["gpus"]) == ("2", "2", "2"), job
        assert job["NodeList"] == "sppo-n[1-2]" and job["BatchHost"] == "sppo-n1", job
    assert set(watcher.node_gpus.values()) == {"sppo-n[1-2]:0"}  # GPU 0 of each node
    log = log.read_text()
    resumed = set()
    for rank, node in enumerate(slurm_cluster.nodes):
        assert re.search(
            rf"^{rank}: .* node {rank} of 2 \({node}\): 1 process\(es\) here, 2 in all", log, re.M
        )
        found = re.search(rf"^{rank}: .*resuming from \S+/checkpoints/(checkpoint-2)$", log, re.M)
        assert found, log[-3000:]
        resumed.add(found.group(1))
    assert len(resumed) == 1  # both nodes from the same checkpoint
    record = json.loads((run / "results/iter1/model/sppo_training.json").read_text())
    assert record["processes"] == 2 and record["steps"] == 3
    assert_same_weights(run / "results/iter1/model", one_node / "results/iter1/model")


def docs_slurm_commands() -> list[str]:
    """The first bash block of the SLURM section of docs/clusters.md: the commands a user types."""
    page = (ROOT / "docs" / "clusters.md").read_text()
    section = page[page.index("## SLURM") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.strip().splitlines() if line.strip()]


def test_the_docs_slurm_section_plans_on_the_profile(tmp_path):
    """The SLURM section's commands as they are, from a checkout's root, planned (-n): the profile
    and config/cluster_check.yaml load, and the plan is the docs' 11 model jobs (7 submissions
    with the profile's job arrays) and 16 local ones. The full run of these commands takes 5
    minutes here; docs/results.md gives its output."""
    commands = docs_slurm_commands()
    profile, config = "workflow/profiles/slurm", "config/cluster_check.yaml"
    assert commands == [
        "pip install snakemake-executor-plugin-slurm==2.8.0",
        f"snakemake --workflow-profile {profile} --configfile {config}",
    ]
    for name in ("workflow", "config", "scripts", "src"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    planned = subprocess.run(
        ["bash", "-c", commands[1] + " -n"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert planned.returncode == 0, (planned.stdout + planned.stderr)[-4000:]
    rules = re.findall(r"^(?:local)?rule (\w+):", planned.stdout + planned.stderr, re.M)
    local = {"fetch_model", "prompt_pool", "round_prompts", "gather_samples", "gather_preferences",
             "gather_eval_responses", "aggregate", "export_alpaca_eval", "round_figures",
             "report_figures", "summary", "duckdb_views", "throughput_table", "all"}  # fmt: skip
    submitted = [rule for rule in rules if rule not in local]
    assert len(rules) == 28 and len(submitted) == 11
    assert sorted(set(submitted)) == sorted(MODEL_RULES)
    assert "Job stats" in planned.stdout + planned.stderr
    results = (ROOT / "docs" / "results.md").read_text()
    for figure in ("28 of 28 steps", "the 11 model\njobs went to SLURM as 7 submissions"):
        assert figure in results, figure
    page = (ROOT / "docs" / "clusters.md").read_text()
    assert "11 model jobs" in page and "as 7 submissions" in page and "16 local rules" in page


def test_a_job_on_a_failed_node_is_retried_on_another_which_the_run_keeps_to(
    slurm_run, slurm_cluster, tmp_path
):
    """The plugin's failed-node exclusion: a train job running on sppo-n2 when the node dies
    (every process of it killed) ends NODE_FAIL; the plugin reads the node from sacct and
    resubmits the job with --exclude=sppo-n2, and the retry trains round 1 on sppo-n1 to the
    weights of the first run. sppo-n1 is taken by another job until the node has failed, so
    that the first attempt lands on sppo-n2, which fails while the job is held in step 2."""
    if len(slurm_cluster.nodes) < 2 or slurm_cluster.no_accounting_why:
        pytest.skip(f"needs 2 nodes and sacct: {slurm_cluster.one_node_why} "
                    f"{slurm_cluster.no_accounting_why}")  # fmt: skip
    first, second = slurm_cluster.nodes
    run = copy_run(slurm_run[0], tmp_path)
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-w", first, "--exclusive", "-o", "/dev/null", "--wrap",
         "sleep 900"], capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    hold = TrainingHold(tmp_path / "held")
    failed = []

    def fail_its_node(since, running):
        """Once the train job is held in its step 2 (on the second node: the first is
        taken), its node fails; the blocker goes once it has."""
        try:
            hold.wait_held(running.is_alive)
            [job] = jobs_by_rule(slurm_cluster, since)["train"]
            assert (job["JobState"], job["NodeList"]) == ("RUNNING", second), job
            slurm_cluster.fail_node(second)
            failed.append(second)
        finally:
            subprocess.run(["scancel", blocker], check=False)

    try:
        jobs, _ = retrain(run, slurm_cluster, {"gpu": 1}, hold, meanwhile=fail_its_node)
    finally:
        if failed:
            slurm_cluster.revive_node(second)
    assert [(j["JobState"], j["NodeList"]) for j in jobs] == [
        ("NODE_FAIL", second),
        ("COMPLETED", first),
    ], jobs
    assert jobs[1]["ExcNodeList"] == second
    # trained again from the start
    assert_same_weights(run / "results/iter1/model", slurm_run[0] / "results/iter1/model")


def test_a_run_from_a_folder_the_plugin_cannot_quote_stops_before_submitting(
    slurm_cluster, tmp_path, tiny_model_dir
):
    """The SLURM executor plugin puts paths into sbatch's --wrap="..." unescaped: from a folder
    whose name has $(...) and backticks it would run them on this host (seen with its 2.8;
    with a quote in the name, its job arrays fail to submit). The run stops before any job,
    with one line naming the path; nothing is submitted, nothing in the name runs."""
    clone = odd_clone(tmp_path, tiny_model_dir)
    since = last_job_id(slurm_cluster)
    run = snakemake(
        clone, "--configfile", "tiny.yaml", *slurm_args(), env=slurm_cluster.env(),
        snakefile=clone / "workflow" / "Snakefile",
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert "the SLURM executor plugin cannot submit a job with the path" in output, output[-3000:]
    assert last_job_id(slurm_cluster) == since
    assert not (clone / "results").exists()
    nothing_ran(clone)
