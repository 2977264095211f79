"""The reward-model and LLM-judge backends on tiny random checkpoints (mechanics only: a
random model is no judge)."""

import json

import numpy as np
import pytest
import torch
from transformers import LlamaForSequenceClassification

from sppoflow.errors import UserError
from sppoflow.score.judges import JudgeSettings, build_judge, sigmoid
from sppoflow.score.judges.llm_judge import fill
from tiny_model import build_tiny_llama, tiny_reward_model

PROMPTS = ["How do I boil an egg?", "Name a prime number {x}."]
RESPONSES = [
    ["Put it in boiling water for nine minutes.", "Eggs.", "Boil water, add the egg, wait."],
    ["Seven.", "Four is {not} prime, but 7 is.", "2"],
]


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory, embedded_tokenizer):
    return tiny_reward_model(tmp_path_factory.mktemp("rm"), embedded_tokenizer)


def judge(backend, folder, **overrides):
    settings = dict(backend=backend, model=str(folder), device="cpu", dtype="float32")
    return build_judge(JudgeSettings(**{**settings, **overrides}))


def test_reward_model_round_trip_and_scores(reward_dir):
    rm = judge("reward_model", reward_dir)
    [scores, _] = rm.scores(PROMPTS, RESPONSES)
    model = LlamaForSequenceClassification.from_pretrained(reward_dir).eval()
    ids = torch.tensor([rm.encode(PROMPTS[0], RESPONSES[0][1])])
    assert "<|im_start|>assistant\nEggs.<|im_end|>" in rm.tokenizer.decode(ids[0])
    with torch.no_grad():
        direct = model(input_ids=ids).logits[0, 0].item()
    assert scores[1] == pytest.approx(direct, abs=1e-5)
    [L, _] = rm.logit_matrices(PROMPTS, RESPONSES)
    assert L[0, 2] == pytest.approx(scores[0] - scores[2])  # temperature 1: P = sigmoid(r_i - r_j)
    assert np.allclose(L, -L.T)


def test_reward_model_is_batch_invariant_and_makes_k_passes_per_prompt(reward_dir):
    one = judge("reward_model", reward_dir, batch_size=1)
    calls = []
    one.model.register_forward_hook(lambda module, args, out: calls.append(len(out.logits)))
    small = one.scores(PROMPTS, RESPONSES)
    assert sum(calls) == 6 and len(calls) == 6  # K = 3 sequences per prompt, not K(K-1) = 6
    big = judge("reward_model", reward_dir, batch_size=32).scores(PROMPTS, RESPONSES)
    reversed_ = judge("reward_model", reward_dir).scores(PROMPTS[::-1], RESPONSES[::-1])[::-1]
    for a, b, c in zip(small, big, reversed_, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=1e-5)


def test_reward_model_needs_one_output_and_a_chat_template(tmp_path, embedded_tokenizer):
    two = tiny_reward_model(tmp_path / "two", embedded_tokenizer, num_labels=2)
    with pytest.raises(UserError, match="has 2 outputs; a reward model has one scalar head"):
        judge("reward_model", two)
    plain = tiny_reward_model(tmp_path / "plain", embedded_tokenizer)
    (plain / "chat_template.jinja").unlink()
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="has no chat template"):
        judge("reward_model", plain)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory, embedded_tokenizer):
    return build_tiny_llama(tmp_path_factory.mktemp("judge-llm"), embedded_tokenizer, seed=3)


def test_llm_judge_reads_the_verdict_logits(llm_dir):
    llm = judge("llm_judge", llm_dir)
    [logit] = llm.pair_logits([PROMPTS[0]], [RESPONSES[0][0]], [RESPONSES[0][1]])
    ids = llm.encode(PROMPTS[0], RESPONSES[0][0], RESPONSES[0][1])
    text = llm.tokenizer.decode(ids)
    assert "[Response A]\nPut it in boiling water" in text and text.endswith("assistant\n")
    with torch.no_grad():
        last = llm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    a, b = llm.verdict_ids
    assert logit == pytest.approx((last[a] - last[b]).item(), abs=1e-4)


def test_llm_judge_does_not_depend_on_batch_composition(llm_dir):
    long_second = "A much longer response. " * 40
    prompts, first, second = [PROMPTS[0], PROMPTS[1]], ["Short.", "Seven."], [long_second, "2"]
    batched = judge("llm_judge", llm_dir).pair_logits(prompts, first, second)
    alone = judge("llm_judge", llm_dir, batch_size=1).pair_logits(prompts, first, second)
    np.testing.assert_allclose(batched, alone, atol=1e-4)


def test_llm_judge_compare_averages_both_orders_and_reports_flips(llm_dir):
    llm = judge("llm_judge", llm_dir)
    firsts, seconds = [RESPONSES[0][0], RESPONSES[1][0]], [RESPONSES[0][1], RESPONSES[1][1]]
    forward = llm.pair_logits(PROMPTS, firsts, seconds)
    backward = llm.pair_logits(PROMPTS, seconds, firsts)
    comparison = llm.compare(PROMPTS, firsts, seconds)
    np.testing.assert_allclose(
        comparison.prob, (sigmoid(forward) + sigmoid(-backward)) / 2, atol=1e-6
    )
    assert comparison.flipped.tolist() == ((forward > 0) == (backward > 0)).tolist()


def test_llm_judge_template_file_and_braces(tmp_path, llm_dir):
    template = tmp_path / "judge.txt"
    template.write_text("Q: {instruction}\n1: {response_a}\n2: {response_b}\nBetter (A/B)?")
    llm = judge("llm_judge", llm_dir, template=str(template))
    text = llm.tokenizer.decode(llm.encode("a {b} c", "{response_b}", "x"))
    assert "Q: a {b} c\n1: {response_b}\n2: x\nBetter (A/B)?" in text
    assert fill("{response_a}|{instruction}", "i", "a", "b") == "a|i"
    broken = tmp_path / "broken.txt"
    broken.write_text("Q: {instruction} {response_a}")
    with pytest.raises(UserError, match=r"broken\.txt lacks \{response_b\}"):
        judge("llm_judge", llm_dir, template=str(broken))


def test_llm_judge_verdicts_must_differ(llm_dir):
    with pytest.raises(UserError, match="map to the same token"):
        judge("llm_judge", llm_dir, verdict_a="A", verdict_b="A")
