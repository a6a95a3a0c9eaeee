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
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from homeroom import notices, outbox
from homeroom.auth import Principal, Role, require_roles
from homeroom.bus.envelope import build_event
from homeroom.bus.topics import DISCLOSURE
from homeroom.catalogue import CATALOGUE
from homeroom.contracts.clients import ConsentClient, PeerUnavailable, checked
from homeroom.contracts.consent import Decision, DecisionRequest, Requester
from homeroom.contracts.notice_preferences import NoticePreference, NoticePreferences, NoticePreferencesRequest
from homeroom.contracts.student_directory import DistrictStudents, Eligibility
from homeroom.contracts.transfer_package import TransferDeliveryRequest, TransferPackageRequest
from homeroom.crypto import DecryptionError, KeyDestroyedError
from homeroom.entry_text import normalise
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import Runtime, RuntimeDep
from homeroom.storage import BIGINT_MAX, Connection
from services.records import destruction, store
from services.records.consumers import PROGRAM_FLAGS_ELEMENT
from services.records.eligibility import eligibility
from services.records.metrics import DENIALS, DISCLOSURES, READS
from services.records.record import (
    READABLE_ELEMENTS,
    AttendanceRow,
    EnrollmentRow,
    OpenedRecord,
    SuspensionRow,
    build_view,
)


async def security_log(request: Request) -> AsyncIterator[None]:
    """Refused attempts to read student data go to the security log (`refused_reads`), which
    compliance searches: not disclosures (nothing was released), but who tried what."""
    try:
        yield
    except Problem as problem:
        if problem.status in (403, 404, 410):
            await log_refusal(request, problem)
        raise


async def log_refusal(request: Request, problem: Problem) -> None:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        return
    params = request.path_params
    route = getattr(request.scope.get("route"), "path", request.url.path)
    try:
        await store.log_refusal(
            request.app.state.runtime.pool,
            requester_role=principal.role.value,
            requester=principal.subject,
            organization=principal.organization or principal.district_id or "",
            agreement_id=principal.agreement_id or "",
            method=request.method,
            route=str(route),
            student_key=str(params.get("student_key") or params.get("sourced_id") or ""),
            district_id=str(params.get("district_id") or ""),
            status=problem.status,
            reason=str((problem.extensions or {}).get("reason") or problem.title),
        )
    except Exception:  # the log must never turn a refusal into a 500
        logging.getLogger(__name__).warning("refused read not logged", exc_info=True)


router = APIRouter(tags=["records"], dependencies=[Depends(security_log)])

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


def consent_unavailable(exc: PeerUnavailable) -> Problem:
    """Nothing released without a decision: 503, unless consent refused the caller's own request
    as invalid (an over-long purpose), which is the caller's 422 with consent's field errors."""
    refused = exc.refused_request()
    if refused is not None:
        return refused
    DENIALS.labels("consent_unavailable").inc()
    detail = f"nothing is released without a consent decision: {exc}"
    return exc.as_problem("Consent service unavailable", detail, kind="consent-unavailable")


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
        raise PeerUnavailable("consent", "no consent client is configured")
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


def requester_json(principal: Principal) -> Requester:
    """The requester a consent decision names: who asks, as their token says."""
    return checked(
        Requester,
        role=principal.role.value,
        subject=principal.subject,
        organization=principal.organization,
        agreement_id=principal.agreement_id,
        district_id=principal.district_id,
        student_keys=sorted(principal.student_keys),
    )


@dataclass(frozen=True, slots=True)
class Release:
    """One student's data about to be released, and why it may be; `payload` is what the
    recipient receives (kept, sealed under the agreement's key, when released under one)."""

    district_id: str
    student_key: str
    elements: list[str]
    decision: Decision
    payload: Any = None


