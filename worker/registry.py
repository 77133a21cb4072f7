"""Lazy name → `"module:attribute"` tables (engines, diarization backends): the target is
imported only when its name is first asked for."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any


def resolve(
    table: Mapping[str, str], name: str, kind: str, error: type[LookupError] = LookupError
) -> Any:
    """What `table` registers under `name`, imported now; raises `error` naming the `kind` and
    the names the table has when it has no `name`."""
    try:
        target = table[name]
    except KeyError:
        raise error(
            f"unknown {kind} {name!r}; this worker has {', '.join(sorted(table))}"
        ) from None
    module_name, _, attribute = target.partition(":")
    return getattr(import_module(module_name), attribute)
