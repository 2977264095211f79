"""config/README.md, written from the config schema: every key with its default, the CPU
demo's value where config/config.yaml sets another, and its description.

    python -m sppoflow.workflow.config_reference > config/README.md

A test checks that the file equals this output, so the reference never drifts from the schema.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from sppoflow.config.run_only import run_only_sections, run_only_settings
from sppoflow.schema import ROOT, load_schema

INTRO = """\
# Configuration

Generated from `workflow/schemas/config.schema.yaml` by
`python -m sppoflow.workflow.config_reference > config/README.md`; edit the schema, not this file.

What this folder holds:

| file | what it is |
|---|---|
| `config.yaml` | the embedded default: the CPU demo that `snakemake --cores all` runs offline |
| `paper/*.yaml` | the paper's three runs: Mistral-7B, Llama-3-8B, Gemma-2-9B with PairRM |
| `compare.yaml` | SPPO beside iterative DPO and IPO from one base model (`methods`) |
| `tune_baselines.yaml` | the round-1 trials behind the DPO and IPO settings of compare |
| `cluster_check.yaml` | a small run that checks a SLURM cluster end to end |
| `accelerate/*.yaml` | multi-GPU training: DDP, DeepSpeed ZeRO-3, FSDP |
| `prompts/instructions.jsonl` | the demo's prompts |

`--configfile my.yaml` replaces `config.yaml` entirely (keys it leaves out take the schema
defaults below, never the demo's values); `--config key=value` overrides single keys. The config
is validated before any job runs: a bad value, or a local path that does not exist, stops the
run with one line naming the key, e.g. `config error: sample.k: 1 is less than the minimum of 2`.
Settings marked *run only* change where or how fast a job runs, never its result: changing one
re-runs nothing, and the config recorded with each output (its provenance) leaves them out.

| key | default | demo | meaning |
|---|---|---|---|
"""


def _value(value: Any) -> str:
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def rows(spec: dict, demo: Any, run_only: set[str], prefix: str = "") -> list[str]:
    """One table row per leaf key of ``spec`` (objects with properties are walked into)."""
    if spec.get("type") == "object" and spec.get("properties"):
        demo = demo if isinstance(demo, dict) else {}
        return [
            row
            for name, sub in spec["properties"].items()
            for row in rows(sub, demo.get(name), run_only, f"{prefix}.{name}" if prefix else name)
        ]
    default = spec.get("default")
    shown_demo = _value(demo) if demo is not None and demo != default else ""
    meaning = " ".join(str(spec.get("description", "")).split())
    if "enum" in spec:
        meaning += " One of " + ", ".join(_value(v) for v in spec["enum"]) + "."
    if prefix in run_only:
        meaning += " *Run only.*"
    return [f"| `{prefix}` | {_value(default)} | {shown_demo} | {meaning.replace('|', '/')} |"]


def reference() -> str:
    run_only = {f"{name}.{key}" for name, keys in run_only_settings().items() for key in keys}
    schema = load_schema()
    run_only |= {
        f"{section}.{stage}.{key}"
        for section in run_only_sections()
        for stage, sub in schema["properties"][section].get("properties", {}).items()
        for key in sub.get("properties", {})
    }
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return INTRO + "\n".join(rows(schema, demo, run_only)) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
