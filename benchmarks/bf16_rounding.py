#!/usr/bin/env python
"""How much of one round's weight update survives if the trained model is stored in bf16.

Trains round 1 of a finished run again (its round-0 model and round-1 samples, pairs and win
rates, the run's train settings) at each learning rate asked for, keeping the weights in fp32,
then compares the update delta = W1 - W0 with what bf16 storage keeps of it,
bf16(W1) - bf16(W0). Printed per learning rate: the share of the changed weights whose change
bf16 erases, the relative error of the stored update, and the cosine between the two.

    snakemake --cores all --config rounds=1      # a finished round of the embedded default
    python benchmarks/bf16_rounding.py --run results --lr 5e-5 5e-7
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from sppoflow.models.loading import load_policy  # noqa: E402
from sppoflow.tables import PAIRS, RESPONSE_WIN_RATES, SAMPLES, read_table  # noqa: E402
from sppoflow.train.data import build_examples  # noqa: E402
from sppoflow.train.round import train  # noqa: E402
from sppoflow.train.settings import TrainSettings  # noqa: E402


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(path))
    return {name: t.float() for name, t in tensors.items() if t.is_floating_point()}


def train_round(run: Path, learning_rate: float, out: Path) -> None:
    recorded = json.loads((run / "iter1" / "model" / "sppo_training.json").read_text())
    known = TrainSettings.__dataclass_fields__
    settings = TrainSettings(**{k: v for k, v in recorded["settings"].items() if k in known})
    settings.learning_rate = learning_rate
    settings.save_dtype = "float32"
    model, tokenizer = load_policy(run / "iter0" / "model")
    examples = build_examples(
        tokenizer,
        read_table(run / "iter1" / "samples.parquet", SAMPLES),
        read_table(run / "iter1" / "pairs.parquet", PAIRS),
        read_table(run / "iter1" / "response_win_rates.parquet", RESPONSE_WIN_RATES),
        settings,
    )
    train(model, tokenizer, examples, settings, out / "state", out / "model", out / "log.csv")


def compare(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> dict[str, float]:
    changed = erased = 0
    error = norm = dot = stored_norm = 0.0
    for name, w0 in start.items():
        w1 = end[name]
        delta = (w1 - w0).double()
        stored = (w1.bfloat16().float() - w0.bfloat16().float()).double()
        moved = delta != 0
        changed += int(moved.sum())
        erased += int((moved & (stored == 0)).sum())
        error += float(((stored - delta) ** 2).sum())
        norm += float((delta**2).sum())
        stored_norm += float((stored**2).sum())
        dot += float((stored * delta).sum())
    return {
        "changed": changed,
        "erased_share": erased / max(changed, 1),
        "relative_error": (error / norm) ** 0.5 if norm else 0.0,
        "cosine": dot / (norm * stored_norm) ** 0.5 if norm and stored_norm else 0.0,
        "update_rms": (norm / sum(w.numel() for w in start.values())) ** 0.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("results"), help="a finished run")
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-5, 5e-7])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = weights(args.run / "iter0" / "model")
    print(f"round 1 of {args.run}: {sum(w.numel() for w in start.values()) / 1e6:.1f}M weights")
    print("lr        update rms   erased by bf16   stored update: rel. error   cosine")
    for lr in args.lr:
        with tempfile.TemporaryDirectory() as folder:
            train_round(args.run, lr, Path(folder))
            result = compare(start, weights(Path(folder) / "model"))
        print(
            f"{lr:<9g} {result['update_rms']:<12.3g} {result['erased_share']:<16.1%} "
            f"{result['relative_error']:<27.3f} {result['cosine']:.3f}"
        )


if __name__ == "__main__":
    main()
