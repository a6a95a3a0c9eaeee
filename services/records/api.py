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

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from homeroom.auth import Principal, Role, require_roles
from homeroom.catalogue import CATALOGUE
from homeroom.contracts.notice_preferences import NoticePreferencesRequest
from homeroom.contracts.transfer_package import TransferDeliveryRequest, TransferPackageRequest
from homeroom.problems import FieldError, Problem
from homeroom.storage import BIGINT_MAX
from services.records import destruction, store
from services.records.application import amendments, district_views, reads, transfers
from services.records.application.refusals import not_found
from services.records.record import READABLE_ELEMENTS
from services.records.security_log import security_log
from services.records.state import RuntimeDep

router = APIRouter(tags=["records"], dependencies=[Depends(security_log)])
# The document's groups in its order: the OneRoster routes are oneroster_api.py's router.
TAGS = {
    "records": "Student records by role; amendments (FERPA 99.20/99.21)",
    "oneroster": "OneRoster 1.2 rostering subset for vendors, cut to the agreement",
    "internal": "Service-to-service calls of the transfer flow",
}


Staff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.SCHOOL_STAFF))]
ParentOrVendorOrStaff = Annotated[
    Principal, Depends(require_roles(Role.PARENT, Role.VENDOR, Role.DISTRICT_STAFF, Role.SCHOOL_STAFF))
]
Parent = Annotated[Principal, Depends(require_roles(Role.PARENT))]
Service = Annotated[Principal, Depends(require_roles(Role.SERVICE))]


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
    rows = await reads.district_students(
        runtime, principal, district_id, school_id=school_id, updated_after=updated_after, limit=limit, offset=offset
    )
    return StudentPage(
        district_id=district_id,
        students=[StudentSummary(student_key=r["student_key"], updated_at=r["updated_at"].isoformat()) for r in rows],
        limit=limit,
        offset=offset,
    )


@router.get("/v1/districts/{district_id}/students/{student_key}")
async def get_district_student(district_id: str, student_key: str, principal: Staff, runtime: RuntimeDep) -> Any:
    """One student's full record, for the owning district's staff."""
    return await reads.district_student(runtime, principal, district_id, student_key)


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
    records = await reads.student_records(runtime, principal, student_key, requested, purpose)
    return {"student_key": student_key, "records": records}


# --- amendments (FERPA 99.20) and statements (99.21) ------------------------------------


@router.post("/v1/students/{student_key}/amendments", status_code=201)
async def request_amendment(
    student_key: str, body: amendments.AmendmentRequest, principal: Parent, runtime: RuntimeDep
) -> dict[str, Any]:
    """A parent asks the district to amend an element of their child's record (99.20)."""
    if body.element not in READABLE_ELEMENTS:
        raise Problem.validation(
            [FieldError("/element", "element.unknown", f"{body.element!r} is not a catalogue element")]
        )
    return await amendments.request_amendment(runtime, principal, student_key, body)


@router.get("/v1/districts/{district_id}/amendments")
async def list_amendments(
    district_id: str, principal: Staff, runtime: RuntimeDep, status: str | None = None
) -> dict[str, Any]:
    """Amendment requests of the caller's own district (no values: open the record for them)."""
    return await amendments.list_amendments(runtime, principal, district_id, status)


@router.post("/v1/amendments/{amendment_id}/decision")
async def decide_amendment(
    amendment_id: uuid.UUID, body: amendments.AmendmentDecision, principal: Staff, runtime: RuntimeDep
) -> dict[str, Any]:
    """Staff of the owning district accept (the value is corrected) or refuse, with a reason;
    the outcome stays with the record. After a refusal the parent may file a statement."""
    return await amendments.decide_amendment(runtime, principal, amendment_id, body)


@router.post("/v1/students/{student_key}/amendments/{amendment_id}/statement", status_code=201)
async def file_statement(
    student_key: str,
    amendment_id: uuid.UUID,
    body: amendments.StatementRequest,
    principal: Parent,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """After a refused amendment, the parent's statement is kept with the record (99.21)."""
    return await amendments.file_statement(runtime, principal, student_key, amendment_id, body)


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
    return await transfers.transfer_package(runtime, body)


@router.post("/v1/internal/transfer-deliveries", tags=["internal"])
async def transfer_delivery(body: TransferDeliveryRequest, principal: Service, runtime: RuntimeDep) -> dict[str, Any]:
    """Write a delivered package into the receiving district's record, sealed under that
    district's keys. Idempotent on `case_id`."""
    raw_elements = body.package.get("elements") or {}
    if not isinstance(raw_elements, dict):
        raise Problem.validation([FieldError("/package/elements", "type.object", "elements must be an object")])
    bad = [e for e in raw_elements if e not in READABLE_ELEMENTS]
    if bad:
        raise Problem.validation(
            [FieldError(f"/package/elements/{e}", "element.unknown", "not a catalogue element") for e in bad]
        )
    return await transfers.deliver_transfer(runtime, body, raw_elements)


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
    return await destruction.order_erasure(runtime, principal, district_id, student_key, reason)


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
    return await district_views.chronic_absence_worklist(runtime, principal, district_id)


@router.post("/v1/internal/notice-preferences", tags=["internal"])
async def notice_preferences(body: NoticePreferencesRequest, principal: Service, runtime: RuntimeDep) -> dict[str, Any]:
    """The letter language of each student's family (contract: homeroom/contracts/notice_preferences.py):
    the record's home language, for the district's own letters to its families (a breach notice);
    nothing else of the record leaves, and it is released to nobody, so no disclosure is recorded."""
    return await district_views.notice_preferences(runtime, body)


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
    return await district_views.student_names(runtime, principal, district_id, student_key, on)
