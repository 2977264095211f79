"""Memory-lean log-probabilities: the same values and gradients as the full log-softmax."""

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from sppoflow.models.logprobs import (
    OutputLayerMismatch,
    response_logps,
    rows_per_chunk,
    sequence_logps,
)

VOCAB = 3000


def llama(**overrides):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         **overrides)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def batch(seed=1):
    """3 right-padded sequences: prompt, then response (mask 1), then padding."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (3, 20), generator=generator)
    attention = torch.ones_like(ids)
    response = torch.zeros_like(ids)
    for row, (prompt, length) in enumerate([(5, 20), (8, 14), (3, 9)]):
        response[row, prompt:length] = 1
        attention[row, length:] = 0
    return ids, attention, response


def assert_matches_plain(model, ids, attention, response):
    with torch.no_grad():
        torch.testing.assert_close(
            response_logps(model, ids, attention, response),
            plain(model, ids, attention, response),
            rtol=0,
            atol=1e-5,
        )


def plain(model, ids, attention, response):
    return sequence_logps(model(input_ids=ids, attention_mask=attention).logits, ids, response)


@pytest.mark.parametrize("chunk_bytes", [4 * VOCAB * 1, 4 * VOCAB * 7, 2**30])
def test_the_same_values_as_the_full_log_softmax(chunk_bytes):
    model = llama()
    ids, attention, response = batch()
    with torch.no_grad():
        expected = plain(model, ids, attention, response)
        got = response_logps(model, ids, attention, response, chunk_bytes=chunk_bytes)
    assert rows_per_chunk(VOCAB, chunk_bytes) in (1, 7, 2**30 // (4 * VOCAB))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (got < 0).all()


def test_the_same_gradients_as_the_full_log_softmax():
    ids, attention, response = batch()
    weights = torch.tensor([1.0, -2.0, 0.5])
    grads = []
    for lean in (False, True):
        model = llama()
        model.train()
        logps = (
            response_logps(model, ids, attention, response, chunk_bytes=4 * VOCAB * 5)
            if lean
            else plain(model, ids, attention, response)
        )
        (logps * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_gemma_soft_capping_is_applied():
    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=8, final_logit_softcapping=5.0)  # fmt: skip
    model = Gemma2ForCausalLM(config).eval()
    ids, attention, response = batch()
    assert_matches_plain(model, ids, attention, response)


def test_an_output_layer_it_cannot_rebuild_is_refused():
    model = llama()
    model.config.final_logit_softcapping = 3.0  # Llama does not apply it: the rebuild is wrong
    ids, attention, response = batch()
    with pytest.raises(OutputLayerMismatch, match="LlamaForCausalLM: its output layer"):
        response_logps(model, ids, attention, response)


def test_a_lora_model_gives_the_same_values():
    from sppoflow.train.lora import add_lora_adapters
    from sppoflow.train.settings import TrainSettings

    lora = TrainSettings(lora=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    model = add_lora_adapters(llama(), lora)
    ids, attention, response = batch()
    assert_matches_plain(model, ids, attention, response)


def test_under_accelerates_mixed_precision_the_training_pass_matches_the_reference_pass():
    """accelerate autocasts the model's forward only (and returns fp32 logits); the trainer
    runs response_logps under the same autocast, so that the output layer, applied outside the
    forward, runs in bf16 as it does in the reference pass: step 0's log-ratios are then 0."""
    from accelerate.utils import convert_outputs_to_fp32

    model = llama()
    with torch.no_grad():
        model.lm_head.weight.mul_(300)  # logits of tens of nats: bf16 rounding shows
    ids, attention, response = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = response_logps(model, ids, attention, response)
    model.forward = convert_outputs_to_fp32(
        torch.autocast("cpu", dtype=torch.bfloat16)(model.forward)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        training = response_logps(model, ids, attention, response)
    assert torch.equal(training, reference)
    with pytest.raises(OutputLayerMismatch):  # the output layer in fp32 is another model
        response_logps(model, ids, attention, response)
