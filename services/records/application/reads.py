"""Reading student records: who may read which record, opened how far.

Use cases:
- `district_students` and `district_student`: the owning district's staff list and read their
  own students (school staff: students currently at their schools); no disclosure.
- `student_records` (`GET /v1/students/{key}`): a parent's own child in every district, a
  vendor what the consent decision allows within its agreement's term, staff their own
  district's record. Every release outside the owning district's staff is decided by consent
  (`decide`) and recorded as a disclosure (`application.disclosures.commit_releases`) before
  anything is returned.
- `vendor_gate`: an agreement that has ended or is not active releases nothing (API reads and
  OneRoster alike).
- `open_record`: a stored record decrypted (amendments, statements and prior records with
  it); a shredded student is the 410 `destroyed` refusal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from homeroom.auth import Principal, Role
from homeroom.contracts.clients import ConsentClient, PeerUnavailable, checked
from homeroom.contracts.consent import Decision, DecisionRequest
from homeroom.crypto import DecryptionError, KeyDestroyedError
from homeroom.service import Runtime
from services.records import store
from services.records.application.disclosures import CHANNEL_API, Release, commit_releases, requester_json
from services.records.application.refusals import consent_unavailable, denied, destroyed, not_found
from services.records.metrics import READS
from services.records.record import (
    PROGRAM_FLAGS_ELEMENT,
    READABLE_ELEMENTS,
    AttendanceRow,
    EnrollmentRow,
    OpenedRecord,
    SuspensionRow,
    build_view,
)
from services.records.state import today

AMENDMENT_REQUEST_ELEMENT = "record.amendment_request"
PARENT_STATEMENT_ELEMENT = "record.parent_statement"
TRANSFER_PACKAGE_ELEMENT = "record.transfer_package"


def consent(runtime: Runtime) -> ConsentClient:
    """The consent client the lifecycle built (`RecordsState.consent`)."""
    client: ConsentClient = runtime.state.consent
    return client


def read_request(
    principal: Principal,
    student_key: str,
    district_id: str,
    elements: Sequence[str],
    *,
    school_id: str | None = None,
    purpose: str | None = None,
) -> DecisionRequest:
    """The decision request for `principal` reading `elements` of one student in one district
    (a 422 naming the field when a value breaks the contract)."""
    return checked(
        DecisionRequest,
        action="read",
        requester=requester_json(principal),
        student_key=student_key,
        district_id=district_id,
        school_id=school_id,
        elements=list(elements),
        purpose=purpose,
    )


async def decide(runtime: Runtime, request: DecisionRequest) -> Decision:
    """Consent's decision; none to be had is the 503 refusal (nothing is released)."""
    try:
        return await consent(runtime).decide(request)
    except PeerUnavailable as exc:
        raise consent_unavailable(exc) from None


# --- opening records --------------------------------------------------------------------


