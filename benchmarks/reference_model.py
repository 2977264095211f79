#!/usr/bin/env python
"""Training with precomputed reference log-probabilities (this project) against a live
reference model kept in memory and run at every step (the authors' trainer), on round 1 of a
finished run of the embedded default.

Both variants train the same examples with the same settings and the same log-probability
code; they differ only in where log pi_t(y | x) comes from. Each runs in its own process:
printed are seconds per optimizer step (steps 2 to the end: the first warms up), the one-off
reference pass of this project, and peak RSS above the process's RSS before the model loads.

    snakemake --cores all --config rounds=1     # a finished round of the embedded default
    python benchmarks/reference_model.py --run results
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("precomputed reference", "live reference model")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure(variant: str, args) -> dict:
    """Runs in the child process."""
    import torch
    from transformers import TrainerCallback

    from sppoflow.models.loading import load_policy
    from sppoflow.models.logprobs import response_logps
    from sppoflow.tables import PAIRS, RESPONSE_WIN_RATES, SAMPLES, read_table
    from sppoflow.train.data import Collator, build_examples
    from sppoflow.train.reference import autocast_context, load_or_compute_references
    from sppoflow.train.round import resolve_precision
    from sppoflow.train.settings import TrainSettings
    from sppoflow.train.trainer import SPPOTrainer, training_arguments

    torch.set_num_threads(args.threads)
    recorded = json.loads((args.run / "iter1" / "model" / "sppo_training.json").read_text())
    known = TrainSettings.__dataclass_fields__
    settings = TrainSettings(**{k: v for k, v in recorded["settings"].items() if k in known})
    settings.report_to = ["none"]
    base = rss_mb()
    model, tokenizer = load_policy(args.run / "iter0" / "model")
    examples = build_examples(
        tokenizer,
        read_table(args.run / "iter1" / "samples.parquet", SAMPLES),
        read_table(args.run / "iter1" / "pairs.parquet", PAIRS),
        read_table(args.run / "iter1" / "response_win_rates.parquet", RESPONSE_WIN_RATES),
        settings,
    )[: args.prompts]
    device = torch.device("cpu")
    precision = resolve_precision(settings.precision, device)
    state = Path(tempfile.mkdtemp())
    train_args = training_arguments(settings, state, device, precision)
    train_args.disable_tqdm = True
    collator = Collator(tokenizer.pad_token_id)
    model.config.use_cache = False

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, *_, **__):
            self.times.append(time.perf_counter())

    class LiveReferenceTrainer(SPPOTrainer):
        """The authors' way: the frozen pi_t in memory, run on every batch."""

        def __init__(self, reference, **kwargs):
            super().__init__(**kwargs)
            self.reference = reference

        def compute_loss(self, model, inputs, **kwargs):
            with torch.no_grad(), autocast_context(device, precision):
                inputs["ref_logps"] = response_logps(
                    self.reference,
                    inputs["input_ids"],
                    inputs["attention_mask"],
                    inputs["response_mask"],
                )
            return super().compute_loss(model, inputs, **kwargs)

    timer = StepTimes()
    common = dict(
        model=model,
        args=train_args,
        train_dataset=examples,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[timer],
        sppo=settings,
    )
    start = time.perf_counter()
    if variant == "precomputed reference":
        load_or_compute_references(
            model, examples, collator, train_args, precision, state / "reference_logps.json"
        )
        reference_seconds = time.perf_counter() - start
        trainer = SPPOTrainer(**common)
    else:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
        for example in examples:
            example["ref_logps"] = [0.0] * len(example["response_ids"])  # replaced every step
        reference_seconds = 0.0
        trainer = LiveReferenceTrainer(reference, **common)
    trainer.train()
    steps = timer.times
    per_step = (steps[-1] - steps[0]) / (len(steps) - 1)
    return {
        "per_step": per_step,
        "steps": len(steps),
        "reference_seconds": reference_seconds,
        "total": time.perf_counter() - start,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
    }


def child(variant: str, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--run", str(args.run)]
    command += ["--prompts", str(args.prompts), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=Path("results"), help="a finished run")
    parser.add_argument("--prompts", type=int, default=64, help="round-1 prompts trained")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    results = {variant: child(variant, args) for variant in VARIANTS}
    print(f"round 1 of {args.run}, {args.prompts} prompts, {args.threads} threads")
    for variant, r in results.items():
        print(
            f"  {variant:22s} {r['per_step']:6.2f} s/step ({r['steps']} steps)   "
            f"reference pass {r['reference_seconds']:5.1f} s   round {r['total']:6.1f} s   "
            f"peak {r['peak_mb']:6.0f} MiB"
        )
    ours, theirs = results[VARIANTS[0]], results[VARIANTS[1]]
    print(
        f"  precomputed / live: x{theirs['per_step'] / ours['per_step']:.2f} faster per step, "
        f"x{theirs['total'] / ours['total']:.2f} per round with the reference pass, "
        f"peak memory x{ours['peak_mb'] / theirs['peak_mb']:.2f}"
    )


if __name__ == "__main__":
    main()
