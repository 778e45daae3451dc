"""Entry assertions shared by the derivations: required columns, temporary column names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

TMP_PREFIX = "__derive_"


class MissingColumnsError(ValueError):
    """A derivation was given a dataset that lacks columns it needs."""

    def __init__(self, function: str, missing: Sequence[str]):
        self.function = function
        self.missing = tuple(missing)
        super().__init__(f"{function}: missing required column(s): {', '.join(self.missing)}")


def assert_columns(df: pl.DataFrame, required: Iterable[str], function: str) -> None:
    """Raise MissingColumnsError naming every required column absent from df."""
    missing = [c for c in dict.fromkeys(required) if c not in df.columns]
    if missing:
        raise MissingColumnsError(function, missing)


def assert_new_columns(df: pl.DataFrame, new: Iterable[str], function: str) -> None:
    """Raise ValueError if a column the derivation is about to add already exists."""
    clash = [c for c in new if c in df.columns]
    if clash:
        raise ValueError(f"{function}: column(s) already present, refusing to overwrite: {', '.join(clash)}")


def tmp(name: str) -> str:
    """Name of a temporary column (dropped before the derivation returns)."""
    return f"{TMP_PREFIX}{name}"


def field_of(item: Mapping[str, Any] | object, name: str) -> Any:
    """Read a field from a mapping (YAML dict) or an object (study dataclass)."""
    if isinstance(item, Mapping):
        return item[name]
    return getattr(item, name)