async def open_record(runtime: Runtime, stored: store.StoredRecord) -> OpenedRecord:
    """Decrypt a stored record; a shredded student raises the 410 `destroyed` problem."""
    cipher = runtime.require_cipher()
    district, key = stored.district_id, stored.student_key
    if stored.destroyed_at is not None:
        raise destroyed(district)
    try:
        opened = await cipher.open_many(district, key, stored.sealed) if stored.sealed else {}
        flags: list[str] = []
        if stored.program_flags is not None:
            flags = json.loads(await cipher.open(district, key, PROGRAM_FLAGS_ELEMENT, stored.program_flags))
        decided = {str(a["id"]): a for a in stored.amendments}
        statements = []
        for s in stored.statements:
            amendment = decided.get(str(s["amendment_id"]))
            statements.append(
                {
                    "id": str(s["id"]),
                    "amendment_id": str(s["amendment_id"]),
                    "element": amendment["element"] if amendment is not None else None,
                    "statement": (
                        await cipher.open(district, key, PARENT_STATEMENT_ELEMENT, bytes(s["statement"]))
                    ).decode(),
                    "filed_at": s["created_at"].isoformat(),
                    "district_decision": {
                        "outcome": amendment["status"],
                        "reason": amendment["outcome_reason"],
                        "decided_at": amendment["decided_at"].isoformat() if amendment["decided_at"] else None,
                    }
                    if amendment is not None
                    else None,
                }
            )
        amendments = [
            {
                "id": str(a["id"]),
                "element": a["element"],
                "requested_value": (
                    await cipher.open(district, key, a["element"], bytes(a["requested_value"]))
                ).decode()
                if a["requested_value"] is not None
                else None,
                "reason": (
                    await cipher.open(district, key, AMENDMENT_REQUEST_ELEMENT, bytes(a["request_reason"]))
                ).decode(),
                "status": a["status"],
                "outcome_reason": a["outcome_reason"],
                "decided_at": a["decided_at"].isoformat() if a["decided_at"] else None,
                "requested_at": a["created_at"].isoformat(),
            }
            for a in stored.amendments
        ]
        prior = [
            {
                "case_id": t["case_id"],
                "from_district_id": t["from_district_id"],
                "delivered_at": t["delivered_at"].isoformat(),
                "package": json.loads(await cipher.open(district, key, TRANSFER_PACKAGE_ELEMENT, bytes(t["package"]))),
            }
            for t in stored.transfers
        ]
    except KeyDestroyedError:
        raise destroyed(district) from None
    except DecryptionError as exc:
        if "has no data key" in str(exc) and stored.sealed:
            raise destroyed(district) from None
        raise
    elements = {k: v.decode("utf-8") for k, v in opened.items()}
    for k, v in stored.plain_elements.items():
        elements.setdefault(k, str(v))
    return OpenedRecord(
        student_key=key,
        district_id=district,
        updated_at=stored.updated_at.isoformat(),
        elements=elements,
        enrollments=[
            EnrollmentRow(e["school_id"], e["entry_date"], e["exit_date"], e["exit_code"], e["grade_level"])
            for e in stored.enrollments
        ],
        attendance=[AttendanceRow(a["day"], a["period"], a["category"], a["excused"]) for a in stored.attendance],
        suspensions=[SuspensionRow(s["start_date"], s["end_date"], s["in_school"]) for s in stored.suspensions],
        program_flags=list(flags),
        parent_statements=statements,
        amendments=amendments,
        prior_records=prior,
        directory_opt_out=stored.directory_opt_out,
        chronic_absence=stored.chronic_absence,
        absence=_absence(stored.absence),
    )


