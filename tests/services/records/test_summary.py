"""The attendance summary (per student and school year, in the marks' own transaction):
replays, duplicates and batch boundaries leave the same summary; crossing the
chronic-absence line emits exactly one event and shows in the record; the line is a
setting; a new process on the same database carries on from what is stored."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta

from aiokafka import AIOKafkaProducer
from hypothesis import given, settings
from hypothesis import strategies as st

from homeroom.bus.envelope import OutgoingEvent
from homeroom.bus.topics import Topic, ensure_topics
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_PRESENT, AttendanceEvent
from services.records.summary import (
    ChronicRule,
    DayMark,
    MarkedDays,
    YearSummary,
    chronic_event_id,
    fold_batch,
    school_year,
)
from tests.harness import ServiceEnv
from tests.services.records.helpers import Records, attendance, enrolled, records_service, registered, renamed
from tests.services.records.test_consumers import fresh_id

START = date(2026, 9, 1)
Marks = list[tuple[int, bool]]  # (school day, absent)
marks_strategy = st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=60)


def fold(marks: Marks, *, batches: list[int] | None = None, threshold: float = 0.1, min_days: int = 10) -> YearSummary:
    """Apply marks as the consumer does: in batches (cut at the given sizes), each batch
    folded from the stored summary and the days' stored categories."""
    rule = ChronicRule(threshold, min_days)
    stored: dict[tuple[str, int], YearSummary] = {}
    days: dict[date, str] = {}
    rest = list(enumerate(marks))
    for size in [*(batches or []), len(rest)]:
        batch, rest = rest[:size], rest[size:]
        day_marks = []
        for offset, (n, absent) in batch:
            day = START + timedelta(days=n)
            now = "absent" if absent else "present"
            day_marks.append(DayMark("stu", day, days.get(day), now, offset))
            days[day] = now
        for change in fold_batch("d-a", stored, day_marks, rule, MarkedDays()):
            stored[change.key] = change.after
    return stored.get(("stu", 2026), YearSummary())


@settings(max_examples=200, deadline=None)
@given(marks_strategy, st.lists(st.integers(0, 20), max_size=5))
def test_batches_and_republished_marks_leave_the_same_summary(marks: Marks, cuts: list[int]) -> None:
    once = fold(marks)
    assert fold(marks, batches=cuts) == once  # where a poll's batch ends changes nothing
    # The same marks re-published under new ids, right after the originals (new offsets).
    assert fold([m for mark in marks for m in (mark, mark)], batches=cuts) == once
    assert once.days_marked == len({day for day, _ in marks})
    last = dict(marks)  # the last mark of a day is the one that counts
    assert once.days_absent == sum(last.values())


def test_the_line_is_a_setting_and_the_crossing_date_stays_while_over_it() -> None:
    marks = [(d, False) for d in range(4)] + [(4, True), (5, False)]  # 1 absent in 5, then in 6
    assert fold(marks[:5], threshold=0.2, min_days=5).chronic_since == START + timedelta(days=4)
    assert fold(marks[:5], threshold=0.25, min_days=5).chronic_since is None
    assert fold(marks[:5], threshold=0.2, min_days=6).chronic_since is None
    assert fold(marks, threshold=0.2, min_days=5).chronic_since is None  # 1 in 6 is under the line again
    again = fold([*marks, (6, True)], threshold=0.2, min_days=5)  # 2 in 7: a new crossing
    assert again.chronic_since == START + timedelta(days=6)
    # Crossed inside one batch, then another absence: the crossing date stays.
    assert fold([*marks[:5], (5, True)], batches=[5], threshold=0.2, min_days=5).chronic_since == START + timedelta(
        days=4
    )
    assert school_year(date(2027, 6, 30)) == school_year(START) == 2026


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


async def _summary(rec: Records, key: str) -> tuple[int, int, date | None] | None:
    async with rec.runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('homeroom.district_id', 'd-a', true)")
        row = await conn.fetchrow(
            "SELECT days_marked, days_absent, chronic_since FROM attendance_years WHERE student_key = $1", key
        )
    return None if row is None else (row["days_marked"], row["days_absent"], row["chronic_since"])


