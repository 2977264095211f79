"""benchmarks/gpu_check.py, rehearsed on a CPU at its tiny size so that it still runs the day a
GPU is lent: every section runs and prints its figures, the kit's wheels are installed offline
and the check restarts with them, and without CUDA the default run skips, saying so. (The GPU
figures themselves come from the lent machine; none is asserted here.)"""

import base64
import hashlib
import re
import subprocess
import sys
import zipfile

import pytest

from helpers import ROOT

CHECK = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check import SECTIONS  # noqa: E402


def check(*args):
    return subprocess.run(
        [sys.executable, str(CHECK), *map(str, args)], capture_output=True, text=True
    )


def figures(text: str, pattern: str) -> list[float]:
    return [float(value) for value in re.findall(pattern, text)]


@pytest.fixture
def gpu_check_rehearsal(tmp_path):
    """The whole check at its tiny size on the CPU, a workflow round included: (its file's
    text, its run)."""
    out = tmp_path / "gpu_check.txt"
    done = check("--size", "tiny", "--device", "cpu", "--out", out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out.read_text(), done


def test_the_tiny_rehearsal_runs_every_section_and_writes_its_figures(gpu_check_rehearsal):
    text, done = gpu_check_rehearsal
    assert text.rstrip().endswith("failed sections: none")
    for title in SECTIONS.values():
        assert f"== {title}" in text
    pairs_per_s = figures(text, r"([\d.]+) pairs/s")
    assert len(pairs_per_s) == 2 and min(pairs_per_s) > 0
    (difference,) = figures(text, r"max \|P_batched - P_one\| = ([\d.e+-]+)")
    assert difference < 0.05  # batching must not change what the judge says
    train = re.findall(
        r"(full log-softmax|chunked response_logps) +[\d.]+ s/step +(\d+) tokens/s", text
    )
    assert [variant for variant, _ in train] == ["full log-softmax", "chunked response_logps"]
    assert all(int(rate) > 0 for _, rate in train)
    sampled = re.findall(r"batch +(\d+): (\d+) tokens in .* ([\d.]+) generated tokens/s", text)
    assert [int(batch) for batch, _, _ in sampled] == [2, 8]
    assert all(0 < int(tokens) <= 4 * 2 * 8 for _, tokens, _ in sampled)  # 4 prompts x K=2 x 8
    jobs = re.search(r"(\d+) jobs, (\d+) s wall", text)
    assert jobs and int(jobs.group(1)) > 10
    for stage in ("sample", "score", "aggregate", "train", "evaluate"):
        assert re.search(rf"^ +{stage} +1 ", text, re.MULTILINE), stage
    assert set(text.splitlines()) <= set(done.stdout.splitlines())  # the screen shows them too


def wheel_of(folder, name: str, version: str, module: str):
    """A pure-Python wheel, written by hand (nothing to fetch or build)."""
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": "VALUE = 7\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_the_check_installs_the_kit_offline_and_restarts_with_it(tmp_path):
    kit = tmp_path / "kit"
    (kit / "wheels").mkdir(parents=True)
    wheel_of(kit / "wheels", "sppo-kit-probe", "1.2.3", "sppo_kit_probe")
    done = check("--kit", kit, "--size", "tiny", "--device", "cpu", "--sections", "environment")
    assert done.returncode == 0, done.stderr
    installed = re.search(r"kit installed into (\S+): 1 distributions\n +(.*)\n", done.stdout)
    assert installed, done.stdout
    assert installed.group(2) == "sppo-kit-probe 1.2.3"  # read by the restarted process
    assert "failed sections: none" in done.stdout


@pytest.mark.parametrize(
    "layout, message",
    [
        (None, "no wheels folder (python benchmarks/gpu_kit.py)"),
        ("wheels", "no wheels in"),
    ],
)
def test_a_kit_without_wheels_is_refused_with_a_line(tmp_path, layout, message):
    kit = tmp_path / "kit"
    (kit / (layout or "")).mkdir(parents=True)
    done = check("--kit", kit, "--device", "cpu")
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_without_cuda_the_default_run_skips_saying_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the default run measures it")
    done = check("--sections", "environment")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skipped: torch sees no CUDA device")
