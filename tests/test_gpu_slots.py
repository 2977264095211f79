"""Local GPU assignment: concurrent jobs get disjoint devices; the scheduler's choice wins."""

import select
import subprocess
import sys

import pytest

from helpers import ROOT
from sppoflow.errors import UserError
from sppoflow.runtime.gpu_slots import claimed_gpus, process_per_gpu
from training_hold import NEVER

SCRIPT = str(ROOT / "scripts" / "with_gpus.py")


def first_line(pipe) -> str:
    """The next line a job prints; fails (instead of hanging) if none comes in NEVER s."""
    ready, _, _ = select.select([pipe], [], [], NEVER)
    assert ready, f"no line in {NEVER:.0f} s"
    return pipe.readline()


def holding(release):
    """A job's command that prints the GPUs it was given and keeps them until ``release``
    exists (an event the test makes, not a clock)."""
    return (
        "import os, pathlib, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)"
    )


@pytest.fixture
def four_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("SPPO_GPU_COUNT", "4")
    monkeypatch.setenv("SPPO_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path


def test_concurrent_jobs_get_disjoint_devices(four_gpus):
    """Two jobs of 2 GPUs each, both running at once (each keeps its GPUs until the test has
    seen both), get 4 different devices."""
    release = four_gpus / "release"
    jobs = [
        subprocess.Popen(
            [sys.executable, SCRIPT, "2", "--", sys.executable, "-c", holding(release)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        seen = [first_line(job.stdout).strip() for job in jobs]  # both hold their GPUs now
    finally:
        release.touch()
    assert all(job.wait(timeout=NEVER) == 0 for job in jobs)
    for job in jobs:
        job.stdout.close()
    devices = [set(s.split(",")) for s in seen]
    assert all(len(d) == 2 for d in devices)
    assert devices[0].isdisjoint(devices[1]) and devices[0] | devices[1] == {"0", "1", "2", "3"}


def test_a_job_waits_until_devices_are_free(four_gpus):
    release = four_gpus / "release"
    release.touch()  # the job ends once it has its GPU
    with claimed_gpus(4) as held:
        assert held == "0,1,2,3"
        waiting = subprocess.Popen(
            [sys.executable, SCRIPT, "1", "--", sys.executable, "-c", holding(release)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        said = first_line(waiting.stderr)  # the wrapper's first line: it has to wait
        assert "waiting for 1 free GPU(s) of 4 (held by other jobs)" in said, said
        assert waiting.poll() is None
    out, _ = waiting.communicate(timeout=NEVER)
    assert out.strip() == "0" and waiting.returncode == 0


def test_the_schedulers_choice_and_cpu_machines_are_left_alone(four_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")  # e.g. SLURM chose
    with claimed_gpus(2) as visible:
        assert visible is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("SPPO_GPU_COUNT", "0")
    with claimed_gpus(1) as visible:
        assert visible is None
    with claimed_gpus(0) as visible:
        assert visible == ""  # asked for no GPU: sees none


def test_asking_for_more_gpus_than_the_machine_has_is_an_error(four_gpus):
    with pytest.raises(UserError, match="asks for 5 GPUs but this machine has 4"), claimed_gpus(5):
        pass


def test_one_process_per_gpu_goes_through_accelerate():
    assert process_per_gpu(1, ["train.py", "--x"], None) == [sys.executable, "train.py", "--x"]
    assert process_per_gpu(0, ["train.py"], "ds.yaml") == [sys.executable, "train.py"]
    assert process_per_gpu(4, ["train.py"], None)[:4] == [
        "accelerate", "launch", "--multi_gpu", "--num_processes"
    ]  # fmt: skip
    launched = process_per_gpu(8, ["train.py", "--x"], "ds.yaml")
    assert launched == [
        "accelerate", "launch", "--config_file", "ds.yaml", "--num_processes", "8",
        "--num_machines", "1", "train.py", "--x",
    ]  # fmt: skip


def test_a_sigterm_reaches_the_command_and_the_wrapper_waits_for_it(tmp_path):
    """What a SLURM time limit does to a GPU job: the trainer inside must get the signal and
    the time to save, not be orphaned by a wrapper that died first."""
    import signal

    done = tmp_path / "saved"
    trap = (
        "import signal, sys, time, pathlib\n"
        "def save(signum, frame):\n"
        "    time.sleep(1)\n"
        f"    pathlib.Path({str(done)!r}).write_text('saved')\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(3600)\n"
    )
    wrapper = subprocess.Popen(
        [sys.executable, SCRIPT, "0", "--", sys.executable, "-c", trap],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first_line(wrapper.stdout).strip() == "ready"
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=NEVER) == 143  # the command's status, after it saved
    assert done.read_text() == "saved"
    assert "passing SIGTERM on to the command" in wrapper.stderr.read()
    wrapper.stdout.close()
    wrapper.stderr.close()
