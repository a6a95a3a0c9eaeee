"""``homeroom ingest check FILE...``: what Homeroom would make of a district's export, offline.

Each file is parsed and validated exactly as an upload is (the same parsers, Validator and
report counting), in the order given, the way a district sends them (organisations and
calendars, then students, enrollments, programs, attendance, discipline), with nothing
stored, published or sent anywhere. Schools found in the files count as the district's own
(as a first upload registers them); students and enrollments carry over from one file to the
next. The answer per file is the report a submission would get: read, accepted, refused,
warned and skipped records, every problem with line, field and rule, and what was not
collected.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from services.ingest.application.jobs import Job
from services.ingest.application.pipeline import open_parser
from services.ingest.formats import ParseOptions
from services.ingest.parsed_records import Dropped, Issue, ParseItem, RecordError, SchoolRecord
from services.ingest.report import Tally, records_in
from services.ingest.validation import Validator


def format_of(path: Path, edfi_resource: str | None = None) -> str:
    if edfi_resource:
        return "edfi-json"
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return "oneroster"
    if suffix == ".xml":
        return "edfi-xml"
    if suffix == ".json":
        return "batch"
    raise ValueError(f"cannot tell the format of {path.name}: use .zip, .xml, .json or an Ed-Fi resource name")


@dataclass(slots=True)
class FileReport:
    file: str
    format: str
    records_read: int = 0
    accepted: int = 0
    rejected: int = 0
    warned: int = 0
    skipped: int = 0
    problems: list[Issue] = field(default_factory=list)
    not_collected: list[dict[str, object]] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)

    def refusals(self) -> list[RecordError]:
        return [p for p in self.problems if isinstance(p, RecordError)]

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "format": self.format,
            "counts": {
                "records_read": self.records_read,
                "accepted": self.accepted,
                "rejected": self.rejected,
                "warned": self.warned,
                "skipped": self.skipped,
            },
            "problems": [p.as_dict() for p in self.problems],
            "not_collected": self.not_collected,
        }


def _parse(path: Path, fmt: str, resource: str | None, opts: ParseOptions) -> Iterator[ParseItem]:
    """The parser an upload of this format gets (application/pipeline.py `open_parser`)."""
    job = Job(uuid.UUID(int=0), "", fmt, path.name, path, resource or path.stem)
    with path.open("rb") as f:
        yield from open_parser(job, f, opts).items


def _file_of(item: ParseItem) -> str:
    if isinstance(item, Issue | Dropped):
        return item.file
    return item.source.file


def check_files(
    paths: Sequence[Path],
    *,
    district: str = "district",
    schools: Sequence[str] = (),
    edfi_resource: str | None = None,
    today: date | None = None,
) -> list[FileReport]:
    """Parse and validate the files in order, as one district's uploads; nothing is kept."""
    validator = Validator(district, schools, today or datetime.now(UTC).date())
    reports = {p.name: FileReport(p.name, format_of(p, edfi_resource)) for p in paths}

    def account(items: list[ParseItem], raw: list[ParseItem] | None = None) -> None:
        for name in {_file_of(i) for i in items}:
            report = reports.get(name)
            if report is None:  # a OneRoster member: count it under its zip
                report = next(r for r in reports.values() if r.format == "oneroster")
            mine = [i for i in items if _file_of(i) == name]
            chunk = report.tally.chunk(mine)
            report.rejected += chunk.rejected
            report.warned += chunk.warned
            report.skipped += chunk.skipped
            report.accepted += len(chunk.records)
            report.problems.extend(chunk.problems)
        if raw is not None and raw:
            first = reports.get(_file_of(raw[0]))
            if first is None:
                first = next(r for r in reports.values() if r.format == "oneroster")
            first.records_read += records_in(raw)

    for path in paths:
        fmt = reports[path.name].format
        items = _parse(path, fmt, edfi_resource, ParseOptions())
        while raw := list(itertools.islice(items, 1000)):
            out: list[ParseItem] = []
            for item in raw:
                if isinstance(item, SchoolRecord) and not item.deleted:
                    validator.claim(item)  # a first upload registers the schools and agencies it describes
                out.extend(validator.check(item))
            account(out, raw)
    account(validator.finish())
    for report in reports.values():
        report.problems.extend(report.tally.warnings())
        report.not_collected = report.tally.summary()
    return list(reports.values())
