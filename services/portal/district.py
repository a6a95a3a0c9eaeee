"""District data office pages: submissions with every refused record, bulk uploads held
for confirmation, and transfers into and out of the district with their state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from homeroom.contracts.answers import StudentRecord, raw_all
from services.portal.clients import UpstreamError
from services.portal.session import Session
from services.portal.web import CurrentSession, Portal, PortalDep, checked_form, district_of, render

router = APIRouter(prefix="/district", include_in_schema=False)

SubmissionId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
CaseId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
REJECT_REASONS = ["not_our_student", "identity_mismatch", "duplicate_record", "enrollment_cancelled", "other"]
PROBLEMS_PER_PAGE = 200


_district = district_of


async def names_of(portal: Portal, session: Session, district: str, keys: list[str]) -> dict[str, str]:
    """The district's own students by name (it owns their records; records answers only its own)."""
    found = await portal.services.records.student_names(district, sorted(set(keys)), token=session.token)
    return found.names


@router.get("")
async def overview(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    district = _district(session)
    found = await portal.services.ingest.submissions(district, token=session.token)
    transfers = {
        direction: (await portal.services.transfer.transfers(token=session.token, direction=direction)).transfers
        for direction in ("inbound", "outbound")
    }
    names = await names_of(portal, session, district, [c.student_key for cs in transfers.values() for c in cs])
    return render(
        request,
        "district/overview.html",
        session,
        district=district,
        held=[s.raw() for s in found.submissions if s.status == "held"],
        submissions=raw_all(found.submissions),
        transfers={direction: raw_all(cases) for direction, cases in transfers.items()},
        names=names,
    )


@router.get("/submissions/{submission_id}")
async def submission(
    request: Request, portal: PortalDep, session: CurrentSession, submission_id: SubmissionId
) -> Response:
    _district(session)
    report = await portal.services.ingest.submission(submission_id, token=session.token)
    after = request.query_params.get("after", "")
    found = await portal.services.ingest.problems(
        submission_id, after=int(after) if after.isdigit() else None, limit=PROBLEMS_PER_PAGE, token=session.token
    )
    return render(
        request,
        "district/submission.html",
        session,
        report=report,
        problems=found.problems,
        next_after=found.next_after,
    )


@router.post("/submissions/{submission_id}/confirm")
async def confirm(
    request: Request, portal: PortalDep, session: CurrentSession, submission_id: SubmissionId
) -> Response:
    _district(session)
    await checked_form(request, session)
    await portal.services.ingest.confirm(submission_id, token=session.token)
    return RedirectResponse(f"/district/submissions/{submission_id}?confirmed=1", status_code=303)


@router.get("/transfers/{case_id}")
async def transfer(request: Request, portal: PortalDep, session: CurrentSession, case_id: CaseId) -> Response:
    district = _district(session)
    case = await portal.services.transfer.case(case_id, token=session.token)
    names = await names_of(portal, session, district, [case.student_key])
    return render(
        request,
        "district/transfer.html",
        session,
        case=case.raw(),
        name=names.get(case.student_key),
        receiving=case.to_district_id == district,
        reasons=REJECT_REASONS,
    )


@router.post("/transfers/{case_id}/acknowledge")
async def acknowledge(request: Request, portal: PortalDep, session: CurrentSession, case_id: CaseId) -> Response:
    _district(session)
    form = await checked_form(request, session)
    await portal.services.transfer.acknowledge(case_id, note=form.get("note", "")[:500], token=session.token)
    return RedirectResponse(f"/district/transfers/{case_id}?saved=1", status_code=303)


@router.post("/transfers/{case_id}/reject")
async def reject(request: Request, portal: PortalDep, session: CurrentSession, case_id: CaseId) -> Response:
    _district(session)
    form = await checked_form(request, session)
    await portal.services.transfer.reject(
        case_id, reason_code=form.get("reason_code", ""), note=form.get("note", "")[:500], token=session.token
    )
    return RedirectResponse(f"/district/transfers/{case_id}?saved=1", status_code=303)


@router.get("/chronic-absence")
async def chronic_absence(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """Students whose absence rate crossed the chronic-absence line, as records flagged them."""
    district = _district(session)
    found = await portal.services.records.chronic_absence(district, token=session.token)
    return render(request, "district/chronic.html", session, district=district, worklist=found)


@router.get("/amendments")
async def amendments(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """Correction requests (FERPA 99.20) waiting for the district's decision, the requested value
    beside the current one, and those already decided."""
    district = _district(session)
    listed = await portal.services.records.amendments(district, token=session.token)
    requests = listed.amendments
    records: dict[str, StudentRecord] = {}
    for key in sorted({a.student_key for a in requests if a.status == "pending"}):
        try:
            records[key] = await portal.services.records.district_student(district, key, token=session.token)
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
    names = await names_of(portal, session, district, [a.student_key for a in decided])
    return render(
        request,
        "district/amendments.html",
        session,
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
async def decide_amendment(
    request: Request, portal: PortalDep, session: CurrentSession, amendment_id: SubmissionId
) -> Response:
    _district(session)
    form = await checked_form(request, session)
    await portal.services.records.decide_amendment(
        amendment_id, outcome=form.get("outcome", ""), reason=form.get("reason", "").strip(), token=session.token
    )
    return RedirectResponse("/district/amendments?decided=1", status_code=303)