async def test_crossing_the_line_emits_one_event_and_a_new_process_carries_on(service_env: ServiceEnv) -> None:
    suffix = uuid.uuid4().hex[:8]
    spec, topics = renamed(suffix)
    await ensure_topics(service_env.kafka.client_kwargs(), list(topics.values()))
    key, ghost = "stu_chronic", "stu_ghost"
    days = [(START + timedelta(days=i)).isoformat() for i in range(9)]
    options = {"spec": spec, "start_consumers": True, "chronic_absence_min_days": 5, "chronic_absence_threshold": 0.2}
    async with records_service(service_env, **options) as rec:  # type: ignore[arg-type]
        database = str(rec.runtime.settings.database_url)
        present = [attendance("d-a", key, day, ATTENDANCE_CATEGORY_PRESENT) for day in days[:4]]
        absent = attendance("d-a", key, days[4])  # 1 of 5 = 20%: crosses
        await _publish(
            service_env,
            topics,
            await registered(rec.runtime, "d-a", key, {"student.first_name": "Ana"}),
            enrolled("d-a", key, "a-1", days[0]),
            *present,
            attendance("d-a", key, days[5], period="2"),  # a period absence counts for nothing here
            *[attendance("d-a", ghost, day) for day in days[:5]],  # unknown: dead-lettered, never counted
        )
        await _until(lambda: _summary_is(rec, key, (4, 0, None)))
        await _until(lambda: _chronic_is(rec, key, False))  # the record exists and is not flagged
        assert await _detected(rec) == []
        await _publish(service_env, topics, absent, absent, fresh_id(absent))  # redelivered and re-published
        await _until(lambda: _chronic_is(rec, key, True))
        (event,) = await _detected(rec)
        found = event.chronic_absence_detected
        assert (found.days_enrolled, found.days_absent, found.absence_rate, found.as_of_date) == (5, 1, 0.2, days[4])
        assert event.meta.id == chronic_event_id("d-a", key, days[4])
        assert await _summary(rec, key) == (5, 1, date.fromisoformat(days[4]))
        dead = "SELECT count(*) FROM processed_events WHERE outcome = 'dead_lettered'"
        await _until(lambda: _count_is(rec, dead, 5))
        assert await _summary(rec, ghost) is None
        assert await rec.admin.fetchval("SELECT count(*) FROM chronic_absence") == 1

    # A new process on the same database and topics carries on from the stored summary.
    async with records_service(service_env, database_url=database, **options) as rec:  # type: ignore[arg-type]
        # Two present days bring the rate under the line: the flag clears, no new event.
        await _publish(
            service_env, topics, *[attendance("d-a", key, day, ATTENDANCE_CATEGORY_PRESENT) for day in days[6:8]]
        )
        await _until(lambda: _chronic_is(rec, key, False))
        # No new event (the relay may have sent the first one on before the test stopped it).
        assert {e.meta.id for e in await _detected(rec)} <= {chronic_event_id("d-a", key, days[4])}
        assert await _summary(rec, key) == (7, 1, None)
        # What operators watch: events applied and lag (kernel), the summary's marks and changes.
        metrics = (await rec.client.get("/metrics")).text
        for pattern in (
            rf'homeroom_events_applied_total{{consumer="attendance-{suffix}",service="records",[^}}]*}} [1-9]',
            # Lag is set for partitions whose high-water mark the consumer has seen fetched.
            r'homeroom_consumer_lag{consumer="[a-z]+-' + suffix + r'",partition="\d",service="records"',
            r"homeroom_records_summary_marks_total [1-9]",
            r'homeroom_records_chronic_absence_changes_total{chronic="false"} [1-9]',
        ):
            assert re.search(pattern, metrics), pattern


async def _summary_is(rec: Records, key: str, expected: tuple[int, int, date | None]) -> bool:
    return await _summary(rec, key) == expected


async def _chronic_is(rec: Records, key: str, value: bool) -> bool:
    return await _chronic(rec, key) is value


async def _count_is(rec: Records, sql: str, n: int) -> bool:
    return bool(await rec.runtime.pool.fetchval(sql) == n)
