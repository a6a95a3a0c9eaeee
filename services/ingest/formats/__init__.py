"""Streaming parsers for the formats districts already export, and what they share.

Every parser is a generator over a binary stream that yields, in input order, normalised
records (:mod:`services.ingest.parsed_records`), ``RecordError`` for refused input records,
``RecordWarning`` for accepted records that lost something and ``Dropped`` for elements (or
whole records) the standard allows but Homeroom does not collect: names only, never values.

The rule (``homeroom.catalogue.treatment``): an element that maps to a catalogue element is
kept; forbidden content (Social Security numbers anywhere, discipline incident details)
refuses the record; anything else the export carries is dropped before it goes anywhere and
reported once per submission with its count. Malformed content (a bad date, an unknown code
where one is required, a broken reference) still refuses the record with line, field and rule.

Parsers never raise on bad content: a broken record yields errors and the parser moves on; a
container that cannot be read at all (a corrupt zip, text that is not XML or JSON) yields one file-level error with rule
``file.unreadable`` (or ``xml.forbidden`` for DTDs and entity declarations) and stops.

Modules:
    batch      Homeroom's own JSON batch (schema in its docstring)
    edfi_json  Ed-Fi ODS/API resource JSON (students, studentSchoolAssociations, ...)
    edfi_xml   Ed-Fi XML interchange files (bulk load; what inBloom took in)
    oneroster_csv  OneRoster 1.1 / 1.2 CSV zip (bulk and delta)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any, TypeAlias

from services.ingest import codes
from services.ingest.parsed_records import (
    Dropped,
    EnrollmentAction,
    EnrollmentRecord,
    ParsedRecord,
    ParseItem,
    RecordError,
    RecordWarning,
    Source,
    value_class,
)
from services.ingest.screening import (
    DEFAULT_POLICY,
    SSN_MESSAGE,
    ScreeningPolicy,
    is_org_id_field,
    is_ssn_field,
    might_hold_ssn,
    safe_field_name,
    ssn_in_value,
)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a parser has got. ``bytes_read`` counts bytes of the uploaded file consumed so far
    (for a zip: compressed bytes); ``total_bytes`` is None when the size is unknown."""

    file: str
    bytes_read: int
    rows_read: int
    total_bytes: int | None = None
    done: bool = False


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class ParseOptions:
    screening: ScreeningPolicy = DEFAULT_POLICY
    progress: ProgressFn | None = None
    progress_every: int = 10_000  # rows between progress reports
    max_record_bytes: int = 1 << 20  # one JSON record or XML record element
    # Zip bombs (issue 17, item 6: 763 KiB expanding 343:1 to 256 MiB held a worker for 128 s):
    # per upload and per entry, the expanded size and the compression ratio are bounded.
    max_uncompressed_bytes: int = 2 << 30  # a zip whose members declare more in all is refused
    max_member_bytes: int = 1 << 30  # ... or any one member more than this
    max_compression_ratio: float = 100.0  # ... or expands more than this many times (per member, in all)
    max_text_length: int = 256  # names, ids, codes; longer values are refused


DEFAULT_OPTIONS = ParseOptions()
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
ORG_POLICY = ScreeningPolicy(nine_digit_ids=False)  # organisations, sections, calendars: no person ids


class CountingReader:
    """Wraps a binary stream and counts the bytes read through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.bytes_read += len(data)
        return data


def stream_size(stream: IO[bytes]) -> int | None:
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


def file_error(file: str, rule: str, message: str, line: int = 0, field: str = "") -> RecordError:
    return RecordError(file, line, field, rule, message, "")


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(is_empty(v) for v in value)
    return False


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _label(name: str, what: str) -> str:
    """How a report names a field: as the caller put it, else the field's own (safe) name."""
    return what or safe_field_name(name)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return "text"


