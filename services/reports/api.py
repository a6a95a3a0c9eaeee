"""The reports service's routes: thin adapters over application/ (see docs/services/reports.md).

Public (no sign-in; de-identified, suppressed): the published snapshots as JSON and CSV, the
researchers' API. Compliance staff publish a snapshot. A district's data office reads its own
unsuppressed numbers and a preview of its part of the next snapshot.
"""

from __future__ import annotations

from typing import Annotated

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

Year = Annotated[
    int | None, Query(ge=2000, le=2100, description="the year the school year starts in: 2026 for 2026-27")
]
DistrictFilter = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="only the state's rows and this district's and its schools'",
    ),
]


@public.get("/snapshots", response_model=SnapshotList, summary="Published statewide snapshots, newest first")
async def list_snapshots(
    pool: PoolDep, school_year: Year = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> SnapshotList:
    return await reading.listing(pool, school_year, limit)


@public.get("/snapshots/latest", response_model=Snapshot, summary="The latest published snapshot")
async def latest_snapshot(
    pool: PoolDep, state: StateDep, school_year: Year = None, district: DistrictFilter = None
) -> Snapshot:
    return reading.part(await reading.latest(pool, state, school_year), district)


@public.get("/snapshots/{snapshot_id}", response_model=Snapshot, summary="A published snapshot")
async def get_snapshot(pool: PoolDep, state: StateDep, snapshot_id: str, district: DistrictFilter = None) -> Snapshot:
    return reading.part(await reading.document(pool, state, snapshot_id), district)


@public.get(
    "/snapshots/{snapshot_id}/csv",
    response_class=StreamingResponse,
    summary="A published snapshot as CSV (suppressed cells as 'fewer than N' or 'withheld')",
    responses={200: {"content": {"text/csv": {}}}},
)
async def snapshot_csv(
    pool: PoolDep, state: StateDep, snapshot_id: str, district: DistrictFilter = None
) -> StreamingResponse:
    snapshot = reading.part(await reading.document(pool, state, snapshot_id), district)
    name = f"homeroom-{snapshot.school_year_label}-v{snapshot.release.version if snapshot.release else 0}"
    name += f"-{district}" if district else ""
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


@router.get(
    "/districts/{district_id}/numbers",
    response_model=DistrictNumbers,
    summary="The district's own numbers, unsuppressed (its staff only; not a release)",
)
async def own_numbers(
    district_id: str, pool: PoolDep, state: StateDep, principal: CurrentPrincipal, school_year: Year = None
) -> DistrictNumbers:
    principal.require_district(district_id)
    return await district.own_numbers(pool, state, district_id, school_year)


@router.get(
    "/districts/{district_id}/preview",
    response_model=Snapshot,
    summary="What a snapshot published now would show of the district (its staff only)",
)
async def preview(
    district_id: str, pool: PoolDep, state: StateDep, principal: CurrentPrincipal, school_year: Year = None
) -> Snapshot:
    principal.require_district(district_id)
    return await district.preview(pool, state, district_id, school_year)
