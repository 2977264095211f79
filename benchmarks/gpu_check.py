#!/usr/bin/env python
"""The GPU check: every figure that only a GPU can give, in one command that fits one short lease.

On the lent GPU machine (Python 3.12, torch with CUDA, transformers; no snakemake or duckdb, and
nothing can be fetched), with the kit that benchmarks/gpu_kit.py builds here carried along:

    python3 benchmarks/gpu_check.py --kit .gpu-kit --out $OUT/gpu_check.txt

The kit's wheels are installed into a temporary folder and the check re-starts itself with them
on its path. Models are built from configs with random weights (speed does not depend on their
values, and no weights can travel): each section prints what it ran and its figures, to the
screen and, line by line, to --out, so a lease cut short still leaves what was measured.

1. PairRM in DeBERTa-v3-large's shape: batched bf16 against one pair per forward pass, pairs/s
   and the ratio (target at least 10x), and how far the two batches' probabilities differ.
2. A training step on a ~1.25B Llama with a 256k vocabulary (bf16 autocast over fp32 weights,
   RMSprop, as the train stage): tokens/s, MFU and peak GPU memory of the chunked response
   log-probabilities (sppoflow.models.logprobs.response_logps) against the full log-softmax.
3. Sampling with the transformers backend on a SmolLM2-135M-shaped model: generated tokens/s
   per batch size.
4. One round of the tiny workflow (random tiny Llama, random tiny PairRM) through snakemake on
   the device, and its per-stage table.

A section that fails prints its error and the check goes on; the exit status is 1 if any failed.
CI rehearses the same code on a CPU at a tiny size (tests/test_gpu_check.py):

    python benchmarks/gpu_check.py --size tiny --device cpu --out /tmp/gpu_check.txt
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[1:1] = [str(ROOT / "src"), str(ROOT / "tests")]  # sppoflow and the model builders

from gpu_sections import (  # noqa: E402
    SITE_VARIABLE,
    SIZES,
    pairrm,
    sampling,
    training_step,
    workflow_round,
)

SECTIONS = {
    "environment": "environment",
    "pairrm": "PairRM: batched bf16 against one pair per pass",
    "train": "training step: chunked against full log-probabilities",
    "sample": "sampling, transformers backend",
    "workflow": "one round of the tiny workflow",
}


class Report:
    """Lines to the screen and, flushed one by one, to the output file."""

    def __init__(self, path: Path | None):
        self.file = open(path, "a") if path else None  # noqa: SIM115 (open for the whole run)
        self.failed: list[str] = []

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()

    @contextlib.contextmanager
    def section(self, title: str):
        self.line(f"\n== {title}")
        start = time.perf_counter()
        try:
            yield
        except Exception as error:  # a failed section must not cost the others
            self.failed.append(title)
            self.line(f"FAILED: {type(error).__name__}: {error}")
            for frame in traceback.format_tb(error.__traceback__)[-3:]:
                self.line("  | " + frame.rstrip().replace("\n", "\n  | "))
        self.line(f"({time.perf_counter() - start:.0f} s)")


def install_kit(kit: Path, site: Path) -> None:
    """pip-install the kit's wheels, offline and without resolving, into ``site``."""
    wheels = sorted(str(w) for w in (kit / "wheels").glob("*.whl"))
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    command += ["--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site), *wheels]
    subprocess.run(command, check=True)


def restart_with_kit(kit: Path, argv: list[str]) -> None:
    """Install the kit and run this script again with it first on the path (never returns)."""
    site = Path(tempfile.mkdtemp(prefix="sppo-gpu-check-site-"))
    install_kit(kit, site)
    env = dict(os.environ, **{SITE_VARIABLE: str(site)})
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), str(ROOT / "src"), env.get("PYTHONPATH")) if p
    )
    os.execve(sys.executable, [sys.executable, __file__, *argv], env)


def environment(report: Report, device) -> None:
    import torch

    report.line(f"python {sys.version.split()[0]} at {sys.executable}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    report.line(f"device {device}: {name}; torch {torch.__version__}{cuda}")
    versions = []
    for package in ("transformers", "accelerate", "snakemake", "duckdb", "pandas", "pyarrow"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    report.line(", ".join(versions))
    site = os.environ.get(SITE_VARIABLE)
    if site:  # what python now reads from the kit's folder, by the installed metadata
        kit = sorted(
            (dist.metadata["Name"], dist.version) for dist in metadata.distributions(path=[site])
        )
        report.line(f"kit installed into {site}: {len(kit)} distributions")
        report.line("  " + ", ".join(f"{name} {version}" for name, version in kit))


def kit_tokenizer(kit: Path | None):
    """The embedded SmolLM2 tokenizer: from the kit where it travelled, else the package."""
    from transformers import AutoTokenizer

    if kit is not None and (kit / "tokenizer").is_dir():
        return AutoTokenizer.from_pretrained(kit / "tokenizer")
    from tiny_model import embedded_tokenizer

    return embedded_tokenizer()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kit", type=Path, help="the folder benchmarks/gpu_kit.py wrote")
    parser.add_argument("--out", type=Path, help="also append every line to this file")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else skip), cuda, cpu")
    parser.add_argument(
        "--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
        help="the sections to run, in this order (default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.kit is not None and not (args.kit / "wheels").is_dir():
        parser.error(f"--kit {args.kit}: no wheels folder (python benchmarks/gpu_kit.py)")
    if args.kit is not None and not any((args.kit / "wheels").glob("*.whl")):
        parser.error(f"--kit {args.kit}: no wheels in {args.kit / 'wheels'}")
    if args.kit is not None and SITE_VARIABLE not in os.environ:
        restart_with_kit(args.kit, sys.argv[1:])

    import torch

    if args.device == "auto" and not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device (this check runs on a GPU machine)")
        return
    device = torch.device("cuda" if args.device == "auto" else args.device)
    os.environ["HF_HUB_OFFLINE"] = "1"
    report = Report(args.out)
    report.line(f"GPU check, size {args.size}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    size = SIZES[args.size]
    with tempfile.TemporaryDirectory(prefix="sppo-gpu-check-") as scratch:
        scratch = Path(scratch)
        run = {
            "environment": lambda: environment(report, device),
            "pairrm": lambda: pairrm(report, size, device),
            "train": lambda: training_step(report, size, device),
            "sample": lambda: sampling(report, size, device, kit_tokenizer(args.kit), scratch),
            "workflow": lambda: workflow_round(report, device, kit_tokenizer(args.kit), scratch),
        }
        for name in args.sections:
            with report.section(SECTIONS[name]):
                run[name]()
    report.line(f"\nfailed sections: {', '.join(report.failed) or 'none'}")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
