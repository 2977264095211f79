"""The native PairRM backend: both checkpoint layouts, the exact input layout, truncation,
batch invariance, hub loading, and its output feeding the aggregate stage."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import fake_hub_cache
from pairrm_helpers import LARGE, deberta_v3_config, save_both_layouts
from sppoflow.aggregate.win_rates import AggregateSettings, aggregate
from sppoflow.errors import UserError
from sppoflow.score.judges import JudgeSettings, build_judge
from sppoflow.score.judges.pairrm import (
    MAX_LENGTH,
    SOURCE_MAX_LENGTH,
    PairEncoder,
    PairRMModel,
    load_pairrm,
)
from sppoflow.score.preferences import score_samples


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return save_both_layouts(tmp_path_factory.mktemp("pairrm"))


def words(start, n):
    return " ".join(f"w{k}" for k in range(start, start + n))


PROMPTS = [words(10, 40), words(100, 5), words(300, 120)]
FIRST = [words(1000, 60), words(2000, 3), words(3000, 200)]
SECOND = [words(4000, 9), words(5000, 150), words(6000, 30)]


def judge(folder, **overrides):
    settings = dict(backend="pairrm", model=str(folder), device="cpu", dtype="float32")
    return build_judge(JudgeSettings(**{**settings, **overrides}))


def test_both_layouts_load_and_agree(checkpoints):
    hf, original, _ = checkpoints
    (_, _, hf_layout), (_, _, original_layout) = load_pairrm(hf), load_pairrm(original)
    assert (hf_layout, original_layout) == ("hf", "original")
    a = judge(hf).pair_logits(PROMPTS, FIRST, SECOND)
    b = judge(original).pair_logits(PROMPTS, FIRST, SECOND)
    assert np.abs(a).max() > 1e-3  # random weights still separate the pairs
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_known_example_has_the_exact_layout(checkpoints):
    _, tokenizer, _ = load_pairrm(checkpoints[0])
    assert [
        tokenizer.convert_tokens_to_ids(t)
        for t in ("<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>")
    ] == [128001, 128002, 128003, 128004]
    ids, positions = PairEncoder(tokenizer).pair("w10 w11", "w20", "w30 w31 [SEP] w32")
    # [CLS] <|source|> x [SEP] [CLS] <|candidate1|> y1 [SEP] [CLS] <|candidate2|> y2 [SEP]
    assert ids == [1, 128001, 10, 11, 2, 1, 128002, 20, 2, 1, 128003, 30, 31, 32, 2]
    assert positions == (1, 6, 10)


def test_truncation_budgets(checkpoints):
    encoder = PairEncoder(load_pairrm(checkpoints[0])[1])
    long_source, long_answer = words(4, 3000), words(10000, 3000)
    ids, (_, c1, c2) = encoder.pair(long_source, long_answer, long_answer)
    assert c1 - 1 == SOURCE_MAX_LENGTH  # the source, specials included, fills its 1224
    budget = (MAX_LENGTH - SOURCE_MAX_LENGTH) // 2  # 412 per candidate
    assert c2 - c1 == budget and len(ids) - (c2 - 1) == budget
    assert ids[c1 - 2] == 2 and ids[-1] == 2 and ids[c1 - 3] == 4 + SOURCE_MAX_LENGTH - 4
    short = encoder.pair("w7 w8 w9", long_answer, "w5")[0]
    budget = (MAX_LENGTH - 6) // 2  # a 6-token source leaves 1021 per candidate
    assert short[:10] == [1, 128001, 7, 8, 9, 2, 1, 128002, 10000, 10001]
    assert len(short) == 6 + budget + 4
    assert len(encoder.pair(long_source, long_answer, long_answer)[0]) <= MAX_LENGTH


def test_results_do_not_depend_on_batch_size_or_order(checkpoints):
    hf = checkpoints[0]
    prompts, first, second = PROMPTS * 3, FIRST * 3, SECOND[::-1] * 3
    big = judge(hf, batch_size=32).pair_logits(prompts, first, second)
    one = judge(hf, batch_size=1).pair_logits(prompts, first, second)
    order = np.random.default_rng(0).permutation(len(prompts))
    shuffled = judge(hf, batch_size=4, max_batch_tokens=600).pair_logits(
        [prompts[n] for n in order], [first[n] for n in order], [second[n] for n in order]
    )
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(sigmoid(big), sigmoid(one), atol=1e-5, rtol=0)
    np.testing.assert_allclose(sigmoid(big[order]), sigmoid(shuffled), atol=1e-5, rtol=0)


def test_scores_every_ordered_pair_and_feeds_the_aggregate_stage(checkpoints):
    k = 3
    samples = pd.DataFrame(
        {
            "prompt_id": np.repeat(["a", "b"], k),
            "prompt": np.repeat(PROMPTS[:2], k),
            "response_idx": list(range(k)) * 2,
            "response": FIRST + SECOND,
            "response_token_ids": [[1]] * 6,
            "prompt_tokens": 3,
            "response_tokens": 5,
            "finish_reason": "stop",
        }
    )
    pairrm = judge(checkpoints[0])
    preferences = score_samples(pairrm, samples)
    assert len(preferences) == 2 * k * (k - 1)
    assert not pairrm.encoder._cache  # token ids are not kept from one chunk to the next
    a = preferences[preferences.prompt_id == "a"].set_index(["i", "j"])
    direct = pairrm.pair_logits([PROMPTS[0]], [FIRST[1]], [FIRST[2]])[0]
    assert a.loc[(1, 2), "logit"] == pytest.approx(direct, abs=1e-5)
    # a position-biased model: the two orders are separate forward passes, not negations
    assert a.loc[(1, 2), "logit"] != pytest.approx(-a.loc[(2, 1), "logit"])
    for estimator in ("strength", "direct"):
        result = aggregate(samples, preferences, AggregateSettings(estimator, 0.0))
        assert len(result.pairs) == 2 and result.win_rates.win_rate.between(0, 1).all()


def test_pairrm_large_shapes_match_the_public_checkpoint():
    with torch.device("meta"):
        model = PairRMModel(deberta_v3_config(128005, **LARGE))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["pretrained_model.embeddings.word_embeddings.weight"] == (128005, 1024)
    assert shapes["head_layer.1.weight"] == (1024, 2048)
    assert shapes["head_layer.4.weight"] == (1, 1024)
    assert sum(1 for k in shapes if k.endswith("attention.self.query_proj.weight")) == 24
    n_params = sum(v.numel() for v in model.state_dict().values())
    assert 430e6 < n_params < 440e6  # "0.4B" as the model card says


def test_not_a_pairrm_folder(tmp_path, checkpoints):
    with pytest.raises(UserError, match=r"no config\.json"):
        load_pairrm(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors").write_bytes(
        checkpoints[0].joinpath("model.safetensors").read_bytes()
    )
    with pytest.raises(UserError, match="neither PairRM layout"):
        load_pairrm(tmp_path)


def test_hub_ids_for_both_layouts_and_the_backbone(tmp_path, monkeypatch):
    """llm-blender/PairRM-hf and llm-blender/PairRM (which borrows
    microsoft/deberta-v3-large's tokenizer) load by their hub ids from the hub cache, offline
    (the cache's location patched where huggingface_hub and transformers read it, at each
    call; a script given a hub id runs as a process in tests/test_models.py)."""
    from huggingface_hub import constants

    built = tmp_path / "built"
    hf, original, backbone = save_both_layouts(built, backbone_ref="microsoft/deberta-v3-large")
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "llm-blender/PairRM-hf", hf)
    fake_hub_cache(cache, "llm-blender/PairRM", original)
    fake_hub_cache(cache, "microsoft/deberta-v3-large", backbone)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert constants.HF_HUB_OFFLINE
    samples = pd.DataFrame(
        {"prompt_id": ["a", "a"], "prompt": [PROMPTS[0]] * 2, "response_idx": [0, 1],
         "response": FIRST[:2]}
    )  # fmt: skip
    logits = []
    for repo in ("llm-blender/PairRM-hf", "llm-blender/PairRM"):
        settings = JudgeSettings(backend="pairrm", model=repo, device="cpu", dtype="float32")
        logits.append(score_samples(build_judge(settings), samples).logit.to_numpy())
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-6)
