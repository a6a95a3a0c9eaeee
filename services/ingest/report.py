"""Counting a submission for its report (pure; no I/O), shared by the pipeline, the dry run and
``homeroom ingest check`` so all three say the same thing about the same file.

Counts are of input records: a record refused for two reasons is one ``rejected`` record;
a record accepted with a warning or a dropped element is one ``warned`` record; a record
Homeroom takes nothing from (a Contact, an interchange it does not use) is ``skipped``.
Dropped elements and skipped records are added up per name and reported once each:
"PersonalTitlePrefix: dropped 960 times (not collected by Homeroom)".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.ingest.parsed_records import Dropped, Issue, ParsedRecord, ParseItem, RecordError, RecordWarning

MAX_NAMES = 500  # distinct dropped names kept per submission; the rest are added up as one
_OTHERS = "(other element names)"


def record_key(issue: Issue | Dropped) -> tuple[str, int, str]:
    """Which input record an issue is about: file, line and, for JSON arrays, the index
    (``records[17].date`` -> ``records[17]``), so one record's several problems count once."""
    if isinstance(issue, Dropped):
        return issue.file, issue.line, ""
    f = issue.field
    index = f[: f.index("]") + 1] if "]" in f and f.split("[", 1)[0] in ("records", "") else ""
    return issue.file, issue.line, index


def records_in(raw: Iterable[ParseItem]) -> int:
    """Input records in a parser chunk: each record, each refused record once (its errors are
    adjacent) and each skipped record."""
    n = 0
    last: tuple[str, int, str] | None = None
    for item in raw:
        if isinstance(item, RecordWarning):
            continue
        if isinstance(item, Dropped):
            if item.skipped:
                n += item.count
                last = None
            continue
        if isinstance(item, RecordError):
            key = record_key(item)
            n += key != last
            last = key
        else:
            n += 1
            last = None
    return n


@dataclass(slots=True)
class Chunk:
    """What one chunk of decided items adds to the report."""

    records: list[ParsedRecord] = field(default_factory=list)
    problems: list[Issue] = field(default_factory=list)  # errors and per-record warnings, in input order
    rejected: int = 0
    warned: int = 0
    skipped: int = 0


@dataclass(slots=True)
class Tally:
    """A submission's running totals of what was not collected."""

    drops: dict[tuple[str, str, bool], int] = field(default_factory=dict)  # (file, name, whole record) -> n

    def _count(self, file: str, name: str, whole: bool, n: int) -> None:
        key = (file, name, whole)
        if key not in self.drops and len(self.drops) >= MAX_NAMES:
            key = (file, _OTHERS, whole)
        self.drops[key] = self.drops.get(key, 0) + n

    def chunk(self, out: Iterable[ParseItem]) -> Chunk:
        """Sort decided items (the Validator's output) into records, problems and counts."""
        c = Chunk()
        last_error: tuple[str, int, str] | None = None
        warned_keys: set[tuple[str, int, str]] = set()
        for item in out:
            if isinstance(item, RecordError):
                which = record_key(item)
                c.rejected += which != last_error
                last_error = which
                c.problems.append(item)
            elif isinstance(item, RecordWarning):
                warned_keys.add(record_key(item))
                c.problems.append(item)
            elif isinstance(item, Dropped):
                if item.skipped:
                    c.skipped += item.count
                    self._count(item.file, item.record, True, item.count)
                else:
                    warned_keys.add(record_key(item))
                    for name in item.names:
                        self._count(item.file, name, False, 1)
            else:
                c.records.append(item)
        c.warned = len(warned_keys)
        return c

    def warnings(self) -> list[RecordWarning]:
        """One warning per dropped element name and per skipped record type, for the report."""
        out = []
        for (file, name, whole), n in sorted(self.drops.items()):
            if whole:
                message = f"{name}: {n} record{'s' if n != 1 else ''} skipped (not collected by Homeroom)."
                rule = "record.skipped"
            else:
                message = f"{name}: dropped {n} time{'s' if n != 1 else ''} (not collected by Homeroom)."
                rule = "element.dropped"
            out.append(RecordWarning(file, 0, name, rule, message, f"{n} occurrence{'s' if n != 1 else ''}"))
        return out

    def summary(self) -> list[dict[str, object]]:
        """The same, as the report's ``not_collected`` list."""
        return [
            {"file": file, "name": name, "kind": "record" if whole else "element", "count": n}
            for (file, name, whole), n in sorted(self.drops.items())
        ]
