"""The transformers backend's own decoding loop (sppoflow.sample.decoding) against transformers'
``generate`` and against the textbook definition of nucleus sampling."""

import pytest
import torch

from sppoflow.models.batching import pad
from sppoflow.models.chat import encode_prompts
from sppoflow.sample import decoding
from sppoflow.sample.records import cut_at_stop

PROMPTS = ["Hi?", "Describe how a bicycle gear system works, carefully.", "Is None a value?"]


def sorted_nucleus(probs: torch.Tensor, top_p: float) -> list[set[int]]:
    """Per row: the most likely tokens, in order, until their mass reaches top_p."""
    kept = []
    for row in probs:
        order = row.argsort(descending=True).tolist()
        total, chosen = 0.0, set()
        for token in order:
            chosen.add(token)
            total += float(row[token])
            if total >= top_p:
                break
        kept.append(chosen)
    return kept


def test_the_nucleus_is_the_smallest_set_reaching_top_p_even_past_the_first_candidates():
    generator = torch.Generator().manual_seed(0)
    peaked = torch.randn(3, 500, generator=generator) * 6  # a few tokens hold the mass
    flat = torch.randn(2, 500, generator=generator) * 0.1  # needs far more than 64 tokens
    probs = torch.softmax(torch.cat([peaked, flat]), dim=-1)
    for top_p in (0.5, 0.9, 0.99):
        weights, ids = decoding.nucleus(probs, top_p)
        got = [set(i[w > 0].tolist()) for w, i in zip(weights, ids, strict=True)]
        assert got == sorted_nucleus(probs, top_p)
    assert max(len(s) for s in sorted_nucleus(probs, 0.9)) > decoding.FIRST_CANDIDATES
    # the kept tokens keep their probabilities
    weights, ids = decoding.nucleus(probs, 0.9)
    assert torch.equal(weights[weights > 0], probs.gather(-1, ids)[weights > 0])


def batch(tokenizer, k: int):
    encoded = encode_prompts(tokenizer, PROMPTS, None)
    return pad([row for row in encoded for _ in range(k)], tokenizer.pad_token_id, left=True)


def test_greedy_decoding_matches_transformers_generate(tiny_model):
    """Same tokens as ``generate``: the KV cache, positions under left padding, the shared
    prompt prefill and the dropping of finished rows change nothing."""
    model, tokenizer = tiny_model
    stops = {tokenizer.eos_token_id}
    ids, mask = batch(tokenizer, k=2)
    ours = decoding.decode(
        model, ids, mask, max_new_tokens=12, stops=stops, temperature=0, top_p=1.0, seed=0
    )
    with torch.inference_mode():
        theirs = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=12,
            eos_token_id=sorted(stops),
            pad_token_id=tokenizer.pad_token_id,
        )[:, ids.shape[1] :].tolist()
    assert [cut_at_stop(t, stops)[0] for t in ours] == [cut_at_stop(t, stops)[0] for t in theirs]


def first_stop(tokens: list[int], stop: int) -> int:
    return tokens.index(stop) if stop in tokens else len(tokens)


def test_rows_that_stop_leave_the_batch_without_changing_the_others(tiny_model, monkeypatch):
    """Sampling with a stop token that rows draw at different steps: they are dropped as they
    finish, and the rows left draw what they draw with nobody dropped."""
    model, tokenizer = tiny_model
    encoded = encode_prompts(tokenizer, PROMPTS, None)
    ids, mask = pad(encoded, tokenizer.pad_token_id, left=True)
    common = {"max_new_tokens": 16, "temperature": 1.0, "top_p": 0.9, "seed": 0}
    free = decoding.decode(model, ids, mask, stops={-1}, **common)
    stop = next(t for t in free[0][1:] if len({first_stop(row, t) for row in free}) > 1)
    dropping = decoding.decode(model, ids, mask, stops={stop}, **common)
    monkeypatch.setattr(decoding, "COMPACT_SHARE", 2.0)  # never drop a row
    keeping = decoding.decode(model, ids, mask, stops={stop}, **common)
    cut = [[cut_at_stop(t, {stop})[0] for t in run] for run in (dropping, keeping)]
    assert cut[0] == cut[1]
    assert cut[0] == [cut_at_stop(t, {stop})[0] for t in free]