async def record_releases(
    conn: Connection,
    principal: Principal,
    releases: list[Release],
    *,
    channel: str,
    purpose: str = "",
    copy: bytes | None = None,
) -> None:
    """Write a read-log row and a disclosure.v1 event per released student, in the caller's
    transaction (already scoped to the district of the releases); and, for a release under
    an agreement, the sealed copy of what was sent (`copy`)."""
    events = []
    read_log: list[store.ReadLogRow] = []
    party = requester_party(principal)  # the same reader for every release of the page
    for release in releases:
        disclosure_id = str(uuid.uuid4())
        decision = release.decision
        payload = DisclosureRecorded(
            disclosure_id=disclosure_id,
            requester=party,
            recipient=party,
            student_key=release.student_key,
            district_id=release.district_id,
            elements=release.elements,
            purpose=normalise(decision.purpose or purpose),
            legal_basis=normalise(decision.legal_basis or ""),
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
        read_log.append(
            (
                release.district_id,
                release.student_key,
                principal.role.value,
                normalise(principal.subject),
                channel,
                list(release.elements),
                decision.decision_id,
                decision.agreement_id or principal.agreement_id or "",
                disclosure_id,
            )
        )
    await store.log_reads(conn, read_log)  # one round trip for a page of releases
    await outbox.add(conn, events)
    if copy is not None and releases and principal.agreement_id:
        await store.add_release_copy(
            conn,
            agreement_id=principal.agreement_id,
            district_id=releases[0].district_id,
            channel=channel,
            disclosure_ids=[e.event_id for e in events],
            payload=copy,
        )
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
        copy = await seal_release_copy(runtime, principal, district, group)
        async with store.district_tx(runtime.pool, district) as conn:
            await record_releases(conn, principal, group, channel=channel, purpose=purpose, copy=copy)


RELEASE_COPY_ELEMENT = "record.release_copy"


async def seal_release_copy(
    runtime: Runtime, principal: Principal, district: str, group: list[Release]
) -> bytes | None:
    """What a recipient under an agreement receives is kept sealed under that agreement's own data
    key in the district (scope "agreement"): ending the agreement shreds the key, and the copy with it.
    A key already shredded means the agreement has ended: nothing is released."""
    if principal.role is not Role.VENDOR or not principal.agreement_id:
        return None
    body = json.dumps([{"student_key": r.student_key, "elements": r.elements, "data": r.payload} for r in group])
    try:
        return await runtime.require_cipher().seal(
            district, principal.agreement_id, RELEASE_COPY_ELEMENT, body, scope="agreement"
        )
    except KeyDestroyedError:
        raise denied(
            "agreement_ended", f"agreement {principal.agreement_id} has ended: nothing is released under it"
        ) from None


async def vendor_gate(runtime: Runtime, principal: Principal) -> tuple[date | None, date | None]:
    """Refuse a vendor whose agreement has ended or is not active; return its term."""
    agreement = principal.agreement_id or ""
    async with runtime.pool.acquire() as conn:
        if await store.agreement_ended(conn, agreement):
            raise denied("agreement_ended", f"agreement {agreement} has ended: nothing is released under it")
    try:
        scope = await consent_client(runtime).scope(agreement)
    except PeerUnavailable as exc:
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
        request = checked(
            DecisionRequest,
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
        except PeerUnavailable as exc:
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
        releases.append(Release(district, student_key, present, decision, view))
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
    # The parent's standing in this district, from consent's registry at once (the token's
    # `guardianships` claim may be up to its lifetime old: a link revoked since still named).
    request = checked(
        DecisionRequest,
        action="read",
        requester=requester_json(principal),
        student_key=student_key,
        district_id=district,
        elements=[body.element],
    )
    try:
        decision = await consent_client(runtime).decide(request)
    except PeerUnavailable as exc:
        raise consent_unavailable(exc) from None
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


@router.post("/v1/students/{student_key}/amendments/{amendment_id}/statement", status_code=201)
async def file_statement(
    student_key: str, amendment_id: uuid.UUID, body: StatementRequest, principal: Parent, runtime: RuntimeDep
) -> dict[str, Any]:
    """After a refused amendment, the parent's statement is kept with the record (99.21)."""
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


@router.post("/v1/internal/transfer-packages", tags=["internal"])
async def transfer_package(body: TransferPackageRequest, principal: Service, runtime: RuntimeDep) -> dict[str, Any]:
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
        # The parent's directory opt-out travels with the record (99.37); it strips nothing from it.
        "directory_opt_out": stored.directory_opt_out,
    }


@router.post("/v1/internal/transfer-deliveries", tags=["internal"])
async def transfer_delivery(body: TransferDeliveryRequest, principal: Service, runtime: RuntimeDep) -> dict[str, Any]:
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


# --- destruction: erasure orders and retention (district staff only) ----------------------

DistrictStaff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF))]
Compliance = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))]


