"""HTTP API of the records service: role-based reads, amendments, internal transfer calls.

Who sees what:
- district staff: their own district's students; school staff: students currently
  enrolled at one of their schools. No disclosure (the district's own staff).
- parents: their own child's full record (FERPA 99.10), through the consent decision;
  each read is a disclosure with `record_required=false`.
- vendors: only the students, elements and dates their active agreement covers, as the
  consent decision answers; nothing once the agreement has ended.
- service (transfer): the internal package and delivery calls of docs/contracts.md.

A read by anyone other than the owning district's staff returns data only after its
read-log row and its disclosure.v1 event (outbox) have committed together. If the consent
service cannot answer, nothing is released (503), whoever asks.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from homeroom import outbox
from homeroom.auth import Principal, Role, require_roles
from homeroom.bus.envelope import build_event
from homeroom.bus.topics import DISCLOSURE
from homeroom.catalogue import CATALOGUE
from homeroom.crypto import DecryptionError, KeyDestroyedError
from homeroom.entry_text import normalise
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import Runtime, RuntimeDep
from homeroom.storage import BIGINT_MAX, Connection
from services.records import store
from services.records.consent_client import ConsentClient, ConsentUnavailable, Decision, DecisionRequest
from services.records.consumers import PROGRAM_FLAGS_ELEMENT
from services.records.metrics import DENIALS, DISCLOSURES, READS
from services.records.record import (
    READABLE_ELEMENTS,
    AttendanceRow,
    EnrollmentRow,
    OpenedRecord,
    SuspensionRow,
    build_view,
)

router = APIRouter(tags=["records"])

AMENDMENT_REQUEST_ELEMENT = "record.amendment_request"
PARENT_STATEMENT_ELEMENT = "record.parent_statement"
TRANSFER_PACKAGE_ELEMENT = "record.transfer_package"
CHANNEL_API = "records-api"
CHANNEL_ONEROSTER = "oneroster"

Staff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.SCHOOL_STAFF))]
ParentOrVendorOrStaff = Annotated[
    Principal, Depends(require_roles(Role.PARENT, Role.VENDOR, Role.DISTRICT_STAFF, Role.SCHOOL_STAFF))
]
Parent = Annotated[Principal, Depends(require_roles(Role.PARENT))]
Service = Annotated[Principal, Depends(require_roles(Role.SERVICE))]


# --- problems ---------------------------------------------------------------------------


def not_found(what: str = "student") -> Problem:
    DENIALS.labels("not_found").inc()
    return Problem(404, "Not found", f"no such {what} visible to this caller", type=problem_type("not-found"))


def denied(reason: str, detail: str) -> Problem:
    DENIALS.labels(reason).inc()
    return Problem(403, "Forbidden", detail, type=problem_type("forbidden"), extensions={"reason": reason})


def consent_unavailable(exc: ConsentUnavailable) -> Problem:
    DENIALS.labels("consent_unavailable").inc()
    return Problem(
        503,
        "Consent service unavailable",
        f"nothing is released without a consent decision: {exc}",
        type=problem_type("consent-unavailable"),
        headers={"Retry-After": "5"},
    )


def destroyed(district_id: str) -> Problem:
    DENIALS.labels("destroyed").inc()
    return Problem(
        410,
        "Destroyed",
        f"this student's data in district {district_id} was destroyed (its keys were shredded); nothing remains",
        type=problem_type("destroyed"),
    )


def consent_client(runtime: Runtime) -> ConsentClient:
    client = runtime.extras.get("consent")
    if not isinstance(client, ConsentClient):
        raise ConsentUnavailable("no consent client is configured")
    return client


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
        statements = [
            {
                "id": str(s["id"]),
                "amendment_id": str(s["amendment_id"]),
                "statement": (
                    await cipher.open(district, key, PARENT_STATEMENT_ELEMENT, bytes(s["statement"]))
                ).decode(),
                "filed_at": s["created_at"].isoformat(),
            }
            for s in stored.statements
        ]
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
    )


async def load(runtime: Runtime, district_id: str, student_key: str) -> store.StoredRecord | None:
    async with store.district_tx(runtime.pool, district_id) as conn:
        return await store.load_record(conn, district_id, student_key)


def today() -> date:
    return datetime.now(UTC).date()


def staff_may_see(principal: Principal, stored: store.StoredRecord) -> bool:
    if principal.district_id != stored.district_id:
        return False
    if principal.role is Role.DISTRICT_STAFF:
        return True
    return bool(stored.school_ids(current_on=today()) & principal.school_ids)


# --- disclosures ------------------------------------------------------------------------


def requester_party(principal: Principal) -> Party:
    """Who read, as the disclosure record names them: every text kept to the log's rules
    (homeroom.entry_text) here, before anything is released, so audit never refuses it."""
    return Party(
        organization=normalise(principal.organization or principal.district_id or ""),
        client_id=normalise(principal.client_id or ""),
        person=normalise(principal.subject),
        role=principal.role.value,
    )


def requester_json(principal: Principal) -> dict[str, Any]:
    return {
        "role": principal.role.value,
        "subject": principal.subject,
        "organization": principal.organization,
        "agreement_id": principal.agreement_id,
        "district_id": principal.district_id,
        "student_keys": sorted(principal.student_keys),
    }


@dataclass(frozen=True, slots=True)
class Release:
    """One student's data about to be released, and why it may be."""

    district_id: str
    student_key: str
    elements: list[str]
    decision: Decision


