"""Use cases: read transfer cases (a receiving school's and district's inbound cases, a
sending district's outbound ones, a parent's own children's, compliance every case).

Who sees what: district staff see the cases into and out of their own district; school staff
the cases into their own schools; a parent the cases of their own children; compliance every
case. A case the caller may not see answers 404, as if it did not exist."""

from __future__ import annotations

from typing import Any, Literal

import asyncpg

from homeroom.auth import Forbidden, Principal, Role
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.storage import Connection
from services.transfer import store
from services.transfer.settings import TransferSettings
from services.transfer.store import Case
from services.transfer.transfers import State, deadline, visible_to_district

Direction = Literal["inbound", "outbound", "all"]


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


async def visible_case(conn: Connection | asyncpg.Pool, principal: Principal, case_id: str) -> Case:
    """The case, or 404 whether it is missing or not the caller's (the same answer, so ids cannot be probed)."""
    case = await store.get_case(conn, case_id)
    if case is None or not can_see(principal, case):
        raise Problem(
            404,
            "Transfer case not found",
            f"no transfer case {case_id!r} that you may see",
            type=problem_type("transfer.not_found"),
        )
    return case


def shown(case: Case, settings: TransferSettings) -> dict[str, Any]:
    """The case as readers see it, with the deadline it works to (`deadline_at`, or null once closed)."""
    due = deadline(case.view, settings.deadlines)
    return case.public() | {"deadline_at": due.isoformat() if due is not None else None}


async def list_transfers(
    pool: asyncpg.Pool,
    settings: TransferSettings,
    principal: Principal,
    state: State | None,
    direction: Direction,
    limit: int,
) -> dict[str, Any]:
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
        state=state,
        limit=limit,
        to_schools=schools,
    )
    visible = [c for c in cases if can_see(principal, c)]  # the query is scoped already; this re-checks
    return {"transfers": [shown(c, settings) for c in visible], "count": len(visible)}


async def get_transfer(
    pool: asyncpg.Pool, settings: TransferSettings, principal: Principal, case_id: str
) -> dict[str, Any]:
    case = await visible_case(pool, principal, case_id)
    return shown(case, settings) | {"history": await store.history(pool, case_id)}
