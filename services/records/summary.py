"""Attendance summary per student and school year, and the chronic-absence line (pure domain).

For each (district, student, school year, July to June) the records database keeps, in
`attendance_years`, the days with a daily mark and the days whose (last) daily mark says
absent, plus the date the student crossed the chronic-absence line. The consumer updates it
in the same transaction as the marks themselves, from the marks' old and new categories,
one multi-row upsert per batch: no extra write per mark, nothing that can disagree with the
record, and exactly once because the marks are (the kernel's stored offsets and event-id
claims). Crossing the line emits `ChronicAbsenceDetected` through the outbox in that same
transaction, with an id derived from (district, student, crossing date).

The line: absent on at least `threshold` of the days enrolled, once at least `min_days`
are enrolled. Which days count as enrolled is an `EnrolledDays` policy: today
`MarkedDays`, the days with a daily mark (no school calendar is known); a policy backed by
school calendars (instructional days between entry and the mark's date) plugs in through
the same two methods, loading what it needs for a batch in `load` and answering `as_of`
without I/O. Absent days are counted the same way whatever the policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Protocol

from homeroom.storage import Connection

SCHOOL_YEAR_STARTS = 7  # July: a school year is named by the calendar year it starts in
ABSENT = "absent"


def school_year(day: date) -> int:
    return day.year if day.month >= SCHOOL_YEAR_STARTS else day.year - 1


YearKey = tuple[str, int]  # (student key, school year) within one district


@dataclass(frozen=True, slots=True)
class ChronicRule:
    threshold: float  # share of enrolled days absent, e.g. 0.10
    min_days: int  # enrolled days before anyone is flagged

    def is_chronic(self, days_absent: int, days_enrolled: int) -> bool:
        return days_enrolled >= self.min_days and days_absent / days_enrolled >= self.threshold


@dataclass(frozen=True, slots=True)
class YearSummary:
    """One student's school year in one district."""

    days_marked: int = 0  # days with a daily mark
    days_absent: int = 0  # ... whose last daily mark says absent
    chronic_since: date | None = None  # the day the line was crossed; None while under it


@dataclass(frozen=True, slots=True)
class DayMark:
    """A daily mark as it changes the stored day: `was` is the day's category before it
    (None: the day had no daily mark), `now` the category it sets."""

    student_key: str
    day: date
    was: str | None
    now: str
    offset: int  # the event's offset, for the record's "latest wins" projection


class EnrolledDays(Protocol):
    """The denominator of the chronic-absence rate."""

    async def load(self, conn: Connection, district_id: str, years: Collection[YearKey]) -> None:
        """Read what `as_of` needs for these student-years (one query per batch at most)."""

    def as_of(self, district_id: str, key: YearKey, day: date, summary: YearSummary) -> int:
        """Days the student was enrolled in the school year up to and including `day`."""


class MarkedDays:
    """Days enrolled = days with a daily mark: every school day is marked, present or not."""

    async def load(self, conn: Connection, district_id: str, years: Collection[YearKey]) -> None:
        return None

    def as_of(self, district_id: str, key: YearKey, day: date, summary: YearSummary) -> int:
        return summary.days_marked


def fold(
    summary: YearSummary,
    mark: DayMark,
    rule: ChronicRule,
    enrolled: EnrolledDays,
    district_id: str,
) -> YearSummary:
    """The summary after one daily mark. A mark that repeats the day's category changes
    nothing, so a re-published copy of a mark under a new id leaves the same summary."""
    marked = summary.days_marked + (mark.was is None)
    absent = summary.days_absent + (mark.now == ABSENT) - (mark.was == ABSENT)
    after = replace(summary, days_marked=marked, days_absent=absent)
    key = (mark.student_key, school_year(mark.day))
    if rule.is_chronic(absent, enrolled.as_of(district_id, key, mark.day, after)):
        return replace(after, chronic_since=summary.chronic_since or mark.day)
    return replace(after, chronic_since=None)


@dataclass(frozen=True, slots=True)
class FlagChange:
    """A mark that moved a student over the line or back under it, with the figures of that
    moment: the same whether the marks came one at a time or in a batch."""

    summary: YearSummary  # right after the mark
    days_enrolled: int
    day: date
    offset: int

    @property
    def chronic(self) -> bool:
        return self.summary.chronic_since is not None

    @property
    def absence_rate(self) -> float:
        return self.summary.days_absent / self.days_enrolled if self.days_enrolled else 0.0


@dataclass(frozen=True, slots=True)
class YearChange:
    key: YearKey
    before: YearSummary
    after: YearSummary
    flag_changes: tuple[FlagChange, ...]  # in mark order; each crossing is one event

    @property
    def crossings(self) -> list[FlagChange]:
        return [f for f in self.flag_changes if f.chronic]


def fold_batch(
    district_id: str,
    stored: dict[YearKey, YearSummary],
    marks: Iterable[DayMark],
    rule: ChronicRule,
    enrolled: EnrolledDays,
) -> list[YearChange]:
    """Fold a batch's daily marks (in order) into the stored summaries; one change per
    student-year touched."""
    current = dict(stored)
    flags: dict[YearKey, list[FlagChange]] = {}
    for mark in marks:
        key = (mark.student_key, school_year(mark.day))
        before = current.get(key, YearSummary())
        after = current[key] = fold(before, mark, rule, enrolled, district_id)
        changes = flags.setdefault(key, [])
        if (after.chronic_since is None) != (before.chronic_since is None):
            days = enrolled.as_of(district_id, key, mark.day, after)
            changes.append(FlagChange(after, days, mark.day, mark.offset))
    return [YearChange(key, stored.get(key, YearSummary()), current[key], tuple(f)) for key, f in flags.items()]


def chronic_event_id(district: str, student: str, since: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"homeroom/records/chronic/{district}/{student}/{since}"))