async def record_releases(
    conn: Connection, principal: Principal, releases: list[Release], *, channel: str, purpose: str = ""
) -> None:
    """Write a read-log row and a disclosure.v1 event per released student, in the caller's
    transaction (already scoped to the district of the releases)."""
    events = []
    for release in releases:
        disclosure_id = str(uuid.uuid4())
        decision = release.decision
        payload = DisclosureRecorded(
            disclosure_id=disclosure_id,
            requester=requester_party(principal),
            recipient=requester_party(principal),
            student_key=release.student_key,
            district_id=release.district_id,
            elements=release.elements,
            purpose=normalise(decision.purpose or purpose),
            legal_basis=normalise(decision.legal_basis),
            agreement_id=normalise(decision.agreement_id or principal.agreement_id or ""),
            decision_id=decision.decision_id,
            policy_version=decision.policy_version,
            redisclosure_parties=list(decision.redisclosure_parties),
            channel=channel,
            record_required=principal.role is not Role.PARENT,
        )
        events.append(
            build_event(
                DISCLOSURE,
                "disclosure_recorded",
                payload,
                source="/homeroom/records",
                subject=release.student_key,
                district_id=release.district_id,
                event_id=disclosure_id,
            )
        )
        await store.log_read(
            conn,
            district_id=release.district_id,
            student_key=release.student_key,
            requester_role=principal.role.value,
            requester=normalise(principal.subject),
            channel=channel,
            elements=release.elements,
            decision_id=decision.decision_id,
            agreement_id=decision.agreement_id or principal.agreement_id or "",
            disclosure_id=disclosure_id,
        )
    await outbox.add(conn, events)
    DISCLOSURES.labels(channel).inc(len(events))


async def commit_releases(
    runtime: Runtime, principal: Principal, releases: list[Release], *, channel: str, purpose: str = ""
) -> None:
    """Record every release, one transaction per district; raises (and nothing is
    returned to the caller) if any cannot be recorded."""
    by_district: dict[str, list[Release]] = {}
    for release in releases:
        by_district.setdefault(release.district_id, []).append(release)
    for district, group in by_district.items():
        async with store.district_tx(runtime.pool, district) as conn:
            await record_releases(conn, principal, group, channel=channel, purpose=purpose)


async def vendor_gate(runtime: Runtime, principal: Principal) -> tuple[date | None, date | None]:
    """Refuse a vendor whose agreement has ended or is not active; return its term."""
    agreement = principal.agreement_id or ""
    async with runtime.pool.acquire() as conn:
        if await store.agreement_ended(conn, agreement):
            raise denied("agreement_ended", f"agreement {agreement} has ended: nothing is released under it")
    try:
        scope = await consent_client(runtime).scope(agreement)
    except ConsentUnavailable as exc:
        raise consent_unavailable(exc) from None
    if scope is None or not scope.active:
        raise denied("agreement_inactive", f"agreement {agreement} is not active: nothing is released under it")
    start = date.fromisoformat(scope.start_date) if scope.start_date else None
    end = date.fromisoformat(scope.end_date) if scope.end_date else None
    return start, end


