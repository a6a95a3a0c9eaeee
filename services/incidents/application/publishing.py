"""A breach notice a district chooses to publish on the public page (nothing else of an
incident is public): its own words, with the recipient's name and the discovery date."""

from __future__ import annotations

from typing import Any

import asyncpg

from homeroom.auth import Principal
from services.incidents import store
from services.incidents.application.common import (
    actor,
    districts_acted_for,
    load_visible,
    record,
    require_not_closed,
)
from services.incidents.state import IncidentsState


async def publish(
    state: IncidentsState, pool: asyncpg.Pool, principal: Principal, incident_id: str, district: str | None, text: str
) -> dict[str, Any]:
    now = state.now()
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        districts = districts_acted_for(principal, row, district)
        for d in districts:
            await store.publish(conn, incident_id, d, text, now, actor(principal))
            await record(
                conn,
                row,
                principal,
                "breach_notice_published",
                now,
                history={"district_id": d},
                district_id=d,
                act="published",
            )
    return {"incident_id": incident_id, "districts": districts, "published_at": now.isoformat()}


async def public_notices(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [
        {
            "incident_id": p["incident_id"],
            "district_id": p["district_id"],
            "recipient": p["recipient_org"],
            "discovered_on": p["discovered_at"].date().isoformat(),
            "text": p["text"],
            "published_at": p["published_at"].isoformat(),
            "contact": p["contact"],
        }
        for p in await store.publications(pool)
    ]
