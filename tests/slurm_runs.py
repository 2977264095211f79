"""Running the tiny workflow on the tests' SLURM cluster (tests/slurm_cluster.py) through
workflow/profiles/slurm: the plugin's arguments, a train job held in step 2 until the test has
cut its time limit or failed its node (tests/training_hold.py), and SLURM's records of the
jobs."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections import defaultdict
from pathlib import Path

import yaml

from helpers import ROOT, snakemake
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


def round_one_on_slurm(slurm_cluster, folder: Path):
    """Round 1 of the tiny workflow through the SLURM profile, in 2 shards per stage, with
    its train job ended by its time limit in step 2 and the first score job failing, from a
    folder whose name has spaces and parentheses (which the plugin passes): the tiny workflow's
    copy in ``folder``. Returns the folder, Snakemake's output, SLURM's records of the jobs by
    rule and the watcher that saw their GPUs."""
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


def copy_run(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(folder, target, symlinks=True)
    return target


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
