"""sppoflow.atomic: what reaches the disk, and in which order, so that a node that loses power
leaves a file or folder whole or absent (tests/test_crash_recovery.py kills real saves)."""

import logging
import os
from pathlib import Path

import pytest

from sppoflow import atomic


@pytest.fixture
def disk_calls(monkeypatch):
    """The flushes and renames the code makes, in order: ("fsync", path) / ("rename", src)."""
    calls = []
    fsync, replace, rename = os.fsync, os.replace, os.rename

    def recorded_fsync(descriptor):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def recorded_replace(source, target):
        calls.append(("rename", str(source)))
        replace(source, target)

    def recorded_rename(source, target):
        calls.append(("rename", str(source)))
        rename(source, target)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    monkeypatch.setattr(os, "rename", recorded_rename)
    return calls


def test_a_file_is_flushed_before_it_is_renamed_into_place_and_its_folder_after(
    tmp_path, disk_calls
):
    atomic.write_text_atomically(tmp_path / "a.json", "{}")
    partial = str(tmp_path / "a.json.partial")
    assert disk_calls == [("fsync", partial), ("rename", partial), ("fsync", str(tmp_path))]
    assert (tmp_path / "a.json").read_text() == "{}"
    assert not (tmp_path / "a.json.partial").exists()


def test_every_file_of_a_folder_is_flushed_before_the_folder_is_put_in_place(tmp_path, disk_calls):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with atomic.folder_written_whole(target) as partial:
        (partial / "sub").mkdir()
        for name in ("model.safetensors", "config.json", "sub/x.pt"):
            (partial / name).write_text(name)
    put_in_place = disk_calls.index(("rename", str(tmp_path / "model.partial")))
    flushed = {Path(path).relative_to(tmp_path) for kind, path in disk_calls[:put_in_place]
               if kind == "fsync"}  # fmt: skip
    assert flushed >= {Path("model.partial/model.safetensors"), Path("model.partial/config.json"),
                       Path("model.partial/sub/x.pt"), Path("model.partial/sub"),
                       Path("model.partial")}  # fmt: skip
    # the old folder went aside first (whole), and is gone
    assert disk_calls.index(("rename", str(target))) < put_in_place
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "sub"]
    assert not list(tmp_path.glob(".*removing")) and not (tmp_path / "model.partial").exists()


def test_a_folder_is_renamed_aside_before_it_is_deleted_and_a_cut_removal_is_finished(
    tmp_path, monkeypatch, caplog
):
    state = tmp_path / "train_state"
    (state / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (state / "fingerprint.txt").write_text("run")
    seen = []

    def killed_while_deleting(path, *args, **kwargs):
        seen.append((Path(path).name, state.exists()))
        raise KeyboardInterrupt  # the removal stops here, as a kill would stop it

    monkeypatch.setattr(atomic.shutil, "rmtree", killed_while_deleting)
    with pytest.raises(KeyboardInterrupt):
        atomic.remove_tree(state)
    assert seen == [(".train_state.removing", False)]  # never half-deleted under its name
    monkeypatch.undo()
    with caplog.at_level(logging.INFO):
        assert atomic.finish_removals(tmp_path) == [state]
    assert f"finishing the removal of {state}, cut short by an earlier job" in caplog.text
    assert list(tmp_path.iterdir()) == []
