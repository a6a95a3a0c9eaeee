"""Use case: absorb batches of pseudonymised events into the statewide tally.

A batch is whatever the stream took (up to `tally_batch` events or `tally_batch_window_s`).
Its events are grouped by student: each student's value is read once, every event folded
in (a redelivered one is recognised by its offset and changes nothing), and the value is
written once per batch. The student's rows are then recounted from the new value
(`tallies.contributions`): the old rows are taken out of their schools, the new ones put in,
and the changed students' values and every school row the batch changed are written to
PostgreSQL in one transaction (one statement per kind), where snapshots and the district
views read them.

The students' values are durable in PostgreSQL only, in the same transaction as the school
rows they make, so a kill -9 at any point leaves both as of the same batch; events after
it come again and are recognised by the offsets in the values. A process given partitions
reloads their students from the database and recounts their school rows (issue 22: replaying
a faust changelog stopped at the broker's reported high-water mark, which on Tansu trails the
log, and lost students). Calendars and the date change what students count, not their values: a new
calendar recounts the students who attended that school that year; a new day recounts
everyone (days enrolled grow with each instructional day of an open enrollment).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg

from homeroom import failpoints, outbox
from homeroom.bus.consumer import rejection
from homeroom.bus.envelope import IncomingEvent, OutgoingEvent, base_topic
from homeroom.bus.topics import Topic
from homeroom.calendar import school_year
from homeroom.clock import Clock
from homeroom.events.v1 import attendance_pb2, discipline_pb2, enrollment_pb2, groups_pb2
from services.reports import metrics, store
from services.reports.tallies import (
    AbsenceRule,
    BadEvent,
    Contribution,
    SchoolKey,
    SchoolTally,
    StudentTally,
    contributions,
)

log = logging.getLogger(__name__)

_ABSENT = attendance_pb2.ATTENDANCE_CATEGORY_ABSENT
_DEAD_LETTER_NS = uuid.UUID("0b6a3c1e-7f5d-4e2a-9c8b-2d4e6f8a1b3c")
STAGE = "tally"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An event the tally cannot use, dead-lettered in the batch's transaction with its rule
    (the fields are the dead letter's: `rejection`'s arguments of the same names)."""

    topic: str
    partition: int
    offset: int
    event_id: str
    rule: str
    message: str
    field: str = ""
    district_id: str = ""

    def dead_letter(self, topic: Topic, group: str) -> OutgoingEvent:
        # The same id whenever the event comes again (a crash before Kafka had the batch's
        # offsets): the outbox keeps one copy.
        dead_letter_id = str(uuid.uuid5(_DEAD_LETTER_NS, f"{group}:{self.topic}:{self.partition}:{self.offset}"))
        return rejection("reports", STAGE, **asdict(self), dead_letter_topic=topic.name, dead_letter_id=dead_letter_id)


@dataclass(slots=True)
class CalendarBook:
    """Every school year's instructional days this process knows (a school calendar wins over terms)."""

    days: dict[tuple[str, str, int], tuple[date, ...]] = field(default_factory=dict)
    by_source: dict[tuple[str, str, int, str], tuple[date, ...]] = field(default_factory=dict)
    version: int = 0

    def learn(self, rows: Iterable[tuple[str, str, int, str, list[date], int]]) -> set[tuple[str, str, int]]:
        changed = set()
        for district, school, year, source, days, version in rows:
            self.by_source[(district, school, year, source)] = tuple(sorted(days))
            key = (district, school, year)
            best = self.by_source.get((*key, "calendar")) or self.by_source.get((*key, "terms"), ())
            if self.days.get(key) != best:
                self.days[key] = best
                changed.add(key)
            self.version = max(self.version, version)
        return changed


