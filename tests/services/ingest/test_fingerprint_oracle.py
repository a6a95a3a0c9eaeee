"""The record fingerprint must never change (stored content hashes depend on it: a re-upload of
the same record is recognised by it). ``old_fingerprint`` is a copy of the implementation before
round 30's faster one, kept here as the oracle; every record type is generated from its declared
fields with unicode, control characters, None, empty and odd values, and each fingerprint must
equal the oracle's to the byte, with and without a key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import types
import typing
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Any

import pytest

from homeroom.calendar import Term
from services.ingest import parsed_records as pr

# --- the oracle: the implementation as it was (services/ingest/parsed_records.py at dbf1ac6) ---


def _old_canon(value: Any) -> Any:
    if type(value) is str or value is None:
        return value
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _old_canon(v) for k, v in sorted(value.items())}
    if isinstance(value, frozenset | set):
        return sorted(_old_canon(v) for v in value)
    if isinstance(value, Term):
        return [value.name, value.begin.isoformat(), value.end.isoformat(), value.declared_days]
    if isinstance(value, tuple | list):
        return [_old_canon(v) for v in value]
    return value


def old_fingerprint(record: Any, key: bytes = b"") -> str:
    out: dict[str, Any] = {"kind": str(record.kind)}
    for f in dataclasses.fields(record):
        if f.name not in ("source", "source_record_id"):
            out[f.name] = _old_canon(getattr(record, f.name))
    data = json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(data.encode("utf-8"), digest_size=16, key=key[:64]).hexdigest()


# --- varied records of every type, generated from the declared fields ------------------------

RECORD_TYPES: tuple[type, ...] = typing.get_args(pr.ParsedRecord)

TEXTS = (
    "",
    " ",
    "L1",
    "sch-1",
    "Zoë",
    "José Ñúñez",
    "李小龙",
    "Ελένη",
    "مريم",
    "🙂👩‍👧",
    "\U0001f600\U00010348",
    'quote " and \\ backslash',
    "tab\tnew\nline\rcr",
    "\x00\x01\x1f\x7f",
    "\u2028\u2029",
    "e\u0301",
    "\ufeffbom",
    "a/b%2Fc",
    "</script>",
    "0123456789",
    "x" * 300,
)
DATES = (date(2024, 9, 4), date(1, 1, 1), date(9999, 12, 31), date(2000, 2, 29))
KEYS = (b"", b"k", b"district-a-key", bytes(range(64)), bytes(range(100)))


def _value(rng: random.Random, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and rng.random() < 0.3:
            return None
        return _value(rng, rng.choice([a for a in args if a is not type(None)]))
    if hint is str:
        return rng.choice(TEXTS)
    if hint is bool:
        return rng.random() < 0.5
    if hint is int:
        return rng.choice((0, 1, -1, 2024, 10**20))
    if hint is float:
        return rng.choice((0.0, -0.0, 1.5, -2.25, 180.0, 1e-7, 3.0, 1e300, float("nan"), float("inf"), -float("inf")))
    if hint is date:
        return rng.choice(DATES)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return rng.choice(list(hint))
    if hint is Term:
        declared = rng.choice((None, 0, 90))
        return Term(rng.choice(TEXTS), rng.choice(DATES), rng.choice(DATES), declared)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(rng, args[0]) for _ in range(rng.choice((0, 1, 3))))
        return tuple(_value(rng, a) for a in args)
    if origin is Mapping:
        keys = rng.sample(
            ("student.first_name", "student.last_name", "program.iep", "é", "", "a b"), rng.choice((0, 1, 4))
        )
        return {k: _value(rng, args[1]) for k in keys}
    raise AssertionError(f"no generator for {hint!r}")


def sample_records(per_type: int, seed: int = 30) -> list[Any]:
    rng = random.Random(seed)
    out: list[Any] = []
    for cls in RECORD_TYPES:
        hints = typing.get_type_hints(cls)
        for n in range(per_type):
            values = {
                f.name: _value(rng, hints[f.name])
                for f in dataclasses.fields(cls)
                if f.name not in ("source", "source_record_id")
            }
            out.append(cls(source=pr.Source("batch", f"f{n}.json", n), source_record_id=f"r{n}", **values))
    return out


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.__name__)
def test_fingerprint_equals_the_oracle_for_every_record_type(cls: type) -> None:
    records: list[Any] = [r for r in sample_records(200) if type(r) is cls]
    assert len(records) == 200
    for i, r in enumerate(records):
        key = KEYS[i % len(KEYS)]
        assert r.fingerprint(key) == old_fingerprint(r, key), r
        assert r.fingerprint() == old_fingerprint(r), r


def test_fingerprint_equals_the_oracle_on_empty_and_none_values() -> None:
    """Every optional field None, every collection and text empty, in every record type."""
    one_of_each: dict[type, Any] = {type(r): r for r in sample_records(1)}
    for cls, r in one_of_each.items():
        hints = typing.get_type_hints(cls)
        blank: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if type(None) in typing.get_args(hint):
                blank[f.name] = None
            elif hint is str:
                blank[f.name] = ""
            elif typing.get_origin(hint) in (tuple, Mapping):
                blank[f.name] = type(getattr(r, f.name))()
        empty = dataclasses.replace(r, **blank)
        assert empty.fingerprint() == old_fingerprint(empty)
        assert empty.fingerprint(b"k") == old_fingerprint(empty, b"k")
    assert len(one_of_each) == len(RECORD_TYPES)


def test_fingerprint_of_a_known_record_is_the_stored_value() -> None:
    """A fixed record's fingerprint, written down: the oracle itself cannot drift unnoticed."""
    r = pr.AttendanceRecord(
        source=pr.Source("batch", "a.json", 3),
        source_record_id="batch:attendance:x",
        student_ref="Zoë",
        school_id="S1",
        date=date(2024, 9, 4),
        category=pr.AttendanceCategory.ABSENT,
        excused=None,
    )
    assert old_fingerprint(r) == "a9cad0cb8da42e493a2f11b33eea9342"
    assert r.fingerprint() == "a9cad0cb8da42e493a2f11b33eea9342"


@pytest.mark.parametrize(
    ("value", "error"),
    [(object(), TypeError), ("lone \ud800 surrogate", UnicodeEncodeError)],
    ids=["object", "surrogate"],
)
def test_a_value_the_canonical_form_cannot_write_is_refused_as_before(value: object, error: type[Exception]) -> None:
    r = dataclasses.replace(sample_records(1)[0], student_ref=value)
    with pytest.raises(error):
        old_fingerprint(r)
    with pytest.raises(error):
        r.fingerprint()