# --- staff reads ------------------------------------------------------------------------


class StudentSummary(BaseModel):
    student_key: str
    updated_at: str


class StudentPage(BaseModel):
    district_id: str
    students: list[StudentSummary]
    limit: int
    offset: int


@router.get("/v1/districts/{district_id}/students", response_model=StudentPage)
async def list_district_students(
    district_id: str,
    principal: Staff,
    runtime: RuntimeDep,
    school_id: str | None = None,
    updated_after: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,  # PostgreSQL bigint
) -> StudentPage:
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
            current_on=today() if principal.role is Role.SCHOOL_STAFF else None,
            updated_after=updated_after,
            limit=limit,
            offset=offset,
        )
    READS.labels(principal.role.value, CHANNEL_API).inc(len(rows))
    return StudentPage(
        district_id=district_id,
        students=[StudentSummary(student_key=r["student_key"], updated_at=r["updated_at"].isoformat()) for r in rows],
        limit=limit,
        offset=offset,
    )


@router.get("/v1/districts/{district_id}/students/{student_key}")
async def get_district_student(district_id: str, student_key: str, principal: Staff, runtime: RuntimeDep) -> Any:
    """One student's full record, for the owning district's staff."""
    if principal.district_id != district_id:
        raise not_found()
    stored = await load(runtime, district_id, student_key)
    if stored is None or not staff_may_see(principal, stored):
        raise not_found()
    view, _ = build_view(await open_record(runtime, stored))
    READS.labels(principal.role.value, CHANNEL_API).inc()
    return view


# --- parent and vendor reads ------------------------------------------------------------


@router.get("/v1/students/{student_key}")
async def get_student(
    student_key: str,
    principal: ParentOrVendorOrStaff,
    runtime: RuntimeDep,
    elements: Annotated[list[str] | None, Query(description="catalogue element ids; default all")] = None,
    purpose: str | None = None,
) -> Any:
    """A student's record as the caller may see it: `{"student_key", "records": [...]}`,
    one record per district holding the student that the caller may read.

    Parents: their own child, every district, in full. Vendors: what the consent decision
    allows, within the agreement's term. Staff: their own district's record only."""
    requested = elements if elements else list(READABLE_ELEMENTS)
    unknown = [e for e in requested if e not in CATALOGUE or e not in READABLE_ELEMENTS]
    if unknown:
        raise Problem.validation(
            [
                FieldError("query.elements", "element.unknown", f"{e!r} is not a readable catalogue element")
                for e in unknown
            ]
        )
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
        stored = await load(runtime, principal.district_id or "", student_key)
        if stored is None or not staff_may_see(principal, stored):
            raise not_found()
        view, _ = build_view(await open_record(runtime, stored))
        READS.labels(principal.role.value, CHANNEL_API).inc()
        return {"student_key": student_key, "records": [view]}
    if not districts:
        raise not_found()

    views: list[dict[str, Any]] = []
    releases: list[Release] = []
    reasons: list[str] = []
    for district in districts:
        stored = await load(runtime, district, student_key)
        if stored is None:
            continue
        current = sorted(stored.school_ids(current_on=today()))
        if principal.role is Role.VENDOR and not current:
            # A vendor reaches a student only while enrolled in the district now: one who
            # transferred away (or left) is gone from the roster and from this route alike.
            reasons.append(f"{district}: not currently enrolled")
            continue
        request = DecisionRequest(
            action="read",
            requester=requester_json(principal),
            student_key=student_key,
            district_id=district,
            school_id=current[0] if current else None,
            elements=requested,
            purpose=purpose,
        )
        try:
            decision = await consent_client(runtime).decide(request)
        except ConsentUnavailable as exc:
            raise consent_unavailable(exc) from None
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
        releases.append(Release(district, student_key, present, decision))
    if not views:
        if principal.role is Role.VENDOR:
            # The same answer as for a key that does not exist: a vendor cannot tell a student
            # outside its agreement from no student at all (no enumeration of keys).
            raise not_found()
        raise denied("consent_denied", "the consent decision released nothing: " + "; ".join(reasons))
    await commit_releases(runtime, principal, releases, channel=CHANNEL_API, purpose=purpose or "")
    READS.labels(principal.role.value, CHANNEL_API).inc(len(views))
    return {"student_key": student_key, "records": views}


