"""Dataclasses to and from rows and plain dicts, field by field, without listing the fields by hand.

A stored row (an asyncpg `Record` or any mapping by column) whose columns carry a dataclass's
field names builds the dataclass with `fields_from(row, Cls)`; the fields whose column has
another name or needs a conversion are left out (`exclude=`) and given by the caller.
`field_values(obj, names)` is the reverse for a chosen subset, in the order given.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import fields
from typing import Any, Protocol


class Row(Protocol):
    """A row by column name: an asyncpg `Record`, a dict."""

    def __getitem__(self, column: str, /) -> Any: ...


def fields_from(row: Row, cls: type, *, exclude: Collection[str] = ()) -> dict[str, Any]:
    """Keyword arguments for dataclass `cls`: each field not in `exclude`, from the column of its name."""
    return {f.name: row[f.name] for f in fields(cls) if f.name not in exclude}


def field_values(obj: object, names: Iterable[str]) -> dict[str, Any]:
    """The attributes `names` of `obj`, by name, in the order given."""
    return {name: getattr(obj, name) for name in names}


def columns(row: Row, names: Iterable[str]) -> dict[str, Any]:
    """The columns `names` of `row`, by name, in the order given."""
    return {name: row[name] for name in names}
