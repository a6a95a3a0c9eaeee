"""District data office pages: submissions with every refused record, bulk uploads held
for confirmation, and transfers into and out of the district with their state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import RedirectResponse, Response

from homeroom.contracts.answers import StudentRecord, raw_all
from services.portal.clients import UpstreamError
from services.portal.web import DistrictPage, DistrictStaff

router = APIRouter(prefix="/district", include_in_schema=False)

SubmissionId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
CaseId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
REJECT_REASONS = ["not_our_student", "identity_mismatch", "duplicate_record", "enrollment_cancelled", "other"]
PROBLEMS_PER_PAGE = 200


async def names_of(staff: DistrictPage, keys: list[str]) -> dict[str, str]:
    """The district's own students by name (it owns their records; records answers only its own)."""
    found = await staff.services.records.student_names(staff.district, sorted(set(keys)), token=staff.token)
    return found.names


@router.get("")
async def overview(staff: DistrictStaff) -> Response:
    district = staff.district
    found = await staff.services.ingest.submissions(district, token=staff.token)
    transfers = {
        direction: (await staff.services.transfer.transfers(token=staff.token, direction=direction)).transfers
        for direction in ("inbound", "outbound")
    }
    names = await names_of(staff, [c.student_key for cs in transfers.values() for c in cs])
    return staff.render(
        "district/overview.html",
        district=district,
        held=[s.raw() for s in found.submissions if s.status == "held"],
        submissions=raw_all(found.submissions),
        transfers={direction: raw_all(cases) for direction, cases in transfers.items()},
        names=names,
    )


@router.get("/submissions/{submission_id}")
async def submission(staff: DistrictStaff, submission_id: SubmissionId) -> Response:
    report = await staff.services.ingest.submission(submission_id, token=staff.token)
    after = staff.request.query_params.get("after", "")
    found = await staff.services.ingest.problems(
        submission_id, after=int(after) if after.isdigit() else None, limit=PROBLEMS_PER_PAGE, token=staff.token
    )
    return staff.render(
        "district/submission.html",
        report=report,
        problems=found.problems,
        next_after=found.next_after,
    )


@router.post("/submissions/{submission_id}/confirm")
async def confirm(staff: DistrictStaff, submission_id: SubmissionId) -> Response:
    await staff.form()
    await staff.services.ingest.confirm(submission_id, token=staff.token)
    return RedirectResponse(f"/district/submissions/{submission_id}?confirmed=1", status_code=303)


@router.get("/transfers/{case_id}")
async def transfer(staff: DistrictStaff, case_id: CaseId) -> Response:
    district = staff.district
    case = await staff.services.transfer.case(case_id, token=staff.token)
    names = await names_of(staff, [case.student_key])
    return staff.render(
        "district/transfer.html",
        case=case.raw(),
        name=names.get(case.student_key),
        receiving=case.to_district_id == district,
        reasons=REJECT_REASONS,
    )


@router.post("/transfers/{case_id}/acknowledge")
async def acknowledge(staff: DistrictStaff, case_id: CaseId) -> Response:
    form = await staff.form()
    await staff.services.transfer.acknowledge(case_id, note=form.get("note", "")[:500], token=staff.token)
    return RedirectResponse(f"/district/transfers/{case_id}?saved=1", status_code=303)


@router.post("/transfers/{case_id}/reject")
async def reject(staff: DistrictStaff, case_id: CaseId) -> Response:
    form = await staff.form()
    await staff.services.transfer.reject(
        case_id, reason_code=form.get("reason_code", ""), note=form.get("note", "")[:500], token=staff.token
    )
    return RedirectResponse(f"/district/transfers/{case_id}?saved=1", status_code=303)


@router.get("/chronic-absence")
async def chronic_absence(staff: DistrictStaff) -> Response:
    """Students whose absence rate crossed the chronic-absence line, as records flagged them."""
    district = staff.district
    found = await staff.services.records.chronic_absence(district, token=staff.token)
    return staff.render("district/chronic.html", district=district, worklist=found)


@router.get("/amendments")
async def amendments(staff: DistrictStaff) -> Response:
    """Correction requests (FERPA 99.20) waiting for the district's decision, the requested value
    beside the current one, and those already decided."""
    district = staff.district
    listed = await staff.services.records.amendments(district, token=staff.token)
    requests = listed.amendments
    records: dict[str, StudentRecord] = {}
    for key in sorted({a.student_key for a in requests if a.status == "pending"}):
        try:
            records[key] = await staff.services.records.district_student(district, key, token=staff.token)
        except UpstreamError as exc:
            if exc.status not in (404, 410):
                raise
    pending = []
    for a in requests:
        if a.status != "pending" or a.student_key not in records:
            continue
        record = records[a.student_key]
        detail = next((x for x in record.amendments or [] if x.id == a.id), None)
        pending.append(
            dict(
                a.raw(),
                name=record.display_name() or a.student_key,
                current=current_value(record, a.element),
                requested=detail.requested_value if detail is not None else None,
                reason=detail.reason if detail is not None else None,
            )
        )
    decided = [a for a in requests if a.status != "pending"]
    names = await names_of(staff, [a.student_key for a in decided])
    return staff.render(
        "district/amendments.html",
        district=district,
        pending=pending,
        decided=[dict(a.raw(), name=names.get(a.student_key, a.student_key)) for a in decided],
    )


def current_value(record: StudentRecord, element: str) -> str:
    """What the record says now for an element, in words."""
    if element in (record.elements or {}):
        return str((record.elements or {})[element])
    if element == "attendance.daily":
        days = (record.attendance or {}).get("days") or []
        absent = [d["date"] for d in days if d.get("category") == "absent"]
        return f"{len(days)} days recorded; absent on {', '.join(absent) or 'none'}"
    return "not recorded"


@router.post("/amendments/{amendment_id}/decision")
async def decide_amendment(staff: DistrictStaff, amendment_id: SubmissionId) -> Response:
    form = await staff.form()
    await staff.services.records.decide_amendment(
        amendment_id, outcome=form.get("outcome", ""), reason=form.get("reason", "").strip(), token=staff.token
    )
    return RedirectResponse("/district/amendments?decided=1", status_code=303)
