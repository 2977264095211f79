"""The reference log-probabilities a method reads, computed once before training and kept in
the state folder: the round's starting policy's, and the base model's for a method anchored
to it (INPO), whose model is loaded for its pass only."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sppoflow.errors import UserError
from sppoflow.models.loading import load_policy
from sppoflow.train.data import Collator
from sppoflow.train.reference import (
    load_or_compute_base_references,
    load_or_compute_references,
    reference_logps,
)
from tiny_model import build_tiny_llama

ONE_PROCESS = SimpleNamespace(
    process_index=0, world_size=1, device=torch.device("cpu"), per_device_train_batch_size=2
)


def round_examples() -> list[dict]:
    """Three prompts' winner/loser sequences, as build_examples makes them."""
    terms = {"p": [0.7, 0.3], "role": [1, -1], "q": 0.6}
    return [
        {"prompt_ids": [1, 5, 9], "response_ids": [[11, 12, 2], [13, 2]], **terms},
        {"prompt_ids": [1, 7], "response_ids": [[20, 21, 22, 2], [23, 2]], **terms},
        {"prompt_ids": [1, 4, 4, 8], "response_ids": [[30, 2], [31, 32, 2]], **terms},
    ]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, embedded_tokenizer, tiny_model_dir) -> tuple[Path, Path]:
    """The policy of a later round (another seed's weights) and the base model."""
    policy = build_tiny_llama(tmp_path_factory.mktemp("policy"), embedded_tokenizer, seed=1)
    return policy, tiny_model_dir


def test_the_base_models_log_probabilities_are_computed_once_and_kept(tmp_path, two_models):
    policy_dir, base_dir = two_models
    policy, tokenizer = load_policy(policy_dir)
    collator = Collator(tokenizer.pad_token_id)
    examples = round_examples()
    load_or_compute_references(
        policy, examples, collator, ONE_PROCESS, "fp32", tmp_path / "reference_logps.json"
    )
    kept = tmp_path / "base_logps.json"
    load_or_compute_base_references(
        base_dir, policy_dir, examples, collator, ONE_PROCESS, "fp32", kept
    )
    base, _ = load_policy(base_dir)
    expected = reference_logps(base, round_examples(), collator, 2, "fp32")
    assert [e["base_logps"] for e in examples] == expected == json.loads(kept.read_text())
    drift = [r - b for e in examples for r, b in zip(e["ref_logps"], e["base_logps"], strict=True)]
    assert all(abs(d) > 1e-3 for d in drift)  # two different models
    # a resume reads them back: the base model is not loaded again
    again = round_examples()
    load_or_compute_base_references(
        tmp_path / "gone", policy_dir, again, collator, ONE_PROCESS, "fp32", kept
    )
    assert [e["base_logps"] for e in again] == expected


def test_round_one_starts_from_the_base_model_and_loads_nothing(tmp_path, two_models):
    _, base_dir = two_models
    examples = [{**e, "ref_logps": [-1.5, -2.5]} for e in round_examples()]
    collator = Collator(0)
    load_or_compute_base_references(
        base_dir, base_dir, examples, collator, ONE_PROCESS, "fp32", tmp_path / "base.json"
    )
    assert all(e["base_logps"] == e["ref_logps"] for e in examples)


def test_a_base_model_that_cannot_read_the_rounds_tokens_is_an_error(tmp_path, two_models):
    policy_dir, base_dir = two_models
    size = load_policy(base_dir)[0].get_input_embeddings().num_embeddings
    examples = [{"prompt_ids": [1], "response_ids": [[size + 3, 2], [5, 2]], "ref_logps": [0, 0]}]
    with pytest.raises(UserError, match=f"sequences use id {size + 3}: it is not the base"):
        load_or_compute_base_references(
            base_dir, policy_dir, examples, Collator(0), ONE_PROCESS, "fp32", tmp_path / "b.json"
        )


def test_the_collator_counts_the_padding_of_its_batches():
    """Right padding to the longest sequence of a batch: the slots a packed batch would skip
    (the train job logs their share)."""
    collator = Collator(0)
    examples = round_examples()
    batch = collator(examples[:2])
    tokens = sum(len(ex["prompt_ids"]) + len(r) for ex in examples[:2] for r in ex["response_ids"])
    assert collator.tokens == tokens == int(batch["attention_mask"].sum())
    assert collator.slots == batch["input_ids"].numel()
    assert collator.padding_share == pytest.approx(1 - tokens / batch["input_ids"].numel())
    second = collator(examples[2:])
    assert collator.tokens == tokens + int(second["attention_mask"].sum())  # over every batch
    assert collator.slots == batch["input_ids"].numel() + second["input_ids"].numel()
    assert 0 < collator.padding_share < 1 and Collator(0).padding_share == 0.0
