"""The pipeline: one stored upload in, events in the outbox and a report out.

Use cases held here:

- **open an upload's parser** by format (`open_parser`), and tell whether a file can hold a
  withdrawal at all (`may_withdraw`);
- **run a submission** (`SubmissionRun.run`), chunk by chunk:

      parse (formats/, in a worker thread; every raw value screened for SSNs) ->
      organisation registry -> Validator (validation.py) -> pseudonymise -> seal PII ->
      events (events.py) + problems + progress, written in one transaction per chunk

- **the bulk-withdrawal safety rail**: before anything is applied, count the students the
  upload would withdraw per school (:mod:`services.ingest.safety`); when a school would lose
  more than the configured share, the submission is ``held`` until district staff confirm it;
- **a dry run**: the same run with nothing stored or published (`DryRunResult`).

A chunk is ``settings.chunk_records`` input records. Each chunk's outbox events, problem rows,
registry and student rows and the submission's counters commit together, so a crash loses at
most the chunk in flight and re-running the submission writes the same event ids (they are
derived from the district, the keyed record id and the content). Records already taken in an
earlier submission with the same content are counted as ``unchanged`` and make no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import asyncpg

from homeroom import outbox
from homeroom.bus.envelope import OutgoingEvent
from homeroom.clock import Clock
from homeroom.crypto import EnvelopeCipher
from homeroom.pseudonym import Pseudonymizer
from services.ingest import metrics, store
from services.ingest import parsed_records as pr
from services.ingest.application.events import EventBuilder, StudentRefs, group_values
from services.ingest.formats import ParseOptions
from services.ingest.formats.batch import parse_batch
from services.ingest.formats.edfi_json import parse_edfi_json
from services.ingest.formats.edfi_xml import parse_edfi_xml
from services.ingest.formats.oneroster_csv import OneRosterUpload
from services.ingest.parsed_records import ParseItem, RecordError, RecordWarning
from services.ingest.report import Tally, records_in
from services.ingest.safety import WithdrawalTally, implied_bulk_withdrawals, merge_counts, schools_over_share
from services.ingest.settings import IngestSettings
from services.ingest.validation import Validator

if TYPE_CHECKING:  # jobs.py runs the pipeline; the pipeline only reads a job
    from services.ingest.application.jobs import Job

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


def _count_events(events: list[OutgoingEvent]) -> None:
    """The events counter, one increment per topic (not per event: a chunk is a thousand)."""
    for topic, n in Counter(e.topic for e in events).items():
        metrics.EVENTS.labels(topic).inc(n)


def _student_ref(item: ParseItem) -> str | None:
    if isinstance(item, pr.StudentRecord | pr.EnrollmentRecord | pr.AttendanceRecord | pr.SuspensionRecord):
        return item.student_ref
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # completed, held, failed, dry_run
    held_schools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class DryRunResult:
    """What a dry run would have reported: the same counts, problems and drops, nothing stored."""

    counts: store.ProgressDelta = field(default_factory=store.ProgressDelta)
    skipped: int = 0
    problems: list[pr.Issue] = field(default_factory=list)
    held_schools: list[dict[str, Any]] = field(default_factory=list)
    not_collected: list[dict[str, object]] = field(default_factory=list)


class RunParts(NamedTuple):
    """What every submission runs with: the database, the cipher (PII sealed), the
    pseudonymiser (student keys), the settings and the service's clock."""

    pool: asyncpg.Pool
    cipher: EnvelopeCipher
    pseudonymizer: Pseudonymizer
    settings: IngestSettings
    clock: Clock


