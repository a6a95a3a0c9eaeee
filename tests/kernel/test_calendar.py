"""School calendars and days enrolled (homeroom/calendar.py): pure arithmetic, checked against a
day-by-day count over generated calendars and enrollments."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from homeroom.calendar import (
    SchoolYearAttendance,
    Term,
    count_between,
    enrolled_days,
    instructional_days,
    parse_school_year,
    school_year,
    standing,
    term_mismatches,
    weekdays,
    year_bounds,
)

Y = 2024  # the 2024-2025 school year
FIRST, LAST = year_bounds(Y)


def test_school_years_are_named_by_the_year_they_start_in() -> None:
    assert year_bounds(2021) == (date(2021, 7, 1), date(2022, 6, 30))
    assert school_year(date(2021, 8, 23)) == school_year(date(2022, 5, 27)) == 2021
    assert school_year(date(2022, 6, 30)) == 2021 and school_year(date(2022, 7, 1)) == 2022
    # how exports write them: Ed-Fi XML "2021-2022", Ed-Fi API and OneRoster the ending year
    assert parse_school_year("2021-2022") == parse_school_year("2021-22") == parse_school_year("2022") == 2021
    assert parse_school_year("2021-2023") is None and parse_school_year("next year") is None


def test_terms_give_their_weekdays_and_entries_add_or_remove_days() -> None:
    fall = Term("Fall", date(2024, 9, 2), date(2024, 9, 13), 10)  # two weeks, and it says 10 days
    days = instructional_days([fall], {date(2024, 9, 2): False, date(2024, 9, 14): True})
    assert len(days) == 10  # 10 weekdays - Labor Day + a make-up Saturday
    assert date(2024, 9, 2) not in days and date(2024, 9, 14) in days
    assert term_mismatches([fall], days) == [(fall, 9)]  # Labor Day off: 9 inside the term
    # without terms, a calendar that lists each school day is taken as it is
    listed = instructional_days([], {date(2024, 9, 3): True, date(2024, 9, 4): True, date(2024, 9, 5): False})
    assert listed == (date(2024, 9, 3), date(2024, 9, 4))


def _school_days(draw_days: list[int]) -> list[date]:
    return sorted({FIRST + timedelta(days=d) for d in draw_days})


windows_st = st.lists(st.tuples(st.integers(0, 364), st.one_of(st.none(), st.integers(0, 364))), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 364), max_size=120), windows_st, st.integers(0, 400))
def test_days_enrolled_equals_a_day_by_day_count(
    days_off: list[int], raw: list[tuple[int, int | None]], upto: int
) -> None:
    days = _school_days(days_off)
    windows = [(FIRST + timedelta(days=a), None if b is None else FIRST + timedelta(days=a + b)) for a, b in raw]
    as_of = FIRST + timedelta(days=upto)
    expected = {
        d for d in days if d <= as_of and any(entry <= d and (exit_ is None or d <= exit_) for entry, exit_ in windows)
    }
    assert enrolled_days(days, windows, as_of) == expected
    assert count_between(days, FIRST, as_of) == sum(1 for d in days if d <= as_of)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.data())
def test_the_flag_follows_the_rate_over_enrolled_days_and_never_without_a_calendar(
    absent: int, data: st.DataObject
) -> None:
    days = list(weekdays(date(2024, 9, 2), date(2025, 1, 31)))
    absences = data.draw(st.lists(st.sampled_from(days), min_size=absent, max_size=absent, unique=True))
    attended = SchoolYearAttendance({"s1": days}, {"s1": [(days[0], None)]}, {"s1": absences})
    as_of = date(2025, 1, 31)
    got = standing(Y, attended, as_of, threshold=0.1, min_days=10)
    assert got.calendar_known and got.days_enrolled == len(days) and got.days_absent == len(absences)
    assert got.chronic == (len(absences) / len(days) >= 0.1)
    # an absences-only feed: the same absences with no calendar give no rate and no flag
    unknown = standing(Y, SchoolYearAttendance({}, {"s1": [(days[0], None)]}, {"s1": absences}), as_of, threshold=0.1,
                       min_days=10)  # fmt: skip
    assert (unknown.calendar_known, unknown.chronic, unknown.absence_rate) == (False, False, None)
    assert unknown.missing_calendars == ("s1",)


def test_two_schools_in_one_year_each_count_with_their_own_calendar() -> None:
    a = list(weekdays(date(2024, 9, 2), date(2024, 9, 27)))  # 20 days
    b = [d for d in weekdays(date(2024, 9, 2), date(2024, 10, 31)) if d.weekday() != 4]  # no Fridays
    attended = SchoolYearAttendance(
        {"a": a, "b": b},
        {"a": [(date(2024, 9, 2), date(2024, 9, 13))], "b": [(date(2024, 9, 16), None)]},
        # an absence outside every enrollment (or on a day off) does not count
        {"a": [date(2024, 9, 3), date(2024, 9, 20)], "b": [date(2024, 9, 17), date(2024, 9, 20)]},
    )
    got = standing(Y, attended, date(2024, 10, 31), threshold=0.1, min_days=10)
    assert got.days_enrolled == 10 + len([d for d in b if d >= date(2024, 9, 16)])
    assert got.days_absent == 2
    missing = standing(
        Y, SchoolYearAttendance({"a": a}, attended.windows, attended.absences), date(2024, 10, 31), threshold=0.1,
        min_days=10,
    )  # fmt: skip
    assert (missing.calendar_known, missing.missing_calendars, missing.chronic) == (False, ("b",), False)


def test_counting_stops_at_the_day_of_the_count_and_at_the_end_of_the_year() -> None:
    days = list(weekdays(date(2024, 9, 2), date(2025, 6, 20)))
    attended = SchoolYearAttendance({"s": days}, {"s": [(date(2024, 9, 2), None)]}, {"s": days[:5]})
    early = standing(Y, attended, date(2024, 9, 13), threshold=0.1, min_days=10)
    assert (early.days_enrolled, early.days_absent, early.chronic) == (10, 5, True)
    too_few = standing(Y, attended, date(2024, 9, 6), threshold=0.1, min_days=10)
    assert (too_few.days_enrolled, too_few.chronic) == (5, False)  # under min_days: no flag yet
    later = standing(Y, attended, date(2026, 1, 1), threshold=0.1, min_days=10)
    assert later.days_enrolled == len(days) and not later.chronic
