"""Breach response pages for compliance staff and district data offices (issue 21): incidents,
their clocks (8 NYCRR 121.10), the scope computed from the disclosure log, the notices, and
the containment steps, each taken with the signed-in person's own token.

Containment takes two calls, on purpose: consent suspends the agreement or rotates its keys
(with the person's own authority), then the incidents service checks with consent that it
happened and records the step. The portal only chains them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from homeroom.auth import Role
from homeroom.contracts.answers import Incident
from services.portal import web
from services.portal.clients import UpstreamError
from services.portal.web import Page, page_for

router = APIRouter(prefix="/incidents", include_in_schema=False)

IncidentId = Annotated[str, Path(pattern=r"^inc-[0-9a-f]{12}$")]
STANDINGS = {
    "open": "running",
    "overdue": "overdue",
    "met": "met",
    "met_late": "met late",
    "not_required": "not required",
    "delayed": "delayed (121.10(e))",
    "waiting": "not started",
}
KINDS = {
    "contractor_to_agency": "Contractor notifies the educational agency",
    "agency_to_cpo": "Agency reports to the Chief Privacy Officer",
    "agency_to_parents": "Agency notifies affected families",
}


# Every page here is for compliance staff and district data offices.
Staff = Annotated[Page, page_for(Role.COMPLIANCE, Role.DISTRICT_STAFF)]


def _utc(value: str) -> str | None:
    """A time from a form: ISO 8601; without a zone it is taken as UTC (the form says so)."""
    text = value.strip()
    if not text:
        return None
    return text if text.endswith("Z") or "+" in text[10:] else text + ("Z" if len(text) > 10 else "T00:00:00Z")


async def _detail(staff: Page, incident_id: str) -> Incident:
    return await staff.services.incidents.incident(incident_id, token=staff.token)


def _page(
    staff: Page,
    incident: Incident,
    *,
    done: str = "",
    errors: list[str] | None = None,
    status: int = 200,
) -> Response:
    return staff.render(
        "incidents/detail.html",
        status=status,
        incident=incident.raw(),
        kinds=KINDS,
        standings=STANDINGS,
        done=DONE_TEXT.get(done, ""),
        errors=errors or [],
        latest=incident.scope_versions[-1] if incident.scope_versions else None,
        compliance=staff.session.principal.role is Role.COMPLIANCE,
    )


async def _list_page(
    staff: Page,
    *,
    errors: list[str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The incidents the person may see, with the form to open one (and why it was refused)."""
    found = await staff.services.incidents.incidents(token=staff.token)
    return staff.render(
        "incidents/list.html",
        status=status,
        incidents=found.incidents,
        kinds=KINDS,
        standings=STANDINGS,
        errors=errors or [],
        form=form or {},
    )


@router.get("")
async def incidents(staff: Staff) -> Response:
    return await _list_page(staff)


@router.post("")
async def open_incident(staff: Staff) -> Response:
    form = await staff.form()
    body: dict[str, Any] = {
        "discovered_at": _utc(form.get("discovered_at", "")),
        "description": form.get("description", "").strip(),
        "agreement_ids": [a.strip() for a in form.get("agreement_ids", "").split(",") if a.strip()],
        "exposure_start": _utc(form.get("exposure_start", "")),
        "exposure_end": _utc(form.get("exposure_end", "")),
        "contact": form.get("contact", "").strip(),
        "investigation": form.get("investigation", "").strip(),
    }
    if form.get("contractor_notified_at", "").strip():
        body["contractor_notified_at"] = _utc(form["contractor_notified_at"])
    try:
        opened = await staff.services.incidents.open(body, token=staff.token)
    except UpstreamError as exc:
        if exc.status not in (403, 409, 422):
            raise
        messages = web.refusal_messages(exc, name_fields=True)
        return await _list_page(staff, errors=messages, form=form, status=exc.status)
    return RedirectResponse(f"/incidents/{opened.incident_id}?done=opened", status_code=303)


@router.get("/{incident_id}")
async def incident(staff: Staff, incident_id: IncidentId, done: str = "") -> Response:
    return _page(staff, await _detail(staff, incident_id), done=done)


