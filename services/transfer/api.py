"""HTTP API of the transfer service: thin routes over the use cases in `application/`
(`reading`: who sees which case; `answering`: the receiving district's answer;
`requesting.request_again`: staff send an escalated case round again).

A case the caller may not see answers 404, as if it did not exist. Only the receiving
district (its district staff, or staff of the receiving school) acknowledges or rejects a
delivered record.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from homeroom.auth import Principal, Role, require_roles
from services.transfer.application import answering, reading, requesting
from services.transfer.state import RuntimeDep
from services.transfer.transfers import REJECT_REASONS, State

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])
TAGS = {"transfers": "Records-transfer cases between districts"}

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


@router.get("", summary="List transfer cases you may see")
async def list_transfers(
    runtime: RuntimeDep,
    principal: Reader,
    state: Annotated[StateName | None, Query(description="only cases in this state")] = None,
    direction: Annotated[reading.Direction, Query(description="district staff: into or out of your district")] = "all",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    wanted = State(state) if state is not None else None
    return await reading.list_transfers(runtime.pool, runtime.settings, principal, wanted, direction, limit)


@router.get("/{case_id}", summary="One transfer case with its history")
async def get_transfer(case_id: str, runtime: RuntimeDep, principal: Reader) -> dict[str, Any]:
    return await reading.get_transfer(runtime.pool, runtime.settings, principal, case_id)


class AcknowledgeBody(BaseModel):
    note: str = Field(default="", max_length=500)


class RejectBody(BaseModel):
    reason_code: str = Field(description="one of: " + ", ".join(REJECT_REASONS))
    note: str = Field(default="", max_length=500)


@router.post("/{case_id}/acknowledge", summary="The receiving district confirms it has the record")
async def acknowledge(
    case_id: str, runtime: RuntimeDep, principal: Receiver, body: AcknowledgeBody | None = None
) -> dict[str, Any]:
    note = body.note if body else ""
    return await answering.answer(runtime.pool, principal, case_id, State.ACKNOWLEDGED, "", note, runtime.clock())


@router.post("/{case_id}/reject", summary="The receiving district refuses the record, with a reason code")
async def reject(case_id: str, runtime: RuntimeDep, principal: Receiver, body: RejectBody) -> dict[str, Any]:
    answering.check_rejection(body.reason_code, body.note)
    reason, note = body.reason_code, body.note
    return await answering.answer(runtime.pool, principal, case_id, State.REJECTED, reason, note, runtime.clock())


class RetryBody(BaseModel):
    note: str = Field(default="", max_length=500)


@router.post("/{case_id}/retry", summary="Send an escalated, undelivered case round again")
async def retry(
    case_id: str, runtime: RuntimeDep, principal: Receiver, body: RetryBody | None = None
) -> dict[str, Any]:
    """For the district staff of either district once the cause of the escalation (a peer
    down, a record missing) is fixed: the case starts again from the consent decision, with
    fresh attempts and a fresh delivery deadline."""
    note = body.note if body else ""
    return await requesting.request_again(runtime.pool, principal, case_id, note, runtime.clock())
