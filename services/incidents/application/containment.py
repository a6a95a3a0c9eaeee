"""Containment, recorded as steps of the incident: the recipient's agreement suspended (access
stops at once, as with any suspension: every read asks consent) and the keys it could read
rotated. Consent does both, with the person's own authority (its routes); the incidents
service checks with consent that the step was really taken before it records it, so the
record never claims what did not happen."""

from __future__ import annotations

from typing import Any, Literal

import asyncpg

from homeroom.auth import Principal
from services.incidents import store
from services.incidents.application.common import (
    actor,
    agreement_scope,
    conflict,
    invalid,
    load_visible,
    record,
    require_not_closed,
    require_whole_incident,
)
from services.incidents.state import IncidentsState

Action = Literal["agreement_suspended", "keys_rotated"]


async def record_step(
    state: IncidentsState,
    pool: asyncpg.Pool,
    principal: Principal,
    incident_id: str,
    *,
    action: Action,
    agreement_id: str,
    rotation_id: str | None,
) -> dict[str, Any]:
    row = await load_visible(pool, principal, incident_id)
    require_not_closed(row)
    require_whole_incident(principal, row)
    if agreement_id not in row["agreement_ids"]:
        raise invalid(
            "agreement_id", "incident.agreement_not_concerned", f"{agreement_id} is not an agreement of this incident"
        )
    scope = await agreement_scope(state, agreement_id, "agreement_id", f"consent knows no agreement {agreement_id!r}")
    if action == "agreement_suspended":
        if scope.status not in ("suspended", "ended"):
            raise conflict(
                f"consent says agreement {agreement_id} is {scope.status}: suspend it first "
                f"(consent POST /v1/agreements/{agreement_id}/suspend), then record the step",
                "containment.not_suspended",
            )
        details: dict[str, Any] = {"consent_status": scope.status, "version": scope.version}
    else:
        if not rotation_id or rotation_id not in scope.key_rotations:
            raise conflict(
                f"consent has no key rotation {rotation_id!r} of agreement {agreement_id}: rotate the keys first "
                f"(consent POST /v1/agreements/{agreement_id}/keys/rotate), then record the step with its rotation_id",
                "containment.not_rotated",
            )
        details = {"rotation_id": rotation_id, "districts": list(scope.covered_districts)}
    now = state.now()
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        await store.add_step(conn, incident_id, now, actor(principal), action, agreement_id, details)
        await record(
            conn,
            row,
            principal,
            "containment_recorded",
            now,
            history={"action": action, "agreement_id": agreement_id, **details},
            agreement_id=agreement_id,
            act=action,
        )
    return {
        "incident_id": incident_id,
        "action": action,
        "agreement_id": agreement_id,
        "at": now.isoformat(),
        **details,
    }
