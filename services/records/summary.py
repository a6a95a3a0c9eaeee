"""Attendance summary per student: a faust-streaming table over attendance.v1.

For each (district, student, school year) the table keeps two day bitsets, the days with a
daily attendance mark ("days enrolled": no school calendar is known) and the days marked
absent, plus the date the student crossed the chronic-absence line and the crossing last
shown in the record. A mark at or before the last offset applied to its key is skipped,
and setting a bit that is set (or clearing one that is clear) changes nothing, so a
redelivered, replayed or re-published mark leaves the same value: the table is
exactly-once in effect on a broker without transactions (Tansu), where faust can only
promise at-least-once (it flushes the changelog before committing offsets).

Crossing the line (absent on `chronic_absence_threshold` of the marked days, once at
least `chronic_absence_min_days` are marked) and falling back under it are the only
moments that touch PostgreSQL: one transaction upserts the record's `chronic_absence` row
("latest wins" on (school year, source offset), so a partition's old owner finishing late
cannot undo its new owner's work) and, on a crossing, writes `ChronicAbsenceDetected` to
the outbox with an id derived from (district, student, crossing date), so a repeat after
a crash is dropped by its consumers' idempotency marks. The record's running counts come
from its own attendance rows (the same fold), its chronic flag from this table.

Marks for a student the records database does not know (or whose keys were destroyed)
are still counted (the table is a pure fold of the stream, so enrollment arriving late
changes nothing), but nothing is shown or emitted for them until a later mark finds the
student known; the records consumer dead-letters such marks from the record itself.
Malformed events are skipped here: the records consumer dead-letters them with their rule.

The table lives in memory (faust `memory://` store) and is rebuilt from its changelog
topic when a process starts or is given partitions, including after kill -9. It runs in
every records process that runs consumers; instances share the partitions through faust's
own partition assignor, which keeps each table partition with its source partition.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import asyncpg
import faust

from homeroom import outbox
from homeroom.bus.consumer import RejectEvent
from homeroom.bus.envelope import IncomingEvent, PoisonMessage, base_topic, build_event, decode
from homeroom.bus.topics import ATTENDANCE, Topic, ensure_topics
from homeroom.config import KafkaSettings
from homeroom.events.v1 import attendance_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.metrics import CHRONIC_CHANGES, SUMMARY_MARKS

log = logging.getLogger(__name__)

APP_ID = "homeroom-records-summary"
TABLE_NAME = "attendance_summary"
SCHOOL_YEAR_STARTS = 7  # July: a school year is named by the calendar year it starts in


def school_year(day: date) -> int:
    return day.year if day.month >= SCHOOL_YEAR_STARTS else day.year - 1


def day_index(day: date) -> int:
    return (day - date(school_year(day), SCHOOL_YEAR_STARTS, 1)).days


@dataclass(frozen=True, slots=True)
class YearSummary:
    """One student's school year in one district, as the table keeps it."""

    enrolled: int = 0  # bit i: day i of the school year has a daily mark
    absent: int = 0  # bit i: ... and it says absent
    chronic_since: str = ""  # ISO date the line was crossed; "" while under it
    shown: str = ""  # chronic_since as last written to the record ("" = not chronic)
    offset: int = -1  # source offset of the last mark applied

    @property
    def days_enrolled(self) -> int:
        return self.enrolled.bit_count()

    @property
    def days_absent(self) -> int:
        return self.absent.bit_count()

    @property
    def absence_rate(self) -> float:
        return self.days_absent / self.days_enrolled if self.days_enrolled else 0.0

    def mark(self, day: date, absent: bool, offset: int, threshold: float, min_days: int) -> YearSummary:
        """The summary after one daily mark (a later mark for the same day replaces it).
        A mark at or before the last applied offset is a redelivery: nothing changes (one
        student's marks are on one partition, in order)."""
        if offset <= self.offset:
            return self
        bit = 1 << day_index(day)
        marked = replace(
            self,
            enrolled=self.enrolled | bit,
            absent=self.absent | bit if absent else self.absent & ~bit,
            offset=offset,
        )
        chronic = marked.days_enrolled >= min_days and marked.absence_rate >= threshold
        since = (self.chronic_since or day.isoformat()) if chronic else ""
        return replace(marked, chronic_since=since)

    def to_json(self) -> dict[str, Any]:
        return {
            "enrolled": format(self.enrolled, "x"),
            "absent": format(self.absent, "x"),
            "chronic_since": self.chronic_since,
            "shown": self.shown,
            "offset": self.offset,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> YearSummary:
        if not value:
            return cls()
        return cls(
            int(value["enrolled"], 16),
            int(value["absent"], 16),
            value["chronic_since"],
            value["shown"],
            int(value["offset"]),
        )


@dataclass(frozen=True, slots=True)
class DailyMark:
    district: str
    student: str
    day: date
    absent: bool
    event_id: str

    @property
    def table_key(self) -> str:
        return f"{self.district}/{self.student}/{school_year(self.day)}"


def daily_mark(event: IncomingEvent) -> DailyMark | None:
    """The daily mark an attendance.v1 event carries, or None (period marks, other
    changes, and anything the records consumer refuses)."""
    from services.records.consumers import CATEGORIES, _date, _district, _required

    payload = event.payload
    if not isinstance(payload, attendance_pb2.AttendanceRecorded) or payload.period:
        return None
    try:
        district = _district(event, payload.district_id)
        student = _required(payload.student_key, "student_key")
        day = _date(payload.date, "date")
    except RejectEvent:
        return None
    category = CATEGORIES.get(payload.category)
    if category is None:
        return None
    return DailyMark(district, student, day, category == "absent", event.event_id)


def chronic_event_id(district: str, student: str, since: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"homeroom/records/chronic/{district}/{student}/{since}"))


