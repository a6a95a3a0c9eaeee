"""District data office pages: submissions with every refused record, bulk uploads held
for confirmation, and transfers into and out of the district with their state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from services.portal.clients import UpstreamError
from services.portal.session import Session
from services.portal.web import CurrentSession, Portal, PortalDep, checked_form, district_of, page_of, render

router = APIRouter(prefix="/district", include_in_schema=False)

SubmissionId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
CaseId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
REJECT_REASONS = ["not_our_student", "identity_mismatch", "duplicate_record", "enrollment_cancelled", "other"]
PROBLEMS_PER_PAGE = 200


_district = district_of


async def names_of(portal: Portal, session: Session, district: str, keys: list[str]) -> dict[str, str]:
    """The district's own students by name (it owns their records; records answers only its own)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    params: list[tuple[str, str | int | float | bool | None]] = [("student_key", k) for k in wanted]
    found = await portal.services.get("records", f"/v1/districts/{district}/student-names", session.token, params)
    names: dict[str, str] = found.get("names", {})
    return names


@router.get("")
async def overview(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    district = _district(session)
    found = await portal.services.get("ingest", f"/v1/districts/{district}/submissions", session.token, {"limit": 50})
    submissions: list[dict[str, Any]] = found.get("submissions", [])
    transfers = {
        direction: (
            await portal.services.get(
                "transfer", "/v1/transfers", session.token, {"direction": direction, "limit": 100}
            )
        ).get("transfers", [])
        for direction in ("inbound", "outbound")
    }
    names = await names_of(portal, session, district, [c["student_key"] for cs in transfers.values() for c in cs])
    return render(
        request,
        "district/overview.html",
        session,
        district=district,
        held=[s for s in submissions if s.get("status") == "held"],
        submissions=submissions,
        transfers=transfers,
        names=names,
    )


@router.get("/submissions/{submission_id}")
async def submission(
    request: Request, portal: PortalDep, session: CurrentSession, submission_id: SubmissionId
) -> Response:
    _district(session)
    report = await portal.services.get("ingest", f"/v1/submissions/{submission_id}", session.token)
    after = request.query_params.get("after", "")
    path = f"/v1/submissions/{submission_id}/problems"
    found = await page_of(portal, session, "ingest", path, PROBLEMS_PER_PAGE, int(after) if after.isdigit() else None)
    problems, next_after = found.get("problems", []), found.get("next_after")
    return render(request, "district/submission.html", session, report=report, problems=problems, next_after=next_after)


@router.post("/submissions/{submission_id}/confirm")
async def confirm(
    request: Request, portal: PortalDep, session: CurrentSession, submission_id: SubmissionId
) -> Response:
    _district(session)
    await checked_form(request, session)
    await portal.services.post("ingest", f"/v1/submissions/{submission_id}/confirm", session.token)
    return RedirectResponse(f"/district/submissions/{submission_id}?confirmed=1", status_code=303)


@router.get("/transfers/{case_id}")
async def transfer(request: Request, portal: PortalDep, session: CurrentSession, case_id: CaseId) -> Response:
    district = _district(session)
    case = await portal.services.get("transfer", f"/v1/transfers/{case_id}", session.token)
    names = await names_of(portal, session, district, [case["student_key"]])
    return render(
        request,
        "district/transfer.html",
        session,
        case=case,
        name=names.get(case["student_key"]),
        receiving=case.get("to_district_id") == district,
        reasons=REJECT_REASONS,
    )


@router.post("/transfers/{case_id}/acknowledge")
async def acknowledge(request: Request, portal: PortalDep, session: CurrentSession, case_id: CaseId) -> Response:
    _district(session)
    form = await checked_form(request, session)
    body = {"note": form.get("note", "")[:500]}
    await portal.services.post("transfer", f"/v1/transfers/{case_id}/acknowledge", session.token, body)
    return RedirectResponse(f"/district/transfers/{case_id}?saved=1", status_code=303)


@router.post("/transfers/{case_id}/reject")
async def reject(request: Request, portal: PortalDep, session: CurrentSession, case_id: CaseId) -> Response:
    _district(session)
    form = await checked_form(request, session)
    body = {"reason_code": form.get("reason_code", ""), "note": form.get("note", "")[:500]}
    await portal.services.post("transfer", f"/v1/transfers/{case_id}/reject", session.token, body)
    return RedirectResponse(f"/district/transfers/{case_id}?saved=1", status_code=303)


@router.get("/chronic-absence")
async def chronic_absence(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """Students whose absence rate crossed the chronic-absence line, as records flagged them."""
    district = _district(session)
    found = await portal.services.get("records", f"/v1/districts/{district}/chronic-absence", session.token)
    return render(request, "district/chronic.html", session, district=district, worklist=found)


@router.get("/amendments")
async def amendments(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """Correction requests (FERPA 99.20) waiting for the district's decision, the requested value
    beside the current one, and those already decided."""
    district = _district(session)
    listed = await portal.services.get("records", f"/v1/districts/{district}/amendments", session.token)
    requests: list[dict[str, Any]] = listed.get("amendments", [])
    records: dict[str, dict[str, Any]] = {}
    for key in sorted({a["student_key"] for a in requests if a["status"] == "pending"}):
        try:
            records[key] = await portal.services.get(
                "records", f"/v1/districts/{district}/students/{key}", session.token
            )
        except UpstreamError as exc:
            if exc.status not in (404, 410):
                raise
    pending = []
    for a in requests:
        if a["status"] != "pending" or a["student_key"] not in records:
            continue
        record = records[a["student_key"]]
        detail: dict[str, Any] = next((x for x in record.get("amendments", []) if x.get("id") == a["id"]), {})
        elements = record.get("elements", {})
        first, last = elements.get("student.first_name"), elements.get("student.last_name")
        pending.append(
            dict(
                a,
                name=" ".join(str(p) for p in (first, last) if p) or a["student_key"],
                current=current_value(record, a["element"]),
                requested=detail.get("requested_value"),
                reason=detail.get("reason"),
            )
        )
    decided = [a for a in requests if a["status"] != "pending"]
    names = await names_of(portal, session, district, [a["student_key"] for a in decided])
    return render(
        request,
        "district/amendments.html",
        session,
        district=district,
        pending=pending,
        decided=[dict(a, name=names.get(a["student_key"], a["student_key"])) for a in decided],
    )


def current_value(record: dict[str, Any], element: str) -> str:
    """What the record says now for an element, in words."""
    if element in (record.get("elements") or {}):
        return str(record["elements"][element])
    if element == "attendance.daily":
        days = (record.get("attendance") or {}).get("days") or []
        absent = [d["date"] for d in days if d.get("category") == "absent"]
        return f"{len(days)} days recorded; absent on {', '.join(absent) or 'none'}"
    return "not recorded"


@router.post("/amendments/{amendment_id}/decision")
async def decide_amendment(
    request: Request, portal: PortalDep, session: CurrentSession, amendment_id: SubmissionId
) -> Response:
    _district(session)
    form = await checked_form(request, session)
    body = {"outcome": form.get("outcome", ""), "reason": form.get("reason", "").strip()}
    await portal.services.post("records", f"/v1/amendments/{amendment_id}/decision", session.token, body)
    return RedirectResponse("/district/amendments?decided=1", status_code=303)
