"""Batched, left-padded, seeded sampling with the transformers backend."""

import pandas as pd

from sppoflow.models.batching import length_sorted_batches, pad
from sppoflow.sample.records import cut_at_stop
from sppoflow.sample.settings import SamplingSettings
from sppoflow.sample.transformers_backend import generate
from sppoflow.tables import SAMPLES

PROMPTS = pd.DataFrame(
    {
        "prompt_id": ["short", "long", "none"],
        "prompt": [
            "Hi?",
            "Describe, in a few careful sentences, how a bicycle gear system works.",
            "Is None a value?",
        ],
    }
)


def settings(**overrides):
    base = dict(
        k=2,
        temperature=0.7,
        top_p=0.9,
        max_new_tokens=8,
        batch_size=4,
        seed=0,
        dtype="float32",
        device="cpu",
    )
    return SamplingSettings(**{**base, **overrides})


def test_k_samples_per_prompt_with_counts_and_finish_reasons(tiny_model):
    model, tokenizer = tiny_model
    out = generate(model, tokenizer, PROMPTS, settings(k=3))
    SAMPLES.check(out, "generated")
    assert len(out) == 9
    assert sorted(out.groupby("prompt_id").size().tolist()) == [3, 3, 3]
    assert set(out.response_idx) == {0, 1, 2}
    assert (out.response_tokens == out.response_token_ids.map(len)).all()
    assert (out.response_tokens <= 8).all()
    assert set(out.finish_reason) <= {"stop", "length"}
    stopped = out[out.finish_reason == "stop"]
    assert all(ids[-1] == tokenizer.eos_token_id for ids in stopped.response_token_ids)
    assert out.set_index("prompt_id").loc["none", "prompt"].iloc[0] == "Is None a value?"


def test_same_seed_same_samples_and_other_seed_differs(tiny_model):
    model, tokenizer = tiny_model
    a = generate(model, tokenizer, PROMPTS, settings())
    b = generate(model, tokenizer, PROMPTS, settings())
    c = generate(model, tokenizer, PROMPTS, settings(seed=1))
    assert a.response_token_ids.map(tuple).tolist() == b.response_token_ids.map(tuple).tolist()
    assert a.response_token_ids.map(tuple).tolist() != c.response_token_ids.map(tuple).tolist()


def test_left_padding_does_not_change_greedy_output(tiny_model):
    """A short prompt padded inside a batch of long ones decodes as it does alone."""
    model, tokenizer = tiny_model
    greedy = settings(temperature=0.0, k=1, max_new_tokens=6)
    alone = generate(model, tokenizer, PROMPTS.iloc[[0]], greedy)
    batched = generate(model, tokenizer, PROMPTS, greedy).set_index("prompt_id")
    assert list(alone.response_token_ids.iloc[0]) == list(
        batched.loc["short", "response_token_ids"]
    )


def test_padding_batching_and_cut_at_stop():
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    # longest first; at most 2 per batch and at most 10 padded tokens per batch
    assert length_sorted_batches([3, 9, 4, 1, 5], batch_size=2, max_batch_tokens=10) == [
        [1],
        [4, 2],
        [0, 3],
    ]
    assert cut_at_stop([4, 9, 2, 0, 0], {2}) == ([4, 9, 2], "stop")
    assert cut_at_stop([4, 9, 3], {2}) == ([4, 9, 3], "length")


def test_generation_on_gpu(tiny_model, cuda):
    model, tokenizer = tiny_model
    out = generate(model.to("cuda"), tokenizer, PROMPTS, settings(device="cuda"))
    model.to("cpu")
    assert len(out) == 6
