"""The one encoding of a log entry: the bytes its leaf hash covers (pure).

Compact JSON with sorted keys, so the same entry always gives the same bytes, and an
export line's ``entry`` object re-encodes to exactly the bytes that were hashed; times are
spelled one way (UTC, microseconds, 'Z')."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def format_time(moment: datetime) -> str:
    """UTC, microseconds, 'Z': the one spelling of a time in an entry."""
    if moment.tzinfo is None:
        raise ValueError("entry times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