@router.delete("/v1/districts/{district_id}/students/{student_key}")
async def erase_student(
    district_id: str,
    student_key: str,
    principal: DistrictStaff,
    runtime: RuntimeDep,
    reason: Annotated[str, Query(min_length=1, max_length=200)] = "the district's erasure order",
) -> dict[str, Any]:
    """The district orders a student's record destroyed: the student's data key is shredded (every
    sealed copy anywhere becomes noise), the rows become a tombstone, and the destruction is
    logged with proof (a sealed value tried afterwards does not open)."""
    if principal.district_id != district_id:
        raise not_found()
    stored = await load(runtime, district_id, student_key)
    if stored is None:
        raise not_found()
    if stored.destroyed_at is not None:
        raise destroyed(district_id)
    who = Party(organization=district_id, person=principal.subject, role=principal.role.value)
    try:
        return await destruction.erase_student(
            runtime,
            district_id,
            student_key,
            reason=reason,
            ordered_by=who,
            cause=f"erasure|{district_id}|{student_key}",
        )
    except (LookupError, KeyDestroyedError):
        raise destroyed(district_id) from None


class RetentionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: dict[Literal["record", "attendance", "discipline"], Annotated[int, Field(ge=0, le=36500)]] = Field(
        description="days each group of a student's data is kept after the student's last exit from the district"
    )


@router.get("/v1/districts/{district_id}/retention")
async def get_retention(district_id: str, principal: DistrictStaff, runtime: RuntimeDep) -> dict[str, Any]:
    """How long the district keeps each group of an exited student's data (empty: until erased)."""
    if principal.district_id != district_id:
        raise not_found("district")
    async with runtime.pool.acquire() as conn:
        return {"district_id": district_id, "groups": await store.retention_policy(conn, district_id)}


@router.put("/v1/districts/{district_id}/retention")
async def set_retention(
    district_id: str, body: RetentionPolicy, principal: DistrictStaff, runtime: RuntimeDep
) -> dict[str, Any]:
    """Set the district's retention periods; the retention job applies them (daily, and at start)."""
    if principal.district_id != district_id:
        raise not_found("district")
    async with runtime.pool.acquire() as conn, conn.transaction():
        await store.set_retention_policy(
            conn,
            district_id,
            {str(g): d for g, d in body.groups.items()},
            f"{principal.role.value}:{principal.subject}",
        )
        return {"district_id": district_id, "groups": await store.retention_policy(conn, district_id)}


