"""A copy of the project in a folder whose name is no command, and a run of the tiny workflow
there whose Snakemake is killed in the middle of training (tests/test_folder_names.py,
tests/test_crash_recovery.py)."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import yaml

from helpers import BIN, ROOT, TEST_DIR
from training_hold import TrainingHold

# Each command in the name would leave a file named after it in the folder it ran in.
ODD = 'my runs (v2) it\'s $(touch pwned-dollar) `touch pwned-backtick` "x"'
PROJECT = ("workflow", "scripts", "src", "config", "envs")


def odd_clone(folder: Path, tiny_model_dir: Path) -> Path:
    """The project under ``folder``/ODD, with the tiny config (one round) in tiny.yaml, whose
    prompt file and model sit in oddly named folders as well."""
    clone = folder / ODD / "sppo"
    for name in PROJECT:
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    data, models = clone / f"data {ODD}", clone / f"models {ODD}"
    shutil.copytree(TEST_DIR / "data", data)
    models.mkdir()
    (models / "tiny-llama").symlink_to(tiny_model_dir)
    config = yaml.safe_load((TEST_DIR / "config" / "config.yaml").read_text())
    config.update(rounds=1)
    config["prompts"]["source"] = f"{data.name}/prompts.jsonl"
    config["policy"]["model"] = f"{models.name}/tiny-llama"
    (clone / "tiny.yaml").write_text(yaml.safe_dump(config))
    return clone


def shell_lines(output: str) -> list[str]:
    """The shell lines Snakemake printed (--printshellcmds)."""
    prefix = "Shell command: "
    return [line[len(prefix) :] for line in output.splitlines() if line.startswith(prefix)]


def unquoted_commands(line: str) -> list[int]:
    """Where ``line`` has a ``$(`` or a backtick that bash would run: outside single quotes
    and not escaped (bash's quoting rules, as far as a shell line of a rule uses them)."""
    found, state, i = [], "plain", 0
    while i < len(line):
        char = line[i]
        if state == "single":
            state = "plain" if char == "'" else "single"
        elif char == "\\":
            i += 1  # the next character is taken as it is
        elif char == "'" and state == "plain":
            state = "single"
        elif char == '"':
            state = "double" if state == "plain" else "plain"
        elif char == "`" or line.startswith("$(", i):
            found.append(i)
        i += 1
    return found


def assert_quoted(output: str) -> int:
    """In every printed shell line, nothing of the odd name would run (its $(...) and
    backticks are in single quotes), and each path with it is one shell word. Returns how
    many lines name such a path."""
    naming = [line for line in shell_lines(output) if "my runs (v2)" in line]
    for line in naming:
        assert unquoted_commands(line) == [], line
        words = [w for w in shlex.split(line) if "my runs (v2)" in w]
        assert all(ODD.split('"')[0] in word for word in words), line
    return len(naming)


def nothing_ran(clone: Path) -> None:
    ran = list(clone.parents[1].rglob("pwned-*"))
    assert ran == [], f"part of a folder name was executed: {ran}"


def snakemake_command(clone: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(clone / "workflow" / "Snakefile"), *args]


def kill_tree(pid: int) -> None:
    """SIGKILL to a process and all its descendants at once, as when its machine dies: no
    handler runs anywhere."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def interrupted_run(folder: Path, tiny_model_dir: Path, env: dict[str, str]) -> dict:
    """The tiny workflow run from an odd clone, with a checkpoint every step. Once its train
    job is held in step 2, Snakemake alone is killed with SIGKILL (its train job goes on, an
    orphan, as after a `kill -9` of Snakemake or a lost login node whose cluster jobs run on).
    Then what a user does: the same command (refused: the folder is locked), `snakemake
    --unlock`, the same command (its train job stops: the orphan trains the round), the orphan
    ended (SIGKILL), the same command again. Returns the clone and each command's output."""
    clone = odd_clone(folder, tiny_model_dir)
    config = yaml.safe_load((clone / "tiny.yaml").read_text())
    config["train"]["checkpoint_steps"] = 1
    (clone / "tiny.yaml").write_text(yaml.safe_dump(config))
    command = snakemake_command(clone, "--cores", "2", "--configfile", "tiny.yaml", "-p")
    hold = TrainingHold(folder / "held")
    first_log = folder / "first.log"
    with first_log.open("w") as log:
        first = subprocess.Popen(
            command, cwd=clone, env={**env, **hold.env()}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        hold.wait_held(lambda: first.poll() is None)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    orphan = int((folder / "held" / "held").read_text().split()[0])
    outputs = {"first": first_log.read_text()}
    try:
        for name, args in (("locked", command), ("unlock", [*command, "--unlock"]),
                           ("orphan_trains", command)):  # fmt: skip
            done = subprocess.run(args, cwd=clone, env=env, capture_output=True, text=True)
            outputs[name], outputs[f"{name}_code"] = done.stdout + done.stderr, done.returncode
        outputs["orphan_train_log"] = (clone / "results/iter1/logs/train.log").read_text()
    finally:
        kill_tree(orphan)  # what the user does once told: end the old job
    done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
    outputs["rerun"], outputs["rerun_code"] = done.stdout + done.stderr, done.returncode
    return {"clone": clone, **outputs}
