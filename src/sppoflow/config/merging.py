"""Config sections merged key by key, as Snakemake merges its config files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
