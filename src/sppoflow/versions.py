"""Versions of the packages a run's results depend on, recorded where the work runs (each
rule may have its own environment) and shown in the report."""

from __future__ import annotations

import importlib.metadata
import platform

MAIN_PACKAGES = (
    "torch", "transformers", "accelerate", "peft", "deepspeed", "vllm",
    "snakemake", "duckdb", "pandas", "numpy", "sppo-workflow",
)  # fmt: skip


def package_versions(packages: tuple[str, ...] = MAIN_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
