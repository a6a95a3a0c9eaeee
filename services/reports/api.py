"""The reports service's routes: thin adapters over application/ (see docs/services/reports.md).

Public (no sign-in; de-identified, suppressed): the published snapshots as JSON and CSV, the
researchers' API. Compliance staff publish a snapshot. A district's data office reads its own
unsuppressed numbers and a preview of its part of the next snapshot.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from homeroom.auth import CurrentPrincipal, Principal, Role, require_roles
from homeroom.contracts.reports import DistrictNumbers, Snapshot, SnapshotList, SnapshotRequest, SnapshotSummary
from homeroom.service import PoolDep
from services.reports import snapshots
from services.reports.application import district, publish, reading
from services.reports.state import StateDep

public = APIRouter(prefix="/v1/public", tags=["public statistics"])
router = APIRouter(prefix="/v1", tags=["statistics"])
TAGS = {
    "public statistics": "Published statewide snapshots: anyone, JSON or CSV",
    "statistics": "Publishing, and a district's own numbers",
}

Year = Annotated[
    int | None, Query(ge=2000, le=2100, description="the year the school year starts in: 2026 for 2026-27")
]


def _ids(parts: int, description: str) -> Any:
    """A filter naming a place by `parts` ids joined by '/' (a district: 1; 'district/school':
    2), each id 1 to 64 of the characters ids are made of."""
    return Query(
        min_length=2 * parts - 1,
        max_length=65 * parts - 1,
        pattern="^" + "/".join([r"[A-Za-z0-9._-]+"] * parts) + "$",
        description=description,
    )


DistrictFilter = Annotated[str | None, _ids(1, "only the state's rows and this district's and its schools'")]
SchoolFilter = Annotated[
    str | None, _ids(2, "'district/school': only the state's, that district's and that school's rows")
]
LevelFilter = Annotated[
    str | None,
    Query(
        pattern=r"^(state|district|school)(,(state|district|school))*$",
        description="comma-separated levels to keep, e.g. 'state,district'",
    ),
]
ColumnFilter = Annotated[
    str | None,
    Query(
        max_length=800,
        pattern=r"^[a-z0-9_]+(:[A-Za-z0-9_.-]+)?(,[a-z0-9_]+(:[A-Za-z0-9_.-]+)?)*$",
        description="comma-separated columns to keep: 'all' and groups such as 'sex:female'",
    ),
]


def selection(
    district: DistrictFilter = None,
    school: SchoolFilter = None,
    level: LevelFilter = None,
    column: ColumnFilter = None,
    offset: Annotated[int, Query(ge=0, description="rows to skip (after the filters)")] = 0,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="at most this many rows")] = None,
) -> snapshots.Selection:
    return snapshots.Selection(
        district=district,
        school=school,
        levels=frozenset(level.split(",")) if level else frozenset(),
        columns=frozenset(column.split(",")) if column else frozenset(),
        offset=offset,
        limit=limit,
    )


SelectionDep = Annotated[snapshots.Selection, Depends(selection)]


@public.get("/snapshots", response_model=SnapshotList, summary="Published statewide snapshots, newest first")
async def list_snapshots(
    pool: PoolDep, school_year: Year = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> SnapshotList:
    return await reading.listing(pool, school_year, limit)


@public.get("/snapshots/latest", response_model=Snapshot, summary="The latest published snapshot")
async def latest_snapshot(pool: PoolDep, state: StateDep, chosen: SelectionDep, school_year: Year = None) -> Snapshot:
    return reading.part(await reading.latest(pool, state, school_year), chosen)


@public.get("/snapshots/{snapshot_id}", response_model=Snapshot, summary="A published snapshot")
async def get_snapshot(pool: PoolDep, state: StateDep, snapshot_id: str, chosen: SelectionDep) -> Snapshot:
    return reading.part(await reading.document(pool, state, snapshot_id), chosen)


@public.get(
    "/snapshots/{snapshot_id}/csv",
    response_class=StreamingResponse,
    summary="A published snapshot as CSV (suppressed cells as 'fewer than N' or 'withheld')",
    responses={200: {"content": {"text/csv": {}}}},
)
async def snapshot_csv(pool: PoolDep, state: StateDep, snapshot_id: str, chosen: SelectionDep) -> StreamingResponse:
    snapshot = reading.part(await reading.document(pool, state, snapshot_id), chosen)
    name = f"homeroom-{snapshot.school_year_label}-v{snapshot.release.version if snapshot.release else 0}"
    name += f"-{chosen.district}" if chosen.district else ""
    name += f"-{chosen.school.replace('/', '-')}" if chosen.school else ""
    return StreamingResponse(
        snapshots.csv_lines(snapshot),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.post("/snapshots", response_model=SnapshotSummary, status_code=201, summary="Publish a statewide snapshot")
async def publish_snapshot(
    body: SnapshotRequest,
    pool: PoolDep,
    state: StateDep,
    principal: Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))],
) -> SnapshotSummary:
    return await publish.publish(pool, state, principal, body)


async def own_district(district_id: str, principal: CurrentPrincipal) -> str:
    """The district in the path, when the one signed in is its staff (403 otherwise)."""
    principal.require_district(district_id)
    return district_id


OwnDistrict = Annotated[str, Depends(own_district)]


@router.get(
    "/districts/{district_id}/numbers",
    response_model=DistrictNumbers,
    summary="The district's own numbers, unsuppressed (its staff only; not a release)",
)
async def own_numbers(
    district_id: OwnDistrict, pool: PoolDep, state: StateDep, school_year: Year = None
) -> DistrictNumbers:
    return await district.own_numbers(pool, state, district_id, school_year)


@router.get(
    "/districts/{district_id}/preview",
    response_model=Snapshot,
    summary="What a snapshot published now would show of the district (its staff only)",
)
async def preview(district_id: OwnDistrict, pool: PoolDep, state: StateDep, school_year: Year = None) -> Snapshot:
    return await district.preview(pool, state, district_id, school_year)