@dataclass(slots=True)
class PartitionTally:
    """The students one partition holds (their values as JSON text), their school rows, and what each
    student put in them."""

    students: dict[str, str] = field(default_factory=dict)  # values as JSON text (`StudentTally.to_text`)
    written: set[str] = field(default_factory=set)  # students changed since the last flush
    schools: dict[SchoolKey, SchoolTally] = field(default_factory=dict)
    rows_of: dict[str, list[Contribution]] = field(default_factory=dict)
    attended: dict[tuple[str, str, int], set[str]] = field(default_factory=dict)  # calendar -> students
    dirty: set[SchoolKey] = field(default_factory=set)
    newest: dict[SchoolKey, datetime] = field(default_factory=dict)
    pending: list[tuple[int, int]] = field(default_factory=list)  # times (seconds, nanos) of events not yet written


def _moment(time: tuple[int, int]) -> datetime:
    """An event's time (a Timestamp's seconds and nanos) as protobuf's ToDatetime gives it."""
    seconds, nanos = time
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)


def _fold(value: StudentTally, event: IncomingEvent) -> None:
    """One event into a student's value; BadEvent for one the tally cannot use."""
    p = event.payload
    if isinstance(p, enrollment_pb2.StudentEnrolled):
        value.enrolled(p.district_id or event.meta.district_id, p.school_id, p.entry_date, p.grade_level)
    elif isinstance(p, enrollment_pb2.StudentWithdrawn):
        value.withdrawn(p.district_id or event.meta.district_id, p.school_id, p.exit_date)
    elif isinstance(p, enrollment_pb2.SchoolChanged):
        value.school_changed(p.district_id or event.meta.district_id, p.from_school_id, p.to_school_id, p.change_date)
    elif isinstance(p, enrollment_pb2.StudentRegistered):
        grade = p.plain_elements.get("enrollment.grade_level", "")
        if grade:
            value.grade = grade
    elif isinstance(p, attendance_pb2.AttendanceRecorded):
        if p.period:
            return  # class-period marks: the tables count days
        if p.category == attendance_pb2.ATTENDANCE_CATEGORY_UNSPECIFIED:
            raise BadEvent("attendance.category_unknown", "the attendance category is unspecified")
        value.marked(p.district_id or event.meta.district_id, p.school_id, p.date, p.category == _ABSENT)
    elif isinstance(p, discipline_pb2.SuspensionRecorded):
        value.suspended(p.district_id or event.meta.district_id, p.start_date)
    elif isinstance(p, groups_pb2.StudentGroupsRecorded):
        value.grouped(dict(p.groups))
    # Anything else on these topics (ChronicAbsenceDetected, later additions) counts for nothing.


def _student(event: IncomingEvent) -> str:
    key = getattr(event.payload, "student_key", "") or event.meta.subject
    if not key:
        raise BadEvent("payload.missing_field", "the event has no student_key")
    return str(key)