async def show(runtime: Runtime, mark: DailyMark, summary: YearSummary, threshold: float) -> bool:
    """Write the crossing (or its end) to the record, and on a crossing emit
    ChronicAbsenceDetected, in one transaction. False if the student is unknown."""
    async with store.district_tx(runtime.pool, mark.district) as conn:
        if not await store.project_chronic_absence(
            conn,
            mark.district,
            mark.student,
            chronic=bool(summary.chronic_since),
            days_enrolled=summary.days_enrolled,
            days_absent=summary.days_absent,
            absence_rate=summary.absence_rate,
            as_of=date.fromisoformat(summary.chronic_since) if summary.chronic_since else mark.day,
            school_year=school_year(mark.day),
            version=summary.offset,
        ):
            return False
        if summary.chronic_since:
            event = build_event(
                ATTENDANCE,
                "chronic_absence_detected",
                attendance_pb2.ChronicAbsenceDetected(
                    student_key=mark.student,
                    district_id=mark.district,
                    days_enrolled=summary.days_enrolled,
                    days_absent=summary.days_absent,
                    absence_rate=round(summary.absence_rate, 4),
                    threshold=threshold,
                    as_of_date=summary.chronic_since,
                ),
                source=f"/homeroom/{runtime.name}",
                subject=mark.student,
                district_id=mark.district,
                event_id=chronic_event_id(mark.district, mark.student, summary.chronic_since),
                causation_id=mark.event_id,
            )
            await outbox.add(conn, event)
    return True


def _credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """The bus's TLS/SASL settings as faust credentials (the same as the kernel's clients)."""
    context = kafka.client_kwargs().get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context if isinstance(context, ssl.SSLContext) else None,
        )
    if isinstance(context, ssl.SSLContext):
        return faust.SSLCredentials(context)
    return None


def source_topic(runtime: Runtime) -> Topic:
    """The attendance topic the service's own consumer reads (tests rename topics)."""
    for consumer in runtime.spec.consumers:
        for topic in consumer.topics:
            if topic.name == ATTENDANCE.name or base_topic(topic.name) is ATTENDANCE:
                return topic
    return ATTENDANCE


class AttendanceSummary:
    """The faust app, its table and agent, run inside a records process."""

    def __init__(self, runtime: Runtime, threshold: float, min_days: int) -> None:
        self.runtime = runtime
        self.threshold = threshold
        self.min_days = min_days
        self.topic = source_topic(runtime)
        suffix = self.topic.name[len(ATTENDANCE.name) :]  # a test's topic suffix, else ""
        session_s = runtime.settings.consumer_session_timeout_ms / 1000
        self.app = faust.App(
            APP_ID + suffix.replace(".", "-"),
            broker=[f"kafka://{server}" for server in runtime.kafka.bootstrap_servers.split(",")],
            broker_credentials=_credentials(runtime.kafka),
            store="memory://",
            web_enabled=False,
            topic_partitions=self.topic.partitions,
            topic_replication_factor=runtime.settings.topic_replication_factor,
            table_standby_replicas=0,
            producer_acks=-1,
            # A killed process's partitions move on after the session timeout, as with
            # the kernel's consumers (faust's own defaults are a minute).
            broker_session_timeout=session_s,
            broker_rebalance_timeout=session_s,
            broker_heartbeat_interval=max(1.0, session_s / 4),
            consumer_auto_offset_reset="earliest",
            # Tansu's reported high-water mark can trail what this process already read
            # from a changelog partition it held before a rebalance, and faust's check then
            # crashes recovery ("persisted offset ... is higher than the last offset").
            # See "Not done yet" in docs/services/records.md.
            recovery_consistency_check=False,
        )
        # JSON values without a value_type: faust would call value_type.from_data on recovery.
        self.table = self.app.Table(
            TABLE_NAME,
            default=dict,
            partitions=self.topic.partitions,
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        )
        source = self.app.topic(self.topic.name, key_type=bytes, value_type=bytes, value_serializer="raw")
        self.app.agent(source, name=f"{APP_ID}.attendance")(self._agent)

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            headers = message.headers.items() if isinstance(message.headers, dict) else message.headers or []
            try:
                incoming = decode(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    message.value,
                    [(k, bytes(v)) for k, v in headers],
                )
            except PoisonMessage:
                continue  # the records consumer dead-letters it
            mark = daily_mark(incoming)
            if mark is not None:
                await self.apply(mark, message.offset)

    async def apply(self, mark: DailyMark, offset: int) -> None:
        old = YearSummary.from_json(self.table.get(mark.table_key))
        new = old.mark(mark.day, mark.absent, offset, self.threshold, self.min_days)
        SUMMARY_MARKS.inc()
        if new.chronic_since != new.shown and await self._show(mark, new):
            CHRONIC_CHANGES.labels(str(bool(new.chronic_since)).lower()).inc()
            new = replace(new, shown=new.chronic_since)
        if new != old:
            self.table[mark.table_key] = new.to_json()

    async def _show(self, mark: DailyMark, summary: YearSummary) -> bool:
        """`show`, retried while the database is unreachable: an exception would crash the
        agent (and with it the table), so this partition waits instead, as the kernel's
        consumers do."""
        delay = 0.1
        while True:
            try:
                return await show(self.runtime, mark, summary, self.threshold)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("chronic absence not shown yet; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def summary(self, district: str, student: str, year: int) -> YearSummary:
        """This process's view of one key (tests; only for partitions it holds)."""
        return YearSummary.from_json(self.table.get(f"{district}/{student}/{year}"))

    async def start(self) -> None:
        await ensure_topics(
            self.runtime.kafka.client_kwargs(), [self.topic], self.runtime.settings.topic_replication_factor
        )
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()
