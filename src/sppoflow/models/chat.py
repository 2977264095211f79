"""Apply a model's own chat template exactly once.

The template is rendered to text and then tokenized with ``add_special_tokens=False``: the
template already writes BOS where the model expects it, and letting the tokenizer add another
is how BOS gets doubled. The user's text goes in as data, never through string surgery, so a
prompt containing "None" (or anything else) arrives intact.

A prompt is one user message; a conversation (a multi-turn question set's later turns) is the
messages so far, ending with the user's, and goes through the same template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

Message = dict[str, str]

# A prompts table's optional column of conversations: each row's messages so far (user and
# assistant turns, ending with the user's); without it, a row's prompt is the conversation.
MESSAGES = "messages"


def with_system_prompt(messages: Sequence[Message], system_prompt: str | None) -> list[Message]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [dict(m) for m in messages]


def render_conversation(
    tokenizer, messages: Sequence[Message], system_prompt: str | None = None
) -> str:
    """The chat-templated conversation, ending with the assistant turn's header."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a conversation to answer ends with a user message")
    return tokenizer.apply_chat_template(
        with_system_prompt(messages, system_prompt), tokenize=False, add_generation_prompt=True
    )


def render_prompt(tokenizer, prompt: str, system_prompt: str | None = None) -> str:
    """The chat-templated prompt, ending with the assistant turn's header."""
    return render_conversation(tokenizer, [{"role": "user", "content": prompt}], system_prompt)


def encode_conversations(
    tokenizer, conversations: Sequence[Sequence[Message]], system_prompt: str | None = None
) -> list[list[int]]:
    """Token ids of each chat-templated conversation, with no special tokens added on top."""
    texts = [render_conversation(tokenizer, m, system_prompt) for m in conversations]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_prompts(
    tokenizer, prompts: Sequence[str], system_prompt: str | None = None
) -> list[list[int]]:
    """Token ids of each chat-templated prompt, with no special tokens added on top."""
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    return encode_conversations(tokenizer, conversations, system_prompt)


def encode_rows(
    tokenizer, prompts: pd.DataFrame, system_prompt: str | None = None
) -> list[list[int]]:
    """Token ids of each row of a prompts table: its conversation (column ``messages``) where
    the table has one, else its prompt."""
    if MESSAGES not in prompts.columns:
        return encode_prompts(tokenizer, prompts["prompt"].tolist(), system_prompt)
    return encode_conversations(tokenizer, prompts[MESSAGES].tolist(), system_prompt)


def stop_token_ids(eos_token_id: int | list[int] | None, tokenizer) -> set[int]:
    """Every token that ends a response: the EOS id(s) of the model's generation config
    (``eos_token_id``) and the tokenizer's. Both sampling backends stop on this set."""
    ids = eos_token_id
    stops = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        stops.add(tokenizer.eos_token_id)
    return stops
