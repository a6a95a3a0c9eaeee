"""Consumers: replays and duplicates give the same state; bad events are refused with a
named rule; and end to end through the real broker, with dead letters."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from homeroom.bus.consumer import RejectEvent
from homeroom.bus.envelope import OutgoingEvent
from homeroom.bus.topics import ensure_topics
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_PRESENT, ATTENDANCE_CATEGORY_TARDY
from homeroom.events.v1.rejected_pb2 import RejectedEvent
from services.records import store
from services.records.absence import AbsenceReviewer
from services.records.application.waiting_marks import WaitingMarks
from services.records.consumers import StudentNotYetKnown
from tests.harness import ServiceEnv
from tests.services.records.helpers import (
    Records,
    apply,
    apply_batches,
    attendance,
    calendar,
    enrolled,
    records_service,
    registered,
    renamed,
    school,
    school_changed,
    suspension,
    withdrawn,
)

STATE_QUERIES = {
    "students": "SELECT district_id, student_key, local_id_hash, plain_elements::text, registered, directory_opt_out"
    " FROM students ORDER BY 1, 2",
    "elements": "SELECT district_id, student_key, element, source FROM student_elements ORDER BY 1, 2, 3",
    "enrollments": "SELECT district_id, student_key, school_id, entry_date, exit_date, exit_code, grade_level"
    " FROM enrollments ORDER BY 1, 2, 3, 4",
    "attendance": "SELECT district_id, student_key, day, period, category, excused FROM attendance ORDER BY 1, 2, 3, 4",
    "suspensions": "SELECT district_id, student_key, start_date, end_date FROM suspensions ORDER BY 1, 2, 3",
    "schools": "SELECT district_id, school_id, name FROM schools ORDER BY 1, 2",
    "reviews": "SELECT district_id, student_key FROM absence_reviews ORDER BY 1, 2",
    "chronic": "SELECT district_id, student_key, chronic, days_enrolled, days_absent, as_of_date"
    " FROM chronic_absence ORDER BY 1, 2",
    "outbox": "SELECT event_id, topic FROM outbox ORDER BY 1",
}
COUNTED = ("chronic", "outbox", "reviews")  # what the absence reviewer changes


async def snapshot(rec: Records) -> dict[str, list[tuple[Any, ...]]]:
    async with rec.admin.acquire() as conn:  # as the owner: every district
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in STATE_QUERIES.items()}


def fresh_id(event: OutgoingEvent) -> OutgoingEvent:
    """The same event re-published under a new id (a producer retry, an ingest re-run)."""
    from homeroom.bus.envelope import decode

    incoming = decode(event.topic, 0, 0, event.key, event.value, list(event.headers))
    incoming.message.meta.id = str(uuid.uuid4())  # type: ignore[attr-defined]
    headers = [(k, incoming.message.meta.id.encode() if k == "ce_id" else v) for k, v in event.headers]  # type: ignore[attr-defined]
    return dataclasses.replace(
        event,
        event_id=incoming.message.meta.id,  # type: ignore[attr-defined]
        headers=headers,
        value=incoming.message.SerializeToString(),
    )


async def history(rec: Records, key: str) -> list[OutgoingEvent]:
    rt = rec.runtime
    return [
        school("d-a", "a-1", "Alder"),
        await registered(rt, "d-a", key, {"student.first_name": "Ana"}, {"enrollment.grade_level": "04"}, ["ell"]),
        enrolled("d-a", key, "a-1", "2026-09-01"),
        attendance("d-a", key, "2026-09-02"),
        attendance("d-a", key, "2026-09-02", period="3"),
        suspension("d-a", key, "2026-09-10", "2026-09-11"),
        school_changed("d-a", key, "a-1", "a-2", "2026-10-01"),
        attendance("d-a", key, "2026-10-02"),
        withdrawn("d-a", key, "a-2", "2026-11-01", "T2"),
        enrolled("d-a", key, "a-1", "2026-11-15"),
    ]


async def test_replays_and_duplicates_leave_identical_state(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = "stu_replay"
        events = await history(rec, key)
        assert await apply(rec.runtime, *events) == len(events)
        first = await snapshot(rec)
        assert [(r[2], str(r[3]), str(r[4]), r[5]) for r in first["enrollments"]] == [
            ("a-1", "2026-09-01", "2026-10-01", "school_change"),
            ("a-1", "2026-11-15", "None", ""),
            ("a-2", "2026-10-01", "2026-11-01", "T2"),
        ]
        # The same events again (same ids): all skipped.
        assert await apply(rec.runtime, *events) == 0
        assert await snapshot(rec) == first
        # The same events re-published under new ids: applied again, same state.
        assert await apply(rec.runtime, *[fresh_id(e) for e in events]) == len(events)
        assert await snapshot(rec) == first
        r = await rec.get(f"/v1/districts/d-a/students/{key}", "district_staff", district="d-a")
        record = r.json()
        assert record["program_flags"] == ["ell"]
        assert record["attendance"]["summary"]["days_absent"] == 2
        assert [e["school_id"] for e in record["enrollments"]] == ["a-1", "a-2", "a-1"]


async def test_a_batch_leaves_the_state_one_event_at_a_time_leaves(service_env: ServiceEnv) -> None:
    """Two students' interleaved histories (a registration after an enrollment, grade changes,
    a day marked twice, period marks, a crossing of the chronic line) applied as one batch
    per topic, and one event at a time: the same rows and the same students queued for the
    absence reviewer, then the same flags and events in the outbox once it has counted."""
    present, tardy = ATTENDANCE_CATEGORY_PRESENT, ATTENDANCE_CATEGORY_TARDY
    days = [f"2026-09-{n + 2:02d}" for n in range(12)]

    async def events(rec: Records) -> list[OutgoingEvent]:
        rt = rec.runtime
        # the school the attendance helper names, with its calendar: the marked days
        out = [school("d-a", "s", "Alder"), calendar("d-a", "s", 2026, days)]
        for key, grade in (("stu_b1", "04"), ("stu_b2", "05")):
            out += [
                await registered(rt, "d-a", key, {"student.first_name": "Bo"}, {"enrollment.grade_level": "03"}),
                enrolled("d-a", key, "s", "2026-09-01", grade=grade),
            ]
        out += [
            await registered(rt, "d-a", "stu_b1", {"student.last_name": "Lee"}, {"enrollment.grade_level": "06"}),
            enrolled("d-a", "stu_b2", "s", "2026-09-01", grade="07"),  # the same enrollment, a new grade
        ]
        for n, day in enumerate(days):
            out += [
                attendance("d-a", "stu_b1", day, present if n % 3 else 2),  # absent 1 day in 3
                attendance("d-a", "stu_b2", day, tardy),
                attendance("d-a", "stu_b2", day, period="1"),
            ]
        out += [attendance("d-a", "stu_b1", "2026-09-02", present)]  # a day marked again: no longer absent
        return out

    async def counted(rec: Records) -> dict[str, list[tuple[Any, ...]]]:
        queued = await snapshot(rec)
        await AbsenceReviewer(rec.runtime, threshold=0.1, min_days=10, clock=lambda: date(2026, 10, 1)).run_once()
        return {**queued, **{f"counted {k}": v for k, v in (await snapshot(rec)).items() if k in COUNTED}}

    async with records_service(service_env) as rec:
        await apply(rec.runtime, *await events(rec))
        one_at_a_time = await counted(rec)
    async with records_service(service_env) as rec:
        await apply_batches(rec.runtime, *await events(rec))
        batched = await counted(rec)
    assert batched == one_at_a_time
    assert [r[1] for r in batched["reviews"]] == ["stu_b1", "stu_b2"]
    assert [r[2:] for r in batched["counted chronic"]] == [
        (True, 12, 3, date(2026, 9, 11)),
        (False, 12, 0, date(2026, 10, 1)),
    ]
    assert len(batched["counted outbox"]) == 1  # one ChronicAbsenceDetected
    assert [r[3] for r in batched["students"]] == [
        '{"enrollment.grade_level": "06"}',
        '{"enrollment.grade_level": "07"}',
    ]


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        (lambda: attendance("d-a", "stu_known", "2026-02-30"), "date.invalid"),
        (lambda: suspension("d-a", "stu_known", "2026-09-10", "2026-09-01"), "date.end_before_start"),
        (lambda: withdrawn("d-a", "stu_known", "a-9", "2026-10-01"), "enrollment.exit_without_entry"),
        (lambda: withdrawn("d-a", "stu_known", "a-1", "2026-08-01"), "enrollment.exit_before_entry"),
        (lambda: enrolled("", "stu_known", "a-1", "2026-09-01"), "payload.missing_field"),
    ],
)
async def test_bad_events_are_refused_with_their_rule(service_env: ServiceEnv, make: Any, rule: str) -> None:
    async with records_service(service_env) as rec:
        await apply(rec.runtime, enrolled("d-a", "stu_known", "a-1", "2026-09-01"))
        before = await snapshot(rec)
        with pytest.raises(RejectEvent) as refused:
            await apply(rec.runtime, make())
        assert refused.value.rule == rule
        assert await snapshot(rec) == before


async def test_attendance_for_an_unknown_student_or_another_districts_waits(service_env: ServiceEnv) -> None:
    """A district's mark for a student it has not registered (here: another district's) is
    never written to that student's record: it waits, apart; a suspension is refused."""
    async with records_service(service_env) as rec:
        await apply(rec.runtime, enrolled("d-b", "stu_b", "b-1", "2026-09-01"))
        await apply(rec.runtime, attendance("d-a", "stu_b", "2026-09-02"))
        with pytest.raises(StudentNotYetKnown, match=r"student\.unknown"):
            await apply(rec.runtime, suspension("d-a", "stu_nobody", "2026-09-02", ""))
        async with rec.admin.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM attendance") == 0
            assert await conn.fetchval("SELECT district_id FROM marks_waiting") == "d-a"
        assert await WaitingMarks(rec.runtime, 300).run_once() == (0, 0)  # d-a still does not know stu_b


