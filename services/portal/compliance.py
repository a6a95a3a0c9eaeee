"""Compliance pages: the disclosure log with the audit service's filters, one entry with
its inclusion proof checked here against the latest signed tree head, the whole log's
verification, agreements ending in the next 30 days, denials by reason, and exports."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from homeroom.auth import Role
from homeroom.catalogue import ELEMENTS, FORBIDDEN, PURPOSES
from homeroom.tlog.signing import key_id, load_public_key
from services.consent.agreements import SUPPLEMENTAL_QUESTIONS
from services.portal.clients import UpstreamError
from services.portal.proofs import check_entry
from services.portal.session import Session
from services.portal.web import CurrentSession, Portal, PortalDep, checked_form, refusal_messages, render, require_role

router = APIRouter(prefix="/compliance", include_in_schema=False)

# The audit service's search filters, in the order the form shows them.
FILTERS: list[tuple[str, str]] = [
    ("student_key", "Student key"),
    ("district_id", "District"),
    ("recipient", "Recipient organisation"),
    ("agreement_id", "Agreement"),
    ("legal_basis", "Legal basis"),
    ("purpose", "Purpose"),
    ("element", "Data element"),
    ("kind", "Kind of entry"),
    ("from", "Occurred from (ISO 8601 with time zone)"),
    ("to", "Occurred before (ISO 8601 with time zone)"),
]
ENDING_WITHIN_DAYS = 30


def _compliance(session: Session) -> None:
    require_role(session, Role.COMPLIANCE)


async def _ending_soon(portal: Portal, session: Session, today: date) -> list[dict[str, Any]]:
    found = await portal.services.consent.agreements(token=session.token, status="active")
    horizon = today + timedelta(days=ENDING_WITHIN_DAYS)
    ending = []
    for agreement in found.agreements:
        terms = agreement.current.terms if agreement.current is not None else None
        end = terms.end_date if terms is not None else None
        if end and today <= date.fromisoformat(end) <= horizon:
            ending.append({**agreement.raw(), "end_date": end, "days_left": (date.fromisoformat(end) - today).days})
    return sorted(ending, key=lambda a: a["end_date"])


@router.get("")
async def overview(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    _compliance(session)
    head = await portal.services.audit.latest_head(token=session.token)
    ending = await _ending_soon(portal, session, date.today())
    denials = await portal.services.consent.denials(token=session.token)
    return render(
        request,
        "compliance/overview.html",
        session,
        head=head,
        ending=ending,
        within=ENDING_WITHIN_DAYS,
        denials=denials,
    )


@router.get("/verification")
async def verification(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """The whole stored log checked now: on its own page, since it reads every entry."""
    _compliance(session)
    report = await portal.services.audit.verification(token=session.token)
    return render(request, "compliance/verification.html", session, verification=report)


@router.get("/log")
async def log(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    _compliance(session)
    given = {name: request.query_params.get(name, "").strip() for name, _ in FILTERS}
    filters = {name: value for name, value in given.items() if value}
    after = request.query_params.get("after", "")
    errors: list[dict[str, str]] = []
    entries: list[dict[str, Any]] = []
    next_after = None
    try:
        found = await portal.services.audit.entries(
            filters, after=int(after) if after.lstrip("-").isdigit() else None, limit=50, token=session.token
        )
        entries, next_after = found.entries, found.next_after
    except UpstreamError as exc:
        if exc.status != 422:
            raise
        errors = exc.field_errors or [{"field": "", "message": exc.detail}]
    next_query = None
    if next_after is not None:
        next_query = "&".join(f"{k}={v}" for k, v in {**given, "after": next_after}.items() if v != "")
    return render(
        request,
        "compliance/log.html",
        session,
        status=422 if errors else 200,
        filters=FILTERS,
        given=given,
        entries=entries,
        errors=errors,
        next_query=next_query,
        elements=ELEMENTS,
    )


@router.get("/log/{seq}")
async def entry(
    request: Request, portal: PortalDep, session: CurrentSession, seq: Annotated[int, Path(ge=0)]
) -> Response:
    _compliance(session)
    answer = await portal.services.audit.entry(seq, token=session.token)
    pinned = portal.settings.audit_public_key_file
    if pinned is not None:
        pem = pinned.read_text()
        keys, key_source = {key_id(load_public_key(pem.encode())): pem}, "pinned in the portal's settings"
    else:
        published = await portal.services.audit.keys(token=session.token)
        keys, key_source = published.keys, "as published by the audit service"
    check = check_entry(answer, keys)
    return render(request, "compliance/entry.html", session, answer=answer, check=check, key_source=key_source, seq=seq)


@router.get("/export.{fmt}")
async def export(portal: PortalDep, session: CurrentSession, fmt: Literal["jsonl", "csv"]) -> Response:
    _compliance(session)
    upstream = await portal.services.audit.export(fmt, token=session.token)
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        upstream.aiter_bytes(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="homeroom-audit.{fmt}"'},
        background=BackgroundTask(upstream.aclose),
    )


# --- reviewing and activating drafts in bulk (the Ed Law 2-d import) ------------------------


async def _drafts(portal: Portal, session: Session) -> list[dict[str, Any]]:
    found = await portal.services.consent.agreements(token=session.token, status="draft")
    return [a.raw() for a in sorted(found.agreements, key=lambda a: a.organization.casefold())]


def _review_page(
    request: Request, session: Session, drafts: list[dict[str, Any]], results: list[dict[str, Any]], status: int = 200
) -> Response:
    return render(
        request,
        "compliance/agreements.html",
        session,
        status=status,
        drafts=drafts,
        results=results,
        elements=[e for e in ELEMENTS if e.id not in FORBIDDEN],
        purposes=sorted(PURPOSES.items()),
        questions=SUPPLEMENTAL_QUESTIONS,
    )


@router.get("/agreements")
async def agreements(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """Draft agreements (the 42 of an imported NYC DOE page, say) with their six answers and the
    problems the import found beside each, to review and activate in bulk."""
    _compliance(session)
    return _review_page(request, session, await _drafts(portal, session), [])


@router.post("/agreements/activate")
async def activate_agreements(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """Set the chosen elements and purposes on the selected drafts (their other terms kept), then
    activate each: every one either becomes active or is listed with the rules it does not meet."""
    _compliance(session)
    await checked_form(request, session)
    form = await request.form()
    chosen = [str(a) for a in form.getlist("agreement")]
    elements = [str(e) for e in form.getlist("elements")]
    purposes = [str(p) for p in form.getlist("purposes")]
    drafts = {a["agreement_id"]: a for a in await _drafts(portal, session)}
    results: list[dict[str, Any]] = []
    for agreement_id in chosen:
        draft = drafts.get(agreement_id)
        if draft is None:
            results.append({"agreement_id": agreement_id, "activated": False, "errors": ["not a draft any more"]})
            continue
        try:
            if elements or purposes:
                terms = dict((draft.get("current") or {}).get("terms") or {})
                terms |= {"elements": elements} if elements else {}
                terms |= {"purposes": purposes} if purposes else {}
                await portal.services.consent.set_terms(agreement_id, terms, token=session.token)
            await portal.services.consent.activate(agreement_id, token=session.token)
            results.append({"agreement_id": agreement_id, "organization": draft["organization"], "activated": True})
        except UpstreamError as exc:
            if exc.status not in (409, 422):
                raise
            messages = refusal_messages(exc)
            results.append(
                {
                    "agreement_id": agreement_id,
                    "organization": draft["organization"],
                    "activated": False,
                    "errors": messages,
                }
            )
    return _review_page(request, session, await _drafts(portal, session), results)