# --- amendments (FERPA 99.20) and statements (99.21) ------------------------------------


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


@router.post("/v1/students/{student_key}/amendments", status_code=201)
async def request_amendment(
    student_key: str, body: AmendmentRequest, principal: Parent, runtime: RuntimeDep
) -> dict[str, Any]:
    """A parent asks the district to amend an element of their child's record (99.20)."""
    if body.element not in READABLE_ELEMENTS:
        raise Problem.validation(
            [FieldError("/element", "element.unknown", f"{body.element!r} is not a catalogue element")]
        )
    district = await _parent_district(runtime, principal, student_key, body.district_id)
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
        amendment_id = await store.add_amendment(
            conn, district, student_key, body.element, value, reason, principal.subject
        )
    return {"id": str(amendment_id), "district_id": district, "student_key": student_key, "status": "pending"}


@router.get("/v1/districts/{district_id}/amendments")
async def list_amendments(
    district_id: str, principal: Staff, runtime: RuntimeDep, status: str | None = None
) -> dict[str, Any]:
    """Amendment requests of the caller's own district (no values: open the record for them)."""
    if principal.district_id != district_id:
        raise not_found("district")
    async with store.district_tx(runtime.pool, district_id) as conn:
        rows = await conn.fetch(
            """SELECT id, student_key, element, status, outcome_reason, created_at, decided_at FROM amendments
               WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at""",
            status,
        )
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


@router.post("/v1/amendments/{amendment_id}/decision")
async def decide_amendment(
    amendment_id: uuid.UUID, body: AmendmentDecision, principal: Staff, runtime: RuntimeDep
) -> dict[str, Any]:
    """Staff of the owning district accept (the value is corrected) or refuse, with a reason;
    the outcome stays with the record. After a refusal the parent may file a statement."""
    district = principal.district_id or ""
    async with store.district_tx(runtime.pool, district) as conn:
        amendment = await store.get_amendment(conn, amendment_id)  # RLS: other districts' are invisible
        if amendment is None:
            raise not_found("amendment")
        if principal.role is Role.SCHOOL_STAFF:
            stored = await store.load_record(conn, district, amendment["student_key"])
            if stored is None or not staff_may_see(principal, stored):
                raise not_found("amendment")
        if amendment["status"] != "pending":
            raise Problem(
                409,
                "Already decided",
                f"amendment {amendment_id} was already {amendment['status']}",
                type=problem_type("amendment-decided"),
            )
        decided = await store.decide_amendment(conn, amendment_id, body.outcome, body.reason, principal.subject)
        if decided is None:
            raise Problem(409, "Already decided", f"amendment {amendment_id} was already decided")
        if body.outcome == "accepted" and decided["requested_value"] is not None:
            await store.replace_element(
                conn, district, decided["student_key"], decided["element"], bytes(decided["requested_value"])
            )
        await store.touch(conn, district, decided["student_key"])
    return {
        "id": str(amendment_id),
        "student_key": decided["student_key"],
        "element": decided["element"],
        "status": decided["status"],
        "outcome_reason": decided["outcome_reason"],
        "decided_by": decided["decided_by"],
        "value_corrected": body.outcome == "accepted" and decided["requested_value"] is not None,
    }


@router.post("/v1/students/{student_key}/amendments/{amendment_id}/statement", status_code=201)
async def file_statement(
    student_key: str, amendment_id: uuid.UUID, body: StatementRequest, principal: Parent, runtime: RuntimeDep
) -> dict[str, Any]:
    """After a refused amendment, the parent's statement is kept with the record (99.21)."""
    if student_key not in principal.student_keys:
        raise not_found()
    async with runtime.pool.acquire() as conn:
        districts = await store.districts_of(conn, student_key)
    cipher = runtime.require_cipher()
    for district in districts:
        async with store.district_tx(runtime.pool, district) as conn:
            amendment = await store.get_amendment(conn, amendment_id)
            if amendment is None or amendment["student_key"] != student_key:
                continue
            if amendment["status"] != "refused":
                raise Problem(
                    409,
                    "Amendment not refused",
                    f"a statement may be filed only after a refusal; the amendment is {amendment['status']}",
                    type=problem_type("amendment-not-refused"),
                )
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


