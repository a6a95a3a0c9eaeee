"""Statewide comparisons: the public page of published snapshots (district vs state, school vs
district, by school year and student group; suppressed cells as "fewer than N", never a
number), their CSV, and a district data office's own unsuppressed numbers beside the
preview of what the public would see. Every number comes from the reports service, which
applied the publication rules; this page only lays them out (docs/services/reports.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from homeroom.contracts.reports import Row, Snapshot, SnapshotList, Unit
from services.portal.clients import UpstreamError
from services.portal.web import DistrictStaff, OptionalSession, PageError, PortalDep, render

router = APIRouter(include_in_schema=False)

Year = Annotated[int | None, Query(ge=2000, le=2100)]
DistrictId = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Column = Annotated[str, Query(min_length=1, max_length=80, pattern=r"^[a-z0-9_]+(:[A-Za-z0-9_.-]+)?$")]
ColumnChoice = Annotated[str | None, Query(min_length=1, max_length=80, pattern=r"^[a-z0-9_]+(:[A-Za-z0-9_.-]+)?$")]
SnapshotId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
RATES = (("chronic_absence", "Chronic absence"), ("suspension", "Suspension"), ("attendance", "Attendance"))


@dataclass(slots=True)
class Line:
    """One row of a comparison table: a unit (or a group) and its cells as shown."""

    name: str
    level: str
    counts: dict[str, str]
    suppressed: dict[str, bool]
    rates: dict[str, str]


@dataclass(slots=True)
class View:
    snapshot: Snapshot
    column: str
    column_label: str
    districts: list[Unit]
    district: Unit | None
    comparisons: list[tuple[str, list[Line]]] = field(default_factory=list)
    groups: list[tuple[str, list[Line]]] = field(default_factory=list)


def _line(name: str, unit: Unit, row: Row | None) -> Line:
    if row is None:  # a group not published at this level
        return Line(name, unit.level, {}, {}, {})
    return Line(
        name,
        unit.level,
        {m: c.shown for m, c in row.counts.items()},
        {m: c.status != "published" for m, c in row.counts.items()},
        {r: rate.shown for r, rate in row.rates.items()},
    )


def column_labels(snapshot: Snapshot) -> dict[str, str]:
    labels = {"all": "All students"}
    for d in snapshot.dimensions:
        for g in d.groups:
            labels[g.column] = f"{d.label}: {g.label}"
    return labels


def view(snapshot: Snapshot, district_id: str | None, column: str) -> View:
    """The tables a page shows of a snapshot (pure: tested without a browser)."""
    labels = column_labels(snapshot)
    if column not in labels:
        raise PageError(404, "No such group", f"the snapshot has no group {column!r}")
    units = {u.key: u for u in snapshot.units}
    rows = {(r.unit, r.column): r for r in snapshot.rows}
    state = next(u for u in snapshot.units if u.level == "state")
    districts = [u for u in snapshot.units if u.level == "district"]
    district = units.get(district_id) if district_id else None
    if district_id and (district is None or district.level != "district"):
        raise PageError(404, "No such district", f"district {district_id!r} has no rows in this snapshot")
    out = View(snapshot, column, labels[column], districts, district)

    def lines(of: list[Unit], col: str) -> list[Line]:
        return [_line(u.name, u, rows.get((u.key, col))) for u in of]

    if district is None:
        out.comparisons.append(("Districts and the state", lines([state, *districts], column)))
        focus = state
    else:
        schools = [u for u in snapshot.units if u.parent == district.key and u.level == "school"]
        out.comparisons.append(("The district and the state", lines([state, district], column)))
        out.comparisons.append(("Schools and the district", lines([district, *schools], column)))
        focus = district
    for d in snapshot.dimensions:
        if focus.level in d.levels:
            group_lines = [_line(g.label, focus, rows.get((focus.key, g.column))) for g in d.groups]
            out.groups.append((f"{focus.name} by {d.label.lower()}", group_lines))
    return out


async def _listing(portal: PortalDep) -> SnapshotList:
    return await portal.services.reports.snapshots(limit=100)


def merged(parts: list[Snapshot]) -> Snapshot:
    """One snapshot of the filtered parts of it the page asked for (the same document each time)."""
    units = {u.key: u for part in parts for u in part.units}
    rows = {(r.unit, r.column): r for part in parts for r in part.rows}
    return parts[0].model_copy(update={"units": list(units.values()), "rows": list(rows.values()), "page": None})


def page_parts(district: str | None, column: str) -> list[dict[str, str | int]]:
    """The filtered parts of a snapshot one page shows, never the whole state's tables (tens of
    MB at a state's size): the comparison table's rows in the chosen column, the focus's rows
    in every column (its group tables) and, with a district chosen, the list of districts."""
    if district is None:
        return [{"level": "state,district", "column": column}, {"level": "state"}]
    return [
        {"district": district, "column": column},
        {"district": district, "level": "state,district"},
        {"level": "district", "column": "all", "limit": 1},  # every district's unit, for the choice
    ]


@router.get("/statistics")
async def statistics(
    request: Request,
    portal: PortalDep,
    session: OptionalSession,
    school_year: Year = None,
    district: DistrictId = None,
    column: Column = "all",
) -> Response:
    listing = await _listing(portal)
    years = sorted({s.school_year for s in listing.snapshots}, reverse=True)
    if not years:
        return render(request, "statistics.html", session, page=None, years=[], measures=[], rates=RATES)
    year = school_year or years[0]
    published = [s for s in listing.snapshots if s.school_year == year]
    if not published:
        raise PageError(404, "Nothing published", f"nothing has been published for school year {year}")
    snapshot_id = max(published, key=lambda s: s.version).snapshot_id
    parts: list[Snapshot] = []
    try:
        for params in page_parts(district, column):
            parts.append(await portal.services.reports.snapshot(snapshot_id, params))
    except UpstreamError as exc:
        if exc.status == 404:
            raise PageError(404, "No such district", exc.detail) from None
        if exc.status == 422:
            raise PageError(404, "No such group", f"the snapshot has no group {column!r}") from None
        raise
    snapshot = merged(parts)
    page = view(snapshot, district, column)
    return render(
        request,
        "statistics.html",
        session,
        page=page,
        years=years,
        measures=snapshot.measures,
        rates=RATES,
        columns=column_labels(snapshot),
    )


@router.get("/statistics/{snapshot_id}.csv")
async def statistics_csv(
    portal: PortalDep, snapshot_id: SnapshotId, district: DistrictId = None, column: ColumnChoice = None
) -> Response:
    upstream = await portal.services.reports.snapshot_csv(snapshot_id, district=district or None, column=column or None)
    disposition = upstream.headers.get("content-disposition", f'attachment; filename="{snapshot_id}.csv"')
    return Response(
        upstream.content, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": disposition}
    )


@router.get("/district/statistics")
async def district_statistics(staff: DistrictStaff, school_year: Year = None) -> Response:
    """The district's own numbers (unsuppressed, its staff only) beside the public preview."""
    district, year = staff.district, school_year or None
    try:
        own = await staff.services.reports.district_numbers(district, school_year=year, token=staff.token)
        preview = await staff.services.reports.district_preview(district, school_year=year, token=staff.token)
    except UpstreamError as exc:
        if exc.status == 404:
            return staff.render("district/statistics.html", own=None, preview=None, message=exc.detail)
        raise
    names = {u.key: u.name for u in own.units}
    measures = [m.name for m in preview.measures]
    own_lines = [
        (names.get(r.unit, r.unit), column_labels(preview).get(r.column, r.column), r)
        for r in own.rows
        if r.column == "all" or r.unit == district
    ]
    return staff.render(
        "district/statistics.html",
        own=own,
        own_lines=own_lines,
        measures=measures,
        preview=view(preview, district, "all"),
        rates=RATES,
        message="",
    )
