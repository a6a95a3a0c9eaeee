"""The ingest application: one stored upload in, events in the outbox and a report out.

    parse (formats/, in a worker thread) -> organisation registry -> Validator -> pseudonymise ->
    seal PII -> events + problems + progress, written in one transaction per chunk of records

A chunk is ``settings.chunk_records`` input records. Each chunk's outbox events, problem rows,
registry and student rows and the submission's counters commit together, so a crash loses at
most the chunk in flight and re-running the submission writes the same event ids (they are
derived from the district, the keyed record id and the content). Records already taken in an
earlier submission with the same content are counted as ``unchanged`` and make no event.

Before anything is applied, a first pass counts the students the upload would withdraw per
school (:mod:`services.ingest.safety`); when a school would lose more than the configured
share, the submission is ``held`` until district staff confirm it.

Raw student ids never leave this module: events carry the student key
(``pseudonymizer.student_key(state id)``), PII elements are sealed with ``runtime.cipher``
under (district, student key, element), and the upload's own ids appear only as keyed hashes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
from google.protobuf.message import Message

from homeroom import calendar as school_calendar
from homeroom import outbox
from homeroom.bus.envelope import OutgoingEvent, build_event, derived_id
from homeroom.bus.topics import (
    ATTENDANCE,
    CALENDAR,
    DISCIPLINE,
    ENROLLMENT,
    GROUPS,
    ORGANIZATION,
    REJECTED,
    ROSTER,
    Topic,
)
from homeroom.catalogue import CATALOGUE, reporting_codes
from homeroom.crypto import EnvelopeCipher
from homeroom.events.v1 import (
    attendance_pb2,
    calendar_pb2,
    discipline_pb2,
    enrollment_pb2,
    groups_pb2,
    rejected_pb2,
    roster_pb2,
)
from homeroom.events.v1.envelope_pb2 import SealedValue
from homeroom.pseudonym import Pseudonymizer
from homeroom.storage import INFRASTRUCTURE_ERRORS
from homeroom.telemetry import start_at_zero
from services.ingest import metrics, store
from services.ingest.formats import ParseOptions
from services.ingest.formats.batch import parse_batch
from services.ingest.formats.edfi_json import parse_edfi_json
from services.ingest.formats.edfi_xml import parse_edfi_xml
from services.ingest.formats.oneroster_csv import OneRosterUpload
from services.ingest.parsed_records import (
    AttendanceCategory,
    AttendanceRecord,
    CalendarRecord,
    CalendarSource,
    ClassRecord,
    CourseRecord,
    EnrollmentAction,
    EnrollmentRecord,
    Issue,
    OrgType,
    ParsedRecord,
    ParseItem,
    RecordError,
    RecordWarning,
    SchoolRecord,
    SectionRecord,
    SessionRecord,
    Source,
    StaffRecord,
    StudentRecord,
    SuspensionRecord,
    TeachingRecord,
    warning_at,
)
from services.ingest.report import Tally, records_in
from services.ingest.safety import WithdrawalTally, implied_bulk_withdrawals, merge_counts, schools_over_share
from services.ingest.settings import IngestSettings
from services.ingest.validation import Validator

log = logging.getLogger(__name__)

FORMATS = ("batch", "edfi-json", "edfi-xml", "oneroster")
# At 0 from the start, so a panel's first submission of each format shows (homeroom.telemetry.start_at_zero).
start_at_zero(
    metrics.SUBMISSIONS, *((f, status) for f in FORMATS for status in ("received", "held", "completed", "failed"))
)
start_at_zero(metrics.UPLOAD_BYTES, *FORMATS)
start_at_zero(metrics.SUBMISSION_SECONDS, *FORMATS)
EDFI_RESOURCES = (
    "students",
    "studentEducationOrganizationAssociations",
    "studentSchoolAssociations",
    "studentSchoolAttendanceEvents",
    "studentSectionAttendanceEvents",
    "disciplineActions",
    "sessions",
    "calendars",
    "calendarDates",
)
# Ed-Fi resources that can never withdraw a student: no safety pre-scan needed.
_NO_WITHDRAWALS = frozenset(set(EDFI_RESOURCES) - {"studentSchoolAssociations"})
_EVENT_NS = uuid.UUID("0b5a7c52-6f0e-4c1e-9a55-3d1f1c1f0a11")

_CATEGORIES = {
    AttendanceCategory.PRESENT: attendance_pb2.ATTENDANCE_CATEGORY_PRESENT,
    AttendanceCategory.ABSENT: attendance_pb2.ATTENDANCE_CATEGORY_ABSENT,
    AttendanceCategory.TARDY: attendance_pb2.ATTENDANCE_CATEGORY_TARDY,
    AttendanceCategory.EARLY_DEPARTURE: attendance_pb2.ATTENDANCE_CATEGORY_EARLY_DEPARTURE,
    AttendanceCategory.PARTIAL: attendance_pb2.ATTENDANCE_CATEGORY_PARTIAL,
}
_CALENDAR_SOURCES = {
    CalendarSource.CALENDAR: calendar_pb2.CALENDAR_SOURCE_SCHOOL_CALENDAR,
    CalendarSource.TERMS: calendar_pb2.CALENDAR_SOURCE_ROSTER_TERMS,
}


@dataclass(frozen=True, slots=True)
class Job:
    """A stored upload to process."""

    submission_id: uuid.UUID
    district_id: str
    format: str
    file_name: str
    path: Path
    resource: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Job:
        options = row["options"]
        return cls(
            submission_id=row["id"],
            district_id=row["district_id"],
            format=row["format"],
            file_name=row["file_name"],
            path=Path(row["upload_path"]),
            resource=row["resource"],
            options=json.loads(options) if isinstance(options, str) else dict(options or {}),
        )


@dataclass(slots=True)
class Parsed:
    """A parser over an open file, and the OneRoster upload object when there is one."""

    items: Iterator[ParseItem]
    oneroster: OneRosterUpload | None = None


def open_parser(job: Job, stream: IO[bytes], opts: ParseOptions | None = None) -> Parsed:
    opts = opts or ParseOptions()
    if job.format == "batch":
        return Parsed(parse_batch(stream, file=job.file_name, opts=opts))
    if job.format == "edfi-json":
        return Parsed(parse_edfi_json(stream, resource=job.resource or "", file=job.file_name, opts=opts))
    if job.format == "edfi-xml":
        return Parsed(parse_edfi_xml(stream, file=job.file_name, opts=opts))
    if job.format == "oneroster":
        school_id_from = job.options.get("school_id_from", "sourcedId")
        upload = OneRosterUpload(
            stream,
            file=job.file_name,
            opts=opts,
            school_id_from="identifier" if school_id_from == "identifier" else "sourcedId",
        )
        return Parsed(iter(upload), upload)
    raise ValueError(f"unknown format {job.format!r}")


# Words without which an upload of that format cannot withdraw anyone. JSON may spell any
# letter as an escape (\u0077), so a JSON file with escapes is always scanned.
_WITHDRAWAL_WORDS: dict[str, tuple[bytes, ...]] = {
    "batch": (b"withdraw", b"change_school"),
    "edfi-json": (b"exitWithdraw",),
    "edfi-xml": (b"ExitWithdraw",),
}


def may_withdraw(path: Path, fmt: str, block: int = 1 << 20) -> bool:
    """False only when the file cannot hold a withdrawal (so the safety rail's full parse is skipped)."""
    words = _WITHDRAWAL_WORDS.get(fmt)
    if words is None:  # OneRoster: tobedeleted rows and bulk replaces; always counted
        return True
    if fmt != "edfi-xml":
        words = (*words, b"\\u")
    keep = max(len(w) for w in words) - 1
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(block):
            window = tail + chunk
            if any(w in window for w in words):
                return True
            tail = window[-keep:]
    return False


def _take(items: Iterator[ParseItem], n: int) -> list[ParseItem]:
    return list(itertools.islice(items, n))


def _student_ref(item: ParseItem) -> str | None:
    if isinstance(item, StudentRecord | EnrollmentRecord | AttendanceRecord | SuspensionRecord):
        return item.student_ref
    return None


def _iso(d: date | None) -> str:
    return d.isoformat() if d is not None else ""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # completed, held, failed
    held_schools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class DryRunResult:
    """What a dry run would have reported: the same counts, problems and drops, nothing stored."""

    counts: store.ProgressDelta = field(default_factory=store.ProgressDelta)
    skipped: int = 0
    problems: list[Issue] = field(default_factory=list)
    held_schools: list[dict[str, Any]] = field(default_factory=list)
    not_collected: list[dict[str, object]] = field(default_factory=list)


class SubmissionRun:
    """Processes one submission. Not reusable: one instance per run."""

    def __init__(
        self,
        job: Job,
        *,
        pool: asyncpg.Pool,
        cipher: EnvelopeCipher,
        pseudonymizer: Pseudonymizer,
        settings: IngestSettings,
        today: date | None = None,
        dry_run: bool = False,
    ) -> None:
        self.job = job
        self.dry_run = dry_run
        self.tally = Tally()
        self.result = DryRunResult()
        self._calendar_keys: set[tuple[str, int, CalendarSource]] = set()
        self._dry_parts: list[CalendarRecord] = []
        self.district = job.district_id
        self.pool = pool
        self.cipher = cipher
        self.pz = pseudonymizer
        self.settings = settings
        self.today = today or datetime.now(UTC).date()
        self.source = f"/homeroom/ingest/{self.district}"
        self.correlation = str(job.submission_id)
        # per-submission state (bounded by the number of distinct students and schools)
        self._ref_hash: dict[str, str] = {}  # upload student id -> keyed hash
        self._ref_key: dict[str, str] = {}  # upload student id -> student key
        self._looked_up: set[str] = set()  # student ids already looked up in the store
        self._known: set[str] = set()  # student ids on record (for the Validator)
        self._known_enrollments: dict[tuple[str, str], list[tuple[date | None, date | None]]] = {}
        self._org_owner: dict[str, tuple[str, str]] = {}
        self._emitted: set[str] = set()  # collapsed events (class enrollments -> one school enrollment)
        self._windows_written: set[tuple[str, str, date | None, date | None]] = set()
        self._new_orgs: list[tuple[str, str, str | None]] = []  # claimed, not yet written
        self._scope: frozenset[str] | None = None
        self._seq = 0
        self._stamp = datetime.now(UTC)  # the time events are stamped with: one per chunk
        self._stored_problems = 0
        self._warnings_kept = 0
        self._warnings_dropped = 0
        self.validator: Validator | None = None

    # --- entry point ------------------------------------------------------------------------

    async def run(self, *, confirmed: bool = False) -> Outcome:
        started = time.monotonic()
        sid = self.job.submission_id
        if not self.dry_run:
            async with self.pool.acquire() as conn, conn.transaction():
                await store.reset_counts(conn, sid)
                await store.set_status(conn, sid, "processing")
        orgs = await store.district_orgs(self.pool, self.district)
        schools = {r["org_id"] for r in orgs if r["org_type"] == "school"}
        scope = self.job.options.get("schools")  # school staff: only their own schools
        if scope is not None:
            self._scope = frozenset(scope)
            schools &= self._scope
        district_ids = [r["org_id"] for r in orgs if r["org_type"] == "district"]
        for r in orgs:
            self._org_owner[r["org_id"]] = (self.district, r["org_type"])
        if not confirmed:
            held = await self._safety_scan(schools)
            if held and self.dry_run:
                self.result.held_schools = held  # reported; the dry run still checks every record
            elif held:
                await store.set_status(self.pool, sid, "held", held_schools=held)
                metrics.SUBMISSIONS.labels(self.job.format, "held").inc()
                return Outcome("held", held)
        self.validator = Validator(
            self.district,
            schools,
            self.today,
            known_enrollments=self._known_enrollments,
            known_students=self._known,
            district_org_ids=district_ids,
        )
        size = max(1, self.job.path.stat().st_size)
        n = self.settings.chunk_records
        with self.job.path.open("rb") as f:
            parsed = open_parser(self.job, f, self._parse_options())
            # the next chunk is parsed (in a thread) while this one is written to the database
            ahead: asyncio.Future[list[ParseItem]] | None = asyncio.ensure_future(
                asyncio.to_thread(_take, parsed.items, n)
            )
            try:
                while ahead is not None:
                    raw = await ahead
                    position = 0
                    with contextlib.suppress(OSError, ValueError):
                        position = f.tell()
                    done = len(raw) < n
                    ahead = None if done else asyncio.ensure_future(asyncio.to_thread(_take, parsed.items, n))
                    out = await self._decide(raw, final=done)
                    await self._apply(raw, out, bytes_read=position, progress=min(0.99, position / size))
            finally:
                if ahead is not None:  # a failure: let the parser thread finish before the file closes
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(ahead)
        await self._finish()
        if self.dry_run:
            self.result.not_collected = self.tally.summary()
            return Outcome("dry_run", self.result.held_schools)
        await store.set_status(self.pool, sid, "completed", clear_upload=True)
        metrics.SUBMISSIONS.labels(self.job.format, "completed").inc()
        metrics.SUBMISSION_SECONDS.labels(self.job.format).observe(time.monotonic() - started)
        return Outcome("completed")

    # --- the safety rail ----------------------------------------------------------------------

    async def _safety_scan(self, schools: set[str]) -> list[dict[str, Any]]:
        if self.job.format == "edfi-json" and self.job.resource in _NO_WITHDRAWALS:
            return []
        if not await asyncio.to_thread(may_withdraw, self.job.path, self.job.format):
            return []
        enrolled_sets = await store.enrolled_now(self.pool, self.district)

        def scan() -> tuple[dict[str, int], dict[str, set[str]] | None]:
            tally = WithdrawalTally()
            with self.job.path.open("rb") as f:
                parsed = open_parser(self.job, f, self._parse_options())
                for item in parsed.items:
                    tally.add(item)
                upload = parsed.oneroster
                bulk = upload is not None and upload.manifest is not None
                if bulk and upload is not None and upload.manifest is not None:
                    bulk = upload.manifest.mode("enrollments") == "bulk" and upload.manifest.mode("users") == "bulk"
                present = upload.students_by_school if (bulk and upload is not None) else None
                return tally.counts(), present

        counts, present = await asyncio.to_thread(scan)
        implied: dict[str, int] = {}
        if present is not None:
            hashed = {school: {self._hash_ref(r) for r in refs} for school, refs in present.items()}
            implied = implied_bulk_withdrawals(enrolled_sets, hashed)
        withdrawals = merge_counts(counts, implied)
        held = schools_over_share(
            {s: len(v) for s, v in enrolled_sets.items()},
            withdrawals,
            max_share=self.settings.hold_max_share,
            min_withdrawals=self.settings.hold_min_withdrawals,
        )
        return [
            {"school_id": h.school_id, "enrolled": h.enrolled, "withdrawn": h.withdrawn, "share": round(h.share, 4)}
            for h in held
        ]

    # --- decide: registry, store look-ups, validator ---------------------------------------------

    def _hash_ref(self, ref: str) -> str:
        h = self._ref_hash.get(ref)
        if h is None:
            h = self.pz.local_id_hash(self.district, ref)
            self._ref_hash[ref] = h
        return h

    async def _decide(self, raw: list[ParseItem], *, final: bool) -> list[ParseItem]:
        assert self.validator is not None
        v = self.validator
        refs = {r for r in map(_student_ref, raw) if r is not None and r not in self._looked_up}
        org_ids = {i.school_id for i in raw if isinstance(i, SchoolRecord) and i.school_id not in self._org_owner}
        if refs or org_ids:
            hashes = {self._hash_ref(r): r for r in refs}
            async with self.pool.acquire() as conn:
                if hashes:
                    for h, key in (await store.student_keys(conn, self.district, hashes)).items():
                        ref = hashes[h]
                        self._known.add(ref)
                        self._ref_key.setdefault(ref, key)
                    for h, school, entry, exit_ in await store.enrollment_windows(conn, self.district, hashes):
                        self._known_enrollments.setdefault((hashes[h], school), []).append((entry, exit_))
                if org_ids:
                    self._org_owner.update(await store.org_owners(conn, org_ids))
            self._looked_up |= refs
        out: list[ParseItem] = []
        for item in raw:
            if isinstance(item, SchoolRecord) and not item.deleted:
                self._claim(item, v)
            out.extend(v.check(item))
        if final:
            out.extend(v.finish())
        return out

    def _claim(self, r: SchoolRecord, v: Validator) -> None:
        """Let the Validator see the district's own organisations (registering new ones when allowed)."""
        owner = self._org_owner.get(r.school_id)
        if owner is None:
            if not self.settings.auto_register_orgs or self._scope is not None:
                return
            owner = (self.district, "district" if r.org_type is OrgType.DISTRICT else "school")
            self._org_owner[r.school_id] = owner
            self._new_orgs.append((r.school_id, owner[1], r.name))
        if owner[0] != self.district:
            return  # the Validator refuses it: another district's organisation
        if r.org_type is OrgType.DISTRICT:
            v.district_ids = v.district_ids | {r.school_id}
        elif self._scope is None or r.school_id in self._scope:
            v.district_schools = v.district_schools | {r.school_id}

    # --- apply: events, problems, progress in one transaction ------------------------------------

    async def _apply(self, raw: list[ParseItem], out: list[ParseItem], *, bytes_read: int, progress: float) -> None:
        self._stamp = datetime.now(UTC)
        chunk = self.tally.chunk(out)
        delta = store.ProgressDelta(
            records_read=records_in(raw), rejected=chunk.rejected, warned=chunk.warned, skipped=chunk.skipped
        )
        events: list[OutgoingEvent] = []
        problems: list[Issue] = []
        for p in chunk.problems:
            if isinstance(p, RecordError):
                metrics.REJECTIONS.labels(self.district, p.rule).inc()
                problems.append(p)
            elif isinstance(p, RecordWarning):
                metrics.WARNINGS.labels(self.district, p.rule).inc()
                self._keep_warning(problems, p)
        records: list[tuple[ParsedRecord, str, str]] = []  # record, record hash, content hash
        for item in chunk.records:
            rec_hash = self.pz.local_id_hash(self.district, "record:" + item.source_record_id)
            content = hashlib.blake2b(
                (rec_hash + item.fingerprint()).encode(), digest_size=16, person=b"homeroom-ingest"
            ).hexdigest()
            records.append((item, rec_hash, content))
        async with self.pool.acquire() as conn:
            taken = await store.taken_records(conn, self.district, [h for _, h, _ in records]) if records else {}
            new_students: dict[str, str] = {}
            windows: list[tuple[str, str, date | None, date | None]] = []
            closes: list[tuple[str, str, date]] = []
            parts: list[CalendarRecord] = []
            to_mark: dict[str, str] = {}
            sealing: list[tuple[StudentRecord, str, str, str]] = []
            staff: list[tuple[StaffRecord, str, str]] = []
            for record, rec_hash, content in records:
                delta.accepted += 1
                unchanged = taken.get(rec_hash) == content
                if isinstance(record, StudentRecord):
                    key, warning = self._student_key(record)
                    if warning is not None:
                        self._keep_warning(problems, warning)
                        delta.warned += 1
                    if self._ref_key.get(record.student_ref) != key:
                        new_students[self._hash_ref(record.student_ref)] = key
                    self._ref_key[record.student_ref] = key
                    if not unchanged and not record.deleted:
                        sealing.append((record, key, rec_hash, self._event_id(rec_hash, content)))
                elif isinstance(record, EnrollmentRecord):
                    self._windows(record, windows, closes)
                    if not unchanged and record.class_ref is not None:
                        events.append(self._class_enrollment_event(record, rec_hash, content))
                if unchanged:
                    delta.unchanged += 1
                    continue
                to_mark[rec_hash] = content
                if isinstance(record, CalendarRecord):
                    parts.append(record)  # published once per school year when the upload is done
                    self._calendar_keys.add((record.school_id, record.school_year, record.calendar_source))
                elif isinstance(record, StaffRecord):
                    staff.append((record, rec_hash, self._event_id(rec_hash, content)))
                elif not isinstance(record, StudentRecord):
                    event = self._event(record, rec_hash, self._event_id(rec_hash, content))
                    if event is not None:
                        events.append(event)
            if self.dry_run:
                delta.events = len(events) + len(sealing) + sum(1 for r, *_ in sealing if _group_values(r)) + len(staff)
                self._dry_parts.extend(parts)
            else:
                events.extend(await self._student_events(sealing))
                events.extend(await self._staff_events(staff))
            delta.accepted -= delta.unchanged
            stored, dropped = self._problem_budget(problems)
            delta.problems_dropped = dropped + self._warnings_dropped
            self._warnings_dropped = 0
            events.extend(
                self._rejected_event(p, self._seq + 1 + i) for i, p in enumerate(stored) if p.severity == "error"
            )
            if self.dry_run:
                self._count_dry(delta, stored, rejected_events=sum(p.severity == "error" for p in stored))
                return
            async with conn.transaction():
                for org_id, org_type, name in self._pop_new_orgs():
                    await store.register_org(
                        conn, org_id, self.district, org_type, name, f"submission:{self.correlation}"
                    )
                await store.upsert_students(conn, self.district, new_students)
                await store.add_windows(conn, self.district, windows)
                await store.close_windows(conn, self.district, closes)
                await store.add_calendar_parts(conn, self.district, parts)
                await store.mark_taken(conn, self.district, self.job.submission_id, to_mark)
                await store.add_problems(conn, self.job.submission_id, self._seq + 1, stored)
                delta.events = await outbox.add(conn, events) if events else 0
                await store.add_progress(conn, self.job.submission_id, delta, bytes_read=bytes_read, progress=progress)
        self._seq += len(stored)
        self._count_metrics(delta, events)

    def _count_metrics(self, delta: store.ProgressDelta, events: list[OutgoingEvent]) -> None:
        fmt = self.job.format
        metrics.RECORDS.labels(self.district, fmt, "received").inc(delta.records_read)
        metrics.RECORDS.labels(self.district, fmt, "accepted").inc(delta.accepted)
        metrics.RECORDS.labels(self.district, fmt, "rejected").inc(delta.rejected)
        metrics.RECORDS.labels(self.district, fmt, "unchanged").inc(delta.unchanged)
        for e in events:
            metrics.EVENTS.labels(e.topic).inc()

    def _count_dry(self, delta: store.ProgressDelta, stored: list[Issue], *, rejected_events: int = 0) -> None:
        total = self.result.counts
        for name in ("records_read", "accepted", "rejected", "warned", "unchanged", "events", "problems_dropped"):
            setattr(total, name, getattr(total, name) + getattr(delta, name))
        total.events += rejected_events
        self.result.skipped += delta.skipped
        self.result.problems.extend(stored)
        self._seq += len(stored)

    async def _finish(self) -> None:
        """After the last chunk: publish each school year's calendar the upload touched, and
        report each dropped element and skipped record type once, with its count."""
        events: list[OutgoingEvent] = []
        warnings: list[Issue] = []
        async with self.pool.acquire() as conn:
            for school, year, source in sorted(self._calendar_keys):
                rows = await store.calendar_parts(conn, self.district, school, year, source.value)
                if self.dry_run:  # nothing was written: add this upload's parts to what is on record
                    rows += store.part_rows(
                        [p for p in self._dry_parts if (p.school_id, p.school_year) == (school, year)]
                    )
                event, notes = self._calendar_event(school, year, source, rows)
                events.append(event)
                warnings.extend(notes)
        warnings.extend(self.tally.warnings())
        metrics_delta = store.ProgressDelta()
        if self.dry_run:
            self.result.counts.events += len(events)
            self.result.problems.extend(warnings)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await store.add_problems(conn, self.job.submission_id, self._seq + 1, warnings)
            metrics_delta.events = await outbox.add(conn, events) if events else 0
            await store.add_progress(
                conn, self.job.submission_id, metrics_delta, bytes_read=0, progress=0.99, dropped=self.tally.summary()
            )
        self._seq += len(warnings)
        for e in events:
            metrics.EVENTS.labels(e.topic).inc()

    def _calendar_event(
        self,
        school: str,
        year: int,
        source: CalendarSource,
        rows: list[tuple[school_calendar.Term | None, date | None, bool | None]],
    ) -> tuple[OutgoingEvent, list[Issue]]:
        terms = [t for t, _, _ in rows if t is not None]
        entries = {d: bool(i) for _, d, i in rows if d is not None}
        days = school_calendar.instructional_days(terms, entries)
        notes: list[Issue] = []
        for term, counted in school_calendar.term_mismatches(terms, days):
            notes.append(
                warning_at(
                    Source(self.job.format, self.job.file_name, 0, "calendar"),
                    f"{school}/{term.name}",
                    "calendar.days_mismatch",
                    f"School {school}, {term.name}: the session declares {term.declared_days} instructional days, "
                    f"its weekdays less the listed days off give {counted}. Days enrolled count {counted}; send the "
                    "calendar's days off (holidays, teacher-only days) to make them agree.",
                    "number",
                )
            )
        payload = calendar_pb2.CalendarPublished(
            district_id=self.district,
            school_id=school,
            school_year=year,
            source=_CALENDAR_SOURCES[source],
            instructional_dates=[d.isoformat() for d in days],
            terms=[
                calendar_pb2.InstructionalTerm(
                    name=t.name,
                    begin_date=t.begin.isoformat(),
                    end_date=t.end.isoformat(),
                    declared_days=t.declared_days or 0,
                )
                for t in terms
            ],
            non_instructional_dates=sorted(d.isoformat() for d, i in entries.items() if not i),
            source_format=self.job.format,
        )
        digest = hashlib.sha256(payload.SerializeToString(deterministic=True)).hexdigest()
        event_id = str(uuid.uuid5(_EVENT_NS, f"{self.district}|calendar|{school}|{year}|{source.value}|{digest}"))
        event = self._build(
            CALENDAR, "calendar_published", payload, subject=school, key=self.district, event_id=event_id
        )
        return event, notes

    def _keep_warning(self, problems: list[Issue], warning: RecordWarning) -> None:
        """Warnings beyond `max_warnings_kept` are counted (`warned`, `problems_dropped`), not kept."""
        if self._warnings_kept < self.settings.max_warnings_kept:
            problems.append(warning)
            self._warnings_kept += 1
        else:
            self._warnings_dropped += 1

    def _parse_options(self) -> ParseOptions:
        return ParseOptions(
            max_uncompressed_bytes=self.settings.max_expanded_bytes,
            max_member_bytes=self.settings.max_entry_bytes,
            max_compression_ratio=self.settings.max_compression_ratio,
        )

    def _pop_new_orgs(self) -> list[tuple[str, str, str | None]]:
        new, self._new_orgs = self._new_orgs, []
        return new

    def _problem_budget(self, problems: list[Issue]) -> tuple[list[Issue], int]:
        room = max(0, self.settings.max_problems_stored - self._stored_problems)
        stored = problems[:room]
        self._stored_problems += len(stored)
        return stored, len(problems) - len(stored)

    def _windows(
        self,
        r: EnrollmentRecord,
        windows: list[tuple[str, str, date | None, date | None]],
        closes: list[tuple[str, str, date]],
    ) -> None:
        h = self._hash_ref(r.student_ref)
        if r.action is EnrollmentAction.ENROLL:
            window = (h, r.school_id, r.entry_date, r.exit_date)
            if window not in self._windows_written:  # class enrollments repeat the school window
                self._windows_written.add(window)
                windows.append(window)
        elif r.action is EnrollmentAction.WITHDRAW and r.exit_date is not None:
            if r.entry_date is not None:
                windows.append((h, r.school_id, r.entry_date, r.exit_date))
            else:
                closes.append((h, r.school_id, r.exit_date))
        elif r.action is EnrollmentAction.CHANGE_SCHOOL:
            if r.from_school_id is not None and r.entry_date is not None:
                closes.append((h, r.from_school_id, r.entry_date))
            windows.append((h, r.school_id, r.entry_date, None))

    # --- events -----------------------------------------------------------------------------------

    def _event_id(self, rec_hash: str, content: str) -> str:
        return derived_id(_EVENT_NS, f"{self.district}|{rec_hash}|{content}")

    def _student_key(self, r: StudentRecord) -> tuple[str, RecordWarning | None]:
        state_id = r.elements.get("student.state_id")
        if state_id:
            return self.pz.student_key(state_id), None
        known = self._ref_key.get(r.student_ref)
        if known is not None:
            return known, None
        # No state id and not on record: a key that is stable within the district only.
        key = self.pz.student_key(f"district-local/{self.district}/{r.student_ref}")
        return key, warning_at(
            r.source,
            "student.state_id",
            "student.state_id_missing",
            "The student has no state student id, so Homeroom gave the student a key known only in this district: "
            "the record cannot follow the student to another district until the state id is sent.",
            "empty",
        )

    def _build(
        self, topic: Topic, change: str, payload: Message, *, subject: str, event_id: str, key: str | None = None
    ) -> OutgoingEvent:
        return build_event(
            topic,
            change,
            payload,
            source=self.source,
            subject=subject,
            district_id=self.district,
            key=key,
            correlation_id=self.correlation,
            causation_id=self.correlation,
            event_id=event_id,
            time=self._stamp,
        )

    @staticmethod
    def _public_record_id(rec_hash: str) -> str:
        """The record's id as events carry it: the keyed hash of its source id, never the id."""
        return "rec_" + rec_hash.removeprefix("lid_")

    async def _student_events(self, sealing: list[tuple[StudentRecord, str, str, str]]) -> list[OutgoingEvent]:
        async def one(r: StudentRecord, key: str, rec_hash: str, event_id: str) -> list[OutgoingEvent]:
            secret: dict[str, str] = {}
            plain: dict[str, str] = {}
            for element_id, value in r.elements.items():
                element = CATALOGUE.get(element_id)
                if element is None or element.pii:
                    secret[element_id] = value
                else:
                    plain[element_id] = value
            for element_id, flag in r.programs.items():
                secret[element_id] = "true" if flag else "false"
            sealed = await self.cipher.seal_many(self.district, key, secret) if secret else {}
            payload = enrollment_pb2.StudentRegistered(
                student_key=key,
                district_id=self.district,
                local_student_id_hash=self._hash_ref(r.student_ref),
                plain_elements=plain,
                source_record_id=self._public_record_id(rec_hash),
            )
            for element_id, ciphertext in sealed.items():
                payload.sealed_elements[element_id].CopyFrom(SealedValue(ciphertext=ciphertext))
            out = [self._build(ENROLLMENT, "student_registered", payload, subject=key, event_id=event_id)]
            codes = _group_values(r)
            if codes:
                # The catalogue's coarse codes only, for statewide statistics (docs/contracts.md).
                groups = groups_pb2.StudentGroupsRecorded(
                    student_key=key, district_id=self.district, source_record_id=self._public_record_id(rec_hash)
                )
                groups.groups.update(codes)
                groups_id = derived_id(_EVENT_NS, f"{event_id}|groups")
                out.append(self._build(GROUPS, "student_groups_recorded", groups, subject=key, event_id=groups_id))
            return out

        built = await asyncio.gather(*(one(*s) for s in sealing))
        return [event for events in built for event in events]

    async def _staff_events(self, staff: list[tuple[StaffRecord, str, str]]) -> list[OutgoingEvent]:
        """Staff registrations: the staff id pseudonymised, the staff elements sealed under the
        staff key (shredding that key destroys them, as for a student)."""

        async def one(r: StaffRecord, rec_hash: str, event_id: str) -> OutgoingEvent:
            key = self.pz.staff_key(self.district, r.staff_ref)
            elements = {k: v for k, v in r.elements.items() if k in CATALOGUE and CATALOGUE[k].subject == "staff"}
            sealed = await self.cipher.seal_many(self.district, key, elements) if elements else {}
            payload = roster_pb2.StaffRegistered(
                district_id=self.district,
                staff_key=key,
                role=r.role,
                school_ids=list(r.schools),
                deleted=r.deleted,
                source_record_id=self._public_record_id(rec_hash),
            )
            for element_id, ciphertext in sealed.items():
                payload.sealed_elements[element_id].CopyFrom(SealedValue(ciphertext=ciphertext))
            return self._build(ROSTER, "staff_registered", payload, subject=key, key=self.district, event_id=event_id)

        return list(await asyncio.gather(*(one(*s) for s in staff)))

    def _class_enrollment_event(self, r: EnrollmentRecord, rec_hash: str, content: str) -> OutgoingEvent:
        """A student's class enrollment, for rosters (the school enrollment is its own event)."""
        key = self._ref_key.get(r.student_ref)
        if key is None:  # the Validator only accepts records of known students
            raise RuntimeError("accepted record without a student key")
        withdrawn = r.action is EnrollmentAction.WITHDRAW
        payload = roster_pb2.ClassEnrollmentRecorded(
            district_id=self.district,
            class_id=r.class_ref or "",
            school_id=r.school_id,
            role="student",
            user_key=key,
            begin_date=_iso(r.entry_date),
            end_date=_iso(r.exit_date),
            deleted=withdrawn,
            source_record_id=self._public_record_id(rec_hash),
        )
        event_id = str(uuid.uuid5(_EVENT_NS, f"{self.district}|{rec_hash}|{content}|class"))
        subject = r.class_ref or ""
        return self._build(
            ROSTER, "class_enrollment_recorded", payload, subject=subject, key=self.district, event_id=event_id
        )

    def _roster_event(self, r: ParsedRecord, rec_hash: str, event_id: str) -> OutgoingEvent | None:
        """Sessions, courses, classes and teachers' class enrollments (roster.v1)."""
        rid = self._public_record_id(rec_hash)
        payload: Message
        if isinstance(r, SessionRecord):
            change, subject = "academic_session_registered", r.session_id
            payload = roster_pb2.AcademicSessionRegistered(
                district_id=self.district,
                session_id=r.session_id,
                title=r.title,
                session_type=r.session_type,
                start_date=r.start_date.isoformat(),
                end_date=r.end_date.isoformat(),
                parent_id=r.parent_id or "",
                school_year=r.school_year,
                deleted=r.deleted,
                source_record_id=rid,
            )
        elif isinstance(r, CourseRecord):
            change, subject = "course_registered", r.course_id
            payload = roster_pb2.CourseRegistered(
                district_id=self.district,
                course_id=r.course_id,
                title=r.title,
                course_code=r.course_code or "",
                school_id=r.school_id or "",
                grades=list(r.grades),
                subjects=list(r.subjects),
                school_year_id=r.school_year_id or "",
                deleted=r.deleted,
                source_record_id=rid,
            )
        elif isinstance(r, ClassRecord):
            change, subject = "class_registered", r.class_id
            payload = roster_pb2.ClassRegistered(
                district_id=self.district,
                class_id=r.class_id,
                title=r.title,
                class_code=r.class_code or "",
                class_type=r.class_type,
                course_id=r.course_id or "",
                school_id=r.school_id,
                term_ids=list(r.term_ids),
                periods=list(r.periods),
                grades=list(r.grades),
                subjects=list(r.subjects),
                location=r.location or "",
                deleted=r.deleted,
                source_record_id=rid,
            )
        elif isinstance(r, TeachingRecord):
            change, subject = "class_enrollment_recorded", r.class_id
            payload = roster_pb2.ClassEnrollmentRecorded(
                district_id=self.district,
                class_id=r.class_id,
                school_id=r.school_id,
                role="teacher",
                user_key=self.pz.staff_key(self.district, r.staff_ref),
                primary=r.primary,
                begin_date=_iso(r.begin_date),
                end_date=_iso(r.end_date),
                deleted=r.deleted,
                source_record_id=rid,
            )
        else:
            return None
        return self._build(ROSTER, change, payload, subject=subject, key=self.district, event_id=event_id)

    def _event(self, r: ParsedRecord, rec_hash: str, event_id: str) -> OutgoingEvent | None:
        if isinstance(r, SectionRecord | CalendarRecord):
            return None  # sections make no event; calendars are published per school year at the end
        if isinstance(r, SessionRecord | CourseRecord | ClassRecord | TeachingRecord | StaffRecord):
            return self._roster_event(r, rec_hash, event_id)
        if isinstance(r, SchoolRecord):
            if r.org_type is OrgType.DISTRICT:
                return None
            return self._build(
                ORGANIZATION,
                "school_registered",
                enrollment_pb2.SchoolRegistered(
                    district_id=self.district,
                    school_id=r.school_id,
                    name=r.name or "",
                    nces_id=r.nces_id or "",
                    grades=list(r.grades),
                    deleted=r.deleted,
                ),
                subject=r.school_id,
                key=self.district,
                event_id=event_id,
            )
        student_key = self._ref_key.get(r.student_ref)
        if student_key is None:  # the Validator only accepts records of known students
            raise RuntimeError("accepted record without a student key")
        rid = self._public_record_id(rec_hash)
        if isinstance(r, EnrollmentRecord):
            return self._enrollment_event(r, student_key, rid, event_id)
        if isinstance(r, AttendanceRecord):
            return self._build(
                ATTENDANCE,
                "attendance_recorded",
                attendance_pb2.AttendanceRecorded(
                    student_key=student_key,
                    district_id=self.district,
                    school_id=r.school_id,
                    date=r.date.isoformat(),
                    period=r.period or "",
                    category=_CATEGORIES[r.category],
                    excused=bool(r.excused),
                    source_record_id=rid,
                ),
                subject=student_key,
                event_id=event_id,
            )
        if isinstance(r, SuspensionRecord):
            return self._build(
                DISCIPLINE,
                "suspension_recorded",
                discipline_pb2.SuspensionRecorded(
                    student_key=student_key,
                    district_id=self.district,
                    school_id=r.school_id,
                    start_date=r.start_date.isoformat(),
                    end_date=_iso(r.end_date),
                    in_school=bool(r.in_school),
                    source_record_id=rid,
                ),
                subject=student_key,
                event_id=event_id,
            )
        return None

    def _enrollment_event(self, r: EnrollmentRecord, key: str, rid: str, event_id: str) -> OutgoingEvent | None:
        if r.class_ref is not None:
            # class (section) enrollments: one school-level event per student, school and date
            day = r.entry_date if r.action is EnrollmentAction.ENROLL else r.exit_date
            event_id = derived_id(_EVENT_NS, f"{self.district}|{key}|{r.action}|{r.school_id}|{_iso(day)}")
            if event_id in self._emitted:
                return None
            self._emitted.add(event_id)
        if r.action is EnrollmentAction.ENROLL:
            payload: Message = enrollment_pb2.StudentEnrolled(
                student_key=key,
                district_id=self.district,
                school_id=r.school_id,
                entry_date=_iso(r.entry_date),
                grade_level=r.grade_level or "",
                entry_type=r.entry_type or "",
                source_record_id=rid,
            )
            change = "student_enrolled"
        elif r.action is EnrollmentAction.WITHDRAW:
            payload = enrollment_pb2.StudentWithdrawn(
                student_key=key,
                district_id=self.district,
                school_id=r.school_id,
                exit_date=_iso(r.exit_date),
                exit_code=r.exit_code or "",
                source_record_id=rid,
            )
            change = "student_withdrawn"
        else:
            payload = enrollment_pb2.SchoolChanged(
                student_key=key,
                district_id=self.district,
                from_school_id=r.from_school_id or "",
                to_school_id=r.school_id,
                change_date=_iso(r.entry_date),
                source_record_id=rid,
            )
            change = "school_changed"
        return self._build(ENROLLMENT, change, payload, subject=key, event_id=event_id)

    def _rejected_event(self, p: Issue, seq: int) -> OutgoingEvent:
        sid = self.correlation
        return self._build(
            REJECTED,
            "record_rejected",
            rejected_pb2.RecordRejected(
                stage="ingest",
                submission_id=sid,
                file=p.file,
                line=p.line,
                field=p.field,
                rule=p.rule,
                message=p.message,
                value_class=p.value_class,
            ),
            subject=sid,
            key=sid,
            event_id=str(uuid.uuid5(_EVENT_NS, f"rejected|{sid}|{seq}")),
        )


class FairSlots:
    """At most ``total`` submissions run at once, at most ``per_district`` of one district, and
    a freed slot goes to the district that has waited longest (round robin by district), so one
    district's uploads never hold back another's (issue 17, item 6)."""

    def __init__(self, total: int, per_district: int) -> None:
        self.total = total
        self.per_district = per_district
        self.running: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._turns: collections.deque[str] = collections.deque()  # districts in the order they wait

    def _may_start(self, district: str) -> bool:
        return sum(self.running.values()) < self.total and self.running.get(district, 0) < self.per_district

    def _wake(self) -> None:
        for _ in range(len(self._turns)):
            district = self._turns[0]
            queue = self._waiting.get(district)
            if not queue:
                self._turns.popleft()
                self._waiting.pop(district, None)
                continue
            if self._may_start(district):
                self._turns.rotate(-1)  # its next upload waits behind the other districts
                future = queue.popleft()
                self.running[district] = self.running.get(district, 0) + 1
                if not future.done():
                    future.set_result(None)
                if not queue:
                    self._turns.remove(district)
                    del self._waiting[district]
                continue
            self._turns.rotate(-1)

    @contextlib.asynccontextmanager
    async def slot(self, district: str) -> AsyncIterator[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if district not in self._waiting:
            self._waiting[district] = collections.deque()
            self._turns.append(district)
        self._waiting[district].append(future)
        self._wake()  # behind every district already waiting, ahead of none
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # woken, then cancelled: give the slot back
                self._release(district)
            elif future in self._waiting.get(district, ()):
                self._waiting[district].remove(future)
            raise
        try:
            yield
        finally:
            self._release(district)

    def _release(self, district: str) -> None:
        self.running[district] -= 1
        if not self.running[district]:
            del self.running[district]
        self._wake()


class Ingestor:
    """Runs submissions in background tasks (at most ``max_concurrent_submissions`` at once) so
    the upload request returns at once and the report shows progress while it runs."""

    def __init__(
        self, pool: asyncpg.Pool, cipher: EnvelopeCipher, pseudonymizer: Pseudonymizer, settings: IngestSettings
    ) -> None:
        self.pool = pool
        self.cipher = cipher
        self.pseudonymizer = pseudonymizer
        self.settings = settings
        self._tasks: dict[uuid.UUID, asyncio.Task[Outcome | None]] = {}
        self._slots = FairSlots(settings.max_concurrent_submissions, settings.max_concurrent_per_district)
        self._small_slots = FairSlots(settings.max_concurrent_small_submissions, settings.max_concurrent_per_district)

    def slot(self, job: Job) -> contextlib.AbstractAsyncContextManager[None]:
        """A place to run `job`: small uploads (real-time changes) have their own slots, so an
        enrollment never waits behind its district's bulk attendance file. Each district's
        uploads start in arrival order within their own kind (small or bulk)."""
        small = self.settings.small_upload_bytes
        with contextlib.suppress(OSError):
            if small and job.path.stat().st_size <= small:
                return self._small_slots.slot(job.district_id)
        return self._slots.slot(job.district_id)

    def submit(self, job: Job, *, confirmed: bool = False) -> None:
        if job.submission_id in self._tasks:
            return
        task = asyncio.create_task(self._run(job, confirmed), name=f"ingest-{job.submission_id}")
        self._tasks[job.submission_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.submission_id, None))

    async def dry_run(self, job: Job) -> DryRunResult:
        """Parse and validate an upload with nothing stored or published (one of the slots)."""
        async with self.slot(job):
            run = SubmissionRun(
                job,
                pool=self.pool,
                cipher=self.cipher,
                pseudonymizer=self.pseudonymizer,
                settings=self.settings,
                dry_run=True,
            )
            await run.run()
            return run.result

    async def run_now(self, job: Job, *, confirmed: bool = False) -> Outcome | None:
        """Process in the caller's task (the CLI and benchmarks)."""
        return await self._run(job, confirmed)

    async def wait(self, submission_id: uuid.UUID, timeout_s: float = 60.0) -> None:
        task = self._tasks.get(submission_id)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)

    async def _run(self, job: Job, confirmed: bool) -> Outcome | None:
        async with self.slot(job):
            delay = 0.5
            while True:
                run = SubmissionRun(
                    job, pool=self.pool, cipher=self.cipher, pseudonymizer=self.pseudonymizer, settings=self.settings
                )
                try:
                    outcome = await run.run(confirmed=confirmed)
                    break
                except asyncio.CancelledError:
                    raise
                except INFRASTRUCTURE_ERRORS as exc:
                    # The database is away: keep the upload and run it again when it is back.
                    # Records already taken come out "unchanged", so nothing is applied twice.
                    log.warning(
                        "database unavailable; submission will run again",
                        extra={"submission_id": str(job.submission_id), "error": repr(exc), "retry_s": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 15.0)
                    continue
                except Exception as exc:  # a bug: the submission says so, the service stays up
                    await self._failed(job, exc)
                    return None
            if outcome.status != "held":
                _remove(job.path)
            return outcome

    async def _failed(self, job: Job, exc: Exception) -> None:
        log.exception("submission failed", extra={"submission_id": str(job.submission_id)})
        with contextlib.suppress(Exception):
            await store.set_status(
                self.pool,
                job.submission_id,
                "failed",
                error=f"processing stopped: {type(exc).__name__}. Records before the failure were taken; "
                "send the file again to finish (records already taken are not repeated).",
                clear_upload=True,
            )
        metrics.SUBMISSIONS.labels(job.format, "failed").inc()
        _remove(job.path)

    async def resume(self) -> int:
        """After a restart: re-run submissions that were received or processing when it stopped."""
        n = 0
        for row in await store.unfinished_submissions(self.pool):
            path = row["upload_path"]
            if path and Path(path).exists():
                self.submit(Job.from_row(row), confirmed=row["confirmed_at"] is not None)
                n += 1
            else:
                await store.set_status(
                    self.pool, row["id"], "failed", error="the upload was lost before it was processed; send it again"
                )
        return n

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _group_values(r: StudentRecord) -> dict[str, str]:
    """The reporting-group codes a student record carries (homeroom.catalogue.REPORTING_GROUPS)."""
    values = dict(r.elements)
    values.update({element_id: "true" if flag else "false" for element_id, flag in r.programs.items()})
    return reporting_codes(values)