@router.get("/v1/security-log")
async def security_log_search(
    principal: Compliance,
    runtime: RuntimeDep,
    requester: Annotated[str | None, Query(max_length=200)] = None,
    student_key: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    after: Annotated[int | None, Query(ge=0, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Refused attempts to read student data (who, what route, which student, why refused): the
    security log, apart from the disclosure log, for compliance."""
    if since is not None and since.tzinfo is None:
        raise Problem.validation([FieldError("query.since", "time.timezone_missing", "give a time zone")])
    rows = await store.refusals(
        runtime.pool, requester=requester, student_key=student_key, since=since, after=after, limit=limit + 1
    )
    page = rows[:limit]
    return {
        "refusals": [
            {
                "id": r["id"],
                "at": r["at"].isoformat(),
                "requester": {
                    "role": r["requester_role"],
                    "subject": r["requester"],
                    "organization": r["organization"],
                    "agreement_id": r["agreement_id"] or None,
                },
                "method": r["method"],
                "route": r["route"],
                "student_key": r["student_key"] or None,
                "district_id": r["district_id"] or None,
                "status": r["status"],
                "reason": r["reason"],
            }
            for r in page
        ],
        "next_after": page[-1]["id"] if len(rows) > limit else None,
    }


# --- the chronic-absence worklist, and names for the owning district's staff --------------


@router.get("/v1/districts/{district_id}/chronic-absence")
async def chronic_absence_worklist(district_id: str, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Students whose absence rate crossed the chronic-absence line (as the absence reviewer
    counted them against their schools' calendars): since when, how far over, and their
    school. School staff: their schools."""
    if principal.district_id != district_id:
        raise not_found("district")
    settings = runtime.settings
    threshold = float(getattr(settings, "chronic_absence_threshold", 0.10))
    schools = sorted(principal.school_ids) if principal.role is Role.SCHOOL_STAFF else None
    async with store.district_tx(runtime.pool, district_id) as conn:
        rows = await store.chronic_worklist(conn, district_id, schools)
        names = await _names(runtime, conn, district_id, [r["student_key"] for r in rows])
    return {
        "district_id": district_id,
        "threshold": threshold,
        "students": [
            {
                "student_key": r["student_key"],
                "name": names.get(r["student_key"]),
                "school_id": r["school_id"],
                "absence_rate": r["absence_rate"],
                "over_by": round(r["absence_rate"] - threshold, 4),
                "days_absent": r["days_absent"],
                "days_enrolled": r["days_enrolled"],
                "as_of_date": r["as_of_date"].isoformat(),
                "flagged_at": (r["crossed_at"] or r["changed_at"]).isoformat(),
                "school_year": r["school_year"],
            }
            for r in rows
        ],
    }


async def _names(runtime: Runtime, conn: Connection, district_id: str, keys: list[str]) -> dict[str, str]:
    cipher = runtime.require_cipher()
    out: dict[str, str] = {}
    for key, sealed in (await store.sealed_names(conn, district_id, keys)).items():
        try:
            opened = await cipher.open_many(district_id, key, sealed)
        except DecryptionError:  # shredded meanwhile: no name
            continue
        parts = [opened[e].decode() for e in ("student.first_name", "student.last_name") if e in opened]
        out[key] = " ".join(parts)
    return out


@router.post("/v1/internal/notice-preferences", tags=["internal"])
async def notice_preferences(body: NoticePreferencesRequest, principal: Service, runtime: RuntimeDep) -> dict[str, Any]:
    """The letter language of each student's family (contract: homeroom/contracts/notice_preferences.py):
    the record's home language, for the district's own letters to its families (a breach notice);
    nothing else of the record leaves, and it is released to nobody, so no disclosure is recorded."""
    cipher = runtime.require_cipher()
    keys = list(dict.fromkeys(body.student_keys))
    preferences: dict[str, NoticePreference] = {}
    async with store.district_tx(runtime.pool, body.district_id) as conn:
        held = await store.existing_student_keys(conn, body.district_id, keys)
        sealed = await store.sealed_elements(conn, body.district_id, keys, ("student.home_language",))
    for key in keys:
        if key not in held:
            continue
        language = None
        if key in sealed:
            try:
                opened = await cipher.open_many(body.district_id, key, sealed[key])
                language = opened["student.home_language"].decode()[:100]
            except DecryptionError:  # shredded meanwhile: none
                language = None
        preferences[key] = NoticePreference(home_language=language)
    return NoticePreferences(district_id=body.district_id, preferences=preferences).model_dump()


@router.get("/v1/districts/{district_id}/student-names")
async def student_names(
    district_id: str,
    principal: Staff,
    runtime: RuntimeDep,
    student_key: Annotated[list[str], Query(max_length=500)],
    on: Annotated[date | None, Query(description="also answer each student's FERPA eligibility on this day")] = None,
) -> dict[str, Any]:
    """Names of the district's own students, for its staff's pages (the district owns these records;
    no disclosure). School staff: only students currently at their schools. Unknown keys are left out.
    With `on`: whether each is an eligible student that day (18, or in postsecondary education), from
    the sealed birth date and the enrollments, never the birth date itself
    (`homeroom/contracts/student_directory.py`; consent asks when a district issues linking codes)."""
    if principal.district_id != district_id:
        raise not_found("district")
    keys = list(dict.fromkeys(student_key))
    async with store.district_tx(runtime.pool, district_id) as conn:
        if principal.role is Role.SCHOOL_STAFF:
            visible = await store.list_student_keys(
                conn, district_id, school_ids=principal.school_ids, current_on=today(), limit=len(keys) + 1
            )
            allowed = {r["student_key"] for r in visible}
            keys = [k for k in keys if k in allowed]
        names = await _names(runtime, conn, district_id, keys)
        standing: dict[str, Eligibility] = {}
        if on is not None:
            known = list(names)
            sealed = await store.sealed_elements(conn, district_id, known, ("student.birth_date",))
            grades = await store.grade_levels_on(conn, district_id, known, on)
            for key in known:
                standing[key] = eligibility(
                    await _birth_date(runtime, district_id, key, sealed.get(key)), grades.get(key, []), on
                )
    return DistrictStudents(district_id=district_id, names=names, eligibility=standing).model_dump(mode="json")


async def _birth_date(runtime: Runtime, district_id: str, key: str, sealed: dict[str, bytes] | None) -> date | None:
    """The student's birth date, opened here only to compute eligibility; None if not held or unreadable."""
    if not sealed:
        return None
    try:
        opened = await runtime.require_cipher().open_many(district_id, key, sealed)
        return date.fromisoformat(opened["student.birth_date"].decode()[:10])
    except (DecryptionError, KeyError, ValueError):
        return None
