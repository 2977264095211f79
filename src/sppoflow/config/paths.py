"""Config values that name local files: each must exist before any job starts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sppoflow.errors import UserError
from sppoflow.schema import ROOT


def shipped_file(path: str) -> Path | None:
    """``path`` as given if it exists, else the file this project ships there (e.g.
    config/accelerate/fsdp.yaml when running from another folder); None if neither exists."""
    for candidate in (Path(path), ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    return None


PROMPT_FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")


def local_references(config: dict) -> list[tuple[str, str, str]]:
    """(key, value, kind) of every config value that may name a local path; kind is "model"
    (or embedded, or a hub id), "source" (a prompt file or folder, or a hub dataset id),
    "file", or a question set's name (its question file, sppoflow.evaluate.question_sets)."""
    from sppoflow.evaluate.question_sets import QUESTION_SETS

    policy, judge, prompts = config["policy"], config["judge"], config["prompts"]
    judges = config["evaluate"]["judges"]
    question_sets = config["evaluate"]["question_sets"]
    found = [
        ("policy.model", policy["model"], "model"),
        ("judge.model", judge["model"], "model"),
        *[(f"evaluate.judges.{n}.model", j["model"], "model") for n, j in enumerate(judges)],
        ("policy.chat_template", policy["chat_template"], "file"),
        ("judge.template", judge["template"], "file"),
        *[(f"evaluate.judges.{n}.template", j["template"], "file") for n, j in enumerate(judges)],
        ("prompts.source", prompts["source"], "source"),
        ("prompts.eval_source", prompts["eval_source"], "source"),
        *[(f"prompts.per_round.{n}", s, "source") for n, s in enumerate(prompts["per_round"])],
        *[(f"evaluate.question_sets.{b}", question_sets[b], b) for b in QUESTION_SETS],
    ]
    return [(key, value, kind) for key, value, kind in found if value]


def check_local_paths(config: dict) -> None:
    """A local path that does not exist fails here, before any job starts (hub ids and
    embedded names are left to the jobs that fetch them)."""
    from sppoflow.evaluate.question_sets import QUESTION_SETS, check_question_file
    from sppoflow.models.sources import is_hub_id, missing_local_path

    for key, value, kind in local_references(config):
        if Path(value).expanduser().exists():
            if kind == "source":
                check_prompt_column(Path(value).expanduser(), config["prompts"]["column"], key)
            elif kind in QUESTION_SETS:
                check_question_file(Path(value).expanduser(), kind, key)
            continue
        is_file = Path(value).suffix.lower() in PROMPT_FILE_TYPES
        if (
            kind in ("file", *QUESTION_SETS)
            or (kind == "source" and (is_file or not is_hub_id(value)))
            or (kind == "model" and missing_local_path(value))
        ):
            hint = " (a hub id is org/name)" if kind == "model" else ""
            raise UserError(f"config error: {key}: {value} does not exist{hint}")


def check_prompt_column(path: Path, column: str, key: str) -> None:
    """A local prompt file's columns, read cheaply (a parquet schema, a CSV header, the first
    JSON line), must hold prompts.column; other sources are checked by the prompt_pool job."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        elif suffix == ".csv":
            with path.open(encoding="utf-8") as handle:
                columns = next(csv.reader(handle), [])
        elif suffix == ".jsonl":
            with path.open(encoding="utf-8") as handle:
                first = next((line for line in handle if line.strip()), "{}")
            columns = list(json.loads(first))
        else:
            return
    except (UnicodeDecodeError, ValueError, OSError):
        return  # the prompt_pool job says what is wrong with the file
    if column not in columns:
        raise UserError(
            f"config error: {key}: {path} has no column '{column}' (columns: "
            f"{', '.join(map(str, columns))}); set prompts.column"
        )
