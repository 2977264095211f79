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

import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pandas as pd

from helpers import BIN, ROOT, assert_same_weights, output_hashes, snakemake
from odd_folder import nothing_ran, odd_clone
from slurm_runs import MODEL_RULES, TRAIN_MINUTES, copy_run, jobs_by_rule, last_job_id, slurm_args


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
