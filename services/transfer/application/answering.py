"""Use case: the receiving district answers a delivered record. Its district staff, or staff
of the receiving school, acknowledge it or reject it with a reason code; answering the same
way twice changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from homeroom import outbox
from homeroom.auth import Forbidden, Principal
from homeroom.problems import FieldError, Problem, problem_type
from services.transfer import events, store
from services.transfer.application.reading import visible_case
from services.transfer.metrics import REFUSALS, TRANSITIONS
from services.transfer.transfers import REJECT_REASONS, State, can_move


def check_rejection(reason_code: str, note: str) -> None:
    """A rejection names one of the known reasons, and 'other' says why."""
    if reason_code not in REJECT_REASONS:
        raise Problem.validation(
            [
                FieldError(
                    "/reason_code", "reason_code.unknown", f"reason_code must be one of {', '.join(REJECT_REASONS)}"
                )
            ]
        )
    if reason_code == "other" and not note.strip():
        raise Problem.validation([FieldError("/note", "note.required", "reason_code 'other' needs a note saying why")])


async def answer(
    pool: asyncpg.Pool, principal: Principal, case_id: str, target: State, reason: str, note: str, now: datetime
) -> dict[str, Any]:
    """Move a delivered case to `target` (acknowledged or rejected); returns it with its history."""
    case = await visible_case(pool, principal, case_id)
    if not principal.can_act_for_school(case.to_district_id, case.to_school_id):
        raise Forbidden(f"only staff of the receiving district {case.to_district_id!r} may answer this transfer")
    change = "transfer_acknowledged" if target is State.ACKNOWLEDGED else "transfer_rejected"
    step_name = target.value
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, delivered_at FROM transfer_cases WHERE case_id = $1 FOR UPDATE", case_id
        )
        assert row is not None
        current = State(row["state"])
        if current is target:  # answered before: answering the same way again changes nothing
            moved = await store.get_case(conn, case_id)
            assert moved is not None
            return moved.public() | {"history": await store.history(conn, case_id)}
        if not can_move(current, target) or row["delivered_at"] is None:
            raise Problem(
                409,
                "Transfer cannot be answered now",
                f"the case is {current.value}; only a delivered record can be acknowledged or rejected",
                type=problem_type("transfer.state_conflict"),
                extensions={"state": current.value},
            )
        moved = await store.move(
            conn,
            case_id,
            current,
            target,
            reason=reason,
            closed_at=now,
            package_sealed=None,
            lease_until=None,
        )
        assert moved is not None
        event = events.step(moved, change, step_name, reason=reason)
        await store.add_history(
            conn,
            case_id,
            step_name,
            target,
            reason=reason,
            detail={"by": principal.subject, "role": principal.role.value, "note": note},
            event_id=event.event_id,
        )
        await outbox.add(conn, event)
        history = await store.history(conn, case_id)
    TRANSITIONS.labels(target.value).inc()
    if target is State.REJECTED:
        REFUSALS.labels(reason).inc()
    return moved.public() | {"history": history}
