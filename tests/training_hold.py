"""Hold a training run in a known step while a test acts on it, then release it: the events a
test waits for instead of racing a clock (the fault itself is in tests/slurm_faults)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

FAULTS = Path(__file__).parent / "slurm_faults"
# How long a wait for an event may take before the test gives up: only a run that is broken
# (it will never get there) waits this long; a slow machine waits as long as it needs.
NEVER = 1800.0


def wait_until(happened: Callable[[], bool], running: Callable[[], bool], what: str) -> None:
    """Return once ``happened()``; fail at once, naming ``what``, if the run stops first."""
    deadline = time.monotonic() + NEVER
    while not happened():
        if not running():
            if happened():
                return
            raise AssertionError(f"the run ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {NEVER:.0f} s")
        time.sleep(0.2)


def wait_for_line(log: Path, text: str, running: Callable[[], bool]) -> None:
    """Return once ``log`` holds a line with ``text``."""
    wait_until(
        lambda: log.is_file() and text in log.read_text(errors="replace"),
        running,
        f"{log.name} said '{text}'",
    )


class TrainingHold:
    """The first train.py process started with :meth:`env` holds training at the start of
    step ``step`` until :meth:`release`."""

    def __init__(self, folder: Path, step: int = 2) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.step = step

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(FAULTS), "SPPO_FAULT_HOLD_TRAINING": f"{self.folder}:{self.step}"}

    def wait_held(self, running: Callable[[], bool]) -> None:
        wait_until((self.folder / "held").exists, running, f"training was held at step {self.step}")

    def release(self) -> None:
        (self.folder / "release").touch()
