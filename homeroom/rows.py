"""Values by name, for building one object from another without listing the fields by hand.

`columns(row, names)` takes the columns `names` of a stored row (an asyncpg `Record` or any
mapping by column), `field_values(obj, names)` the attributes `names` of an object (a
dataclass, a protobuf message), both as keyword arguments for the object they make; the
fields whose name or form differs are given by the caller beside them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Row(Protocol):
    """A row by column name: an asyncpg `Record`, a dict."""

    def __getitem__(self, column: str, /) -> Any: ...


def field_values(obj: object, names: Iterable[str]) -> dict[str, Any]:
    """The attributes `names` of `obj`, by name, in the order given."""
    return {name: getattr(obj, name) for name in names}


def columns(row: Row, names: Iterable[str]) -> dict[str, Any]:
    """The columns `names` of `row`, by name, in the order given."""
    return {name: row[name] for name in names}
