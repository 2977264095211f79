"""Read prompt sources, clean them, give them stable ids, and split them per round.

The pool written by :func:`build_pool` does not depend on the number of rounds or on how many
prompts a round takes, so raising ``rounds`` later never reshuffles earlier rounds.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sppoflow.errors import UserError, first_line
from sppoflow.models.sources import is_hub_id
from sppoflow.schema import config_section, declared

log = logging.getLogger(__name__)

READERS = {
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".json": lambda p: pd.read_json(p),
    ".csv": pd.read_csv,
    ".parquet": pd.read_parquet,
}


@config_section("prompts")
class PoolSettings:
    column: str = declared()
    split: str = declared()
    n_eval: int = declared()
    seed: int = declared()


def normalise(text: str) -> str:
    """The key prompts are deduplicated on: case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def prompt_id(text: str) -> str:
    return "p" + hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:16]


def read_source(source: str, column: str, split: str = "train") -> list[str]:
    """Prompt texts from a local file, a local dataset folder, or a dataset id on the hub."""
    path = Path(source).expanduser()
    if path.is_file():
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise UserError(f"{path}: unsupported prompt file type (use {', '.join(READERS)})")
        if path.stat().st_size == 0:
            raise UserError(f"{path}: prompt file is empty")
        try:
            frame = reader(path)
        except UnicodeDecodeError as error:
            raise UserError(
                f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                f"{error.start}); save it as UTF-8"
            ) from error
        except ValueError as error:
            raise UserError(f"{path}: cannot read prompts: {error}") from error
    elif path.is_dir() or is_hub_id(source):
        frame = _read_dataset(source, split)
    else:
        raise UserError(f"prompt file {source} not found")
    if column not in frame.columns:
        raise UserError(
            f"{source}: no column '{column}' (columns: {', '.join(map(str, frame.columns))}); "
            "set prompts.column"
        )
    values = frame[column].tolist()
    return [_as_text(v, source, column) for v in values]


def _read_dataset(source: str, split: str) -> pd.DataFrame:
    import datasets

    try:
        if (Path(source) / "dataset_info.json").is_file() or (
            Path(source) / "state.json"
        ).is_file():
            data = datasets.load_from_disk(source)
            data = data[split] if isinstance(data, datasets.DatasetDict) else data
        else:
            data = datasets.load_dataset(source, split=split)
    except Exception as error:  # datasets raises many types for missing/offline data
        raise UserError(
            f"cannot load prompt dataset {source} (split {split}): {first_line(error)}"
        ) from error
    return data.to_pandas()


