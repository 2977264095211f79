"""The evaluation's metrics.json files, defined once.

``{chain}iter{t}/eval/metrics.json`` (written by the evaluate stage) holds a round's verdicts:
per evaluation judge and opponent, win rates and mean preferences; ``methods/head_to_head/
metrics.json`` (the head_to_head stage) holds the methods' final rounds against each other. The
dataclasses below are their contract. The writers give the JSON layout that summary, the report
and DuckDB users read; the readers check a file against it, and a missing key, a value of the
wrong type or unreadable JSON stops with one line naming the file and the key.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from sppoflow.atomic import write_text_atomically
from sppoflow.errors import UserError
from sppoflow.score import TRAINING_JUDGE

OPPONENTS = ("base", "previous")  # the base model, and the previous round (round 1: the base)


@dataclass(frozen=True)
class Verdicts:
    """One judge against one opponent over the eval prompts. Per prompt the judge gives
    P(ours > opponent's); above 1/2 is a win, 1/2 a tie (counting half), below a loss."""

    n_prompts: int
    win_rate: float  # mean outcome (1 win, 1/2 tie, 0 loss)
    win_rate_ci_low: float  # 95% normal-approximation interval of win_rate
    win_rate_ci_high: float
    lc_win_rate: float  # length-controlled win rate (sppoflow.evaluate.length_control)
    lc_win_rate_ci_low: float  # 95% bootstrap interval over prompts of lc_win_rate
    lc_win_rate_ci_high: float
    length_coef: float  # b of the length regression: > 0, the judge prefers the longer response
    wins: int
    ties: int
    losses: int
    mean_prob: float  # mean P(ours > opponent's)
    mean_prob_ci_low: float  # 95% normal-approximation interval of mean_prob
    mean_prob_ci_high: float
    mean_tokens: float  # mean tokens of our responses
    mean_opponent_tokens: float  # mean tokens of the opponent's responses
    order_flip_rate: float | None  # share of verdicts swapping the pair flips; None: pointwise


@dataclass(frozen=True)
class JudgeVerdicts:
    """One evaluation judge's verdicts on a round."""

    backend: str
    base: Verdicts
    previous: Verdicts | None = None  # None when the round was not judged against a previous

    def against(self, opponent: str) -> Verdicts | None:
        """The verdicts against "base" or "previous"."""
        return {"base": self.base, "previous": self.previous}[opponent]


@dataclass(frozen=True)
class ResponseMeasures:
    """What needs no judge, over one set of eval responses (evaluation.objective_measures)."""

    n_responses: int
    mean_tokens: float
    truncated_share: float  # share cut at max_new_tokens
    mean_prompt_overlap: float  # mean share of the prompt's content words a response repeats
    mean_repetition: float  # mean share of a response's word 4-grams repeating an earlier one
    loop_share: float  # share of responses whose 4-grams are at least half repeats


@dataclass(frozen=True)
class Objective:
    round: ResponseMeasures
    base: ResponseMeasures


@dataclass(frozen=True)
class RoundMetrics:
    """A round's metrics.json."""

    round: int
    method: str | None  # None: evaluated without a method name
    judges: dict[str, JudgeVerdicts]  # name -> verdicts, in order; the first is the primary
    objective: Objective | None = None

    @property
    def method_name(self) -> str:
        """The method as figures and tables name it."""
        return self.method or "policy"

    @property
    def primary_name(self) -> str:
        return next(iter(self.judges))

    @property
    def primary(self) -> JudgeVerdicts:
        return self.judges[self.primary_name]

    def against(self, opponent: str, judge: str | None = None) -> Verdicts | None:
        """A judge's (by default the primary judge's) verdicts against "base" or "previous"."""
        return self.judges[judge or self.primary_name].against(opponent)


@dataclass(frozen=True)
class Pair:
    """One method's final round against another's, per judge (name -> verdicts)."""

    method: str
    opponent: str
    judges: dict[str, Verdicts]


@dataclass(frozen=True)
class HeadToHead:
    """methods/head_to_head/metrics.json: each method against every later one."""

    round: int  # the final round, of every method
    methods: tuple[str, ...]  # in config order
    pairs: tuple[Pair, ...]


# -- writing ---------------------------------------------------------------------------------


def round_metrics_text(metrics: RoundMetrics) -> str:
    """The file's text. The primary judge's verdicts stand at the top level too (``judge``:
    its backend, ``judge_name``, ``vs_base``, ``vs_previous``), where readers of the first
    layout (one judge) and DuckDB queries find them."""
    primary = metrics.primary
    data: dict[str, Any] = {
        "round": metrics.round,
        "method": metrics.method,
        "judge": primary.backend,
        "judge_name": metrics.primary_name,
        **_by_opponent(primary),
        "judges": {
            name: {"backend": judge.backend, **_by_opponent(judge)}
            for name, judge in metrics.judges.items()
        },
    }
    if metrics.objective is not None:
        data["objective"] = asdict(metrics.objective)
    return json.dumps(data, indent=2) + "\n"


def _by_opponent(judge: JudgeVerdicts) -> dict[str, dict]:
    return {f"vs_{o}": asdict(v) for o in OPPONENTS if (v := judge.against(o)) is not None}


def head_to_head_text(h2h: HeadToHead) -> str:
    pairs = [
        {
            "method": pair.method,
            "opponent": pair.opponent,
            "judges": {name: asdict(v) for name, v in pair.judges.items()},
        }
        for pair in h2h.pairs
    ]
    data = {"round": h2h.round, "methods": list(h2h.methods), "pairs": pairs}
    return json.dumps(data, indent=2) + "\n"


def write_round_metrics(path: Path | str, metrics: RoundMetrics) -> None:
    write_text_atomically(path, round_metrics_text(metrics))


def write_head_to_head(path: Path | str, h2h: HeadToHead) -> None:
    write_text_atomically(path, head_to_head_text(h2h))


# -- reading ---------------------------------------------------------------------------------


def read_round_metrics(path: Path | str) -> RoundMetrics:
    return _read(path, _round_metrics)


def read_head_to_head(path: Path | str) -> HeadToHead:
    return _read(path, _head_to_head)


class _Invalid(Exception):
    """Where in the file (dotted keys) and what is wrong; the reader adds the file."""


T = TypeVar("T")
Parse = Callable[[Any, str], T]  # (value, where in the file) -> the typed value


def _read(path: Path | str, parse: Parse[T]) -> T:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read metrics: {error}") from None
    try:
        return parse(data, "")
    except _Invalid as error:
        raise UserError(f"{path}: {error}") from None


def _round_metrics(value: Any, where: str) -> RoundMetrics:
    data = _object(value, where)
    if "judges" in data:
        judges = _get(data, "judges", where, _judges)
    else:  # the single-judge layout: the top level is the one judge, its backend in "judge"
        name = _get_optional(data, "judge_name", where, _string) or TRAINING_JUDGE
        judges = {name: _judge(data, where, backend_key="judge")}
    return RoundMetrics(
        round=_get(data, "round", where, _integer),
        method=_get_optional(data, "method", where, _string),
        judges=judges,
        objective=_get_optional(data, "objective", where, _objective),
    )


def _judges(value: Any, where: str) -> dict[str, JudgeVerdicts]:
    judges = {name: _judge(v, _at(where, name)) for name, v in _object(value, where).items()}
    if not judges:
        raise _Invalid(f"{where}: no judge")
    return judges


def _judge(value: Any, where: str, backend_key: str = "backend") -> JudgeVerdicts:
    data = _object(value, where)
    return JudgeVerdicts(
        backend=_get(data, backend_key, where, _string),
        base=_get(data, "vs_base", where, _verdicts),
        previous=_get_optional(data, "vs_previous", where, _verdicts),
    )


def _objective(value: Any, where: str) -> Objective:
    data = _object(value, where)
    return Objective(
        round=_get(data, "round", where, _measures), base=_get(data, "base", where, _measures)
    )


def _head_to_head(value: Any, where: str) -> HeadToHead:
    data = _object(value, where)
    methods = _get(data, "methods", where, _list)
    pairs = _get(data, "pairs", where, _list)
    return HeadToHead(
        round=_get(data, "round", where, _integer),
        methods=tuple(_string(m, f"methods[{n}]") for n, m in enumerate(methods)),
        pairs=tuple(_pair(p, f"pairs[{n}]") for n, p in enumerate(pairs)),
    )


def _pair(value: Any, where: str) -> Pair:
    data = _object(value, where)
    return Pair(
        method=_get(data, "method", where, _string),
        opponent=_get(data, "opponent", where, _string),
        judges=_get(data, "judges", where, _verdicts_by_judge),
    )


def _verdicts_by_judge(value: Any, where: str) -> dict[str, Verdicts]:
    return {name: _verdicts(v, _at(where, name)) for name, v in _object(value, where).items()}


def _flat(cls: type[T], value: Any, where: str) -> T:
    """A dataclass of numbers, each field checked against its type hint."""
    data = _object(value, where)
    hints = get_type_hints(cls)
    return cls(**{f.name: _get(data, f.name, where, _SCALARS[hints[f.name]]) for f in fields(cls)})


_verdicts = functools.partial(_flat, Verdicts)
_measures = functools.partial(_flat, ResponseMeasures)


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(data: dict, key: str, where: str, parse: Parse[T]) -> T:
    if key not in data:
        raise _Invalid(f"{where}: no key {key}" if where else f"no key {key}")
    return parse(data[key], _at(where, key))


def _get_optional(data: dict, key: str, where: str, parse: Parse[T]) -> T | None:
    return None if data.get(key) is None else _get(data, key, where, parse)


def _wrong(value: Any, where: str, expected: str) -> _Invalid:
    found = "null" if value is None else type(value).__name__
    message = f"expected {expected}, found {found}"
    return _Invalid(f"{where}: {message}" if where else message)


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _wrong(value, where, "an object")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise _wrong(value, where, "a list")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _wrong(value, where, "a string")
    return value


def _integer(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(value, where, "an integer")
    return value


def _number(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _wrong(value, where, "a number")
    return float(value)


def _optional_number(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)


_SCALARS: dict[Any, Parse] = {int: _integer, float: _number, float | None: _optional_number}
