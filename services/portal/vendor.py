"""The vendor's own page: its agreement (what it may see, where, until when), how many students
it has received under it and when, and its roster to download (OneRoster 1.2 CSV, bulk or a
delta), all answered by records to the vendor's own token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from homeroom.auth import Role
from homeroom.catalogue import PURPOSES
from services.portal.web import Page, page_for

router = APIRouter(prefix="/vendor", include_in_schema=False)

# Every page here is the vendor's own; records answers it only about its own agreement.
Vendor = Annotated[Page, page_for(Role.VENDOR)]


@router.get("")
async def overview(vendor: Vendor) -> Response:
    releases = await vendor.services.records.vendor_releases(token=vendor.token)
    return vendor.render("vendor/overview.html", releases=releases, purposes=PURPOSES)


@router.get("/roster.zip")
async def roster(vendor: Vendor, since: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    """Streams records' bulk zip: every student in it is a disclosure, recorded by records."""
    upstream = await vendor.services.records.roster_zip(since=since or None, token=vendor.token)
    name = "oneroster-delta.zip" if since else "oneroster-bulk.zip"
    return StreamingResponse(
        upstream.aiter_bytes(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
        background=BackgroundTask(upstream.aclose),
    )
