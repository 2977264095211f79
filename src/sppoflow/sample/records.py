"""One SAMPLES row per response, cut, decoded and counted the same way by both backends."""

from __future__ import annotations

import pandas as pd

from sppoflow.tables import SAMPLES


def cut_at_stop(tokens: list[int], stops: set[int]) -> tuple[list[int], str]:
    """The generated ids up to and including the first stop token, and the finish reason."""
    for n, token in enumerate(tokens):
        if token in stops:
            return tokens[: n + 1], "stop"
    # No stop token: generation ran to max_new_tokens (pads only follow a stop token).
    return tokens, "length"


def sample_record(
    tokenizer, prompts: pd.DataFrame, row: int, index: int, prompt_tokens: int, kept, reason: str
) -> dict:
    """One row of the SAMPLES table: response ``index`` to the prompt in row ``row``."""
    return {
        "prompt_id": prompts["prompt_id"].iat[row],
        "prompt": prompts["prompt"].iat[row],
        "response_idx": index,
        "response": tokenizer.decode(kept, skip_special_tokens=True).strip(),
        "response_token_ids": kept,
        "prompt_tokens": prompt_tokens,
        "response_tokens": len(kept),
        "finish_reason": reason,
    }


def samples_frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(SAMPLES.columns))
    return frame.sort_values(["prompt_id", "response_idx"]).reset_index(drop=True)