async def test_marks_wait_for_their_student_in_order_and_dead_letter_if_it_never_comes(service_env: ServiceEnv) -> None:
    present = ATTENDANCE_CATEGORY_PRESENT
    async with records_service(service_env) as rec:
        late, ghost = "stu_late", "stu_ghost"
        first = attendance("d-a", late, "2026-09-02")
        await apply(
            rec.runtime,
            first,
            attendance("d-a", late, "2026-09-02", present),  # the same day again while waiting: replaces it
            attendance("d-a", late, "2026-09-03"),
            attendance("d-a", ghost, "2026-09-02"),
        )
        await apply(rec.runtime, await registered(rec.runtime, "d-a", late, {"student.first_name": "L"}))
        # Known now, but older marks still wait: a newer mark waits behind them, never before them.
        await apply(rec.runtime, attendance("d-a", late, "2026-09-03", present))
        async with rec.admin.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM attendance") == 0
        now = datetime.now(UTC)
        assert await WaitingMarks(rec.runtime, 300, clock=lambda: now).run_once() == (1, 0)
        days = "SELECT student_key, day, category FROM attendance ORDER BY 1, 2"
        async with rec.admin.acquire() as conn:
            assert [tuple(r) for r in await conn.fetch(days)] == [
                (late, date(2026, 9, 2), "present"),
                (late, date(2026, 9, 3), "present"),
            ]
            assert await conn.fetchval("SELECT student_key FROM absence_reviews") == late
        # The ghost never registers: once its mark has waited longer than the wait, it is dead-lettered.
        later = now + timedelta(seconds=301)
        assert await WaitingMarks(rec.runtime, 300, clock=lambda: later).run_once() == (0, 1)
        async with rec.admin.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM marks_waiting") == 0
            outcome = "SELECT outcome FROM processed_events WHERE event_id = $1"
            ghost_event = await conn.fetchval("SELECT payload FROM outbox WHERE topic = 'ingest.rejected.v1'")
            rejected = RejectedEvent()
            rejected.ParseFromString(bytes(ghost_event))
            dead = rejected.record_rejected
            assert (dead.rule, dead.field, dead.original_topic) == ("student.unknown", "student_key", "attendance.v1")
            assert await conn.fetchval(outcome, dead.original_event_id) == "dead_lettered"
            assert await conn.fetchval(outcome, first.event_id) == "applied"