# --- internal: transfer -----------------------------------------------------------------


class PackageRequest(BaseModel):
    case_id: str = Field(min_length=1)
    student_key: str = Field(min_length=1)
    from_district_id: str = Field(min_length=1)
    elements: list[str]


class DeliveryRequest(BaseModel):
    case_id: str = Field(min_length=1)
    student_key: str = Field(min_length=1)
    to_district_id: str = Field(min_length=1)
    to_school_id: str = ""
    package: dict[str, Any]


@router.post("/v1/internal/transfer-packages", tags=["internal"])
async def transfer_package(body: PackageRequest, principal: Service, runtime: RuntimeDep) -> dict[str, Any]:
    """The sending district's record, only the elements asked for, values opened. The
    transfer service records the disclosure for the case; none is emitted here."""
    unknown = [e for e in body.elements if e not in READABLE_ELEMENTS]
    if unknown:
        raise Problem.validation(
            [
                FieldError(f"/elements/{i}", "element.unknown", f"{e!r} is not a catalogue element")
                for i, e in enumerate(unknown)
            ]
        )
    stored = await load(runtime, body.from_district_id, body.student_key)
    if stored is None:
        raise not_found()
    view, present = build_view(await open_record(runtime, stored), set(body.elements))
    return {
        "case_id": body.case_id,
        "student_key": body.student_key,
        "from_district_id": body.from_district_id,
        "elements": view["elements"],
        "enrollments": view["enrollments"],
        "attendance": view["attendance"],
        "suspension_dates": view.get("suspension_dates", []),
        "program_flags": view["program_flags"],
        "parent_statements": view.get("parent_statements", []),
        "elements_included": present,
    }


@router.post("/v1/internal/transfer-deliveries", tags=["internal"])
async def transfer_delivery(body: DeliveryRequest, principal: Service, runtime: RuntimeDep) -> dict[str, Any]:
    """Write a delivered package into the receiving district's record, sealed under that
    district's keys. Idempotent on `case_id`."""
    cipher = runtime.require_cipher()
    district, key = body.to_district_id, body.student_key
    raw_elements = body.package.get("elements") or {}
    if not isinstance(raw_elements, dict):
        raise Problem.validation([FieldError("/package/elements", "type.object", "elements must be an object")])
    bad = [e for e in raw_elements if e not in READABLE_ELEMENTS]
    if bad:
        raise Problem.validation(
            [FieldError(f"/package/elements/{e}", "element.unknown", "not a catalogue element") for e in bad]
        )
    try:
        package_sealed = await cipher.seal(district, key, TRANSFER_PACKAGE_ELEMENT, json.dumps(body.package))
        pii = {e: str(v) for e, v in raw_elements.items() if CATALOGUE[e].pii and v is not None}
        sealed = await cipher.seal_many(district, key, pii) if pii else {}
    except KeyDestroyedError:
        raise destroyed(district) from None
    included = body.package.get("elements_included") or sorted(raw_elements)
    async with store.district_tx(runtime.pool, district) as conn:
        await store.ensure_student(conn, district, key)
        fresh = await store.add_transfer_delivery(
            conn,
            body.case_id,
            district,
            key,
            str(body.package.get("from_district_id") or ""),
            body.to_school_id,
            package_sealed,
            [str(e) for e in included],
        )
        if fresh:
            for element, value in sealed.items():
                await store.put_element_if_absent(conn, district, key, element, value, f"transfer:{body.case_id}")
            plain = {e: str(v) for e, v in raw_elements.items() if not CATALOGUE[e].pii and v is not None}
            if plain:
                await store.merge_plain_if_absent(conn, district, key, plain)
            await store.touch(conn, district, key)
    return {"case_id": body.case_id, "delivered": True}
