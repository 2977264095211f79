"""Kill a training round at every step of its saves, then run it again, as a rerun after a
crash would: the rerun must go on from what the kill left (or discard it, saying so) and end
with the weights of a round that was never killed, bit for bit.

    python tests/kill_points.py PLAN.json RESULTS.json

PLAN (JSON): ``script`` (scripts/train.py), ``args`` (its flags but --out, --log and
--state-dir), ``folder`` (where the runs go), ``first_kill_step`` (kill points start at the
checkpoint save of this step; the events before the first step are kill points too).

The round runs in processes forked from this one, which imports torch and transformers but
computes nothing, so a run costs its training only. A straight run records every file-system
event under its folder: a file opened for writing, written by torch.save, safetensors or the
tokenizer, a rename, a removal (a folder's removal is one event), a folder made. Then each
chosen event is a kill point: a process trains until it and is killed there with SIGKILL,
before the event or, for a file write, halfway through it (the file holds part of its bytes);
another process runs the round again, after removing the round's declared outputs as
Snakemake does before it reruns an incomplete job. SIGKILL runs no handler, no ``finally``
and no ``except``, and leaves what the page cache holds: what a killed job leaves. (What a
node that loses power leaves also depends on what was flushed to disk first; the order of
the flushes is tested apart, in tests/test_atomic.py.) One process trains; the barriers of a
save over several processes are exercised by tests/test_distributed_training.py.

RESULTS (JSON): the recorded events, the files the round left that no recorded event wrote
(there should be none: a writer the kill points cannot see), and per kill point the rerun's
exit status, what it said about what it found, whether its weights and step log equal the
straight run's, and what it left behind besides its outputs.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import transformers.modeling_utils  # noqa: E402
from transformers.tokenization_utils_tokenizers import TokenizersBackend  # noqa: E402

import sppoflow.train.round  # noqa: E402, F401  (imported before the fork, not in each run)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# what the rerun says about what it found
SAID = re.compile(r"(resuming from|discarding|ignoring|finishing the removal|dropping|clearing)")


class KillPoints:
    """Counts the file-system events of a run under ``folder``; records them, and kills the
    process at event number ``kill_at`` (before it, or halfway through a write if
    ``torn``)."""

    def __init__(self, folder: Path, record: Path, kill_at: int | None, torn: bool) -> None:
        self.folder = str(folder)
        self.record = record
        self.kill_at = kill_at
        self.torn = torn
        self.count = 0
        self.quiet = 0  # inside a removal, which counts as one event

    def inside(self, path) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return None
        path = os.path.abspath(os.fspath(path))
        if path == self.folder or path.startswith(self.folder + os.sep):
            return os.path.relpath(path, self.folder)
        return None

    def event(self, kind: str, path, tear=None) -> None:
        """Event ``kind`` on ``path`` is about to happen; ``tear()`` leaves it half done."""
        name = self.inside(path)
        if name is None or self.quiet:
            return
        if (kind == "mkdir" and os.path.exists(path)) or (
            kind == "remove" and not os.path.lexists(path)
        ):
            return  # changes nothing on disk
        self.count += 1
        with self.record.open("a") as handle:
            handle.write(json.dumps({"n": self.count, "kind": kind, "path": name}) + "\n")
        if self.count == self.kill_at:
            self.quiet += 1  # what tearing writes is not an event of the run
            if self.torn and tear is not None:
                tear()
            os.kill(os.getpid(), signal.SIGKILL)

    def audit(self, name: str, args: tuple) -> None:
        if name == "open" and len(args) == 3 and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if mode else bool(flags & WRITE_FLAGS)
            if writes:
                appending = bool(mode and "a" in mode)
                self.event("append" if appending else "write", path, tear_open(path, appending))
        elif name == "os.rename":
            self.event("rename", _resolved(args[0], args[2]))
        elif name in ("os.remove", "os.rmdir"):
            self.event("remove", _resolved(args[0], args[1]))
        elif name == "os.mkdir":
            self.event("mkdir", _resolved(args[0], args[2]))
        elif name == "shutil.copyfile":
            self.event("copy", args[1], lambda: _write_half(args[1], Path(args[0]).read_bytes()))

    def install(self) -> None:
        sys.addaudithook(self.audit)
        points = self

        save, save_file = torch.save, safetensors.torch.save_file

        def torch_save(obj, f, *args, **kwargs):
            def tear():
                buffer = io.BytesIO()
                save(obj, buffer, *args, **kwargs)
                _write_half(f, buffer.getvalue())

            points.event("torch.save", f, tear)
            return save(obj, f, *args, **kwargs)

        def safetensors_save(tensors, filename, metadata=None, *args, **kwargs):
            def tear():
                _write_half(filename, safetensors.torch.save(tensors, metadata=metadata))

            points.event("safetensors", filename, tear)
            return save_file(tensors, filename, metadata, *args, **kwargs)

        tokenizer_save = TokenizersBackend._save_pretrained

        def save_tokenizer(tokenizer, save_directory, *args, **kwargs):
            target = Path(save_directory) / "tokenizer.json"

            def tear():
                tokenizer.backend_tokenizer.save(str(target))
                _write_half(target, target.read_bytes())

            points.event("tokenizer", target, tear)
            return tokenizer_save(tokenizer, save_directory, *args, **kwargs)

        rmtree = shutil.rmtree

        def remove_folder(path, *args, **kwargs):
            def tear():  # half of its files gone
                files = sorted(p for p in Path(path).rglob("*") if p.is_file())
                for file in files[: len(files) // 2 + 1]:
                    file.unlink()

            points.event("remove folder", path, tear)
            points.quiet += 1
            try:
                return rmtree(path, *args, **kwargs)
            finally:
                points.quiet -= 1

        torch.save = torch_save
        safetensors.torch.save_file = safetensors_save
        transformers.modeling_utils.safe_save_file = safetensors_save
        TokenizersBackend._save_pretrained = save_tokenizer
        shutil.rmtree = remove_folder


def _resolved(path, dir_fd) -> str:
    if dir_fd is None or os.path.isabs(os.fsdecode(path)):
        return os.fsdecode(path)
    return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), os.fsdecode(path))


def _write_half(path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def tear_open(path, appending: bool):
    """What a write cut short leaves: part of a row appended, or a file holding a few bytes
    (its real content is not known when it is opened)."""

    def tear():
        with open(path, "a" if appending else "w") as handle:
            handle.write("7,0.5" if appending else '{"cut short')

    return tear


def run_round(plan: dict, run: Path, record: Path, kill_at=None, torn=False) -> int:
    """The round in a forked process, its log in ``run``/<record name>.log; its exit status
    (negative: the signal that ended it)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            log = os.open(record.with_suffix(".log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(log, 2)
            KillPoints(run, record, kill_at, torn).install()
            sys.argv = [plan["script"], *plan["args"], *outputs(run)]
            import train  # scripts/train.py
            from sppoflow.cli import run_stage

            run_stage(train.main, train.build_parser())
            status = 0
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            logging.exception("the round failed")
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def outputs(run: Path) -> list[str]:
    return ["--out", str(run / "model"), "--log", str(run / "train_log.csv"),
            "--state-dir", str(run / "train_state")]  # fmt: skip


def events(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def unseen_files(run: Path, seen: list[dict]) -> list[str]:
    """Files of the straight run's model, or of a checkpoint it wrote, that no recorded
    event wrote (each checkpoint is written under the staging folder, the model under
    model.partial)."""
    written = {
        e["path"].replace("model.partial/", "model/").replace(".staging/", "")
        for e in seen
        if e["kind"] in ("write", "append", "torch.save", "safetensors", "tokenizer", "copy")
    }
    present = [str(p.relative_to(run)) for p in (run / "model").rglob("*") if p.is_file()]
    for e in seen:  # each checkpoint, as it was put in place
        match = re.match(r"train_state/checkpoints/\.staging/(checkpoint-\d+)$", e["path"])
        if e["kind"] == "rename" and match:
            present += [p for p in written if p.startswith(f"train_state/checkpoints/{match[1]}/")]
    return sorted(p for p in present if p not in written)


def left_behind(run: Path) -> list[str]:
    """What a finished round left in its folder besides its outputs."""
    expected = {"model", "train_log.csv", "tracking", ".train_state.lock"}
    return sorted(p.name for p in run.iterdir() if p.name not in expected)


def compare(run: Path, straight: Path) -> dict:
    from safetensors.torch import load_file

    if not (run / "model" / "model.safetensors").is_file():
        return {"same_weights": False, "largest_difference": None, "same_log": False}
    ours, theirs = (
        load_file(run / "model/model.safetensors"),
        load_file(straight / "model/model.safetensors"),
    )
    largest = max((ours[k].double() - theirs[k].double()).abs().max().item() for k in theirs)
    same = ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    same_log = (run / "train_log.csv").read_text() == (straight / "train_log.csv").read_text()
    return {"same_weights": same, "largest_difference": largest, "same_log": same_log}


def remove_outputs(run: Path) -> None:
    """What Snakemake does before it reruns an incomplete train job: its outputs go."""
    shutil.rmtree(run / "model", ignore_errors=True)
    (run / "train_log.csv").unlink(missing_ok=True)


def main(plan_path: str, results_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    folder = Path(plan["folder"])
    straight = folder / "straight"
    straight.mkdir(parents=True)
    record = folder / "straight.jsonl"
    assert run_round(plan, straight, record) == 0, (folder / "straight.log").read_text()[-3000:]
    seen = events(record)
    # the events before the first step's end, and those from the end of the step whose
    # checkpoint is the first to kill in (its step log row, its save) to the end of the round
    step = plan["first_kill_step"]
    first_save = next(e["n"] for e in seen if re.search(rf"checkpoint-{step}(/|$)", e["path"]))
    appends = [e["n"] for e in seen if e["path"] == "train_state/train_log.csv"]
    from_step = max(n for n in appends if n < first_save)
    chosen = [e for e in seen if e["n"] < appends[0] or e["n"] >= from_step]
    results = {"events": seen, "unseen": unseen_files(straight, seen), "kills": []}
    for event in chosen:
        tears = event["kind"] not in ("rename", "remove", "mkdir")
        for torn in (False, True) if tears else (False,):
            name = f"kill-{event['n']}-{'torn' if torn else 'before'}"
            run = folder / name
            run.mkdir()
            killed = run_round(plan, run, folder / f"{name}.jsonl", event["n"], torn)
            remove_outputs(run)
            rerun_record = folder / f"{name}-rerun.jsonl"
            status = run_round(plan, run, rerun_record)
            said = [
                line.split(": ", 1)[-1]
                for line in rerun_record.with_suffix(".log").read_text().splitlines()
                if SAID.search(line)
            ]
            results["kills"].append({
                "event": event, "torn": torn, "killed": killed, "rerun": status, "said": said,
                **compare(run, straight), "left": left_behind(run),
            })  # fmt: skip
            shutil.rmtree(run)
    Path(results_path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
