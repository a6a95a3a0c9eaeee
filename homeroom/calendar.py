"""School calendars and days enrolled: the arithmetic every service shares. Pure; no I/O.

A school's calendar for one school year is the set of its instructional days. Districts
send it in pieces: sessions (terms) whose weekdays are instructional, and dated entries that
say a day is or is not instructional (a holiday, a make-up Saturday). Ingest resolves the
pieces (`instructional_days`) and publishes the resolved days on `calendar.v1`; records (and
later reports) count with them:

* days enrolled = the instructional days between a student's entry and exit at a school
  (exit inclusive; an open enrollment counts up to the day of the count), over every school
  the student attended that year, each day once;
* days absent = the daily absences that fall on those days;
* the absence rate is absent / enrolled, and the chronic-absence flag is raised when the
  rate reaches the threshold once at least `min_days` days are enrolled. With no calendar
  for a school the student attended, nothing is counted and no flag is raised: a missing
  calendar never produces a false flag.

School years are named by the calendar year they start in (2021 for 2021-2022, which Ed-Fi's
API calls school year 2022) and start on 1 July.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

SCHOOL_YEAR_STARTS = 7  # July


def school_year(day: date) -> int:
    """The school year a day belongs to, named by the year it starts in."""
    return day.year if day.month >= SCHOOL_YEAR_STARTS else day.year - 1


def school_year_label(year: int) -> str:
    return f"{year}-{year + 1}"


def year_bounds(year: int) -> tuple[date, date]:
    """First and last day of a school year (1 July .. 30 June)."""
    return date(year, SCHOOL_YEAR_STARTS, 1), date(year + 1, SCHOOL_YEAR_STARTS, 1) - timedelta(days=1)


_LABEL = re.compile(r"\s*(\d{4})\s*[-/]\s*(\d{2}|\d{4})\s*")


def parse_school_year(text: str) -> int | None:
    """A school year as exports write it: "2021-2022" or "2021-22" (-> 2021), or one year,
    which Ed-Fi and OneRoster use for the year the school year *ends* ("2022" -> 2021)."""
    text = text.strip()
    m = _LABEL.fullmatch(text)
    if m:
        first, second = int(m.group(1)), m.group(2)
        end = int(second) if len(second) == 4 else (first // 100) * 100 + int(second)
        return first if end == first + 1 else None
    if text.isdigit() and len(text) == 4:
        return int(text) - 1
    return None


def weekdays(begin: date, end: date) -> Iterable[date]:
    day = begin
    while day <= end:
        if day.weekday() < 5:
            yield day
        day += timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Term:
    """A session of the school year; ``declared_days`` is the source's own count, if any."""

    name: str
    begin: date
    end: date
    declared_days: int | None = None


def instructional_days(terms: Iterable[Term], entries: Mapping[date, bool]) -> tuple[date, ...]:
    """The instructional days of a school year, sorted: every weekday inside a term, plus the
    days an entry marks instructional, less the days an entry marks not instructional. With
    no terms the entries alone decide (a calendar that lists each school day)."""
    days: set[date] = set()
    for term in terms:
        days.update(weekdays(term.begin, term.end))
    for day, instructional in entries.items():
        if instructional:
            days.add(day)
        else:
            days.discard(day)
    return tuple(sorted(days))


def term_mismatches(terms: Iterable[Term], days: Sequence[date]) -> list[tuple[Term, int]]:
    """Terms whose declared number of instructional days differs from what their dates give:
    (term, counted). Districts are told, so they can send the holidays."""
    out = []
    for term in terms:
        if term.declared_days is None:
            continue
        counted = count_between(days, term.begin, term.end)
        if counted != term.declared_days:
            out.append((term, counted))
    return out


def count_between(days: Sequence[date], first: date, last: date) -> int:
    """How many of the sorted `days` fall in [first, last]."""
    if last < first:
        return 0
    return bisect.bisect_right(days, last) - bisect.bisect_left(days, first)


Window = tuple[date, date | None]  # entry, exit (inclusive; None while enrolled)


def _merged(windows: Iterable[Window], as_of: date) -> list[tuple[date, date]]:
    """Windows clipped to `as_of` and merged where they overlap or touch."""
    spans = sorted((entry, min(exit_ or as_of, as_of)) for entry, exit_ in windows if entry <= as_of)
    out: list[tuple[date, date]] = []
    for first, last in spans:
        if last < first:
            continue
        if out and first <= out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def enrolled_days(days: Sequence[date], windows: Iterable[Window], as_of: date) -> set[date]:
    """The instructional days (sorted `days`) inside any window, up to `as_of`."""
    out: set[date] = set()
    for first, last in _merged(windows, as_of):
        lo, hi = bisect.bisect_left(days, first), bisect.bisect_right(days, last)
        out.update(days[lo:hi])
    return out


@dataclass(frozen=True, slots=True)
class SchoolYearAttendance:
    """One student's school year at one or more schools, as stored."""

    calendars: Mapping[str, Sequence[date]]  # school -> its sorted instructional days (schools with one)
    windows: Mapping[str, Sequence[Window]]  # school -> enrollment windows that touch the year
    absences: Mapping[str, Iterable[date]]  # school -> days with a daily absence


@dataclass(frozen=True, slots=True)
class Standing:
    """Days enrolled and absent in one school year, and what they mean."""

    school_year: int
    calendar_known: bool  # every school attended has a calendar for the year
    days_enrolled: int
    days_absent: int
    chronic: bool
    missing_calendars: tuple[str, ...] = ()

    @property
    def absence_rate(self) -> float | None:
        if not self.calendar_known or self.days_enrolled == 0:
            return None
        return self.days_absent / self.days_enrolled


def standing(year: int, attended: SchoolYearAttendance, as_of: date, *, threshold: float, min_days: int) -> Standing:
    """Count one school year (pure): see the module docstring for the rules."""
    first, last = year_bounds(year)
    as_of = min(as_of, last)
    missing = tuple(sorted(s for s, w in attended.windows.items() if w and s not in attended.calendars))
    if missing or not attended.windows:
        return Standing(year, False, 0, 0, False, missing)
    enrolled: set[date] = set()
    absent: set[date] = set()
    for school, windows in attended.windows.items():
        days = attended.calendars[school]
        here = enrolled_days(days, [(max(e, first), x) for e, x in windows], as_of)
        enrolled |= here
        absent |= here.intersection(attended.absences.get(school, ()))
    rate = len(absent) / len(enrolled) if enrolled else 0.0
    chronic = len(enrolled) >= min_days and rate >= threshold
    return Standing(year, True, len(enrolled), len(absent), chronic)
