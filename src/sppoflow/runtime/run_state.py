"""Folders that outlive an interrupted job (training checkpoints, judged chunks) and are reused
only by a rerun with the same inputs."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from sppoflow.atomic import finish_removals, remove_tree, write_text_atomically

log = logging.getLogger(__name__)


def keep_for_run(folder: Path, run_id: str, marker: str) -> Path:
    """``folder`` as an earlier attempt of run ``run_id`` left it, or emptied if it belongs to
    another run (its ``marker`` file holds the id of the run that wrote it). A removal of it
    that a killed job cut short is finished first."""
    finish_removals(folder.parent, glob.escape(folder.name))
    stamp = folder / marker
    if folder.exists() and not stamp.is_file():
        log.info("clearing %s: it does not say which run wrote it", folder)
        remove_tree(folder)
    elif folder.exists() and stamp.read_text() != run_id:
        log.info("clearing %s: it belongs to a run with other inputs", folder)
        remove_tree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        write_text_atomically(stamp, run_id)
    return folder
