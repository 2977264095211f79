"""The chat template is applied exactly once, and user text arrives intact."""

import copy

import pytest

from sppoflow.models.chat import encode_prompts, render_prompt

NONE_PROMPT = "None of my friends like hiking. Is None a good default in Python?"


def test_template_renders_prompt_once_and_intact(embedded_tokenizer):
    text = render_prompt(embedded_tokenizer, NONE_PROMPT)
    assert text.count(NONE_PROMPT) == 1
    assert text.endswith("<|im_start|>assistant\n")
    assert text.count("<|im_start|>user") == 1


def test_encoding_round_trips_the_prompt_without_extra_special_tokens(embedded_tokenizer):
    [ids] = encode_prompts(embedded_tokenizer, [NONE_PROMPT])
    assert (
        ids
        == embedded_tokenizer(
            render_prompt(embedded_tokenizer, NONE_PROMPT), add_special_tokens=False
        )["input_ids"]
    )
    assert NONE_PROMPT in embedded_tokenizer.decode(ids)
    assert ids[:2].count(embedded_tokenizer.bos_token_id) == 1


@pytest.fixture
def bos_adding_tokenizer(embedded_tokenizer):
    """A Llama-style tokenizer: its template writes BOS and its tokenizer adds BOS too."""
    tokenizer = copy.deepcopy(embedded_tokenizer)
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    tokenizer.add_bos_token = True
    text = render_prompt(tokenizer, "hi")
    if tokenizer(text)["input_ids"][:2] != [tokenizer.bos_token_id] * 2:
        pytest.skip("this tokenizer backend cannot be made to add BOS")
    return tokenizer


def test_bos_is_not_doubled_when_the_tokenizer_would_add_one(bos_adding_tokenizer):
    tok = bos_adding_tokenizer
    naive = tok(render_prompt(tok, NONE_PROMPT))["input_ids"]
    [ours] = encode_prompts(tok, [NONE_PROMPT])
    assert naive[:2] == [tok.bos_token_id, tok.bos_token_id]  # what the naive way does
    assert ours[0] == tok.bos_token_id and ours[1] != tok.bos_token_id
    assert NONE_PROMPT in tok.decode(ours)


def test_system_prompt_goes_in_as_a_system_message(embedded_tokenizer):
    text = render_prompt(embedded_tokenizer, "Hello?", system_prompt="Answer briefly.")
    assert "<|im_start|>system\nAnswer briefly.<|im_end|>" in text
    assert "SmolLM" not in text  # the template's default system message is replaced