class Check:
    """Collects the problems of one input record while its fields are read.

    Field names in reports are ``prefix + name`` (``records[17].entry_date`` for JSON,
    ``birthDate`` for CSV, ``Student/BirthData/BirthDate`` for XML). Values never appear in
    messages."""

    __slots__ = ("dropped", "errors", "opts", "prefix", "source", "warnings")

    def __init__(self, source: Source, prefix: str = "", opts: ParseOptions = DEFAULT_OPTIONS) -> None:
        self.source = source
        self.prefix = prefix
        self.opts = opts
        self.errors: list[RecordError] = []
        self.warnings: list[RecordWarning] = []
        self.dropped: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.errors

    def name(self, name: str) -> str:
        return self.prefix + safe_field_name(name) if name else self.prefix.rstrip(".")

    def fail(self, name: str, rule: str, message: str, value: object = None, *, vclass: str | None = None) -> None:
        cls = vclass if vclass is not None else value_class(value)
        self.errors.append(RecordError(self.source.file, self.source.line, self.name(name), rule, message, cls))

    def warn(self, name: str, rule: str, message: str, value: object = None) -> None:
        self.warnings.append(
            RecordWarning(self.source.file, self.source.line, self.name(name), rule, message, value_class(value))
        )

    def issues(self) -> list[ParseItem]:
        """Errors if the record is refused, else its warnings."""
        return list(self.errors) if self.errors else list(self.warnings)

    # --- forbidden and unknown content -------------------------------------------------------

    def screen(self, name: str, value: str, *, free_text: bool = False) -> bool:
        """False (and an ssn.forbidden error) when the value is or holds an SSN."""
        if not might_hold_ssn(value):
            return True
        policy = ORG_POLICY if is_org_id_field(name) else self.opts.screening
        if ssn_in_value(value, free_text=free_text, policy=policy):
            self.fail(name, "ssn.forbidden", SSN_MESSAGE, vclass="ssn-like")
            return False
        return True

    def forbid_ssn_field(self, name: str, value: object) -> bool:
        """True (and an error) when the field's name announces an SSN and it holds a value."""
        if is_ssn_field(name) and not is_empty(value):
            self.fail(name, "ssn.forbidden", SSN_MESSAGE, value)
            return True
        return False

    def unknown(self, name: str, value: object, *, what: str = "") -> None:
        """A field no mapping knows: refused when it holds anything (SSNs are named as such)."""
        if is_empty(value):
            return
        if self.forbid_ssn_field(name, value):
            return
        for s in _strings(value):
            if ssn_in_value(s, free_text=True, policy=self.opts.screening):
                self.fail(name, "ssn.forbidden", SSN_MESSAGE, vclass="ssn-like")
                return
        shown = safe_field_name(name)
        self.fail(
            name,
            "element.unknown",
            f"'{shown}' is not a data element Homeroom accepts{what}: it is not in the data-element catalogue, "
            "so the record was refused. Remove it from the export (or leave it empty) and send the record again.",
            value,
        )

    def drop(self, name: str, value: object, *, credential: bool = False) -> None:
        """An element the standard allows and Homeroom does not collect: its value is screened
        for Social Security numbers (which refuse the record) and otherwise forgotten; only its
        name is kept, for the report. A credential (a password) is not even screened."""
        if is_empty(value):
            return
        if credential:
            shown = safe_field_name(name, 160)
            if shown not in self.dropped:
                self.dropped.append(shown)
            return
        if self.forbid_ssn_field(name, value):
            return
        policy = self.opts.screening
        for s in _strings(value):
            if ssn_in_value(s, free_text=policy.nine_digit_ids, policy=policy):
                self.fail(name, "ssn.forbidden", SSN_MESSAGE, vclass="ssn-like")
                return
        shown = safe_field_name(name, 160)
        if shown not in self.dropped:
            self.dropped.append(shown)

    def forbidden(self, name: str, element_id: str, reason: str, value: object = None) -> None:
        self.fail(name, "element.forbidden", f"{reason} ({element_id} is on Homeroom's forbidden list).", value)

    # --- typed fields ------------------------------------------------------------------------

    def text(
        self,
        name: str,
        value: object,
        *,
        required: bool = False,
        max_len: int | None = None,
        free_text: bool = False,
        what: str = "",
    ) -> str | None:
        if type(value) is str:  # nearly every value: the checks below in their cheapest order
            s = value.strip()
        elif value is None or isinstance(value, str):
            s = "" if value is None else str(value).strip()
        elif isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, "schema.type", f"{_label(name, what)} must be text, but it is {_kind(value)}.", value)
            return None
        else:
            s = str(value)
        if not s:
            if required:
                self.fail(name, "schema.required", f"{_label(name, what)} is required but is missing or empty.", value)
            return None
        if "\ufffd" in s:
            self.fail(name, "encoding.invalid", f"{_label(name, what)} is not valid UTF-8 text.", vclass="text")
            return None
        if not self.screen(name, s, free_text=free_text):
            return None
        limit = max_len or self.opts.max_text_length
        if len(s) > limit:
            self.fail(name, "value.too_long", f"{_label(name, what)} is longer than {limit} characters.", s)
            return None
        if not free_text and not s.isprintable():
            self.fail(
                name, "value.invalid_characters", f"{_label(name, what)} contains control characters.", vclass="text"
            )
            return None
        return s

    def date(self, name: str, value: object, *, required: bool = False, what: str = "") -> date | None:
        if type(value) is str and _ISO_DAY.fullmatch(value):
            # YYYY-MM-DD as written: short, printable, and no SSN fits in it, so nothing to screen
            d = codes.parse_date(value)
            if d is not None:
                return d
        s = self.text(name, value, required=required, max_len=40, what=what)
        if s is None:
            return None
        d = codes.parse_date(s)
        if d is None:
            self.fail(
                name,
                "date.invalid",
                f"{_label(name, what)} must be a real calendar date written YYYY-MM-DD (for example 2024-09-03).",
                s,
            )
        return d

    def boolean(self, name: str, value: object, *, required: bool = False, what: str = "") -> bool | None:
        label = what or safe_field_name(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(name, "schema.required", f"{label} is required but is missing or empty.", value)
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            b = codes.parse_bool(value)
            if b is not None:
                return b
        self.fail(name, "schema.type", f"{label} must be true or false.", value)
        return None

    def code(
        self,
        name: str,
        value: object,
        normalise: Callable[[str], str | None],
        *,
        required: bool = False,
        accepted: str,
        what: str = "",
    ) -> str | None:
        """A coded value. Unknown: an error when required, else a warning and the value is dropped."""
        label = what or safe_field_name(name)
        s = self.text(name, value, required=required, what=what)
        if s is None:
            return None
        code = normalise(s)
        if code is None:
            message = f"{label} is not one of the accepted codes ({accepted})."
            if required:
                self.fail(name, "code.unknown", message, s)
            else:
                self.warn(
                    name, "code.unknown", message + " The value was left out; the rest of the record was taken.", s
                )
        return code

    def read(self, value: Mapping[str, Any], fields: Sequence[Field | Rule]) -> dict[str, Any]:
        """A record's declared fields read from ``value`` in order, each rule applied where it
        stands (to the values read before it): the checked values by the record field each fills
        (None where a field is absent or refused; ``ok`` says whether anything was)."""
        out: dict[str, Any] = {}
        get = value.get
        for f in fields:
            if isinstance(f, Field):
                out[f.into] = f.read(self, f.name, get(f.name))
            else:
                f(self, value, out)
        return out


# --- declared fields: what a record type reads, written once as data ---------------------------

Reader: TypeAlias = Callable[[Check, str, Any], Any]
"""How one field is read: (the record's check, the field's name in the source, its raw value) ->
the checked value, or None when it is absent or refused (the check then holds why)."""

Rule: TypeAlias = Callable[[Check, Mapping[str, Any], dict[str, Any]], None]
"""A check across fields (an end before its start), given the record as sent and the values read
so far."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field a record type reads: its name in the source (a problem is reported under it),
    how it is read, and the record field it fills (``into``: the source's own name when they
    agree)."""

    name: str
    read: Reader
    into: str = ""

    def __post_init__(self) -> None:
        if not self.into:
            object.__setattr__(self, "into", self.name)


# Readers are closures, not functools.partial: a partial with keywords builds a dict on every call
# (about 0.2 µs a field: 2.4 µs a batch attendance record), a closure's call is nearly free.


def text(*, required: bool = False, max_len: int | None = None, free_text: bool = False) -> Reader:
    if max_len is None and not free_text:

        def read(check: Check, name: str, value: object) -> str | None:
            return check.text(name, value, required=required)

        return read

    def read_long(check: Check, name: str, value: object) -> str | None:
        return check.text(name, value, required=required, max_len=max_len, free_text=free_text)

    return read_long


def day(*, required: bool = False) -> Reader:
    def read(check: Check, name: str, value: object) -> date | None:
        return check.date(name, value, required=required)

    return read


def flag(*, required: bool = False) -> Reader:
    def read(check: Check, name: str, value: object) -> bool | None:
        return check.boolean(name, value, required=required)

    return read


def coded(normalise: Callable[[str], str | None], accepted: str, *, required: bool = False) -> Reader:
    def read(check: Check, name: str, value: object) -> str | None:
        return check.code(name, value, normalise, required=required, accepted=accepted)

    return read


TITLE = text(required=True, max_len=512, free_text=True)  # a session's, course's or class's title
GRADE = coded(codes.normalise_grade, codes.GRADES_ACCEPTED)


def one_of(
    choices: Mapping[str, object],
    message: str,
    *,
    required: bool = False,
    default: str | None = None,
    fold: Callable[[str], str] | None = None,
) -> Reader:
    """Text that must be one of ``choices`` (``fold`` applied first; ``default`` when absent):
    the value it stands for there, else a ``code.unknown`` error with ``message``."""

    def read(check: Check, name: str, value: object) -> object:
        raw = check.text(name, value, required=required) or default
        if raw is None:
            return None
        chosen = choices.get(fold(raw) if fold is not None else raw)
        if chosen is None:
            check.fail(name, "code.unknown", message, raw)
        return chosen

    return read


def ends_after(start: str, end: str, message: str, *, name: str = "", vclass: str | None = None) -> Rule:
    """The rule that the date ``end`` is not before ``start`` (record field names), refused under
    ``name`` (the end's name in the source, when it is not the record's)."""

    def rule(check: Check, _record: Mapping[str, Any], values: dict[str, Any]) -> None:
        begins, ends = values[start], values[end]
        if begins and ends and ends < begins:
            check.fail(name or end, "date.end_before_start", message, vclass=vclass)

    return rule


def in_class(
    source: Source,
    source_record_id: str,
    student: str,
    school: str,
    class_ref: str | None,
    entry: date | None,
    exit_date: date | None,
    action: EnrollmentAction = EnrollmentAction.ENROLL,
) -> EnrollmentRecord:
    """A student's enrollment in a class (an Ed-Fi section, a batch class_enrollment), which also
    enrolls them at the class's school; ``action`` withdraws it."""
    return EnrollmentRecord(
        source=source,
        source_record_id=source_record_id,
        action=action,
        student_ref=student,
        school_id=school,
        entry_date=entry,
        exit_date=exit_date,
        class_ref=class_ref,
    )


def objects(check: Check, value: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """A JSON member that must be a list of objects ([] when absent; an error otherwise)."""
    v = value.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
        check.fail(key, "schema.type", f"{key} must be a list of objects.", v)
        return []
    return v


Made: TypeAlias = "ParsedRecord | tuple[ParsedRecord, ...] | Dropped | None"


def issues_then(check: Check, made: Made) -> Sequence[ParseItem]:
    """What a parser yields for one input record, given what its row parser made of it: the
    record, the records, None when its fields refuse it, or a ``Dropped`` notice when the whole
    record is one Homeroom does not collect (then that notice is all there is to say). Yields
    the record's errors (whatever was made is then thrown away), or what was dropped from it,
    its warnings and what was made. Every row parser returns what it made and leaves this
    bookkeeping here."""
    if isinstance(made, Dropped):
        return (made,)
    if check.errors:
        return check.errors
    records = () if made is None else made if isinstance(made, tuple) else (made,)
    if not check.dropped and not check.warnings:
        return records  # the common case: one record, nothing to say about it
    out: list[ParseItem] = (
        [Dropped(check.source.file, check.source.line, tuple(check.dropped))] if check.dropped else []
    )
    out += check.warnings
    out += records
    return out


@dataclass(slots=True)
class Counter:
    """Row and progress bookkeeping for one parser run."""

    file: str
    opts: ParseOptions
    total_bytes: int | None = None
    rows: int = 0
    _next: int = field(default=0)

    def __post_init__(self) -> None:
        self._next = self.opts.progress_every

    def row(self, bytes_read: Callable[[], int]) -> None:
        self.rows += 1
        if self.opts.progress is not None and self.rows >= self._next:
            self._next = self.rows + self.opts.progress_every
            self.opts.progress(Progress(self.file, bytes_read(), self.rows, self.total_bytes))

    def done(self, bytes_read: int) -> None:
        if self.opts.progress is not None:
            self.opts.progress(Progress(self.file, bytes_read, self.rows, self.total_bytes, done=True))