def test_sampling_is_seeded_and_draws_within_the_nucleus(tiny_model):
    model, tokenizer = tiny_model
    ids, mask = batch(tokenizer, k=3)
    common = {"max_new_tokens": 10, "stops": {-1}, "temperature": 0.7, "top_p": 0.9}
    a = decoding.decode(model, ids, mask, seed=0, **common)
    assert a == decoding.decode(model, ids, mask, seed=0, **common)
    assert a != decoding.decode(model, ids, mask, seed=1, **common)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -1].float()
    allowed = sorted_nucleus(torch.softmax(logits / 0.7, dim=-1), 0.9)
    assert all(row[0] in allowed[n] for n, row in enumerate(a))


def test_one_token_attention_over_the_whole_buffers_matches_sdpa_over_the_filled_part():
    """Grouped heads, left padding and unfilled positions: the step's attention reads the
    cache's buffers and a mask, and gives what SDPA gives on the filled slice."""
    from transformers.cache_utils import Cache
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    rows, heads, kv_heads, dim, capacity, filled = 4, 6, 2, 8, 12, 7
    generator = torch.Generator().manual_seed(0)
    cache = Cache(layers=[decoding.PreallocatedLayer(capacity)])
    keys, values = torch.randn(2, rows, kv_heads, filled, dim, generator=generator)
    sliced_keys, sliced_values = cache.layers[0].update(keys, values)
    padding = torch.ones(rows, filled, dtype=torch.bool)
    padding[1, :3] = False  # a left-padded row
    attended = torch.nn.functional.pad(padding, (0, capacity - filled))
    query = torch.randn(rows, heads, 1, dim, generator=generator)

    class Attention(torch.nn.Module):
        layer_idx = 0
        num_key_value_groups = heads // kv_heads
        is_causal = True

    module = Attention()
    ours, _ = decoding.one_token_attention(
        module,
        query,
        sliced_keys,
        sliced_values,
        None,
        scaling=0.3,
        step_keys=decoding.StepKeys(cache, attended),
    )
    sdpa, _ = sdpa_attention_forward(
        module, query, sliced_keys, sliced_values, padding[:, None, None, :], scaling=0.3
    )
    assert ours.shape == sdpa.shape == (rows, 1, heads, dim)
    torch.testing.assert_close(ours, sdpa, rtol=1e-5, atol=1e-6)
    # without step_keys (the prompt's pass) it is SDPA itself
    plain, _ = decoding.one_token_attention(
        module, query, sliced_keys, sliced_values, padding[:, None, None, :], scaling=0.3
    )
    assert torch.equal(plain, sdpa)


