"""Files and folders that are whole or absent, whatever instant a job is killed at.

A file or folder is written under a partial name beside its target, its data flushed to
disk, and only then renamed into place (a rename within one folder is atomic): a job killed
while writing leaves the partial name, never a target that looks finished, and a node that
crashes cannot leave a renamed file whose data never reached the disk. A folder is removed by
renaming it to a name that marks it for removal first: a removal cut short never leaves a
half-deleted folder under its real name, and the next run finishes it
(:func:`finish_removals`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PARTIAL = ".partial"
REMOVING = ".removing"


def partial_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place."""
    return path.with_name(path.name + PARTIAL)


def removing_name(path: Path) -> Path:
    """What ``path`` is renamed to while it is being removed (hidden, in the same folder)."""
    return path.with_name(f".{path.name}{REMOVING}")


def fsync_path(path: Path) -> None:
    """Flush ``path``'s data (a folder's: its entries) from the page cache to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then the folders' entries, deepest first."""
    folders = []
    for root, _, files in os.walk(folder):
        folders.append(Path(root))
        for name in files:
            fsync_path(Path(root) / name)
    for each in reversed(folders):
        fsync_path(each)


def write_atomically(path: Path | str, write: Callable[[Path], object]) -> None:
    """``write(partial)``, then flush the partial file and rename it to ``path``; on any
    failure the partial file is removed and ``path`` is left as it was."""
    path = Path(path)
    partial = partial_name(path)
    try:
        write(partial)
        fsync_path(partial)
        os.replace(partial, path)
        fsync_path(path.parent)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomically(path: Path | str, text: str) -> None:
    """A text file written whole or not at all (see :func:`write_atomically`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda partial: partial.write_text(text))


def copy_atomically(source: Path | str, target: Path | str) -> None:
    """``source``'s bytes as ``target``, whole or not at all."""
    write_atomically(target, lambda partial: shutil.copyfile(source, partial))


def remove_tree(path: Path | str) -> None:
    """Remove the folder ``path`` (nothing if absent): renamed aside first, so that a removal
    cut short leaves no half-deleted folder under its name (the next removal, or
    :func:`finish_removals`, deletes what is left)."""
    path = Path(path)
    aside = removing_name(path)
    if aside.exists():
        shutil.rmtree(aside)
    if not path.exists():
        return
    os.rename(path, aside)
    shutil.rmtree(aside)


def finish_removals(folder: Path | str, name: str = "*") -> list[Path]:
    """Delete what removals cut short (by a killed job) left in ``folder``, of the entries
    whose name matches the glob ``name`` (``glob.escape`` a plain name); returns the entries
    they were removing."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    finished = []
    for aside in sorted(folder.glob(f".{name}{REMOVING}")):
        original = folder / aside.name[1 : -len(REMOVING)]
        log.info("finishing the removal of %s, cut short by an earlier job", original)
        if aside.is_dir():
            shutil.rmtree(aside)
        else:
            aside.unlink()
        finished.append(original)
    return finished


def replace_folder(written: Path, target: Path) -> None:
    """Put the whole folder ``written`` in ``target``'s place (an older ``target`` is
    removed): its files are flushed first, so ``target`` is never a folder whose data is
    still on its way to the disk."""
    sync_tree(written)
    aside = removing_name(target)
    if aside.exists():
        shutil.rmtree(aside)
    if target.exists():
        os.rename(target, aside)
    os.replace(written, target)
    fsync_path(target.parent)
    if aside.exists():
        shutil.rmtree(aside)


@contextmanager
def folder_written_whole(out_dir: Path | str) -> Iterator[Path]:
    """A folder to write into, put in ``out_dir``'s place only when the block ends without an
    error: an interrupted save leaves no folder that looks finished."""
    out_dir = Path(out_dir)
    partial = partial_name(out_dir)
    if partial.exists():  # left by a job killed while writing it: never trusted
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_folder(partial, out_dir)
