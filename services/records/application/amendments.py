"""Amendments (FERPA 99.20) and parents' statements (99.21).

Use cases:
- `request_amendment`: a parent asks the district holding their child's record to amend an
  element (their standing checked with consent at once; the request sealed).
- `list_amendments`: the owning district's staff list its requests.
- `decide_amendment`: the district accepts (the value is corrected) or refuses, with a reason;
  the parent is told (`amendment_notice`).
- `file_statement`: after a refusal, the parent's statement is kept with the record and
  travels with every disclosure of that part of it."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from homeroom import notices
from homeroom.auth import Principal, Role
from homeroom.catalogue import CATALOGUE
from homeroom.crypto import KeyDestroyedError
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import Runtime
from services.records import store
from services.records.application.reads import (
    AMENDMENT_REQUEST_ELEMENT,
    PARENT_STATEMENT_ELEMENT,
    decide,
    read_request,
    staff_may_see,
)
from services.records.application.refusals import destroyed, not_found


def _conflict(title: str, detail: str, kind: str) -> Problem:
    """The request meets the amendment in another state than it needs (409)."""
    return Problem(409, title, detail, type=problem_type(kind))


class AmendmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    district_id: str | None = Field(None, description="the district holding the record; needed if several do")
    element: str = Field(description="the catalogue element the parent believes is inaccurate or misleading")
    requested_value: str | None = Field(None, max_length=2000, description="the corrected value, if any")
    reason: str = Field(min_length=1, max_length=4000)


class AmendmentDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["accepted", "refused"]
    reason: str = Field(min_length=1, max_length=4000)


class StatementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=8000)


async def _parent_district(runtime: Runtime, principal: Principal, student_key: str, district_id: str | None) -> str:
    if student_key not in principal.student_keys:
        raise not_found()
    async with runtime.pool.acquire() as conn:
        districts = await store.districts_of(conn, student_key)
    # Only districts where the parent's guardianship link is active (issue 24; a development
    # token names students only and reaches every district).
    districts = [d for d in districts if principal.is_parent_in(student_key, d)]
    if district_id is not None:
        if district_id not in districts:
            raise not_found()
        return district_id
    if not districts:
        raise not_found()
    if len(districts) > 1:
        raise Problem.validation(
            [FieldError("/district_id", "district.ambiguous", "the student has records in several districts; name one")]
        )
    return districts[0]


async def request_amendment(
    runtime: Runtime, principal: Principal, student_key: str, body: AmendmentRequest
) -> dict[str, Any]:
    """The request sealed in the one district holding the record where the parent's standing holds."""
    district = await _parent_district(runtime, principal, student_key, body.district_id)
    # The parent's standing in this district, from consent's registry at once (the token's
    # `guardianships` claim may be up to its lifetime old: a link revoked since still named).
    request = read_request(principal, student_key, district, [body.element])
    decision = await decide(runtime, request)
    if not decision.allow:
        raise not_found()
    cipher = runtime.require_cipher()
    try:
        reason = await cipher.seal(district, student_key, AMENDMENT_REQUEST_ELEMENT, body.reason)
        value = (
            await cipher.seal(district, student_key, body.element, body.requested_value)
            if body.requested_value is not None
            else None
        )
    except KeyDestroyedError:
        raise destroyed(district) from None
    async with store.district_tx(runtime.pool, district) as conn:
        requested = store.AmendmentRequest(district, student_key, body.element, value, reason, principal.subject)
        amendment_id = await store.add_amendment(conn, requested)
    return {"id": str(amendment_id), "district_id": district, "student_key": student_key, "status": "pending"}


async def list_amendments(
    runtime: Runtime, principal: Principal, district_id: str, status: str | None
) -> dict[str, Any]:
    """The district's requests, without values (the record holds them)."""
    if principal.district_id != district_id:
        raise not_found("district")
    async with store.district_tx(runtime.pool, district_id) as conn:
        rows = await store.list_amendments(conn, status)
    return {
        "district_id": district_id,
        "amendments": [
            {
                "id": str(r["id"]),
                "student_key": r["student_key"],
                "element": r["element"],
                "status": r["status"],
                "outcome_reason": r["outcome_reason"],
                "requested_at": r["created_at"].isoformat(),
                "decided_at": r["decided_at"].isoformat() if r["decided_at"] else None,
            }
            for r in rows
        ],
    }