def _absence(row: dict[str, object] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {**row, "as_of_date": str(row["as_of_date"]), "missing_calendars": list(row["missing_calendars"] or [])}  # type: ignore[call-overload]


async def load(runtime: Runtime, district_id: str, student_key: str) -> store.StoredRecord | None:
    async with store.district_tx(runtime.pool, district_id) as conn:
        return await store.load_record(conn, district_id, student_key)


def staff_may_see(runtime: Runtime, principal: Principal, stored: store.StoredRecord) -> bool:
    if principal.district_id != stored.district_id:
        return False
    if principal.role is Role.DISTRICT_STAFF:
        return True
    return bool(stored.school_ids(current_on=today(runtime)) & principal.school_ids)


async def vendor_gate(runtime: Runtime, principal: Principal) -> tuple[date | None, date | None]:
    """Refuse a vendor whose agreement has ended or is not active; return its term."""
    agreement = principal.agreement_id or ""
    async with runtime.pool.acquire() as conn:
        if await store.agreement_ended(conn, agreement):
            raise denied("agreement_ended", f"agreement {agreement} has ended: nothing is released under it")
    try:
        scope = await consent(runtime).scope(agreement)
    except PeerUnavailable as exc:
        raise consent_unavailable(exc) from None
    if scope is None or not scope.active:
        raise denied("agreement_inactive", f"agreement {agreement} is not active: nothing is released under it")
    start = date.fromisoformat(scope.start_date) if scope.start_date else None
    end = date.fromisoformat(scope.end_date) if scope.end_date else None
    return start, end


# --- the owning district's staff ----------------------------------------------------------


async def district_students(
    runtime: Runtime,
    principal: Principal,
    district_id: str,
    *,
    school_id: str | None,
    updated_after: datetime | None,
    limit: int,
    offset: int,
) -> list[Any]:
    """Students of the caller's own district (school staff: current students of their schools)."""
    if principal.district_id != district_id:
        raise not_found("district")
    schools: set[str] | None = None
    if principal.role is Role.SCHOOL_STAFF:
        schools = set(principal.school_ids) if school_id is None else ({school_id} & principal.school_ids)
    elif school_id is not None:
        schools = {school_id}
    async with store.district_tx(runtime.pool, district_id) as conn:
        rows = await store.list_student_keys(
            conn,
            district_id,
            school_ids=schools,
            current_on=today(runtime) if principal.role is Role.SCHOOL_STAFF else None,
            updated_after=updated_after,
            limit=limit,
            offset=offset,
        )
    READS.labels(principal.role.value, CHANNEL_API).inc(len(rows))
    return list(rows)


async def district_student(runtime: Runtime, principal: Principal, district_id: str, student_key: str) -> Any:
    """One student's full record, for the owning district's staff (no disclosure)."""
    if principal.district_id != district_id:
        raise not_found()
    stored = await load(runtime, district_id, student_key)
    if stored is None or not staff_may_see(runtime, principal, stored):
        raise not_found()
    view, _ = build_view(await open_record(runtime, stored))
    READS.labels(principal.role.value, CHANNEL_API).inc()
    return view


# --- parents, vendors and staff by student key ---------------------------------------------


async def student_records(
    runtime: Runtime, principal: Principal, student_key: str, requested: list[str], purpose: str | None
) -> list[dict[str, Any]]:
    """The student's records the caller may read, one per district holding the student:
    decided by consent and recorded as disclosures before they are returned (parents, vendors);
    staff read their own district's record only, with no disclosure."""
    if principal.role is Role.PARENT and student_key not in principal.student_keys:
        raise not_found()
    start: date | None = None
    end: date | None = None
    if principal.role is Role.VENDOR:  # before the key is looked up: an agreement not in force
        start, end = await vendor_gate(runtime, principal)  # answers alike for every key
    async with runtime.pool.acquire() as conn:
        districts = await store.districts_of(conn, student_key)
    if principal.role in (Role.DISTRICT_STAFF, Role.SCHOOL_STAFF):
        if principal.district_id not in districts:
            raise not_found()
        return [await district_student(runtime, principal, principal.district_id or "", student_key)]
    if not districts:
        raise not_found()

    views: list[dict[str, Any]] = []
    releases: list[Release] = []
    reasons: list[str] = []
    for district in districts:
        stored = await load(runtime, district, student_key)
        if stored is None:
            continue
        current = sorted(stored.school_ids(current_on=today(runtime)))
        if principal.role is Role.VENDOR and not current:
            # A vendor reaches a student only while enrolled in the district now: one who
            # transferred away (or left) is gone from the roster and from this route alike.
            reasons.append(f"{district}: not currently enrolled")
            continue
        request = read_request(
            principal, student_key, district, requested, school_id=current[0] if current else None, purpose=purpose
        )
        decision = await decide(runtime, request)
        if not decision.allow:
            reasons.append(f"{district}: {decision.reason}")
            continue
        opened = await open_record(runtime, stored)
        if principal.role is Role.PARENT and set(requested) <= set(decision.elements_allowed):
            # The parent's own record (99.10): in full, with amendments, statements and prior records.
            view, present = build_view(opened)
            if set(requested) != set(READABLE_ELEMENTS):
                view, present = build_view(opened, set(requested))
        else:  # never more than the decision allows, whoever asks
            allowed = set(decision.elements_allowed) & set(requested)
            view, present = build_view(opened, allowed, start=start, end=end)
        views.append(view)
        releases.append(Release(district, student_key, present, decision, view))
    if not views:
        if principal.role is Role.VENDOR:
            # The same answer as for a key that does not exist: a vendor cannot tell a student
            # outside its agreement from no student at all (no enumeration of keys).
            raise not_found()
        raise denied("consent_denied", "the consent decision released nothing: " + "; ".join(reasons))
    await commit_releases(runtime, principal, releases, channel=CHANNEL_API, purpose=purpose or "")
    READS.labels(principal.role.value, CHANNEL_API).inc(len(views))
    return views
