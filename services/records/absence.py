"""Days enrolled, absence rates and the chronic-absence flag, counted from school calendars.

Whenever something that changes a student's count is applied (a daily mark, an enrollment,
a withdrawal, a school's calendar), the handler queues the student for review in the same
transaction (`store.queue_review`). The `AbsenceReviewer` takes queued students in batches,
counts each one's latest school year with `homeroom.calendar.standing` (days enrolled =
instructional days between entry and exit; absences on those days), writes the standing into
the record and, when a student crosses the line, writes `ChronicAbsenceDetected` to the
outbox, all in one transaction. Because it counts from committed state, the order in which
roster, attendance and calendar arrive does not matter, and a repeat counts the same.

Where a school the student attended that year has no calendar, the record says so
(`calendar_known` false, the schools named) and no flag is raised: an absences-only feed
never produces a false flag. The queue is also filled once a day with every student still
enrolled, since each school day adds to days enrolled: once per district and day, whichever
records process comes first (the day is kept in `absence_sweeps`), not again on each start.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import date

from homeroom import calendar, outbox
from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.topics import ATTENDANCE, Topic
from homeroom.events.v1 import attendance_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.metrics import ABSENCE_REVIEWS, CHRONIC_CHANGES
from services.records.polling import PollingLoop

log = logging.getLogger(__name__)


def chronic_event_id(district: str, student: str, since: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"homeroom/records/chronic/{district}/{student}/{since}"))


def latest_year(windows: list[tuple[str, date, date | None]], absences: list[date], today: date) -> int | None:
    """The school year to count: the latest one with an entry or an absence (up to today).
    An enrollment left open years ago (a historical export never closes them) is counted in
    the year its data is about, not in today's."""
    dates = [entry for _, entry, _ in windows if entry <= today] + [d for d in absences if d <= today]
    if not [w for w in windows if w[1] <= today]:
        return None
    return calendar.school_year(max(dates))


def count_student(
    facts: store.AttendanceFacts, student: str, today: date, *, threshold: float, min_days: int
) -> calendar.Standing | None:
    """The student's standing in their latest school year (pure: from facts already loaded)."""
    windows = facts.windows.get(student, [])
    year = latest_year(windows, [d for _, d in facts.absences.get(student, [])], today)
    if year is None:
        return None
    first, last = calendar.year_bounds(year)
    by_school: dict[str, list[calendar.Window]] = {}
    for school, entry, exit_ in windows:
        if entry <= last and (exit_ is None or exit_ >= first):
            by_school.setdefault(school, []).append((entry, exit_))
    absences: dict[str, list[date]] = {}
    for school, day in facts.absences.get(student, []):
        absences.setdefault(school, []).append(day)
    attended = calendar.SchoolYearAttendance(
        calendars={s: facts.calendars[(s, year)] for s in by_school if (s, year) in facts.calendars},
        windows=by_school,
        absences=absences,
    )
    return calendar.standing(year, attended, today, threshold=threshold, min_days=min_days)


class AbsenceReviewer(PollingLoop):
    """Counts queued students again, in batches, in records' own database."""

    name = "records-absence-reviewer"
    what = "absence review"
    error_pause_s = 1.0

    def __init__(
        self,
        runtime: Runtime,
        threshold: float,
        min_days: int,
        *,
        batch: int = 500,
        poll_s: float = 0.25,
        clock: Callable[[], date] | None = None,
        topic: Topic = ATTENDANCE,
    ) -> None:
        self.runtime = runtime
        self.threshold = threshold
        self.min_days = min_days
        self.batch = batch
        self.poll_s = poll_s
        self.clock = clock or (lambda: runtime.clock().date())  # read at each round: tests move it
        self.topic = topic
        self._swept: date | None = None  # this process has asked for today's sweep (done once per district and day)
        self._full = False  # a district's batch was full in this round: more is waiting

    async def round(self) -> bool:
        """Go again at once only while some district filled a whole batch: a round that took
        less pauses `poll_s`, so a steady stream is counted in batches of what gathered
        meanwhile rather than a few students per round (each round is about ten statements
        per district, whatever it counts)."""
        self._full = False
        await self.run_once()
        return self._full

    async def run_once(self) -> int:
        """Review what is queued now; returns how many students were counted."""
        today = self.clock()
        if self._swept != today:
            for district in await store.districts_with_students(self.runtime.pool):
                async with store.district_tx(self.runtime.pool, district) as conn:
                    await store.queue_open_enrollments(conn, district, today)
            self._swept = today
        done = 0
        for district in await store.districts_to_review(self.runtime.pool):
            done += await self.review(district, today)
        return done

    async def review(self, district: str, today: date) -> int:
        async with store.district_tx(self.runtime.pool, district) as conn:
            keys = await store.take_reviews(conn, district, self.batch)
            if not keys:
                return 0
            self._full = self._full or len(keys) >= self.batch
            facts = await store.attendance_facts(conn, district, keys)
            rows: list[tuple[object, ...]] = []
            events: list[OutgoingEvent] = []
            for key in keys:
                if key not in facts.live:
                    continue
                standing = count_student(facts, key, today, threshold=self.threshold, min_days=self.min_days)
                if standing is None:
                    continue
                rows.append(
                    (
                        key,
                        standing.chronic,
                        standing.days_enrolled,
                        standing.days_absent,
                        standing.absence_rate,
                        self._as_of(key, standing, facts, today),
                        standing.school_year,
                        standing.calendar_known,
                        list(standing.missing_calendars),
                    )
                )
                was = facts.chronic.get(key, False)
                if standing.chronic != was:
                    CHRONIC_CHANGES.labels(str(standing.chronic).lower()).inc()
                if standing.chronic and not was:
                    events.append(self._detected(district, key, standing, facts))
            await store.save_standings(conn, district, rows)
            if events:
                await outbox.add(conn, events)
        ABSENCE_REVIEWS.inc(len(keys))
        return len(keys)

    @staticmethod
    def _last_absence(key: str, standing: calendar.Standing, facts: store.AttendanceFacts) -> date | None:
        first, last = calendar.year_bounds(standing.school_year)
        days = [d for _, d in facts.absences.get(key, []) if first <= d <= last]
        return max(days) if days else None

    def _as_of(self, key: str, standing: calendar.Standing, facts: store.AttendanceFacts, today: date) -> date:
        """The date the standing is about: the last absence counted (the day a crossing happened),
        else the day of the count."""
        return self._last_absence(key, standing, facts) or min(today, calendar.year_bounds(standing.school_year)[1])

    def _detected(
        self, district: str, key: str, standing: calendar.Standing, facts: store.AttendanceFacts
    ) -> OutgoingEvent:
        # The crossing is dated by the last absence counted: the same state gives the same id.
        last = self._last_absence(key, standing, facts)
        since = last.isoformat() if last else ""
        return build_event(
            self.topic,
            "chronic_absence_detected",
            attendance_pb2.ChronicAbsenceDetected(
                student_key=key,
                district_id=district,
                days_enrolled=standing.days_enrolled,
                days_absent=standing.days_absent,
                absence_rate=round(standing.absence_rate or 0.0, 4),
                threshold=self.threshold,
                as_of_date=since,
            ),
            source=f"/homeroom/{self.runtime.name}",
            subject=key,
            district_id=district,
            event_id=chronic_event_id(district, key, since),
        )
