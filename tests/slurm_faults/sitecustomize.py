"""Faults injected into the workflow's jobs by the tests (on PYTHONPATH, so that every Python
process of a job loads it; it acts only in the processes named below).

SPPO_FAULT_FAIL_FIRST=<file>: the first score.py process (whichever creates <file>) exits
    with status 1 before doing anything, as a job on a failing node would.
SPPO_FAULT_HOLD_TRAINING=<folder>:<step>: the first train.py process (whichever creates
    <folder>/claimed) holds training at the start of optimizer step <step>: it writes
    <folder>/held and waits until <folder>/release exists. A test then acts while the run is
    in a known step (sends a signal, cuts the job's time limit, fails its node) and releases
    it (tests/training_hold.py): no clock is raced, however slow the machine. A hold that no
    test releases (the test died) ends by itself after 30 minutes.
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


class _HeldTraining(importlib.abc.MetaPathFinder):
    """Patches sppoflow.train.trainer once it is imported: the first micro-batch of the
    held step waits for the release."""

    def __init__(self, folder: str, step: int) -> None:
        self.folder = folder
        self.step = step

    def find_spec(self, name, path, target=None):
        if name != "sppoflow.train.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module
        hold = self

        def exec_module(module):
            run_module(module)
            step = module.SPPOTrainer.training_step

            def held_step(trainer, *args, **kwargs):
                if trainer.state.global_step == hold.step - 1:
                    hold.wait(trainer.args.process_index)
                return step(trainer, *args, **kwargs)

            module.SPPOTrainer.training_step = held_step

        spec.loader.exec_module = exec_module
        return spec

    def wait(self, rank: int) -> None:
        release = os.path.join(self.folder, "release")
        if os.path.exists(os.path.join(self.folder, "held")):
            return  # held once
        print(f"fault injected: training held at step {self.step}", file=sys.stderr, flush=True)
        with open(os.path.join(self.folder, "held.partial"), "w") as handle:
            handle.write(f"{os.getpid()} {rank}\n")
        os.replace(os.path.join(self.folder, "held.partial"), os.path.join(self.folder, "held"))
        deadline = time.monotonic() + 1800
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.1)  # a signal's handler runs here, as it would in a step
        print("fault injected: training released", file=sys.stderr, flush=True)


failing = os.environ.get("SPPO_FAULT_FAIL_FIRST")
if _script() == "score.py" and failing and _first(failing):
    print("fault injected: this score job fails on its first attempt", file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)

if _script() == "train.py" and os.environ.get("SPPO_FAULT_HOLD_TRAINING"):
    folder, step = os.environ["SPPO_FAULT_HOLD_TRAINING"].rsplit(":", 1)
    if _first(os.path.join(folder, "claimed")):
        sys.meta_path.insert(0, _HeldTraining(folder, int(step)))
