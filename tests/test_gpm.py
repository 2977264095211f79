"""GPM as a judge (judge.backend gpm), on tiny checkpoints in the published layout built here:
its probabilities against an independent computation of the paper's formula (the explicit
block matrix R(x), one unbatched forward pass per response), with and without the prompt head,
for two value-head sizes, and with a response longer than the length budget."""

import math

import numpy as np
import pytest
import torch

from sppoflow.errors import UserError
from sppoflow.score.judges import JudgeSettings, build_judge
from tiny_model import build_tiny_gpm

PROMPTS = ["Name a prime number.", "How do plants make food?"]
RESPONSES = [
    ["Seven.", "Nine is prime.", "Two is the only even prime.", "I cannot say."],
    [
        "By photosynthesis: light, water and carbon dioxide become sugar. " * 12,  # > budget
        "They eat soil.",
        "Photosynthesis.",
        "With chlorophyll, from sunlight.",
    ],
]
MAX_LENGTH = 96
TEMPERATURE = 0.1


def reference_probabilities(folder, prompt, responses):
    """P(y_i > y_j | x) from the formula, sequence by sequence: the chat-templated
    conversation (special tokens added, cut at the budget, last token set to EOS), the final
    hidden state at its last token through the value head, L2-normalised; lambda the softmax
    of the prompt head at the prompt turn's last token; s = v_i^T R^T v_j with R block
    diagonal, blocks lambda_k [[0, -1], [1, 0]]."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(folder)
    decoder = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float64).model.eval()
    heads = load_file(folder / "model.safetensors")
    value = heads["value_head.weight"].double()
    prompt_head = heads.get("prompt_head.weight")
    d = value.shape[0]
    user = [{"role": "user", "content": prompt}]
    alone = tokenizer(tokenizer.apply_chat_template(user, tokenize=False))["input_ids"]
    vectors, gates = [], []
    for response in responses:
        text = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": response}], tokenize=False
        )
        ids = tokenizer(text)["input_ids"][:MAX_LENGTH]
        ids[-1] = tokenizer.eos_token_id
        with torch.no_grad():
            hidden = decoder(input_ids=torch.tensor([ids])).last_hidden_state[0]
        v = value @ hidden[-1]
        vectors.append(v / v.norm())
        if prompt_head is None:
            gates.append(torch.ones(d // 2, dtype=torch.float64))
        else:
            gates.append(torch.softmax(prompt_head.double() @ hidden[len(alone) - 1], dim=0))
    k = len(responses)
    probs = np.zeros((k, k))
    for i in range(k):
        rotation = torch.zeros(d, d, dtype=torch.float64)
        for block in range(d // 2):
            rotation[2 * block, 2 * block + 1] = -gates[0][block]
            rotation[2 * block + 1, 2 * block] = gates[0][block]
        for j in range(k):
            s = float(vectors[i] @ rotation.T @ vectors[j])
            probs[i, j] = 1 / (1 + math.exp(-s / TEMPERATURE))
    return probs, gates


def judge_of(folder, **settings):
    values = dict(backend="gpm", model=str(folder), device="cpu", dtype="float32")
    return build_judge(JudgeSettings(**{**values, "max_length": MAX_LENGTH, **settings}))


@pytest.mark.parametrize(
    ("value_head_dim", "prompt_head"), [(8, True), (8, False), (4, True), (2, False)]
)
def test_gpm_equals_the_formula_computed_apart(tmp_path, embedded_tokenizer, value_head_dim,
                                               prompt_head):  # fmt: skip
    folder = build_tiny_gpm(tmp_path / "gpm", embedded_tokenizer, value_head_dim, prompt_head)
    judge = judge_of(folder)
    assert judge.value_head_dim == value_head_dim and (judge.prompt_head is None) != prompt_head
    long = RESPONSES[1][0]
    assert len(embedded_tokenizer(long)["input_ids"]) > MAX_LENGTH  # cut at the budget
    matrices = judge.logit_matrices(PROMPTS, RESPONSES)
    worst = 0.0
    for prompt, responses, logits in zip(PROMPTS, RESPONSES, matrices, strict=True):
        expected, gates = reference_probabilities(folder, prompt, responses)
        ours = 1 / (1 + np.exp(-logits))
        worst = max(worst, float(np.abs(ours - expected).max()))
        assert np.allclose(logits, -logits.T)  # skew-symmetric: P(i > j) + P(j > i) = 1
        assert np.diag(ours) == pytest.approx(0.5)
        if prompt_head:  # every response's pass gives the prompt the same weights
            assert all(torch.allclose(g, gates[0], atol=1e-6) for g in gates)
    print(f"\nd={value_head_dim}, prompt head {prompt_head}: largest |P - P_ref| = {worst:.2e}")
    assert worst < 1e-5
    comparison = judge.compare(PROMPTS, [r[0] for r in RESPONSES], [r[2] for r in RESPONSES])
    pairwise = [1 / (1 + math.exp(-m[0, 2])) for m in matrices]
    assert comparison.prob == pytest.approx(pairwise, abs=1e-6)


def test_the_temperature_scales_the_score(tmp_path, embedded_tokenizer):
    folder = build_tiny_gpm(tmp_path / "gpm", embedded_tokenizer)
    default, sharper = judge_of(folder), judge_of(folder, temperature=0.05)
    assert default.temperature == TEMPERATURE
    [a], [b] = (
        default.logit_matrices(PROMPTS[:1], RESPONSES[:1]),
        sharper.logit_matrices(PROMPTS[:1], RESPONSES[:1]),
    )
    assert b == pytest.approx(2 * a)


def test_a_checkpoint_without_a_value_head_is_one_line(tmp_path, embedded_tokenizer):
    from tiny_model import build_tiny_llama

    folder = build_tiny_llama(tmp_path / "plain", embedded_tokenizer)
    with pytest.raises(UserError, match=r"has no value_head.weight: not a GPM checkpoint"):
        judge_of(folder)


def test_gpm_embeds_each_response_once_where_a_pairwise_judge_asks_every_ordered_pair(
    tmp_path, embedded_tokenizer
):
    """At K = 5: GPM runs 5 sequences per prompt through its model; a pairwise judge (PairRM,
    an LLM judge) asks K(K-1) = 20 ordered pairs."""
    from sppoflow.score.judges import PairwiseJudge

    judge = judge_of(build_tiny_gpm(tmp_path / "gpm", embedded_tokenizer))
    seen = []
    forward = judge.model.forward
    judge.model.forward = lambda input_ids, **kw: (
        seen.append(len(input_ids)) or forward(input_ids=input_ids, **kw)
    )
    five = [["a", "b", "c", "d", "e"]]
    judge.logit_matrices(PROMPTS[:1], five)
    assert sum(seen) == 5

    class CountingPairs(PairwiseJudge):
        asked = 0

        def pair_logits(self, prompts, first, second):
            CountingPairs.asked += len(prompts)
            return np.zeros(len(prompts))

    CountingPairs().logit_matrices(PROMPTS[:1], five)
    assert CountingPairs.asked == 20
