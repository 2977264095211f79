#!/usr/bin/env python
"""Download, here, the Python 3.12 wheels the GPU check needs on the lent machine.

The lent GPU machine has Python 3.12 with torch, transformers, accelerate, peft, pandas,
pyarrow and numpy, and fetches nothing. This takes the packages the check needs that it lacks
(snakemake, duckdb and jsonschema, with everything they pull in that it lacks too), at the
versions installed here, as Linux x86-64 CPython 3.12 wheels, into one folder, with the
embedded SmolLM2 tokenizer (the random models there use its vocabulary and chat template; the
embedded weights are too large to travel), and prints the folder's size against the 64 MiB
that may travel with the working tree.

    python benchmarks/gpu_kit.py --out .gpu-kit
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

NEEDED = ("snakemake", "duckdb", "jsonschema")
# On the lent machine already, with what they pull in (measured there).
THERE = {
    canonicalize_name(n)
    for n in [
        "torch",
        "transformers",
        "accelerate",
        "peft",
        "pandas",
        "pyarrow",
        "numpy",
        "attrs",
        "jinja2",
        "pyyaml",
        "psutil",
        "requests",
        "tabulate",
        "wrapt",
        "packaging",
        "matplotlib",
        "tqdm",
        "setuptools",
        "pip",
        "filelock",
        "fsspec",
        "huggingface-hub",
        "safetensors",
        "tokenizers",
        "regex",
        "markupsafe",
        "sympy",
        "networkx",
        "typing-extensions",
        "certifi",
        "charset-normalizer",
        "idna",
        "urllib3",
        "python-dateutil",
        "pytz",
        "tzdata",
        "six",
        "pillow",
    ]
}
LIMIT_MIB = 64
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def target_environment() -> dict[str, str]:
    """Marker values of the lent machine: CPython 3.12 on Linux x86-64."""
    env = default_environment()
    env.update(
        python_version="3.12",
        python_full_version="3.12.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
    )
    return env


def closure(roots: tuple[str, ...]) -> dict[str, str]:
    """Name -> installed version of ``roots`` and what they require on the target, minus
    what the lent machine has."""
    env = target_environment()
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found or name in THERE:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as missing:
            raise SystemExit(f"{name} is needed but not installed here") from missing
        found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({**env, "extra": ""}):
                todo.append(requirement.name)
    return found


def download(name: str, version: str, out: Path) -> None:
    wheel = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--dest", str(out)]
    target = [
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)] + ["--platform", "any"]
    done = subprocess.run([*wheel, *target, *platforms, f"{name}=={version}"], check=False)
    if done.returncode != 0:  # no wheel on the index: build a pure-Python one here
        built = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out)]
        subprocess.run([*built, f"{name}=={version}"], check=True)


def save_tokenizer(folder: Path) -> None:
    from sppoflow.models.loading import resolve_source, source_tokenizer

    source_tokenizer(resolve_source("embedded:smollm2-135m-instruct")).save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=".gpu-kit", help="folder for the wheels")
    args = parser.parse_args()
    out = Path(args.out)
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    packages = closure(NEEDED)
    for name, version in sorted(packages.items()):
        download(name, version, wheels)
    save_tokenizer(out / "tokenizer")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    count = len(list(wheels.glob("*.whl")))
    print(
        f"{len(packages)} packages, {count} wheels and the tokenizer in {out}: {size:.1f} MiB "
        f"of the {LIMIT_MIB} MiB that travel (the working tree takes the rest)"
    )


if __name__ == "__main__":
    main()
