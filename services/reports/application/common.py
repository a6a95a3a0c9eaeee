"""What the use cases share: the school year asked for, the period it covers, the tables."""

from __future__ import annotations

from datetime import date

import asyncpg

from homeroom.calendar import school_year, school_year_label, year_bounds
from homeroom.problems import FieldError, Problem, problem_type
from services.reports import snapshots, store
from services.reports.state import ReportsState


async def year_or_latest(pool: asyncpg.Pool, state: ReportsState, year: int | None) -> int:
    if year is not None:
        return year
    async with pool.acquire() as conn:
        years = await store.tally_years(conn)
    return years[-1] if years else school_year(state.clock().date())


def period(state: ReportsState, year: int) -> tuple[date, date]:
    """The days a snapshot of this school year counts: its first day up to today (or its last)."""
    first, last = year_bounds(year)
    today = state.clock().date()
    if first > today:
        raise Problem.validation(
            [
                FieldError(
                    "school_year",
                    "school_year.future",
                    f"school year {school_year_label(year)} has not started: nothing is counted yet",
                )
            ]
        )
    return first, min(today, last)


async def year_tables(pool: asyncpg.Pool, state: ReportsState, year: int) -> tuple[snapshots.Tables, store.YearTallies]:
    async with pool.acquire() as conn:
        found = await store.year_tallies(conn, year)
        names = snapshots.unit_names(await store.school_names(conn))
    if not found.schools:
        raise Problem(
            404,
            "Nothing counted",
            f"no student is counted in school year {school_year_label(year)} yet",
            type=problem_type("reports-nothing-counted"),
        )
    return snapshots.tables(found.schools, names, state.settings.state_name), found
