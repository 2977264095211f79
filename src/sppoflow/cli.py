"""Command-line plumbing shared by the stage scripts in ``scripts/``.

Each stage keeps its settings in a dataclass whose fields carry a ``help`` text; the same
dataclass builds the script's ``--flags`` so that a stage runs identically from Snakemake
(which passes every flag from the validated config) and by hand. A field that is a config
setting is declared by the config schema (:mod:`sppoflow.schema`), which gives its default,
help and choices: each setting is written down once.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sppoflow import provenance
from sppoflow.errors import UserError

S = TypeVar("S")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation: Any) -> tuple[type, bool]:
    """(type, optional) for annotations such as ``int``, ``float | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")
    return parse_or_none


def add_settings(parser: argparse.ArgumentParser, settings_type: type) -> None:
    """Add one ``--flag`` per field of the settings dataclass ``settings_type``."""
    hints = typing.get_type_hints(settings_type)
    group = parser.add_argument_group(f"{settings_type.__name__} (defaults shown)")
    for field in dataclasses.fields(settings_type):
        kind, optional = _scalar_type(hints[field.name])
        help_text = field.metadata.get("help", "") + " (default: %(default)s)"
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            group.add_argument(
                _flag(field.name),
                type=item,
                nargs="+",
                default=field.default_factory(),
                choices=field.metadata.get("choices"),
                metavar=field.name.upper(),
                help=help_text,
            )
            continue
        if kind is bool:
            group.add_argument(
                _flag(field.name),
                action=argparse.BooleanOptionalAction,
                default=field.default,
                help=help_text,
            )
            continue
        parse = _optional(kind) if optional else kind
        group.add_argument(
            _flag(field.name),
            type=parse,
            default=field.default,
            choices=field.metadata.get("choices"),
            metavar=field.name.upper(),
            help=help_text,
        )


def settings_from(settings_type: type[S], args: argparse.Namespace) -> S:
    """Build the settings dataclass from parsed arguments."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(settings_type)}
    return settings_type(**values)


def parser_for(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU cores this job has (default: all)"
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=None,
        help="threads torch computes with on a CPU, whatever --threads is: results do not "
        "then depend on the cores a job gets (default: --threads)",
    )
    return parser


def add_shard_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """--shard/--shards: this job does shard s of N of the stage's work (see
    sppoflow.runtime.shards)."""
    group = parser.add_argument_group("data-parallel shards")
    group.add_argument(
        "--shard", type=int, default=0, help="this job's shard, 0..shards-1 (default: 0)"
    )
    group.add_argument(
        "--shards",
        type=int,
        default=1,
        help=f"number of shards; shard s takes {unit} s, s + shards, ... (default: 1)",
    )


def configure_threads(threads: int | None, cpu_threads: int | None = None) -> None:
    """torch's intra-op threads: ``cpu_threads`` where given (CPU kernels split their sums
    by thread, so a fixed count gives the same bits on any allocation), else the cores
    Snakemake gave the job."""
    threads = cpu_threads or threads
    if threads is None:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
    except ImportError:  # the data-only stages do not need torch
        return
    torch.set_num_threads(max(1, threads))


def run_stage(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse arguments and run ``main``; a :class:`UserError` becomes one line on stderr."""
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    configure_threads(getattr(args, "threads", None), getattr(args, "cpu_threads", None))
    provenance.begin_job(Path(sys.argv[0]).stem, vars(args))
    try:
        main(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
