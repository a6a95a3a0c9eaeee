"""The record's attendance summary through the real consumers on the real broker: a student
who crosses the chronic-absence line by the school calendar is flagged within seconds, with
exactly one event, whatever was redelivered or re-published; marks for a student nobody
registered are dead-lettered and never counted; a new process on the same database carries
on from what is stored."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

from aiokafka import AIOKafkaProducer

from homeroom.bus.envelope import OutgoingEvent
from homeroom.bus.topics import Topic, ensure_topics
from homeroom.calendar import weekdays
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_PRESENT, AttendanceEvent
from services.records.absence import chronic_event_id
from services.records.application.waiting_marks import WaitingMarks
from tests.harness import ServiceEnv
from tests.services.records.helpers import (
    Records,
    attendance,
    calendar,
    enrolled,
    records_service,
    registered,
    renamed,
)
from tests.services.records.test_consumers import fresh_id

START = date(2026, 9, 1)


async def _publish(env: ServiceEnv, topics: dict[str, Topic], *events: OutgoingEvent) -> None:
    producer = AIOKafkaProducer(**env.kafka.client_kwargs())
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(topics[e.topic].name, e.value, key=e.key, headers=e.headers)
    finally:
        await producer.stop()


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60) -> None:
    async def poll() -> None:
        while not await check():  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.2)

    await asyncio.wait_for(poll(), timeout_s)


async def _detected(rec: Records) -> list[AttendanceEvent]:
    rows = await rec.runtime.pool.fetch("SELECT event_id, payload FROM outbox WHERE topic = 'attendance.v1'")
    out = []
    for r in rows:
        event = AttendanceEvent()
        event.ParseFromString(bytes(r["payload"]))
        out.append(event)
    return out


async def _chronic(rec: Records, key: str) -> bool | None:
    r = await rec.get(f"/v1/districts/d-a/students/{key}", "district_staff", district="d-a")
    return bool(r.json()["attendance"]["summary"]["chronic_absence"]) if r.status_code == 200 else None


async def test_crossing_the_line_emits_one_event_and_a_new_process_carries_on(service_env: ServiceEnv) -> None:
    suffix = uuid.uuid4().hex[:8]
    spec, topics = renamed(suffix)
    await ensure_topics(service_env.kafka.client_kwargs(), list(topics.values()))
    key, ghost = "stu_chronic", "stu_ghost"
    days = [d.isoformat() for d in weekdays(START, START + timedelta(days=40))][:20]  # the school's 20 days
    options = {"spec": spec, "start_consumers": True, "chronic_absence_min_days": 5, "chronic_absence_threshold": 0.2}
    async with records_service(service_env, **options) as rec:  # type: ignore[arg-type]
        database = str(rec.runtime.settings.database_url)
        present = [attendance("d-a", key, day, ATTENDANCE_CATEGORY_PRESENT) for day in days[:4]]
        absences = [attendance("d-a", key, day) for day in days[4:8]]  # 4 of 20 days = 20%: crosses
        await _publish(
            service_env,
            topics,
            await registered(rec.runtime, "d-a", key, {"student.first_name": "Ana"}),
            enrolled("d-a", key, "s", days[0]),
            *present,
            attendance("d-a", key, days[9], period="2"),  # a period absence counts for nothing here
            *[attendance("d-a", ghost, day) for day in days[:5]],  # unknown: dead-lettered, never counted
            *absences[:3],  # 3 of 20: under the line
        )
        await _until(lambda: _summary_has(rec, key, "days_recorded", 7))
        await _until(lambda: _chronic_is(rec, key, False))  # no calendar yet: never flagged
        await _publish(service_env, topics, calendar("d-a", "s", 2026, days))
        await _until(lambda: _summary_has(rec, key, "calendar", "known"))
        assert await _chronic(rec, key) is False and await _detected(rec) == []
        last = absences[3]
        await _publish(service_env, topics, last, last, fresh_id(last))  # redelivered and re-published
        await _until(lambda: _chronic_is(rec, key, True))
        (event,) = await _detected(rec)
        found = event.chronic_absence_detected
        assert (found.days_enrolled, found.days_absent, found.absence_rate, found.as_of_date) == (20, 4, 0.2, days[7])
        assert event.meta.id == chronic_event_id("d-a", key, days[7])
        assert await _summary_has(rec, key, "days_recorded", 8)
        # The ghost's marks wait for a registration that never comes; past the wait, dead-lettered.
        waiting = "SELECT count(*) FROM marks_waiting"  # as the superuser: every district
        await _until(lambda: _count_is(rec, waiting, 5, as_owner=True))
        later = datetime.now(UTC) + timedelta(seconds=301)
        assert await WaitingMarks(rec.runtime, 300, clock=lambda: later).run_once() == (0, 5)
        dead = "SELECT count(*) FROM processed_events WHERE outcome = 'dead_lettered'"
        assert await _count_is(rec, dead, 5)
        assert await rec.admin.fetchval("SELECT count(*) FROM attendance WHERE student_key = $1", ghost) == 0
        assert await rec.admin.fetchval("SELECT count(*) FROM chronic_absence WHERE chronic") == 1

    # A new process on the same database and topics carries on from what is stored.
    async with records_service(service_env, database_url=database, **options) as rec:  # type: ignore[arg-type]
        # Present marks on two absent days bring the rate under the line: the flag clears, no new event.
        await _publish(
            service_env, topics, *[attendance("d-a", key, day, ATTENDANCE_CATEGORY_PRESENT) for day in days[4:6]]
        )
        await _until(lambda: _chronic_is(rec, key, False))
        # No new event (the relay may have sent the first one on before the test stopped it).
        assert {e.meta.id for e in await _detected(rec)} <= {chronic_event_id("d-a", key, days[7])}
        assert await _summary_has(rec, key, "days_absent_enrolled", 2)
        # What operators watch: events applied and lag (kernel), the reviewer's counts and changes.
        metrics = (await rec.client.get("/metrics")).text
        for pattern in (
            rf'homeroom_events_applied_total{{consumer="attendance-{suffix}",service="records",[^}}]*}} [1-9]',
            # Lag is set for partitions whose high-water mark the consumer has seen fetched.
            r'homeroom_consumer_lag{consumer="[a-z]+-' + suffix + r'",partition="\d",service="records"',
            r"homeroom_records_absence_reviews_total [1-9]",
            r'homeroom_records_chronic_absence_changes_total{chronic="false"} [1-9]',
        ):
            assert re.search(pattern, metrics), pattern


async def _summary_has(rec: Records, key: str, field: str, value: object) -> bool:
    r = await rec.get(f"/v1/districts/d-a/students/{key}", "district_staff", district="d-a")
    return r.status_code == 200 and r.json()["attendance"]["summary"][field] == value


async def _chronic_is(rec: Records, key: str, value: bool) -> bool:
    return await _chronic(rec, key) is value


async def _count_is(rec: Records, sql: str, n: int, *, as_owner: bool = False) -> bool:
    return bool(await (rec.admin if as_owner else rec.runtime.pool).fetchval(sql) == n)