async def test_the_waiting_marks_task_lists_only_districts_with_marks_waiting(service_env: ServiceEnv) -> None:
    """A district leaves the task's list once no mark waits there and comes back with the next
    one; the task never unlists a district whose listing moved since it looked: not after a mark
    kept and committed meanwhile, nor when the keeping transaction commits only after it asked."""
    async with records_service(service_env) as rec:
        pool = rec.runtime.pool
        await apply(rec.runtime, attendance("d-a", "stu_ghost", "2026-09-02"))
        (first,) = (await store.districts_with_waiting_marks(pool)).values()
        later = datetime.now(UTC) + timedelta(seconds=301)
        assert await WaitingMarks(rec.runtime, 300, clock=lambda: later).run_once() == (0, 1)
        assert await store.districts_with_waiting_marks(pool) == {}  # nothing waits: one query a round
        assert await WaitingMarks(rec.runtime, 300, clock=lambda: later).run_once() == (0, 0)

        await apply(rec.runtime, attendance("d-a", "stu_ghost", "2026-09-03"))
        listed = await store.districts_with_waiting_marks(pool)
        assert listed.keys() == {"d-a"} and listed["d-a"] > first
        # A mark kept (committed) after the task read the listing: the task's clear does nothing.
        await apply(rec.runtime, attendance("d-a", "stu_other", "2026-09-03"))
        async with store.district_tx(pool, "d-a") as conn:
            await store.expire_waiting_marks(conn, "d-a", later)
            assert not await store.unlist_if_none_waiting(conn, "d-a", listed["d-a"])
        assert (await store.districts_with_waiting_marks(pool)).keys() == {"d-a"}

        # A mark being kept (not committed yet) when the task clears: the clear waits for that
        # transaction and then finds the listing moved, so the district stays listed.
        seen = (await store.districts_with_waiting_marks(pool))["d-a"]
        mark = store.Mark("stu_third", date(2026, 9, 4), "", "s", "absent", False)
        kept = store.WaitingMark(mark, "ev-third", "attendance.v1", 0, 1, "attendance", "ingest.rejected.v1")
        async with store.district_tx(pool, "d-a") as keeping:
            await store.keep_waiting(keeping, "d-a", [kept])

            async def clear() -> bool:
                async with store.district_tx(pool, "d-a") as conn:
                    return await store.unlist_if_none_waiting(conn, "d-a", seen)

            clearing = asyncio.create_task(clear())
            waits = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE marks%'"
            )
            while not await rec.admin.fetchval(waits):  # noqa: ASYNC110 (the clear reaches the row and waits)
                await asyncio.sleep(0.05)
        assert not await clearing
        assert (await store.districts_with_waiting_marks(pool)).keys() == {"d-a"}
        async with rec.admin.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM marks_waiting WHERE student_key = 'stu_third'") == 1


