"""Apply a model's own chat template exactly once.

The template is rendered to text and then tokenized with ``add_special_tokens=False``: the
template already writes BOS where the model expects it, and letting the tokenizer add another
is how BOS gets doubled. The user's text goes in as data, never through string surgery, so a
prompt containing "None" (or anything else) arrives intact.
"""

from __future__ import annotations

from collections.abc import Sequence


def conversation(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    return messages


def render_prompt(tokenizer, prompt: str, system_prompt: str | None = None) -> str:
    """The chat-templated prompt, ending with the assistant turn's header."""
    return tokenizer.apply_chat_template(
        conversation(prompt, system_prompt), tokenize=False, add_generation_prompt=True
    )


def encode_prompts(
    tokenizer, prompts: Sequence[str], system_prompt: str | None = None
) -> list[list[int]]:
    """Token ids of each chat-templated prompt, with no special tokens added on top."""
    texts = [render_prompt(tokenizer, p, system_prompt) for p in prompts]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def stop_token_ids(eos_token_id: int | list[int] | None, tokenizer) -> set[int]:
    """Every token that ends a response: the EOS id(s) of the model's generation config
    (``eos_token_id``) and the tokenizer's. Both sampling backends stop on this set."""
    ids = eos_token_id
    stops = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        stops.add(tokenizer.eos_token_id)
    return stops