Action = Literal["scope", "cpo-report", "letters", "suspend", "rotate-keys", "publish", "close"]
DONE_TEXT = {
    "opened": "The incident is recorded; its deadlines are running.",
    "scope-frozen": "The scope is computed from the log and frozen.",
    "cpo-reported": "The report to the Chief Privacy Officer is sent.",
    "letters-sent": "The letters to families are sent.",
    "suspended": "The agreement is suspended and the step recorded.",
    "keys-rotated": "The keys are rotated and the step recorded.",
    "published": "The notice is published.",
    "closed": "The incident is closed.",
}
DONE = {
    "scope": "scope-frozen",
    "cpo-report": "cpo-reported",
    "letters": "letters-sent",
    "suspend": "suspended",
    "rotate-keys": "keys-rotated",
    "publish": "published",
    "close": "closed",
}


async def _act(staff: Page, incident_id: str, action: str, form: dict[str, str]) -> None:
    token, principal = staff.token, staff.session.principal
    incidents, consent = staff.services.incidents, staff.services.consent
    district = {"district_id": principal.district_id} if principal.district_id else {}
    if action == "scope":
        await incidents.step(incident_id, "scope", None, token=token)
    elif action in ("cpo-report", "letters"):
        await incidents.step(incident_id, "cpo-report" if action == "cpo-report" else "letters", district, token=token)
    elif action in ("suspend", "rotate-keys"):
        agreement = form.get("agreement_id", "")
        if action == "suspend":
            await consent.suspend(agreement, f"breach: incident {incident_id}", token=token)
            step: dict[str, Any] = {"action": "agreement_suspended", "agreement_id": agreement}
        else:
            rotated = await consent.rotate_keys(agreement, token=token)
            step = {"action": "keys_rotated", "agreement_id": agreement, "rotation_id": rotated.rotation_id}
        await incidents.step(incident_id, "containment", step, token=token)
    elif action == "publish":
        await incidents.step(
            incident_id, "publication", {**district, "text": form.get("text", "").strip()}, token=token
        )
    elif action == "close":
        await incidents.step(incident_id, "close", None, token=token)


@router.post("/{incident_id}/{action}")
async def act(staff: Staff, incident_id: IncidentId, action: Action) -> Response:
    """One button of the incident page: freeze a scope, report to the CPO, send the letters,
    suspend the agreement, rotate its keys, publish a notice, close."""
    form = await staff.form()
    try:
        await _act(staff, incident_id, action, form)
    except UpstreamError as exc:
        if exc.status not in (403, 409, 422, 502):
            raise
        messages = web.refusal_messages(exc, name_fields=True)
        incident = await _detail(staff, incident_id)
        return _page(staff, incident, errors=messages, status=exc.status)
    return RedirectResponse(f"/incidents/{incident_id}?done={DONE[action]}", status_code=303)


@router.get("/{incident_id}/letters")
async def letters(staff: Staff, incident_id: IncidentId, after: str = "") -> Response:
    """Every letter sent, one per printed page (for families reached by post, 121.10(g))."""
    incidents = staff.services.incidents
    found = await incidents.letters(incident_id, after=after[:40], limit=200, token=staff.token)
    letters, next_after = found.letters, found.next_after
    return staff.render("incidents/letters.html", incident_id=incident_id, letters=letters, next_after=next_after)


@router.get("/{incident_id}/scope/{version}/bundle")
async def bundle(staff: Staff, incident_id: IncidentId, version: Annotated[int, Path(ge=1, le=100_000)]) -> Response:
    upstream = await staff.services.incidents.scope_bundle(incident_id, version, token=staff.token)
    return StreamingResponse(
        upstream.aiter_bytes(),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{incident_id}-scope-v{version}.jsonl.gz"'},
        background=BackgroundTask(upstream.aclose),
    )


@router.get("/{incident_id}/reports/{report_id}.{fmt}")
async def report(
    staff: Staff,
    incident_id: IncidentId,
    report_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    fmt: Literal["txt", "json"],
) -> Response:
    body = await staff.services.incidents.report(
        incident_id, report_id, "text" if fmt == "txt" else "json", token=staff.token
    )
    if fmt == "txt":
        return PlainTextResponse(body.decode())
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{incident_id}-{report_id}.json"'},
    )
