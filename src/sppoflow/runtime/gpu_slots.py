"""Give a local job its own GPUs: Snakemake counts GPUs (the ``gpu`` resource) but does not
say which devices a job may use, so two jobs on one machine would both land on GPU 0.

A job claims free devices with a lock file per GPU and runs with ``CUDA_VISIBLE_DEVICES`` set to
them; the locks go when it ends. Where the scheduler has already chosen (SLURM sets
``CUDA_VISIBLE_DEVICES``) or there is no GPU, the command runs as it is.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sppoflow.errors import UserError
from sppoflow.runtime.multi_node import accelerate_launch

log = logging.getLogger(__name__)


def gpu_count() -> int:
    """Physical GPUs, from nvidia-smi (no CUDA initialisation); SPPO_GPU_COUNT overrides."""
    if "SPPO_GPU_COUNT" in os.environ:
        return int(os.environ["SPPO_GPU_COUNT"])
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"sppo-gpu-locks-{os.getuid()}"
    folder = Path(os.environ.get("SPPO_GPU_LOCK_DIR", default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _try_claim(n: int, total: int, stack: ExitStack) -> list[int] | None:
    claimed = []
    for device in range(total):
        handle = stack.enter_context(open(lock_dir() / f"gpu{device}.lock", "w"))  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        claimed.append(device)
        if len(claimed) == n:
            return claimed
    return None


@contextmanager
def claimed_gpus(n: int, poll_seconds: float = 5.0):
    """Yield the CUDA_VISIBLE_DEVICES value a job asking for ``n`` GPUs should run with
    (None: leave the environment alone)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        yield None
        return
    if n == 0:
        yield ""  # a job that asked for no GPU sees none, so device "auto" picks the CPU
        return
    total = gpu_count()
    if total == 0:
        yield None
        return
    if n > total:
        raise UserError(f"the job asks for {n} GPUs but this machine has {total}")
    waited = False
    while True:
        with ExitStack() as stack:
            devices = _try_claim(n, total, stack)
            if devices is not None:
                yield ",".join(map(str, devices))
                return
        if not waited:
            log.info("waiting for %d free GPU(s) of %d (held by other jobs)", n, total)
            waited = True
        time.sleep(poll_seconds)


def process_per_gpu(n: int, script: list[str], accelerate_config: str | None) -> list[str]:
    """The command that runs a Python script once per GPU: plain python for one GPU (or none),
    ``accelerate launch`` with n processes otherwise (DDP, or the given DeepSpeed/FSDP config).
    """
    if n <= 1:
        return [sys.executable, *script]
    return accelerate_launch(n, script, accelerate_config)


def launcher_environment(environ: dict[str, str] = os.environ) -> dict[str, str]:
    """Settings of torchrun (under ``accelerate launch``) for a trainer that saves on a signal:
    it passes SIGUSR1 on as well (by default it dies of it), and waits up to 10 minutes, not
    30 s, for the processes to save before it kills them. The user's own values win."""
    wanted = {
        "PET_SIGNALS_TO_HANDLE": "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "600",
    }
    return {key: environ.get(key, value) for key, value in wanted.items()}


FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def run_with_gpus(n: int, command: list[str], extra_env: dict[str, str] | None = None) -> int:
    """Run ``command`` on ``n`` GPUs of its own; return its exit code.

    This waits for the command even when it is signalled (a SLURM time limit, scancel,
    Ctrl-C): the trainer saves a checkpoint on SIGTERM, and a wrapper that died first would let
    the job end and kill it halfway through saving. In a SLURM job the scheduler signals every
    process of the job itself; elsewhere the command runs in a session of its own and gets
    SIGTERM, SIGINT, SIGHUP and SIGUSR1 from here, once.
    """
    under_slurm = "SLURM_JOB_ID" in os.environ
    with claimed_gpus(n) as visible:
        env = {**os.environ, **(extra_env or {})}
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
            log.info("CUDA_VISIBLE_DEVICES=%s", visible or "(none)")
        elif env.get("CUDA_VISIBLE_DEVICES") is not None:
            log.info("CUDA_VISIBLE_DEVICES=%s (set by the scheduler)", env["CUDA_VISIBLE_DEVICES"])
        started: list[subprocess.Popen] = []
        pending: list[int] = []

        def forward(signum, frame):
            name = signal.Signals(signum).name
            if under_slurm:
                log.info("got %s; SLURM gives it to the command too: waiting for it", name)
            elif started:
                log.info("passing %s on to the command", name)
                started[0].send_signal(signum)
            else:
                pending.append(signum)

        previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
        try:
            started.append(subprocess.Popen(command, env=env, start_new_session=not under_slurm))
            for signum in pending:
                started[0].send_signal(signum)
            return started[0].wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