class Tally:
    """The statewide tally in one process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        rule: AbsenceRule,
        generation: Callable[[], int],
        dead_letters: Topic,
        group: str,
    ) -> None:
        self.pool = pool
        self.dead_letters = dead_letters
        self.group = group
        self.refusals: list[Refusal] = []  # of the batch being absorbed
        self.clock = clock
        self.rule = rule
        self.generation = generation
        self.calendars = CalendarBook()
        self.parts: dict[int, PartitionTally] = {}
        self.as_of = clock().date()
        self.lock = asyncio.Lock()  # batches, rebuilds and recounts take turns

    # --- batches -------------------------------------------------------------------------

    async def absorb(self, events: Sequence[IncomingEvent], unreadable: Sequence[Refusal] = ()) -> None:
        """A batch: its events, and the messages of it that could not be decoded (dead-lettered)."""
        started = time.perf_counter()
        async with self.lock, self._reloaded_on_failure():
            self.refusals = list(unreadable)
            by_student: dict[tuple[int, str], list[IncomingEvent]] = {}
            for event in events:
                topic = base_topic(event.topic).name
                try:
                    key = _student(event)
                except BadEvent as bad:
                    self._refused(event, bad)
                    continue
                by_student.setdefault((event.partition, key), []).append(event)
            # A partition given to this process whose students are not loaded yet (its rebuild after
            # the assignment failed, or a failed batch made the tally forget it): load it from the
            # database first, or its events would be counted on an empty value, or not at all.
            unknown = {partition for partition, _ in by_student} - set(self.parts)
            if unknown:
                await self._adopt(unknown)
            # Counted once per batch, not per event: a labelled counter costs microseconds an event.
            outcomes: Counter[tuple[str, str]] = Counter()
            written = 0
            for (partition, key), mine in by_student.items():
                part = self.parts[partition]
                value = StudentTally.from_text(part.students.get(key))
                changed = False
                for event in mine:
                    topic = base_topic(event.topic).name
                    if not value.fresh(topic, event.offset):
                        outcomes[topic, "duplicate"] += 1
                        continue
                    changed = True  # the offset moved, whatever the event did
                    try:
                        _fold(value, event)
                    except BadEvent as bad:
                        self._refused(event, bad)
                        continue
                    outcomes[topic, "applied"] += 1
                    if event.meta.HasField("time"):
                        moment = event.meta.time  # kept as numbers; a datetime only for the newest
                        part.pending.append((moment.seconds, moment.nanos))
                if changed:
                    part.students[key] = value.to_text()
                    part.written.add(key)
                    written += 1
                    self._recount(part, key, value)
            await self._flush()
            # Counted once committed: whoever watches the counter then finds the rows written,
            # and a batch retried after a failed flush is not counted twice.
            for (topic, outcome), n in outcomes.items():
                metrics.TALLY_EVENTS.labels(topic, outcome).inc(n)
            metrics.TALLY_WRITES.inc(written)
        metrics.TALLY_BATCH_SECONDS.observe(time.perf_counter() - started)

    def _refused(self, event: IncomingEvent, bad: BadEvent) -> None:
        self.refusals.append(
            Refusal(
                event.topic,
                event.partition,
                event.offset,
                event.event_id,
                bad.rule,
                str(bad),
                district_id=event.meta.district_id,
            )
        )

    def _recount(self, part: PartitionTally, key: str, value: StudentTally) -> None:
        old = part.rows_of.pop(key, [])
        for c in old:
            school = (c.year, c.district, c.school)
            part.schools[school].add(c, -1)
            part.dirty.add(school)
        new = contributions(value, self.calendars.days, self.as_of, self.rule)
        for c in new:
            school = (c.year, c.district, c.school)
            tally = part.schools.get(school)
            if tally is None:  # made only when missing, not once per contribution
                tally = part.schools[school] = SchoolTally()
            tally.add(c, 1)
            part.dirty.add(school)
        if new:
            part.rows_of[key] = new
        for attended in value.schools():
            part.attended.setdefault(attended, set()).add(key)

    @contextlib.asynccontextmanager
    async def _reloaded_on_failure(self) -> AsyncIterator[None]:
        """When a batch fails (the database is away), memory may be ahead of the database:
        forget every partition, so the next batch reloads them from what was committed."""
        try:
            yield
        except BaseException:
            self.parts = {}
            raise

    async def _flush(self) -> None:
        """Write the changed students and school rows in one transaction (one statement per
        partition for the school rows, one for the students)."""
        students = [(p, key, part.students[key]) for p, part in self.parts.items() for key in part.written]
        writes: dict[int, list[store.TallyRow]] = {}
        now = datetime.now(UTC)
        for partition, part in self.parts.items():
            if not part.dirty:
                continue
            newest = _moment(max(part.pending)) if part.pending else None
            rows = []
            for school in part.dirty:
                tally = part.schools.get(school) or SchoolTally()
                if newest is not None:
                    part.newest[school] = max(newest, part.newest.get(school, newest))
                rows.append((*school, tally.students, tally.to_json(), part.newest.get(school)))
            writes[partition] = rows
        refusals, self.refusals = self.refusals, []
        if writes or students or refusals:
            generation = self.generation()
            async with self.pool.acquire() as conn, conn.transaction():
                for partition, rows in writes.items():
                    await store.write_tallies(conn, partition, generation, rows)
                await store.write_students(conn, generation, students)
                await outbox.add(conn, [r.dead_letter(self.dead_letters, self.group) for r in refusals])
            # A crash here, after the commit and before the loop commits the offsets, brings the
            # batch again: the students' offsets make it change nothing (tests kill -9 here).
            failpoints.reached("consumer.after_state_commit", "reports-tally")
        for refused in refusals:
            metrics.TALLY_EVENTS.labels(base_topic(refused.topic).name, "refused").inc()
            metrics.TALLY_REFUSED.labels(refused.rule).inc()
        now_s = now.timestamp()
        for part in self.parts.values():
            for seconds, nanos in part.pending:
                metrics.EVENT_TO_TALLY_SECONDS.observe(max(0.0, now_s - (seconds + nanos / 1e9)))
            if part.pending:
                metrics.TALLY_NEWEST_EVENT.set(_moment(max(part.pending)).timestamp())
            part.pending.clear()
            part.dirty.clear()
            part.written.clear()

    # --- partitions ------------------------------------------------------------------------

    async def rebuild(self, partitions: set[int]) -> None:
        """The partitions this process now holds (after an assignment): their students reloaded
        from the database, their school rows recounted and written over what it held."""
        async with self.lock, self._reloaded_on_failure():
            self.parts = {}
            await self._adopt(partitions)

    async def _adopt(self, partitions: set[int]) -> None:
        """Load these partitions' students, count them and replace their rows (lock held)."""
        await self._load_calendars()
        fresh = {p: PartitionTally() for p in partitions}
        async with self.pool.acquire() as conn:
            loaded = await store.students_of(conn, sorted(partitions))
        for partition, key, raw in loaded:
            part = fresh[partition]
            part.students[key] = raw
            self._recount(part, key, StudentTally.from_text(raw))
        rows = {
            p: [(*school, t.students, t.to_json(), None) for school, t in part.schools.items()]
            for p, part in fresh.items()
        }
        async with self.pool.acquire() as conn, conn.transaction():
            await store.replace_partitions(conn, rows, self.generation())
        for part in fresh.values():
            part.dirty.clear()
        self.parts.update(fresh)
        metrics.TALLY_REBUILDS.inc()
        metrics.TALLY_STUDENTS.set(sum(len(p.rows_of) for p in self.parts.values()))
        log.info("tally rebuilt", extra={"partitions": sorted(partitions)})

    # --- calendars and days -----------------------------------------------------------------

    async def _load_calendars(self) -> set[tuple[str, str, int]]:
        async with self.pool.acquire() as conn:
            rows = await store.calendars_since(conn, self.calendars.version)
        return self.calendars.learn(rows)

    async def refresh(self) -> None:
        """New calendars recount their students; a new day recounts everyone (run periodically)."""
        changed = await self._load_calendars()
        today = self.clock().date()
        if not changed and today == self.as_of:
            return
        async with self.lock, self._reloaded_on_failure():
            everyone = today != self.as_of
            self.as_of = today
            if everyone:  # every student held, counted or not yet (an enrollment may start today)
                for part in self.parts.values():
                    for key, raw in part.students.items():
                        self._recount(part, key, StudentTally.from_text(raw))
            else:
                for part in self.parts.values():
                    for key in set().union(*(part.attended.get(k, set()) for k in changed)):
                        self._recount(part, key, StudentTally.from_text(part.students.get(key)))
            await self._flush()
            metrics.TALLY_STUDENTS.set(sum(len(p.rows_of) for p in self.parts.values()))

    def current_year(self) -> int:
        return school_year(self.as_of)
