"""Use cases: the reads beside an incident's own view (`reporting.view`): a frozen scope
version, its students page by page and its signed bundle; one report as it was sent; a
district's own deadlines; the breach letters about a child (the parent's read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from homeroom.auth import Forbidden, Principal, Role
from homeroom.problems import Problem, problem_type
from services.incidents import store
from services.incidents.application.common import districts_acted_for, load_visible, require_whole_incident
from services.incidents.application.reporting import version_view
from services.incidents.incidents import Kind


async def _version(
    pool: asyncpg.Pool, principal: Principal, incident_id: str, version: int
) -> tuple[asyncpg.Record, asyncpg.Record]:
    if principal.role is Role.VENDOR:  # before the lookup: the same answer whether the incident exists
        raise Forbidden("the scope is for the educational agencies and compliance staff")
    row = await load_visible(pool, principal, incident_id)
    found = await store.version(pool, incident_id, version)
    if found is None:
        raise Problem(
            404, "Not found", f"incident {incident_id} has no scope version {version}", type=problem_type("not-found")
        )
    return row, found


async def scope_version(pool: asyncpg.Pool, principal: Principal, incident_id: str, version: int) -> dict[str, Any]:
    """Counts and evidence of one frozen version; district staff see their own district's counts."""
    _, found = await _version(pool, principal, incident_id, version)
    own = principal.district_id if principal.role is Role.DISTRICT_STAFF else None
    return version_view(found, own)


async def scope_students(
    pool: asyncpg.Pool,
    principal: Principal,
    incident_id: str,
    version: int,
    district_id: str | None,
    after: str | None,
    limit: int,
) -> dict[str, Any]:
    """The affected students of a frozen version, page by page (`next_after` names the next page)."""
    row, _ = await _version(pool, principal, incident_id, version)
    chosen = districts_acted_for(principal, row, district_id)
    district = chosen[0] if len(chosen) == 1 else None
    parts = after.split("/", 1) if after and "/" in after else None
    cursor = (parts[0], parts[1]) if parts else None
    found = await store.students(pool, incident_id, version, district=district, after=cursor, limit=limit + 1)
    page = found[:limit]
    return {
        "students": [
            {
                "district_id": s["district_id"],
                "student_key": s["student_key"],
                "elements": list(s["elements"]),
                "unreadable_elements": list(s["unreadable_elements"]),
                "disclosures": s["disclosures"],
                "first_shared": s["first_shared"],
                "last_shared": s["last_shared"],
                "destruction_records": list(s["destructions"]),
            }
            for s in page
        ],
        "next_after": f"{page[-1]['district_id']}/{page[-1]['student_key']}" if len(found) > limit else None,
    }


async def scope_bundle(
    pool: asyncpg.Pool, principal: Principal, incident_id: str, version: int
) -> AsyncIterator[bytes]:
    """The signed bundle of a frozen version, checked for the caller before a byte is sent:
    it names every district's students, so it is for whoever acts for the whole incident."""
    row, _ = await _version(pool, principal, incident_id, version)
    require_whole_incident(principal, row)
    return store.bundle_chunks(pool, incident_id, version)


async def report(pool: asyncpg.Pool, principal: Principal, incident_id: str, report_id: str) -> asyncpg.Record:
    """A report as it was sent, for a caller acting for its district (else 404)."""
    row = await load_visible(pool, principal, incident_id)
    found = await store.report(pool, incident_id, report_id)
    if found is None or found["district_id"] not in districts_acted_for(principal, row, None):
        raise Problem(
            404, "Not found", f"no report {report_id} of incident {incident_id} for you", type=problem_type("not-found")
        )
    return found


def deadlines_view(district_id: str, hours: dict[Kind, int]) -> dict[str, Any]:
    return {"district_id": district_id, **{f"{k.value}_hours": hours.get(k) for k in Kind}}


async def district_deadlines(pool: asyncpg.Pool, principal: Principal, district_id: str) -> dict[str, Any]:
    """A district's own deadlines (shorter than the law's): its staff and compliance see them."""
    if principal.role is Role.DISTRICT_STAFF and principal.district_id != district_id:
        raise Forbidden(f"only staff of district {district_id!r} (or compliance) see its deadlines")
    found = (await store.district_deadlines(pool, [district_id])).get(district_id, {})
    return deadlines_view(district_id, found)


async def letters_about(pool: asyncpg.Pool, principal: Principal, student_key: str) -> dict[str, Any]:
    """The breach letters about a child: its parent's read (where their link is active), and compliance's."""
    if principal.role is Role.PARENT and not principal.is_parent_of(student_key):
        raise Forbidden("a parent sees only the letters about their own child")
    rows = await store.letters_about(pool, student_key)
    return {
        "student_key": student_key,
        "letters": [
            {
                "incident_id": r["incident_id"],
                "district_id": r["district_id"],
                "recipient": r["recipient_org"],
                "version": r["version"],
                "language": r["language"],
                "issued_at": r["issued_at"].isoformat(),
                "subject": r["subject"],
                "body": r["body"],
                "delivery": "e-mailed" if r["sent_at"] else "on your notification list",
            }
            for r in rows
            # A parent reads the letters of the districts where their link is active (issue 24).
            if principal.role is not Role.PARENT or principal.is_parent_in(student_key, r["district_id"])
        ],
    }