async def decide_amendment(
    runtime: Runtime, principal: Principal, amendment_id: uuid.UUID, body: AmendmentDecision
) -> dict[str, Any]:
    """Accept (correct the value) or refuse, once; the outcome stays with the record and the parent is told."""
    district = principal.district_id or ""
    async with store.district_tx(runtime.pool, district) as conn:
        amendment = await store.get_amendment(conn, amendment_id)  # RLS: other districts' are invisible
        if amendment is None:
            raise not_found("amendment")
        if principal.role is Role.SCHOOL_STAFF:
            stored = await store.load_record(conn, district, amendment["student_key"])
            if stored is None or not staff_may_see(runtime, principal, stored):
                raise not_found("amendment")
        if amendment["status"] != "pending":
            detail = f"amendment {amendment_id} was already {amendment['status']}"
            raise _conflict("Already decided", detail, "amendment-decided")
        decided = await store.decide_amendment(conn, amendment_id, body.outcome, body.reason, principal.subject)
        if decided is None:
            raise Problem(409, "Already decided", f"amendment {amendment_id} was already decided")
        if body.outcome == "accepted" and decided["requested_value"] is not None:
            await store.replace_element(
                conn, district, decided["student_key"], decided["element"], bytes(decided["requested_value"])
            )
        await store.touch(conn, district, decided["student_key"])
        await notices.add(conn, amendment_notice(district, decided, body.outcome, body.reason))
    return {
        "id": str(amendment_id),
        "student_key": decided["student_key"],
        "element": decided["element"],
        "status": decided["status"],
        "outcome_reason": decided["outcome_reason"],
        "decided_by": decided["decided_by"],
        "value_corrected": body.outcome == "accepted" and decided["requested_value"] is not None,
    }


def amendment_notice(district: str, decided: Any, outcome: str, reason: str) -> notices.Notice:
    """The district's decision, to the parent who asked (99.20(b), (c)); after a refusal, their right to a hearing
    and to place a statement in the record (99.21)."""
    element = CATALOGUE[decided["element"]].name if decided["element"] in CATALOGUE else decided["element"]
    if outcome == "accepted":
        subject = f"District {district} corrected your child's record ({element})"
        body = f"District {district} accepted your request to correct {element.lower()}.\n\nIts reason: {reason}\n"
    else:
        subject = f"District {district} refused to change your child's record ({element})"
        body = (
            f"District {district} refused your request to correct {element.lower()}.\n\nIts reason: {reason}\n\n"
            "You may ask for a hearing (FERPA 34 CFR 99.21), and you may add a statement to the record saying why you\n"
            "disagree: it is kept with the record and sent with every disclosure of that part of it.\n"
        )
    return notices.Notice(
        recipient=notices.Recipient("parent", decided["student_key"]),
        kind=f"amendment_{outcome}",
        subject=subject,
        body=body,
        cause=f"amendment:{decided['id']}",
        student_key=decided["student_key"],
        district_id=district,
    )


async def file_statement(
    runtime: Runtime, principal: Principal, student_key: str, amendment_id: uuid.UUID, body: StatementRequest
) -> dict[str, Any]:
    """The statement, sealed, in the district whose refused amendment it answers."""
    if student_key not in principal.student_keys:
        raise not_found()
    async with runtime.pool.acquire() as conn:
        districts = [d for d in await store.districts_of(conn, student_key) if principal.is_parent_in(student_key, d)]
    cipher = runtime.require_cipher()
    for district in districts:
        async with store.district_tx(runtime.pool, district) as conn:
            amendment = await store.get_amendment(conn, amendment_id)
            if amendment is None or amendment["student_key"] != student_key:
                continue
            if amendment["status"] != "refused":
                detail = f"a statement may be filed only after a refusal; the amendment is {amendment['status']}"
                raise _conflict("Amendment not refused", detail, "amendment-not-refused")
            try:
                sealed = await cipher.seal(district, student_key, PARENT_STATEMENT_ELEMENT, body.statement)
            except KeyDestroyedError:
                raise destroyed(district) from None
            statement_id = await store.add_statement(
                conn, amendment_id, district, student_key, sealed, principal.subject
            )
            if statement_id is None:
                raise Problem(409, "Statement exists", "a statement was already filed for this amendment")
            return {"id": str(statement_id), "amendment_id": str(amendment_id), "district_id": district}
    raise not_found("amendment")
