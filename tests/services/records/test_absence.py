"""Days enrolled come from the school calendar (services/records/absence.py): an absences-only
feed gets correct rates, no calendar means no flag (never a false one), and the order in which
roster, attendance and calendar arrive does not matter. Real PostgreSQL; the handlers run as
the kernel consumer runs them, the reviewer as the service runs it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from homeroom.bus.envelope import OutgoingEvent
from homeroom.calendar import weekdays
from homeroom.events.v1 import calendar_pb2
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_PRESENT, AttendanceEvent
from services.records import store
from services.records.absence import AbsenceReviewer, chronic_event_id
from tests.harness import ServiceEnv
from tests.services.records.helpers import (
    Records,
    apply,
    attendance,
    calendar,
    enrolled,
    records_service,
    registered,
    withdrawn,
)

DISTRICT = "d-cal"
SCHOOL = "s"  # the school the attendance helper names
TERM = [d.isoformat() for d in weekdays(date(2025, 9, 1), date(2025, 9, 26))]  # 20 school days
TODAY = date(2025, 10, 15)


def reviewer(rec: Records, today: date = TODAY) -> AbsenceReviewer:
    return AbsenceReviewer(rec.runtime, threshold=0.1, min_days=10, clock=lambda: today)


async def summary(rec: Records, key: str) -> dict[str, Any]:
    r = await rec.get(f"/v1/districts/{DISTRICT}/students/{key}", "district_staff", district=DISTRICT)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()["attendance"]["summary"]
    return out


async def students_enrolled(rec: Records, *keys: str) -> list[OutgoingEvent]:
    """The school's calendar, then each student registered and enrolled on the term's first day."""
    return [
        calendar(DISTRICT, SCHOOL, 2025, TERM),
        *[await registered(rec.runtime, DISTRICT, k, {"student.first_name": k}) for k in keys],
        *[enrolled(DISTRICT, k, SCHOOL, TERM[0]) for k in keys],
    ]


async def detected(rec: Records) -> list[AttendanceEvent]:
    rows = await rec.runtime.pool.fetch("SELECT payload FROM outbox WHERE topic = 'attendance.v1' ORDER BY id")
    out = []
    for r in rows:
        event = AttendanceEvent()
        event.ParseFromString(bytes(r["payload"]))
        out.append(event)
    return out


async def test_an_absences_only_feed_gets_its_rate_from_the_calendar(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = "stu_absences_only"
        absences = [attendance(DISTRICT, key, day) for day in TERM[2:5]]  # 3 of 20 days: 15%
        await apply(
            rec.runtime,
            await registered(rec.runtime, DISTRICT, key, {"student.first_name": "Ana"}),
            enrolled(DISTRICT, key, SCHOOL, TERM[0]),
            *absences,
        )
        await reviewer(rec).run_once()
        # no calendar yet: the record says so, counts nothing and raises no flag
        before = await summary(rec, key)
        assert before["chronic_absence"] is False and before["absence_rate"] is None
        assert before["calendar"].startswith("no school calendar for s")
        assert before["days_recorded"] == before["days_absent"] == 3  # the marks are all still there
        assert await detected(rec) == []
        # the calendar arrives last: the student is counted again and crosses the line
        await apply(rec.runtime, calendar(DISTRICT, SCHOOL, 2025, TERM))
        assert await reviewer(rec).run_once() == 1
        after = await summary(rec, key)
        assert (after["days_enrolled"], after["days_absent_enrolled"], after["absence_rate"]) == (20, 3, 0.15)
        assert after["chronic_absence"] is True and after["calendar"] == "known"
        (event,) = await detected(rec)
        found = event.chronic_absence_detected
        assert (found.days_enrolled, found.days_absent, found.absence_rate) == (20, 3, 0.15)
        assert event.meta.id == chronic_event_id(DISTRICT, key, TERM[4])
        # counted again with nothing new: same standing, no second event
        await apply(rec.runtime, attendance(DISTRICT, key, TERM[4]))  # a re-published mark
        await reviewer(rec).run_once()
        assert len(await detected(rec)) == 1
        # present marks replacing two absences bring the rate under the line (1 in 20)
        await apply(
            rec.runtime,
            attendance(DISTRICT, key, TERM[2], ATTENDANCE_CATEGORY_PRESENT),
            attendance(DISTRICT, key, TERM[3], ATTENDANCE_CATEGORY_PRESENT),
        )
        await reviewer(rec).run_once()
        assert (await summary(rec, key))["chronic_absence"] is False


async def test_days_enrolled_run_from_entry_to_exit_and_up_to_today(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        late, left, early = "stu_late", "stu_left", "stu_count_early"
        await apply(rec.runtime, calendar(DISTRICT, SCHOOL, 2025, TERM))
        await apply(
            rec.runtime,
            *[await registered(rec.runtime, DISTRICT, k, {"student.first_name": k}) for k in (late, left, early)],
            enrolled(DISTRICT, late, SCHOOL, TERM[10]),  # enrolled for the last 10 days
            attendance(DISTRICT, late, TERM[12]),
            enrolled(DISTRICT, left, SCHOOL, TERM[0]),
            withdrawn(DISTRICT, left, SCHOOL, TERM[9]),  # left after 10 days
            attendance(DISTRICT, left, TERM[3]),
            attendance(DISTRICT, left, TERM[15]),  # after leaving: not a day enrolled
            enrolled(DISTRICT, early, SCHOOL, TERM[0]),
            attendance(DISTRICT, early, TERM[0]),
        )
        await reviewer(rec).run_once()
        got = await summary(rec, late)
        assert (got["days_enrolled"], got["days_absent_enrolled"], got["chronic_absence"]) == (10, 1, True)
        got = await summary(rec, left)
        assert (got["days_enrolled"], got["days_absent_enrolled"], got["chronic_absence"]) == (10, 1, True)
        # counted on the third school day: 1 absence in 3 days, but under the 10 days needed
        await apply(rec.runtime, attendance(DISTRICT, early, TERM[1], ATTENDANCE_CATEGORY_PRESENT))
        await reviewer(rec, today=date.fromisoformat(TERM[2])).run_once()
        got = await summary(rec, early)
        assert (got["days_enrolled"], got["chronic_absence"]) == (3, False)


async def test_a_school_calendar_wins_over_roster_terms(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = "stu_terms"
        whole_term = [d.isoformat() for d in weekdays(date(2025, 9, 1), date(2025, 12, 19))]
        await apply(
            rec.runtime,
            await registered(rec.runtime, DISTRICT, key, {"student.first_name": "T"}),
            enrolled(DISTRICT, key, SCHOOL, TERM[0]),
            *[attendance(DISTRICT, key, day) for day in TERM[:3]],
            calendar(DISTRICT, SCHOOL, 2025, whole_term, calendar_pb2.CALENDAR_SOURCE_ROSTER_TERMS),
        )
        await reviewer(rec, today=date(2025, 12, 31)).run_once()
        assert (await summary(rec, key))["days_enrolled"] == len(whole_term)
        # the district's own calendar (20 days) replaces the roster's terms
        await apply(rec.runtime, calendar(DISTRICT, SCHOOL, 2025, TERM))
        await reviewer(rec, today=date(2025, 12, 31)).run_once()
        got = await summary(rec, key)
        assert (got["days_enrolled"], got["absence_rate"], got["chronic_absence"]) == (20, 0.15, True)


async def test_roster_attendance_and_calendar_in_one_upload_in_any_order(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = "stu_one_upload"
        start = date.fromisoformat(TERM[0])
        events = [
            *[attendance(DISTRICT, key, (start + timedelta(days=d)).isoformat()) for d in (1, 2)],
            calendar(DISTRICT, SCHOOL, 2025, TERM),
            enrolled(DISTRICT, key, SCHOOL, TERM[0]),
            await registered(rec.runtime, DISTRICT, key, {"student.first_name": "O"}),
        ]
        # the marks wait for the student (the consumer retries them); apply in the order that works
        await apply(rec.runtime, events[4], events[3], events[2])
        await apply(rec.runtime, events[0], events[1])
        await reviewer(rec).run_once()
        got = await summary(rec, key)
        # 2 of 20 days is 10%: on the line, so flagged
        assert (got["days_enrolled"], got["days_absent_enrolled"], got["chronic_absence"]) == (20, 2, True)


async def test_a_mark_written_while_the_reviewer_counts_is_not_lost(service_env: ServiceEnv) -> None:
    """The student is already queued; a transaction writes the mark that crosses the line and
    has not committed when the reviewer runs. The reviewer must not take the student then
    (it would count without the mark and forget them): it skips them until the mark commits."""
    async with records_service(service_env) as rec:
        key = "stu_race"
        await apply(
            rec.runtime,
            *await students_enrolled(rec, key),
            attendance(DISTRICT, key, TERM[1]),  # 1 of 20: under the line
        )
        counting = reviewer(rec)  # one reviewer: its daily sweep of open enrollments is done
        await counting.run_once()
        async with store.district_tx(rec.runtime.pool, DISTRICT) as conn:
            await store.queue_review(conn, DISTRICT, [key])  # queued, committed
        async with rec.runtime.pool.acquire() as conn:
            writing = conn.transaction()
            await writing.start()
            await store.enter_district(conn, DISTRICT)
            mark = store.Mark(key, date.fromisoformat(TERM[2]), "", SCHOOL, "absent", False)
            assert await store.put_marks(conn, DISTRICT, [mark]) == {key}
            await store.queue_review(conn, DISTRICT, [key])
            assert await counting.run_once() == 0  # the student is busy: not taken
            await writing.commit()
        assert await counting.run_once() == 1
        got = await summary(rec, key)
        assert (got["days_absent_enrolled"], got["chronic_absence"]) == (2, True)


async def test_each_day_every_student_still_enrolled_is_counted_again(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        still, left = "stu_still", "stu_left_early"
        await apply(
            rec.runtime,
            *await students_enrolled(rec, still, left),
            withdrawn(DISTRICT, left, SCHOOL, TERM[4]),
        )
        today = reviewer(rec)
        assert await today.run_once() == 2  # both were queued by their enrollments
        assert await today.run_once() == 0  # nothing new today
        # the next day adds a school day to every open enrollment: that student is counted again
        assert await reviewer(rec, today=TODAY + timedelta(days=1)).run_once() == 1


async def test_the_daily_sweep_is_done_once_per_district_and_day_whichever_process_asks(
    service_env: ServiceEnv,
) -> None:
    """A restarted records process (or a second instance) does not count every enrolled student
    of the district again the same day; the next day one of them does, once."""
    async with records_service(service_env) as rec:
        keys = ["stu_sweep_a", "stu_sweep_b"]
        await apply(rec.runtime, *await students_enrolled(rec, *keys))
        assert await reviewer(rec).run_once() == 2  # queued by their enrollments (and today's sweep)
        assert await reviewer(rec).run_once() == 0  # a restart the same day: swept already
        tomorrow = TODAY + timedelta(days=1)
        assert await reviewer(rec, today=tomorrow).run_once() == 2  # the next day's sweep
        assert await reviewer(rec, today=tomorrow).run_once() == 0  # another process that day
        assert await reviewer(rec).run_once() == 0  # a process whose clock is behind sweeps nothing again


async def test_a_standing_counted_again_unchanged_keeps_when_it_changed_and_was_flagged(
    service_env: ServiceEnv,
) -> None:
    """`changed_at` is when the standing last changed, and the worklist's `flagged_at` when the
    student crossed the line: counting again with nothing new moves neither; a new absence moves
    `changed_at` only (the student was flagged before it)."""
    async with records_service(service_env) as rec:
        key = "stu_unchanged"
        await apply(
            rec.runtime,
            *await students_enrolled(rec, key),
            *[attendance(DISTRICT, key, day) for day in TERM[1:3]],  # 2 of 20: on the line
        )

        async def stamps() -> tuple[Any, Any, Any]:
            async with store.district_tx(rec.runtime.pool, DISTRICT) as conn:
                row = await conn.fetchrow(
                    "SELECT changed_at, crossed_at, days_absent FROM chronic_absence WHERE student_key = $1", key
                )
            assert row is not None
            return row["changed_at"], row["crossed_at"], row["days_absent"]

        async def flagged_at() -> str:
            r = await rec.get(f"/v1/districts/{DISTRICT}/chronic-absence", "district_staff", district=DISTRICT)
            (student,) = r.json()["students"]
            out: str = student["flagged_at"]
            return out

        await reviewer(rec).run_once()
        changed, crossed, absent = await stamps()
        assert crossed is not None and absent == 2
        flagged = await flagged_at()
        # counted again with nothing new: a re-published mark, a present mark on another day
        await apply(
            rec.runtime,
            attendance(DISTRICT, key, TERM[2]),
            attendance(DISTRICT, key, TERM[5], ATTENDANCE_CATEGORY_PRESENT),
        )
        assert await reviewer(rec).run_once() == 1
        assert await stamps() == (changed, crossed, 2)
        assert await flagged_at() == flagged
        # a new absence changes the standing, not when the student was flagged
        await apply(rec.runtime, attendance(DISTRICT, key, TERM[6]))
        assert await reviewer(rec).run_once() == 1
        changed_after, crossed_after, absent_after = await stamps()
        assert changed_after > changed and crossed_after == crossed and absent_after == 3
        assert await flagged_at() == flagged
