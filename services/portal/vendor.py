"""The vendor's own page: its agreement (what it may see, where, until when), how many students
it has received under it and when, and its roster to download (OneRoster 1.2 CSV, bulk or a
delta), all answered by records to the vendor's own token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from homeroom.auth import Role
from homeroom.catalogue import PURPOSES
from services.portal.web import CurrentSession, PortalDep, render, require_role

router = APIRouter(prefix="/vendor", include_in_schema=False)


@router.get("")
async def overview(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    require_role(session, Role.VENDOR)
    releases = await portal.services.records.vendor_releases(token=session.token)
    return render(request, "vendor/overview.html", session, releases=releases, purposes=PURPOSES)


@router.get("/roster.zip")
async def roster(
    portal: PortalDep,
    session: CurrentSession,
    since: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """Streams records' bulk zip: every student in it is a disclosure, recorded by records."""
    require_role(session, Role.VENDOR)
    upstream = await portal.services.records.roster_zip(since=since or None, token=session.token)
    name = "oneroster-delta.zip" if since else "oneroster-bulk.zip"
    return StreamingResponse(
        upstream.aiter_bytes(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
        background=BackgroundTask(upstream.aclose),
    )