async def test_end_to_end_through_the_broker_with_dead_letters(service_env: ServiceEnv) -> None:
    """The real consumers on the real broker (topics renamed for this test), a poison
    event among good ones: the good ones apply, the bad one is dead-lettered with its rule."""
    spec, topics = renamed(uuid.uuid4().hex[:8])
    kafka = service_env.kafka.client_kwargs()
    await ensure_topics(kafka, list(topics.values()))
    async with records_service(service_env, spec=spec, start_consumers=True) as rec:
        key = "stu_e2e"
        events = [
            await registered(rec.runtime, "d-a", key, {"student.first_name": "Ana"}),
            enrolled("d-a", key, "a-1", "2026-09-01"),
            attendance("d-a", "stu_ghost", "2026-09-02"),  # unknown student: dead letter
            attendance("d-a", key, "2026-09-02"),
            attendance("d-a", key, "2026-09-03"),
        ]

        async def applied() -> int:
            async with rec.admin.acquire() as conn:
                return int(await conn.fetchval("SELECT count(*) FROM processed_events"))

        async def wait(n: int) -> None:
            while await applied() < n:  # noqa: ASYNC110 (polling the database)
                await asyncio.sleep(0.1)

        producer = AIOKafkaProducer(**kafka)
        await producer.start()
        try:
            # Enrollment first: attendance travels on another topic, consumed in parallel.
            for i, e in enumerate(events):
                await producer.send_and_wait(topics[e.topic].name, e.value, key=e.key, headers=e.headers)
                if i == 1:
                    await asyncio.wait_for(wait(2), 45)
            # A malformed message among them: dead-lettered, the consumer keeps going.
            await producer.send_and_wait(
                topics["attendance.v1"].name, b"\xff\xfenot protobuf", key=key.encode(), headers=[("ce_id", b"junk-1")]
            )
        finally:
            await producer.stop()
        await asyncio.wait_for(wait(len(events) + 1), 45)
        # The ghost's mark waits for a registration that never comes (the wait, moved past).
        later = datetime.now(UTC) + timedelta(seconds=301)
        assert await WaitingMarks(rec.runtime, 300, clock=lambda: later).run_once() == (0, 1)
        r = await rec.get(f"/v1/districts/d-a/students/{key}", "district_staff", district="d-a")
        assert r.json()["attendance"]["summary"]["days_absent"] == 2
        rows = await rec.admin.fetch("SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", "ingest.rejected.v1")
        dead = []
        for row in rows:
            event = RejectedEvent()
            event.ParseFromString(bytes(row["payload"]))
            dead.append(event.record_rejected)
        assert len(dead) == 2
        by_rule = {d.rule: d for d in dead}
        assert {r: d.original_event_id for r, d in by_rule.items()} == {
            "student.unknown": events[2].event_id,
            "payload.malformed": "junk-1",
        }
        assert by_rule["student.unknown"].original_topic == topics["attendance.v1"].name


async def test_marks_waiting_go_in_once_their_students_registration_commits(service_env: ServiceEnv) -> None:
    """The enrollment consumer wakes the waiting-marks task when a batch that registers students
    commits: the marks that waited for them go in then, not a poll of the task later (the task
    here polls once an hour)."""
    async with records_service(service_env) as rec:
        task = WaitingMarks(rec.runtime, 300, poll_s=3600)
        rec.runtime.state.waiting_marks = task
        task.start()
        try:
            await apply(rec.runtime, attendance("d-a", "stu_wakes", "2026-09-02"))
            await asyncio.sleep(0.2)  # the task's first round has passed: it sleeps for the hour
            async with rec.admin.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM marks_waiting") == 1
            await apply(rec.runtime, await registered(rec.runtime, "d-a", "stu_wakes", {"student.first_name": "W"}))
            for _ in range(200):
                async with rec.admin.acquire() as conn:
                    if await conn.fetchval("SELECT count(*) FROM attendance") == 1:
                        break
                await asyncio.sleep(0.05)
            async with rec.admin.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM attendance") == 1
                assert await conn.fetchval("SELECT count(*) FROM marks_waiting") == 0
        finally:
            await task.stop()
            rec.runtime.state.waiting_marks = None
