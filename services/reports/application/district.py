"""Use case: a district's data office sees its own students' numbers and what the public would see.

Its own numbers are unsuppressed, every group at every school (grades too): the district's
own staff reading their own students' data, a disclosure to itself and not a release, so
nothing is recorded (as records does for a district's own reads). The preview runs the
publication rules on the whole state as it stands and shows the district's part exactly as
a snapshot published now would: only what the public would see, so it is not a release either.
"""

from __future__ import annotations

import asyncio

import asyncpg

from homeroom.contracts.reports import DistrictNumbers, Snapshot
from homeroom.problems import Problem, problem_type
from services.reports import snapshots, store
from services.reports.application.common import period, year_or_latest, year_tables
from services.reports.state import ReportsState
from services.reports.suppression import CannotProtect

OWN_NOTE = (
    "Your district's own numbers, with no cell suppressed: for your staff only. "
    "The public sees these tables with small cells suppressed (see the preview)."
)


def _absent(district_id: str) -> Problem:
    return Problem(
        404,
        "Nothing counted",
        f"no student of district {district_id} is counted in this school year",
        type=problem_type("reports-nothing-counted"),
    )


async def own_numbers(pool: asyncpg.Pool, state: ReportsState, district_id: str, year: int | None) -> DistrictNumbers:
    year = await year_or_latest(pool, state, year)
    days = period(state, year)
    tables, found = await year_tables(pool, state, year)
    if not any(d == district_id for d, _ in found.schools):
        raise _absent(district_id)
    units, rows = snapshots.own_rows(tables, district_id)
    return DistrictNumbers(
        district_id=district_id,
        school_year=year,
        as_of=days[1],
        newest_event=found.newest_event,
        units=units,
        rows=rows,
        note=OWN_NOTE,
        freshness=state.freshness_now(),
    )


async def preview(pool: asyncpg.Pool, state: ReportsState, district_id: str, year: int | None) -> Snapshot:
    year = await year_or_latest(pool, state, year)
    days = period(state, year)
    async with state.computing:
        async with pool.acquire() as conn:
            stamp = await store.tallies_stamp(conn, year)
        cached = state.previews.get(year)
        if cached is not None and cached[0] == stamp and cached[1].period_end == days[1]:
            whole = cached[1]
        else:
            tables, _ = await year_tables(pool, state, year)
            try:
                built = await asyncio.to_thread(
                    snapshots.document, tables, year, days, state.rules, state.absence, state.settings.state_name
                )
            except CannotProtect as exc:
                raise Problem(409, "Cannot publish", str(exc), type=problem_type("reports-unprotectable")) from None
            whole = built.snapshot
            state.previews[year] = (stamp, whole)
    if not any(u.key == district_id for u in whole.units):
        raise _absent(district_id)
    part = snapshots.for_district(whole, district_id)
    return part.model_copy(update={"freshness": state.freshness_now()})
