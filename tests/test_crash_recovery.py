"""Recovery from a crash at any instant: a training round killed with SIGKILL at every step
of a checkpoint save and of publishing its model, then run again as Snakemake reruns an
incomplete job, ends with the weights of a round that was never killed, bit for bit
(tests/kill_points.py kills and reruns it)."""

import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest

from helpers import ROOT, assert_same_weights
from training_data import TRAIN_FLAGS, write_round_tables

STEPS = 3  # 6 prompts, 2 a step, a checkpoint every step: the third save removes the first


@pytest.fixture(scope="module")
def kill_point_runs(tmp_path_factory, tiny_model_dir, embedded_tokenizer):
    folder = tmp_path_factory.mktemp("kill-points")
    tables = write_round_tables(folder, embedded_tokenizer)
    plan = {
        "script": str(ROOT / "scripts" / "train.py"),
        "args": [
            "--model", str(tiny_model_dir), "--samples", str(tables["samples"]),
            "--pairs-table", str(tables["pairs"]), "--win-rates", str(tables["win_rates"]),
            "--batch-size", "2", "--epochs", "1", "--checkpoint-steps", "1",
            "--report-to", "none", *TRAIN_FLAGS,
        ],
        "folder": str(folder / "runs"),
        "first_kill_step": STEPS,
    }  # fmt: skip
    (folder / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kill_points.py"), str(folder / "plan.json"),
         str(folder / "results.json")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((folder / "results.json").read_text())


def test_the_kill_points_see_every_file_the_round_writes(kill_point_runs):
    assert kill_point_runs["unseen"] == []
    kinds = {kill["event"]["kind"] for kill in kill_point_runs["kills"]}
    assert kinds >= {"mkdir", "write", "append", "torch.save", "safetensors", "tokenizer",
                     "rename", "remove folder", "copy"}  # fmt: skip


def test_a_rerun_after_a_kill_at_any_step_ends_as_a_round_never_killed(kill_point_runs):
    kills = kill_point_runs["kills"]
    assert len(kills) > 40
    for kill in kills:
        assert kill["killed"] == -signal.SIGKILL, kill
        assert kill["rerun"] == 0, kill
        assert kill["same_weights"] and kill["largest_difference"] == 0.0, kill
        assert kill["same_log"], kill
        assert kill["left"] == [], kill


def test_after_snakemake_itself_is_killed_unlock_and_the_same_command_finish_the_run(
    interrupted_odd_run, tiny_run
):
    """Snakemake killed with SIGKILL while round 1 trains (a checkpoint saved after step 1,
    step 2 under way), its train job left running: the same command is refused (the folder is
    locked); after `snakemake --unlock` the same command's train job stops with one line while
    the old job still trains the round; once that is ended, the same command re-runs the train
    job, which resumes from its checkpoint, and finishes the run. The trained weights are
    those of a run never killed, bit for bit."""
    run = interrupted_odd_run
    assert run["locked_code"] != 0 and "LockException" in run["locked"], run["locked"][-3000:]
    assert run["unlock_code"] == 0, run["unlock"][-3000:]
    assert run["orphan_trains_code"] != 0
    said = [line for line in run["orphan_train_log"].splitlines() if line.startswith("error:")]
    assert len(said) == 1 and re.fullmatch(
        r"error: \S+/train_state is being trained by process \d+ on \S+: a job of an earlier run"
        r" may still be running .*; cancel it, then run this again",
        said[0],
    ), run["orphan_train_log"][-3000:]
    assert run["rerun_code"] == 0, run["rerun"][-5000:]
    log = (run["clone"] / "results/iter1/logs/train.log").read_text()
    assert re.search(r"resuming from \S+/train_state/checkpoints/checkpoint-1$", log, re.M), log
    assert_same_weights(run["clone"] / "results/iter1/model", tiny_run[0] / "results/iter1/model")
    for name in ("samples.parquet", "preferences.parquet", "pairs.parquet"):
        ours, theirs = run["clone"] / "results/iter1" / name, tiny_run[0] / "results/iter1" / name
        pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(theirs))


def state_at(events: list[dict], n: int) -> tuple[int | None, int | None, bool]:
    """What a kill at event ``n`` left: the newest checkpoint in place, the one being staged,
    and whether the state folder had been moved aside for removal."""
    newest = staged = None
    gone = False
    for event in events[: n - 1]:
        found = re.fullmatch(r"train_state/checkpoints/\.staging/checkpoint-(\d+)", event["path"])
        if found and event["kind"] == "mkdir":
            staged = int(found[1])
        elif found and event["kind"] == "rename":
            newest, staged = int(found[1]), None
        gone |= event["kind"] == "rename" and event["path"] == "train_state"
    return newest, staged, gone


def test_the_rerun_says_what_it_found_and_goes_on_from_the_newest_whole_checkpoint(
    kill_point_runs,
):
    """One line for each thing a kill left: a checkpoint whose save was cut short is discarded,
    the rerun resumes from the newest checkpoint in place, a removal cut short is finished."""
    events = kill_point_runs["events"]
    for kill in kill_point_runs["kills"]:
        newest, staged, gone = state_at(events, kill["event"]["n"])
        said = " | ".join(kill["said"])
        resumed = re.findall(r"resuming from \S+/checkpoint-(\d+)", said)
        if gone:
            assert "finishing the removal of" in said and not resumed, kill
        else:
            assert resumed == ([str(newest)] if newest else []), kill
        discarded = re.findall(
            r"discarding checkpoint-(\d+): the job was killed while saving", said
        )
        assert discarded == ([str(staged)] if staged else []), kill
