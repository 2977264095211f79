"""Folders that outlive an interrupted job (training checkpoints, judged chunks) and are reused
only by a rerun with the same inputs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def keep_for_run(folder: Path, run_id: str, marker: str) -> Path:
    """``folder`` as an earlier attempt of run ``run_id`` left it, or emptied if it belongs to
    another run (its ``marker`` file holds the id of the run that wrote it)."""
    stamp = folder / marker
    if folder.exists() and (not stamp.is_file() or stamp.read_text() != run_id):
        log.info("clearing %s: it belongs to a run with other inputs", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(run_id)
    return folder