def test_decoding_steps_run_through_the_one_token_attention_and_restore_sdpa(
    tiny_model, monkeypatch
):
    """The greedy test above holds with the steps on the one-token attention: here it is
    checked that they are (every layer at every step), and that the model is back on SDPA
    after, even when decoding fails."""
    from transformers import AttentionInterface

    model, tokenizer = tiny_model
    assert model.config._attn_implementation == "sdpa"
    calls = []

    def spy(module, query, *args, step_keys=None, **kwargs):
        calls.append(step_keys is not None)
        return decoding.one_token_attention(module, query, *args, step_keys=step_keys, **kwargs)

    AttentionInterface.register(decoding.ONE_TOKEN_ATTENTION, spy)
    try:
        ids, mask = batch(tokenizer, k=1)
        decoding.decode(
            model, ids, mask, max_new_tokens=5, stops={-1}, temperature=0, top_p=1.0, seed=0
        )
        with monkeypatch.context() as patch:
            patch.setattr(decoding, "next_tokens", lambda *a, **k: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                decoding.decode(
                    model,
                    ids,
                    mask,
                    max_new_tokens=5,
                    stops={-1},
                    temperature=0,
                    top_p=1.0,
                    seed=0,
                )
    finally:
        AttentionInterface.register(decoding.ONE_TOKEN_ATTENTION, decoding.one_token_attention)
    layers = model.config.num_hidden_layers
    # first run: the prompt's pass on SDPA, then 4 steps on the buffers; the second failed
    # before its first step
    assert calls == [False] * layers + [True] * (4 * layers) + [False] * layers
    assert model.config._attn_implementation == "sdpa"


def test_one_token_attention_in_bf16_is_as_precise_as_sdpa():
    """With bf16 queries, keys and values, the step's attention (keys kept in fp32 by the
    cache) stays as close to an fp32 reference as SDPA's bf16 kernel; bf16 scores were 1.7x
    further off."""
    from transformers.cache_utils import Cache
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    rows, heads, kv_heads, dim, filled = 16, 9, 3, 64, 100
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(rows, heads, 1, dim, generator=generator) * 2
    keys = torch.randn(rows, kv_heads, filled, dim, generator=generator) * 2
    values = torch.randn(rows, kv_heads, filled, dim, generator=generator)

    class Attention(torch.nn.Module):
        layer_idx = 0
        num_key_value_groups = heads // kv_heads
        is_causal = False

    module = Attention()
    reference, _ = sdpa_attention_forward(module, query, keys, values, None, scaling=dim**-0.5)
    bf16 = [t.to(torch.bfloat16) for t in (query, keys, values)]
    sdpa, _ = sdpa_attention_forward(module, *bf16, None, scaling=dim**-0.5)
    cache = Cache(layers=[decoding.PreallocatedLayer(filled + 20, torch.float32)])
    handed = cache.layers[0].update(bf16[1], bf16[2])
    assert handed[0].dtype == torch.bfloat16  # the caller gets the model's dtype
    attended = torch.ones(rows, filled + 20, dtype=torch.bool)
    attended[:, filled:] = False
    ours, _ = decoding.one_token_attention(
        module, bf16[0], *handed, None, scaling=dim**-0.5,
        step_keys=decoding.StepKeys(cache, attended),
    )  # fmt: skip
    error = {
        name: (out.float() - reference).abs().mean().item()
        for name, out in (("sdpa", sdpa), ("ours", ours))
    }
    assert error["ours"] < 1.2 * error["sdpa"], error


def test_the_decoding_loop_calls_no_deprecated_transformers_api(tiny_model):
    """The cache goes in under the name this transformers takes (``cache`` from 5.24 on, where
    ``past_key_values`` is deprecated, to be removed in 5.40): no FutureWarning or
    DeprecationWarning from a step, with both attention paths."""
    import warnings

    model, tokenizer = tiny_model
    assert decoding.cache_argument(type(model)) == "cache"
    ids, mask = batch(tokenizer, k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        for temperature in (0.0, 0.7):
            decoding.decode(model, ids, mask, max_new_tokens=4, stops={tokenizer.eos_token_id},
                            temperature=temperature, top_p=0.9, seed=0)  # fmt: skip


def test_a_model_whose_forward_takes_past_key_values_gets_it_there():
    """Remote code written for older transformers names the argument past_key_values."""

    class OldModel:
        def forward(self, input_ids, past_key_values=None, use_cache=None): ...

    class NewModel:
        def forward(self, input_ids, cache=None, use_cache=None): ...

    assert decoding.cache_argument(OldModel) == "past_key_values"
    assert decoding.cache_argument(NewModel) == "cache"


def test_these_tests_run_against_the_newest_transformers_the_project_allows(package_index):
    """The decoding tests above meet a deprecation the newest allowed transformers announces
    (a fresh install of the test command takes it): the installed release is that one."""
    import json
    import urllib.request
    from importlib.metadata import version

    import tomllib
    from packaging.requirements import Requirement
    from packaging.version import Version

    from helpers import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [allowed] = [r for r in map(Requirement, project["dependencies"]) if r.name == "transformers"]
    with urllib.request.urlopen("https://pypi.org/pypi/transformers/json", timeout=60) as page:
        releases = json.load(page)["releases"]
    newest = max(
        Version(name)
        for name, files in releases.items()
        if files and not all(f.get("yanked") for f in files)
        and not Version(name).is_prerelease and Version(name) in allowed.specifier
    )  # fmt: skip
    installed = Version(version("transformers"))
    assert installed == newest, f"transformers {installed}: pip install -U '{allowed}' ({newest})"
