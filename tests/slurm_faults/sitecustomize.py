"""Faults injected into the workflow's jobs by the SLURM tests (on PYTHONPATH, so that every
Python process of a job loads it; it acts only in the processes named below).

SPPO_FAULT_FAIL_FIRST=<file>: the first score.py process (whichever creates <file>) exits
    with status 1 before doing anything, as a job on a failing node would.
SPPO_FAULT_SLOW_FIRST_TRAINING=<file>:<seconds>: the first train.py process sleeps that long
    in each training step, so that a short time limit ends it in the middle of training.
SPPO_FAULT_SLOW_TRAINING=<seconds>: every train.py process does (all ranks of a launch).
"""

import importlib.abc
import importlib.util
import os
import sys
import time


def _first(marker: str) -> bool:
    """True in the one process that creates ``marker``."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _script() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv else ""


class _SlowTraining(importlib.abc.MetaPathFinder):
    """Patches sppoflow.training.trainer once it is imported: each training step sleeps
    first."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def find_spec(self, name, path, target=None):
        if name != "sppoflow.training.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            step = module.SPPOTrainer.training_step

            def slow_step(trainer, *args, **kwargs):
                time.sleep(self.seconds)
                return step(trainer, *args, **kwargs)

            module.SPPOTrainer.training_step = slow_step
            print(f"fault injected: {self.seconds} s per training step", file=sys.stderr)

        spec.loader.exec_module = exec_module
        return spec


failing = os.environ.get("SPPO_FAULT_FAIL_FIRST")
if _script() == "score.py" and failing and _first(failing):
    print("fault injected: this score job fails on its first attempt", file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)

if _script() == "train.py" and os.environ.get("SPPO_FAULT_SLOW_FIRST_TRAINING"):
    marker, seconds = os.environ["SPPO_FAULT_SLOW_FIRST_TRAINING"].rsplit(":", 1)
    if _first(marker):
        sys.meta_path.insert(0, _SlowTraining(float(seconds)))
elif _script() == "train.py" and os.environ.get("SPPO_FAULT_SLOW_TRAINING"):
    sys.meta_path.insert(0, _SlowTraining(float(os.environ["SPPO_FAULT_SLOW_TRAINING"])))
