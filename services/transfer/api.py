"""HTTP API of the transfer service.

Who sees what: district staff see the cases into and out of their own district; school
staff the cases into their own schools; a parent the cases of their own children;
compliance every case. A case the caller may not see answers 404, as if it did not
exist. Only the receiving district (its district staff, or staff of the receiving school)
acknowledges or rejects a delivered record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from homeroom import outbox
from homeroom.auth import Forbidden, Principal, Role, require_roles
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import PoolDep, Runtime, RuntimeDep
from services.transfer import events, store
from services.transfer.consumers import NOTIFY_CHANNEL
from services.transfer.metrics import REFUSALS, TRANSITIONS
from services.transfer.settings import TransferSettings
from services.transfer.store import Case
from services.transfer.transfers import REJECT_REASONS, State, can_move, deadline, visible_to_district

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])

Reader = Annotated[
    Principal,
    Depends(require_roles(Role.DISTRICT_STAFF, Role.SCHOOL_STAFF, Role.PARENT, Role.COMPLIANCE)),
]
Receiver = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.SCHOOL_STAFF))]

StateName = Literal[
    "requested",
    "decided",
    "packaged",
    "delivered",
    "acknowledged",
    "rejected",
    "refused",
    "failed",
    "escalated",
    "held",
]


def can_see(principal: Principal, case: Case) -> bool:
    if principal.role is Role.COMPLIANCE:
        return True
    if principal.role is Role.PARENT:
        # The case is the sending district's disclosure to the receiving one: a parent whose link
        # is active in either sees it (as audit shows the disclosure); a link only proposed,
        # declined or revoked there, or one in a third district, does not (issue 24).
        return any(principal.is_parent_in(case.student_key, d) for d in (case.from_district_id, case.to_district_id))
    if principal.role is Role.DISTRICT_STAFF and principal.district_id is not None:
        return visible_to_district(principal.district_id, case.from_district_id, case.to_district_id)
    if principal.role is Role.SCHOOL_STAFF:
        return principal.can_act_for_school(case.to_district_id, case.to_school_id)
    return False


def _not_found(case_id: str) -> Problem:
    return Problem(
        404,
        "Transfer case not found",
        f"no transfer case {case_id!r} that you may see",
        type=problem_type("transfer.not_found"),
    )


async def _visible(pool: PoolDep, principal: Principal, case_id: str) -> Case:
    case = await store.get_case(pool, case_id)
    if case is None or not can_see(principal, case):
        raise _not_found(case_id)
    return case


def _shown(case: Case, runtime: Runtime) -> dict[str, Any]:
    """The case as readers see it, with the deadline it works to (`deadline_at`, or null once closed)."""
    settings = runtime.settings
    assert isinstance(settings, TransferSettings)
    due = deadline(case.view, settings.deadlines)
    return case.public() | {"deadline_at": due.isoformat() if due is not None else None}


@router.get("", summary="List transfer cases you may see")
async def list_transfers(
    pool: PoolDep,
    runtime: RuntimeDep,
    principal: Reader,
    state: Annotated[StateName | None, Query(description="only cases in this state")] = None,
    direction: Annotated[
        Literal["inbound", "outbound", "all"], Query(description="district staff: into or out of your district")
    ] = "all",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    wanted = State(state) if state is not None else None
    inbound: str | None = None
    outbound: str | None = None
    keys: list[str] | None = None
    schools: list[str] | None = None
    if principal.role is Role.COMPLIANCE:
        pass
    elif principal.role is Role.PARENT:
        keys = sorted(principal.student_keys)
    else:
        district = principal.district_id
        assert district is not None
        if principal.role is Role.SCHOOL_STAFF and direction == "outbound":
            raise Forbidden("school staff see the transfers into their own schools; outbound needs district staff")
        inbound = district if direction in ("inbound", "all") else None
        if principal.role is Role.SCHOOL_STAFF:
            schools = sorted(principal.school_ids)
        outbound = district if direction in ("outbound", "all") and principal.role is Role.DISTRICT_STAFF else None
    if principal.role is Role.COMPLIANCE and direction != "all":
        raise Problem.validation(
            [FieldError("query.direction", "direction.needs_district", "direction needs a district to be relative to")]
        )
    cases = await store.list_cases(
        pool,
        districts_in=inbound,
        districts_out=outbound,
        student_keys=keys,
        state=wanted,
        limit=limit,
        to_schools=schools,
    )
    visible = [c for c in cases if can_see(principal, c)]  # the query is scoped already; this re-checks
    return {"transfers": [_shown(c, runtime) for c in visible], "count": len(visible)}


@router.get("/{case_id}", summary="One transfer case with its history")
async def get_transfer(case_id: str, pool: PoolDep, runtime: RuntimeDep, principal: Reader) -> dict[str, Any]:
    case = await _visible(pool, principal, case_id)
    return _shown(case, runtime) | {"history": await store.history(pool, case_id)}


class AcknowledgeBody(BaseModel):
    note: str = Field(default="", max_length=500)


class RejectBody(BaseModel):
    reason_code: str = Field(description="one of: " + ", ".join(REJECT_REASONS))
    note: str = Field(default="", max_length=500)


async def _answer(
    pool: PoolDep, principal: Principal, case_id: str, target: State, reason: str, note: str
) -> dict[str, Any]:
    case = await _visible(pool, principal, case_id)
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
            closed_at=datetime.now(UTC),
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


@router.post("/{case_id}/acknowledge", summary="The receiving district confirms it has the record")
async def acknowledge(
    case_id: str, pool: PoolDep, principal: Receiver, body: AcknowledgeBody | None = None
) -> dict[str, Any]:
    return await _answer(pool, principal, case_id, State.ACKNOWLEDGED, "", body.note if body else "")


@router.post("/{case_id}/reject", summary="The receiving district refuses the record, with a reason code")
async def reject(case_id: str, pool: PoolDep, principal: Receiver, body: RejectBody) -> dict[str, Any]:
    if body.reason_code not in REJECT_REASONS:
        raise Problem.validation(
            [
                FieldError(
                    "/reason_code",
                    "reason_code.unknown",
                    f"reason_code must be one of {', '.join(REJECT_REASONS)}",
                )
            ]
        )
    if body.reason_code == "other" and not body.note.strip():
        raise Problem.validation([FieldError("/note", "note.required", "reason_code 'other' needs a note saying why")])
    return await _answer(pool, principal, case_id, State.REJECTED, body.reason_code, body.note)


class RetryBody(BaseModel):
    note: str = Field(default="", max_length=500)


@router.post("/{case_id}/retry", summary="Send an escalated, undelivered case round again")
async def retry(case_id: str, pool: PoolDep, principal: Receiver, body: RetryBody | None = None) -> dict[str, Any]:
    """For the district staff of either district once the cause of the escalation (a peer
    down, a record missing) is fixed: the case starts again from the consent decision, with
    fresh attempts and a fresh delivery deadline."""
    await _visible(pool, principal, case_id)
    if principal.role is not Role.DISTRICT_STAFF:
        raise Forbidden("only district staff of the sending or receiving district may retry a transfer")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, delivered_at, retries FROM transfer_cases WHERE case_id = $1 FOR UPDATE", case_id
        )
        assert row is not None
        current = State(row["state"])
        if current is not State.ESCALATED or row["delivered_at"] is not None:
            raise Problem(
                409,
                "Transfer cannot be retried",
                f"the case is {current.value}; only an escalated case that was never delivered can be retried "
                "(a delivered one waits for the receiving district's answer)",
                type=problem_type("transfer.state_conflict"),
                extensions={"state": current.value},
            )
        n = int(row["retries"]) + 1
        now = datetime.now(UTC)
        moved = await store.move(
            conn,
            case_id,
            current,
            State.REQUESTED,
            reason="retried_by_staff",
            attempt=0,
            retries=n,
            clock_started_at=now,
            next_attempt_at=now,
            lease_until=None,
        )
        assert moved is not None
        event = events.step(moved, "transfer_requested", f"requested:retry:{n}", reason="retried_by_staff")
        await store.add_history(
            conn,
            case_id,
            f"retried:{n}",
            State.REQUESTED,
            reason="retried_by_staff",
            detail={"by": principal.subject, "district": principal.district_id, "note": body.note if body else ""},
            event_id=event.event_id,
        )
        await outbox.add(conn, event)
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        history = await store.history(conn, case_id)
    TRANSITIONS.labels(State.REQUESTED.value).inc()
    return moved.public() | {"history": history}