def _as_text(value, source: str, column: str) -> str:
    """Chat-format cells (a list of messages) give their first user message."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (list, np.ndarray)):
        for message in value:
            if isinstance(message, dict) and message.get("role") == "user":
                return str(message.get("content") or "")
    raise UserError(f"{source}: column '{column}' holds {type(value).__name__}, not text")


def clean(texts: Sequence[str], source: str) -> pd.DataFrame:
    """Strip, drop empty and duplicate prompts (first occurrence wins), add stable ids."""
    frame = pd.DataFrame({"prompt": [t.strip() for t in texts]})
    n_read = len(frame)
    frame = frame[frame["prompt"] != ""]
    n_empty = n_read - len(frame)
    frame = frame.assign(prompt_id=frame["prompt"].map(prompt_id))
    frame = frame.drop_duplicates("prompt_id", keep="first")
    log.info(
        "%s: %d prompts read, %d empty and %d duplicates dropped",
        source,
        n_read,
        n_empty,
        n_read - n_empty - len(frame),
    )
    if frame.empty:
        raise UserError(f"{source}: no non-empty prompts")
    return frame[["prompt_id", "prompt"]].reset_index(drop=True)


def seeded_order(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Shuffle by seed, independently of the order the rows were read in."""
    frame = frame.sort_values("prompt_id").reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def build_pool(
    source: str | None,
    per_round: Sequence[str],
    eval_source: str | None,
    settings: PoolSettings,
) -> pd.DataFrame:
    """All prompts with their split, source round and seeded position (see tables.PROMPT_POOL).

    ``per_round`` (one source per round, as in the paper) takes precedence over ``source``.
    Eval prompts come from ``eval_source`` when given, else are held out from the sources;
    either way no eval prompt is ever trained on, and per-round sources are made disjoint.
    """
    sources = list(per_round) if per_round else [source]
    if not sources or sources[0] is None:
        raise UserError("prompts.source: no prompt source configured")
    rounds = list(range(1, len(sources) + 1)) if per_round else [0]
    tables = [
        clean(read_source(s, settings.column, settings.split), s).assign(source_round=r)
        for s, r in zip(sources, rounds, strict=True)
    ]
    warn_about_repeats(tables, sources)
    train = pd.concat(tables).drop_duplicates("prompt_id", keep="first")
    if eval_source:
        eval_frame = seeded_order(
            clean(read_source(eval_source, settings.column, settings.split), eval_source),
            settings.seed,
        ).head(settings.n_eval)
    else:
        if settings.n_eval >= len(train):
            raise UserError(
                f"prompts.n_eval={settings.n_eval} leaves no training prompts "
                f"(the sources hold {len(train)} distinct prompts)"
            )
        eval_frame = seeded_order(train[["prompt_id", "prompt"]], settings.seed).head(
            settings.n_eval
        )
    train = train[~train["prompt_id"].isin(eval_frame["prompt_id"])]
    parts = [eval_frame.assign(split="eval", source_round=0, position=range(len(eval_frame)))]
    for r, group in train.groupby("source_round", sort=True):
        ordered = seeded_order(group[["prompt_id", "prompt"]], settings.seed + int(r))
        parts.append(ordered.assign(split="train", source_round=r, position=range(len(ordered))))
    pool = pd.concat(parts, ignore_index=True)
    return pool[["prompt_id", "prompt", "split", "source_round", "position"]]


def warn_about_repeats(tables: Sequence[pd.DataFrame], sources: Sequence[str]) -> None:
    """A prompt in two per-round sources is trained in the earlier round only: say so."""
    seen: dict[str, int] = {}
    for number, table in enumerate(tables, start=1):
        repeated = table[table["prompt_id"].isin(seen)]
        if len(repeated):
            first = repeated.iloc[0]
            log.warning(
                "prompts.per_round: %d prompt(s) of round %d's source %s are also in an earlier "
                "round's (first: %r, in round %d's); each is trained in its first round only",
                len(repeated), number, sources[number - 1], first["prompt"][:60],
                seen[first["prompt_id"]],
            )  # fmt: skip
        for pid in table["prompt_id"]:
            seen.setdefault(pid, number)


def round_prompts(pool: pd.DataFrame, round_number: int, n_per_round: int | None) -> pd.DataFrame:
    """The training prompts of one round: disjoint slices of the shared pool, or the round's
    own source when the pool was built from per-round sources."""
    if round_number < 1:
        raise UserError(f"round must be 1 or more, got {round_number}")
    train = pool[pool["split"] == "train"]
    per_round_sources = sorted(set(train["source_round"]) - {0})
    if per_round_sources:
        if round_number not in per_round_sources:
            raise UserError(
                f"prompts.per_round lists {len(per_round_sources)} sources but round "
                f"{round_number} was asked for; add a source or lower rounds"
            )
        rows = train[train["source_round"] == round_number].sort_values("position")
        chosen = rows if n_per_round is None else rows.head(n_per_round)
        if chosen.empty:
            raise UserError(
                f"round {round_number}'s prompt source has no prompts left after removing "
                "the eval prompts and those of earlier rounds"
            )
    else:
        if n_per_round is None:
            raise UserError("prompts.n_per_round must be set when one source feeds every round")
        start = (round_number - 1) * n_per_round
        rows = train.sort_values("position")
        chosen = rows.iloc[start : start + n_per_round]
        if len(chosen) < n_per_round:
            raise UserError(
                f"round {round_number} needs prompts {start + 1}-{start + n_per_round} of the "
                f"shared pool, which holds {len(rows)} training prompts; lower "
                "prompts.n_per_round or rounds, or add prompts"
            )
    return chosen[["prompt_id", "prompt"]].reset_index(drop=True)
