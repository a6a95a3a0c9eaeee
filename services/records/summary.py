"""Attendance summary per student: a faust-streaming table over attendance.v1.

For each (district, student, school year) the table keeps two day bitsets: the days with a
daily attendance mark and the days marked absent. A mark at or before the last offset
applied to its key is skipped, and setting a bit that is set (or clearing one that is clear)
changes nothing, so a redelivered, replayed or re-published mark leaves the same value: the
table is exactly-once in effect on a broker without transactions (Tansu), where faust can
only promise at-least-once (it flushes the changelog before committing offsets).

It is a streaming tally of what was marked, not the record's absence rate: days enrolled
come from the school's calendar, and the record's rate and chronic-absence flag are counted
by the absence reviewer from committed state (`absence.py`), so an absences-only feed (what
Ed-Fi and most SIS send) never looks like a student absent on every day.

The table lives in memory (faust `memory://` store) and is rebuilt from its changelog
topic when a process starts or is given partitions, including after kill -9. It runs in
every records process that runs consumers; instances share the partitions through faust's
own partition assignor, which keeps each table partition with its source partition.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import faust

from homeroom.bus.consumer import RejectEvent
from homeroom.bus.envelope import IncomingEvent, PoisonMessage, base_topic, decode
from homeroom.bus.topics import ATTENDANCE, Topic, ensure_topics
from homeroom.calendar import SCHOOL_YEAR_STARTS, school_year
from homeroom.config import KafkaSettings
from homeroom.events.v1 import attendance_pb2
from homeroom.service import Runtime
from homeroom.telemetry import CONSUMER_LAG
from services.records.metrics import SUMMARY_MARKS

log = logging.getLogger(__name__)

APP_ID = "homeroom-records-summary"
TABLE_NAME = "attendance_summary"
# The agent's name in homeroom_consumer_lag, beside the kernel's consumers (and refreshed this often
# while no event arrives, so a stuck agent shows its lag growing).
LAG_CONSUMER = "attendance-summary"
LAG_INTERVAL_S = 5.0


def day_index(day: date) -> int:
    return (day - date(school_year(day), SCHOOL_YEAR_STARTS, 1)).days


@dataclass(frozen=True, slots=True)
class YearSummary:
    """One student's school year in one district, as the table keeps it."""

    marked: int = 0  # bit i: day i of the school year has a daily mark
    absent: int = 0  # bit i: ... and it says absent
    offset: int = -1  # source offset of the last mark applied

    @property
    def days_marked(self) -> int:
        return self.marked.bit_count()

    @property
    def days_absent(self) -> int:
        return self.absent.bit_count()

    def mark(self, day: date, absent: bool, offset: int) -> YearSummary:
        """The summary after one daily mark (a later mark for the same day replaces it).
        A mark at or before the last applied offset is a redelivery: nothing changes (one
        student's marks are on one partition, in order)."""
        if offset <= self.offset:
            return self
        bit = 1 << day_index(day)
        return replace(
            self,
            marked=self.marked | bit,
            absent=self.absent | bit if absent else self.absent & ~bit,
            offset=offset,
        )

    def to_json(self) -> dict[str, Any]:
        return {"marked": format(self.marked, "x"), "absent": format(self.absent, "x"), "offset": self.offset}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> YearSummary:
        if not value:
            return cls()
        return cls(int(value["marked"], 16), int(value["absent"], 16), int(value["offset"]))


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

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
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
        self.lag_consumer = LAG_CONSUMER + suffix.replace(".", "-")
        self._next_offset: dict[int, int] = {}  # source partition → the offset after the last one applied
        self.app.timer(LAG_INTERVAL_S)(self._record_lag)

    def _lag(self, partition: int, next_offset: int) -> None:
        """homeroom_consumer_lag of the agent: the partition's high-water mark minus what it applied."""
        highwater = self.app.consumer.highwater(faust.types.TP(self.topic.name, partition))
        if highwater is not None:
            CONSUMER_LAG.labels(self.runtime.name, self.lag_consumer, self.topic.name, str(partition)).set(
                max(0, highwater - next_offset)
            )

    async def _record_lag(self) -> None:
        for tp in self.app.consumer.assignment():
            if tp.topic == self.topic.name:
                applied = self._next_offset.get(tp.partition)
                self._lag(tp.partition, applied if applied is not None else await self.app.consumer.position(tp) or 0)

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            self._next_offset[message.partition] = message.offset + 1
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
            self._lag(message.partition, message.offset + 1)

    async def apply(self, mark: DailyMark, offset: int) -> None:
        old = YearSummary.from_json(self.table.get(mark.table_key))
        new = old.mark(mark.day, mark.absent, offset)
        SUMMARY_MARKS.inc()
        if new != old:
            self.table[mark.table_key] = new.to_json()

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