class SubmissionRun:
    """Processes one submission. Not reusable: one instance per run."""

    def __init__(self, job: Job, parts: RunParts, *, dry_run: bool = False) -> None:
        pool, cipher, pseudonymizer, settings, clock = parts
        self.job = job
        self.dry_run = dry_run
        self.tally = Tally()
        self.result = DryRunResult()
        self._calendar_keys: set[tuple[str, int, pr.CalendarSource]] = set()
        self._dry_parts: list[pr.CalendarRecord] = []
        self.district = job.district_id
        self.pool = pool
        self.pz = pseudonymizer
        self.settings = settings
        self.clock = clock
        self.today = clock().date()  # what "in the future" means to the Validator
        # per-submission state (bounded by the number of distinct students and schools)
        self.refs = StudentRefs(self.district, pseudonymizer)
        self.events = EventBuilder(job, cipher, self.refs, stamp=clock())
        self._looked_up: set[str] = set()  # student ids already looked up in the store
        self._known: set[str] = set()  # student ids on record (for the Validator)
        self._known_enrollments: dict[tuple[str, str], list[tuple[date | None, date | None]]] = {}
        self._org_owner: dict[str, tuple[str, str]] = {}
        self._windows_written: set[tuple[str, str, date | None, date | None]] = set()
        self._new_orgs: list[tuple[str, str, str | None]] = []  # claimed, not yet written
        self._scope: frozenset[str] | None = None
        self._seq = 0
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
            hashed = {school: {self.refs.hash(r) for r in refs} for school, refs in present.items()}
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

    async def _decide(self, raw: list[ParseItem], *, final: bool) -> list[ParseItem]:
        assert self.validator is not None
        v = self.validator
        refs = {r for r in map(_student_ref, raw) if r is not None and r not in self._looked_up}
        org_ids = {i.school_id for i in raw if isinstance(i, pr.SchoolRecord) and i.school_id not in self._org_owner}
        if refs or org_ids:
            hashes = {self.refs.hash(r): r for r in refs}
            async with self.pool.acquire() as conn:
                if hashes:
                    for h, key in (await store.student_keys(conn, self.district, hashes)).items():
                        ref = hashes[h]
                        self._known.add(ref)
                        self.refs.keys.setdefault(ref, key)
                    for h, school, entry, exit_ in await store.enrollment_windows(conn, self.district, hashes):
                        self._known_enrollments.setdefault((hashes[h], school), []).append((entry, exit_))
                if org_ids:
                    self._org_owner.update(await store.org_owners(conn, org_ids))
            self._looked_up |= refs
        out: list[ParseItem] = []
        for item in raw:
            if isinstance(item, pr.SchoolRecord) and not item.deleted:
                self._claim(item, v)
            out.extend(v.check(item))
        if final:
            out.extend(v.finish())
        return out

    def _claim(self, r: pr.SchoolRecord, v: Validator) -> None:
        """Let the Validator see the district's own organisations (registering new ones when allowed)."""
        owner = self._org_owner.get(r.school_id)
        if owner is None:
            if not self.settings.auto_register_orgs or self._scope is not None:
                return
            owner = (self.district, "district" if r.org_type is pr.OrgType.DISTRICT else "school")
            self._org_owner[r.school_id] = owner
            self._new_orgs.append((r.school_id, owner[1], r.name))
        if owner[0] != self.district:
            return  # the Validator refuses it: another district's organisation
        v.claim(r, in_scope=self._scope is None or r.school_id in self._scope)

    # --- apply: events, problems, progress in one transaction ------------------------------------

    async def _apply(self, raw: list[ParseItem], out: list[ParseItem], *, bytes_read: int, progress: float) -> None:
        self.events.stamp = self.clock()
        chunk = self.tally.chunk(out)
        delta = store.ProgressDelta(
            records_read=records_in(raw), rejected=chunk.rejected, warned=chunk.warned, skipped=chunk.skipped
        )
        events: list[OutgoingEvent] = []
        problems: list[pr.Issue] = []
        for p in chunk.problems:
            if isinstance(p, RecordError):
                metrics.REJECTIONS.labels(self.district, p.rule).inc()
                problems.append(p)
            elif isinstance(p, RecordWarning):
                metrics.WARNINGS.labels(self.district, p.rule).inc()
                self._keep_warning(problems, p)
        records: list[tuple[pr.ParsedRecord, str, str]] = []  # record, record hash, content hash
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
            parts: list[pr.CalendarRecord] = []
            to_mark: dict[str, str] = {}
            sealing: list[tuple[pr.StudentRecord, str, str, str]] = []
            staff: list[tuple[pr.StaffRecord, str, str]] = []
            for record, rec_hash, content in records:
                delta.accepted += 1
                unchanged = taken.get(rec_hash) == content
                if isinstance(record, pr.StudentRecord):
                    key, warning = self.refs.student_key(record)
                    if warning is not None:
                        self._keep_warning(problems, warning)
                        delta.warned += 1
                    if self.refs.keys.get(record.student_ref) != key:
                        new_students[self.refs.hash(record.student_ref)] = key
                    self.refs.keys[record.student_ref] = key
                    if not unchanged and not record.deleted:
                        sealing.append((record, key, rec_hash, self.events.event_id(rec_hash, content)))
                elif isinstance(record, pr.EnrollmentRecord):
                    self._windows(record, windows, closes)
                    if not unchanged and record.class_ref is not None:
                        events.append(self.events.class_enrollment_event(record, rec_hash, content))
                if unchanged:
                    delta.unchanged += 1
                    continue
                to_mark[rec_hash] = content
                if isinstance(record, pr.CalendarRecord):
                    parts.append(record)  # published once per school year when the upload is done
                    self._calendar_keys.add((record.school_id, record.school_year, record.calendar_source))
                elif isinstance(record, pr.StaffRecord):
                    staff.append((record, rec_hash, self.events.event_id(rec_hash, content)))
                elif not isinstance(record, pr.StudentRecord):
                    event = self.events.record_event(record, rec_hash, self.events.event_id(rec_hash, content))
                    if event is not None:
                        events.append(event)
            if self.dry_run:
                delta.events = len(events) + len(sealing) + sum(1 for r, *_ in sealing if group_values(r)) + len(staff)
                self._dry_parts.extend(parts)
            else:
                events.extend(await self.events.student_events(sealing))
                events.extend(await self.events.staff_events(staff))
            delta.accepted -= delta.unchanged
            stored, dropped = self._problem_budget(problems)
            delta.problems_dropped = dropped + self._warnings_dropped
            self._warnings_dropped = 0
            events.extend(
                self.events.rejected_event(p, self._seq + 1 + i) for i, p in enumerate(stored) if p.severity == "error"
            )
            if self.dry_run:
                self._count_dry(delta, stored, rejected_events=sum(p.severity == "error" for p in stored))
                return
            async with conn.transaction():
                for org_id, org_type, name in self._pop_new_orgs():
                    await store.register_org(
                        conn, org_id, self.district, org_type, name, f"submission:{self.job.submission_id}"
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
        _count_events(events)

    def _count_dry(self, delta: store.ProgressDelta, stored: list[pr.Issue], *, rejected_events: int = 0) -> None:
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
        warnings: list[pr.Issue] = []
        async with self.pool.acquire() as conn:
            for school, year, source in sorted(self._calendar_keys):
                rows = await store.calendar_parts(conn, self.district, school, year, source.value)
                if self.dry_run:  # nothing was written: add this upload's parts to what is on record
                    rows += store.part_rows(
                        [p for p in self._dry_parts if (p.school_id, p.school_year) == (school, year)]
                    )
                event, notes = self.events.calendar_event(school, year, source, rows)
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
        _count_events(events)

    def _keep_warning(self, problems: list[pr.Issue], warning: RecordWarning) -> None:
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

    def _problem_budget(self, problems: list[pr.Issue]) -> tuple[list[pr.Issue], int]:
        room = max(0, self.settings.max_problems_stored - self._stored_problems)
        stored = problems[:room]
        self._stored_problems += len(stored)
        return stored, len(problems) - len(stored)

    def _windows(
        self,
        r: pr.EnrollmentRecord,
        windows: list[tuple[str, str, date | None, date | None]],
        closes: list[tuple[str, str, date]],
    ) -> None:
        h = self.refs.hash(r.student_ref)
        if r.action is pr.EnrollmentAction.ENROLL:
            window = (h, r.school_id, r.entry_date, r.exit_date)
            if window not in self._windows_written:  # class enrollments repeat the school window
                self._windows_written.add(window)
                windows.append(window)
        elif r.action is pr.EnrollmentAction.WITHDRAW and r.exit_date is not None:
            if r.entry_date is not None:
                windows.append((h, r.school_id, r.entry_date, r.exit_date))
            else:
                closes.append((h, r.school_id, r.exit_date))
        elif r.action is pr.EnrollmentAction.CHANGE_SCHOOL:
            if r.from_school_id is not None and r.entry_date is not None:
                closes.append((h, r.from_school_id, r.entry_date))
            windows.append((h, r.school_id, r.entry_date, None))
