"""Train jobs on the tests' SLURM cluster beyond one GPU and one node: two GPUs on one node,
two nodes resuming after their time limit, a node that fails under a running job, and the
plugin's efficiency report from the cluster's accounting. Each trains round 1 of the tiny
run on SLURM (the session's slurm_run) again, in a copy of its folder."""

import json
import re
import subprocess

import pandas as pd
import pytest

from helpers import assert_same_weights, weights
from slurm_runs import TRAIN_MINUTES, copy_run, cut_by_its_time_limit, jobs_by_rule, retrain
from training_hold import TrainingHold


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
