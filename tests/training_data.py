"""A training round's tables on the tiny model, as the stages would write them, and the
settings the training tests train with: shared by the tests of the train stage."""

import contextlib
from pathlib import Path

import pandas as pd

from sppoflow.aggregate.win_rates import AggregateSettings, aggregate
from sppoflow.models.loading import load_policy
from sppoflow.tables import PAIRS, RESPONSE_WIN_RATES, SAMPLES, write_table
from sppoflow.train.data import build_examples
from sppoflow.train.resume import prepare_state_dir
from sppoflow.train.round import train
from sppoflow.train.settings import TrainSettings
from sppoflow.train.trainer import SPPOTrainer

N_PROMPTS = 6


def round_tables(tokenizer, n_prompts=N_PROMPTS):
    """Samples of 3 responses per prompt and their aggregates, as the stages would write them."""
    rows = []
    for n in range(n_prompts):
        for k in range(3):
            text = f"answer {k} to question {n}" + " more" * k
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            rows.append((f"p{n}", f"Question {n}: what is {n} plus {n}?", k, text, ids))
    samples = pd.DataFrame(
        rows, columns=["prompt_id", "prompt", "response_idx", "response", "response_token_ids"]
    )
    samples["prompt_tokens"] = 20
    samples["response_tokens"] = samples.response_token_ids.map(len)
    samples["finish_reason"] = "stop"
    prefs = [
        (f"p{n}", i, j, float(j - i))
        for n in range(n_prompts)
        for i in range(3)
        for j in range(3)
        if i != j
    ]
    preferences = pd.DataFrame(prefs, columns=["prompt_id", "i", "j", "logit"])
    preferences["prob"] = 1 / (1 + (-preferences.logit).map(lambda x: 2.718281828**x))
    result = aggregate(samples, preferences, AggregateSettings())
    return samples, result.pairs, result.win_rates


def write_round_tables(folder: Path, tokenizer, n_prompts=N_PROMPTS) -> dict[str, Path]:
    """The round's tables as parquet files in ``folder``, by name (samples, pairs,
    win_rates)."""
    samples, pairs, win_rates = round_tables(tokenizer, n_prompts)
    paths = {name: folder / f"{name}.parquet" for name in ("samples", "pairs", "win_rates")}
    write_table(samples, paths["samples"], SAMPLES)
    write_table(pairs, paths["pairs"], PAIRS)
    write_table(win_rates, paths["win_rates"], RESPONSE_WIN_RATES)
    return paths


def settings(**overrides):
    base = dict(
        eta=10.0,
        learning_rate=1e-3,
        batch_size=2,
        epochs=1,
        warmup_ratio=0.0,
        precision="fp32",
        device="cpu",
        max_length=64,
        max_prompt_length=32,
    )
    return TrainSettings(**{**base, **overrides})


# the same settings as flags of scripts/train.py (its tables, model and outputs aside)
TRAIN_FLAGS = [
    "--eta", "10", "--learning-rate", "1e-3", "--warmup-ratio", "0", "--precision", "fp32",
    "--device", "cpu", "--max-length", "64", "--max-prompt-length", "32", "--threads", "1",
]  # fmt: skip


def run_training(tmp_path, tiny_model_dir, embedded_tokenizer, **overrides):
    """A round trained in ``tmp_path`` (state, model, log) on the tables above with
    ``settings(**overrides)``; returns the model folder and the step log."""
    samples, pairs, responses = round_tables(embedded_tokenizer)
    s = settings(**overrides)
    model, tokenizer = load_policy(tiny_model_dir)
    examples = build_examples(tokenizer, samples, pairs, responses, s)
    state, out, log = tmp_path / "state", tmp_path / "model", tmp_path / "train_log.csv"
    prepare_state_dir(state, "run-1")
    train(model, tokenizer, examples, s, state, out, log)
    return out, pd.read_csv(log)


@contextlib.contextmanager
def node_lost_after(step: int):
    """Within it, training fails with ``RuntimeError("node lost")`` in the step after
    ``step``, as a crash would, after ``step`` was logged and checkpointed as configured."""
    original = SPPOTrainer.compute_loss

    def crash(self, *args, **kwargs):
        if self.state.global_step == step:
            raise RuntimeError("node lost")
        return original(self, *args, **kwargs)

    SPPOTrainer.compute_loss = crash
    try:
        yield
    finally:
        SPPOTrainer.compute_loss = original
