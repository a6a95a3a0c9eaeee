"""HTTP routes of guardianship (issue 24): thin adapters over `application/linking.py`. See docs/services/consent.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from homeroom.auth import Principal, Role, require_roles
from homeroom.contracts.linking_codes import IssuedCode, IssuedCodes
from services.consent.application import linking
from services.consent.guardianship import DEFAULT_VALID_DAYS, MAX_VALID_DAYS, Outcome, Relationship
from services.consent.state import RuntimeDep

router = APIRouter(tags=["guardianship"])
TAGS = {"guardianship": "Linking codes, guardianship links and parents' tokens (issue 24)."}

_KEY = r"^stu_[A-Za-z0-9_-]{1,120}$"
DistrictStaff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF))]
Parent = Annotated[Principal, Depends(require_roles(Role.PARENT))]
ServiceOnly = Annotated[Principal, Depends(require_roles(Role.SERVICE))]
Compliance = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))]


class CodeFor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    student_key: str = Field(pattern=_KEY)
    relationship: Relationship = Relationship.PARENT


class IssueCodes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    students: list[CodeFor] = Field(min_length=1, max_length=1000)
    valid_days: int = Field(default=DEFAULT_VALID_DAYS, ge=1, le=MAX_VALID_DAYS)


class Redeem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64)
    client: str = Field(default="", max_length=100, description="the person's address, as the portal saw it")


class EndLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=200, description="e.g. custody_change, issued_in_error")


class TokenFor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=300)


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


@router.post("/v1/districts/{district_id}/linking-codes", status_code=201, response_model=IssuedCodes)
async def issue_codes(
    district_id: str,
    body: IssueCodes,
    principal: DistrictStaff,
    runtime: RuntimeDep,
    request: Request,
) -> IssuedCodes:
    """One linking code per student and guardian, for the district's own students. The codes
    are in this answer only (Homeroom keeps their hashes): print the letters or merge them now."""
    requests = [linking.CodeRequest(s.student_key, s.relationship) for s in body.students]
    issued = await linking.issue_codes(runtime, principal, _bearer(request), district_id, requests, body.valid_days)
    return IssuedCodes(
        district_id=district_id,
        codes=[
            IssuedCode(
                code=i.code,
                code_id=i.linking.code_id,
                student_key=i.linking.student_key,
                student_name=i.student_name,
                relationship=i.linking.relationship.value,
                expires_at=i.linking.expires_at,
            )
            for i in issued
        ],
    )


@router.delete("/v1/districts/{district_id}/linking-codes/{code_id}")
async def revoke_code(district_id: str, code_id: str, principal: DistrictStaff, runtime: RuntimeDep) -> dict[str, Any]:
    revoked = await linking.revoke_code(runtime, principal, district_id, code_id)
    return {"code_id": revoked.code_id, "state": "revoked"}


@router.get("/v1/districts/{district_id}/guardianships")
async def district_links(
    district_id: str,
    principal: DistrictStaff,
    runtime: RuntimeDep,
    student_key: Annotated[str | None, Query(pattern=_KEY)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The district's links (active, awaiting acceptance after a transfer, ended) and codes."""
    return await linking.links_of_district(runtime, principal, district_id, student_key, limit)


@router.post("/v1/districts/{district_id}/guardianships/{link_id}/revoke")
async def revoke_link(
    district_id: str, link_id: str, body: EndLink, principal: DistrictStaff, runtime: RuntimeDep
) -> dict[str, Any]:
    """End a link (a custody change): the person's next token no longer names the student."""
    return await linking.revoke_link(runtime, principal, district_id, link_id, body.reason)


@router.post("/v1/districts/{district_id}/guardianships/{link_id}/accept")
async def accept_link(district_id: str, link_id: str, principal: DistrictStaff, runtime: RuntimeDep) -> dict[str, Any]:
    """Accept a link a transfer carried from the sending district."""
    return await linking.accept_carried(runtime, principal, district_id, link_id)


@router.post("/v1/districts/{district_id}/guardianships/{link_id}/decline")
async def decline_link(
    district_id: str, link_id: str, body: EndLink, principal: DistrictStaff, runtime: RuntimeDep
) -> dict[str, Any]:
    return await linking.revoke_link(runtime, principal, district_id, link_id, body.reason, decline=True)


@router.post("/v1/guardianship/redemptions", status_code=201)
async def redeem(body: Redeem, principal: Parent, runtime: RuntimeDep) -> dict[str, Any]:
    """Redeem a linking code as the signed-in person. Refusals name the rule (`outcome`):
    malformed, unknown_code, expired, already_used, revoked, rights_with_student, rate_limited."""
    return await linking.redeem(runtime, principal, body.code, body.client)


@router.get("/v1/guardianship/links")
async def my_links(principal: Parent, runtime: RuntimeDep) -> dict[str, Any]:
    """The signed-in person's links, ended ones included."""
    return {"subject": principal.subject, "links": await linking.my_links(runtime, principal)}


@router.post("/v1/internal/guardian-tokens", tags=["internal"])
async def guardian_token(body: TokenFor, principal: ServiceOnly, runtime: RuntimeDep) -> dict[str, Any]:
    """For the portal, once it has verified a person's sign-in: a parent token naming the
    students of that person's active links."""
    del principal
    return await linking.parent_token(runtime, body.subject)


@router.get("/v1/guardianship/attempts")
async def attempts(
    principal: Compliance,
    runtime: RuntimeDep,
    subject: Annotated[str | None, Query(max_length=300)] = None,
    outcome: Annotated[list[Outcome] | None, Query()] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Every redemption attempt (the evidence of guessing), newest first."""
    del principal
    outcomes = [o.value for o in outcome or []]
    return {"attempts": await linking.attempts(runtime, subject=subject, outcomes=outcomes, since=since, limit=limit)}
