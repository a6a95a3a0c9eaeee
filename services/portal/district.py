"""District data office pages: submissions with every refused record, bulk uploads held
for confirmation, and transfers into and out of the district with their state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from homeroom.auth import Role
from services.portal.session import Session
from services.portal.web import CurrentSession, PortalDep, checked_form, render, require_role

router = APIRouter(prefix="/district", include_in_schema=False)

SubmissionId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
CaseId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
REJECT_REASONS = ["not_our_student", "identity_mismatch", "duplicate_record", "enrollment_cancelled", "other"]
PROBLEMS_PER_PAGE = 200


def _district(session: Session) -> str:
    require_role(session, Role.DISTRICT_STAFF)
    assert session.principal.district_id is not None
    return session.principal.district_id


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
    return render(
        request,
        "district/overview.html",
        session,
        district=district,
        held=[s for s in submissions if s.get("status") == "held"],
        submissions=submissions,
        transfers=transfers,
    )


@router.get("/submissions/{submission_id}")
async def submission(
    request: Request, portal: PortalDep, session: CurrentSession, submission_id: SubmissionId
) -> Response:
    _district(session)
    report = await portal.services.get("ingest", f"/v1/submissions/{submission_id}", session.token)
    params: dict[str, str | int] = {"limit": PROBLEMS_PER_PAGE}
    after = request.query_params.get("after", "")
    if after.isdigit():
        params["after"] = int(after)
    problems = await portal.services.get("ingest", f"/v1/submissions/{submission_id}/problems", session.token, params)
    return render(
        request,
        "district/submission.html",
        session,
        report=report,
        problems=problems.get("problems", []),
        next_after=problems.get("next_after"),
    )


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
    return render(
        request,
        "district/transfer.html",
        session,
        case=case,
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
