"""Parent pages: a child's record (FERPA 99.10), who received it (99.32), directory
opt-out and consent choices with their history, amendment requests (99.20) and a
downloadable disclosure report.

Every read goes to the owning service with the parent's own token: records and audit
refuse a child who is not in the parent's token, and the page shows that refusal.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from homeroom.auth import Role
from homeroom.catalogue import ELEMENTS
from homeroom.contracts.answers import Recipient, StudentRecord, raw_all
from services.portal.clients import UpstreamError
from services.portal.session import Session
from services.portal.web import (
    CurrentSession,
    LinkingAttempt,
    Portal,
    PortalDep,
    checked_form,
    refusal_messages,
    render,
    require_role,
    when,
)

router = APIRouter(prefix="/parent", include_in_schema=False)

StudentKey = Annotated[str, Path(pattern=r"^stu_[A-Za-z0-9_-]{1,120}$", description="a pseudonymous student key")]
METHOD = "portal"  # how a choice made here is recorded (consent's `method`)


def _parent(session: Session) -> None:
    require_role(session, Role.PARENT)


async def _records(portal: Portal, session: Session, key: str) -> list[StudentRecord]:
    return (await portal.services.records.student(key, token=session.token)).records


def _display_name(records: list[StudentRecord], key: str) -> str:
    return next((name for name in (r.display_name() for r in records) if name), key)


def _districts(records: list[StudentRecord]) -> list[str]:
    """The districts that hold a record of the child."""
    return sorted({r.district_id for r in records if r.district_id})


@router.get("")
async def children(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    _parent(session)
    listed = []
    for key in sorted(session.principal.student_keys):
        try:
            name = _display_name(await _records(portal, session, key), key)
            problem = None
        except UpstreamError as exc:
            if exc.status == 401:
                raise
            name, problem = key, exc.detail
        listed.append({"key": key, "name": name, "problem": problem})
    return render(request, "parent/children.html", session, children=listed)


@router.get("/children/{key}")
async def record(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    _parent(session)
    records = await _records(portal, session, key)
    return render(
        request, "parent/record.html", session, key=key, name=_display_name(records, key), records=raw_all(records)
    )


@router.get("/children/{key}/disclosures")
async def disclosures(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    _parent(session)
    found = await portal.services.audit.student_disclosures(key, token=session.token)
    letters, letters_unavailable = await breach_letters(portal, session, key)
    return render(
        request,
        "parent/disclosures.html",
        session,
        key=key,
        disclosures=raw_all(found.disclosures),
        own_views=found.own_views,
        witnessed=await witnessed_checkpoint(portal, session),
        breach_letters=letters,
        letters_unavailable=letters_unavailable,
    )


async def breach_letters(portal: Portal, session: Session, key: str) -> tuple[list[dict[str, Any]], bool]:
    """Breach letters about this child (8 NYCRR 121.10(e)), shown beside the disclosure report;
    the report still shows when the incidents service does not answer."""
    try:
        found = await portal.services.incidents.breach_letters(key, token=session.token)
    except UpstreamError as exc:
        if exc.status in (401, 403):
            raise
        return [], True
    return found.letters, False


async def witnessed_checkpoint(portal: Portal, session: Session) -> dict[str, Any] | None:
    """The latest head of the log an independent witness cosigned (None before the first)."""
    return await portal.services.audit.checkpoint(token=session.token)


@router.get("/children/{key}/transfers")
async def transfers(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    """Where the child's record went when they changed districts: when, what was sent and what
    withheld and why, and whether the new school acknowledged it (FERPA 99.34)."""
    _parent(session)
    if key not in session.principal.student_keys:
        raise UpstreamError("transfer", 404, "no transfer case of this child that you may see")
    listed = await portal.services.transfer.transfers(token=session.token)
    cases = [
        await portal.services.transfer.case(c.case_id, token=session.token)
        for c in listed.transfers
        if c.student_key == key
    ]
    shown = [dict(c.raw(), acknowledged=c.step("acknowledged"), delivered=c.step("delivered")) for c in cases]
    return render(request, "parent/transfers.html", session, key=key, cases=shown)


def _cell(value: object) -> str:
    """A spreadsheet never runs a cell as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/children/{key}/disclosures.csv")
async def disclosure_report(portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    _parent(session)
    found = await portal.services.audit.student_disclosures(key, token=session.token)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["when", "recipient", "recipient role", "elements", "purpose", "legal basis", "agreement", "summary"]
    )
    for d in found.disclosures:
        recipient = d.recipient or Recipient()
        elements = "; ".join(e.name or e.id for e in d.elements or [])
        purpose_text = d.purpose.get("id") if isinstance(d.purpose, dict) else d.purpose
        row = (d.when, recipient.organization, recipient.role, elements, purpose_text, d.legal_basis, d.agreement_id)
        writer.writerow([_cell(v) for v in (*row, d.summary)])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="disclosures-{key}.csv"'},
    )


@router.get("/children/{key}/choices")
async def choices(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    _parent(session)
    found = await portal.services.consent.choices(key, token=session.token)
    districts = _districts(await _records(portal, session, key))
    # Written consent goes to an organisation under an active agreement covering a district of the child's.
    public = await portal.services.consent.public_agreements()
    recipients = [
        dict(a.raw(), districts_here=[d for d in a.districts if d in districts]) for a in public.covering(districts)
    ]
    organisations = public.organisations()
    return render(
        request,
        "parent/choices.html",
        session,
        key=key,
        choices=found,
        districts=districts,
        recipients=recipients,
        organisations=organisations,
    )


@router.post("/children/{key}/consents")
async def give_consent(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    _parent(session)
    form = await checked_form(request, session)
    submitted = await request.form()  # parsed once and cached by Starlette
    await portal.services.consent.give_consent(
        key,
        district_id=form.get("district_id", ""),
        recipient=form.get("recipient", ""),
        elements=[e for e in submitted.getlist("elements") if isinstance(e, str)],
        method=METHOD,
        token=session.token,
    )
    return _choices_saved(key)


def _choices_saved(key: str) -> Response:
    return RedirectResponse(f"/parent/children/{key}/choices?saved=1", status_code=303)


async def _directory(request: Request, portal: Portal, session: Session, key: str, *, rescind: bool) -> Response:
    _parent(session)
    form = await checked_form(request, session)
    await portal.services.consent.directory_opt_out(
        key, district_id=form.get("district_id", ""), method=METHOD, token=session.token, rescind=rescind
    )
    return _choices_saved(key)


@router.post("/children/{key}/directory-opt-out")
async def opt_out(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    return await _directory(request, portal, session, key, rescind=False)


@router.post("/children/{key}/directory-opt-out/rescind")
async def rescind(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    return await _directory(request, portal, session, key, rescind=True)


@router.post("/children/{key}/consents/{consent_id}/withdraw")
async def withdraw(
    request: Request,
    portal: PortalDep,
    session: CurrentSession,
    key: StudentKey,
    consent_id: Annotated[str, Path(max_length=100)],
) -> Response:
    _parent(session)
    await checked_form(request, session)
    await portal.services.consent.withdraw_consent(key, consent_id, method=METHOD, token=session.token)
    return _choices_saved(key)


@router.get("/children/{key}/amendments")
async def amendments(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    _parent(session)
    records = await _records(portal, session, key)
    return _amendments_page(request, session, key, records, form={}, errors=[])


def _amendments_page(
    request: Request,
    session: Session,
    key: str,
    records: list[StudentRecord],
    *,
    form: dict[str, str],
    errors: list[str],
    status: int = 200,
) -> Response:
    stated = {st.get("amendment_id"): st for r in records for st in r.parent_statements or []}
    requests = [
        dict(a.raw(), district_id=r.district_id, statement=stated.get(a.id or None))
        for r in records
        for a in r.amendments or []
    ]
    return render(
        request,
        "parent/amendments.html",
        session,
        status=status,
        key=key,
        districts=_districts(records),
        amendments=requests,
        elements=[e for e in ELEMENTS if e.id != "record.parent_statement"],
        form=form,
        errors=errors,
    )


@router.post("/children/{key}/amendments")
async def request_amendment(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    _parent(session)
    form = await checked_form(request, session)
    try:
        await portal.services.records.request_amendment(
            key,
            element=form.get("element", ""),
            reason=form.get("reason", "").strip(),
            requested_value=form.get("requested_value", "").strip() or None,
            district_id=form.get("district_id") or None,
            token=session.token,
        )
    except UpstreamError as exc:
        if exc.status != 422:
            raise
        records = await _records(portal, session, key)
        messages = refusal_messages(exc)
        return _amendments_page(request, session, key, records, form=form, errors=messages, status=422)
    return RedirectResponse(f"/parent/children/{key}/amendments?saved=1", status_code=303)


@router.post("/children/{key}/amendments/{amendment_id}/statement")
async def file_statement(
    request: Request,
    portal: PortalDep,
    session: CurrentSession,
    key: StudentKey,
    amendment_id: Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")],
) -> Response:
    """After a refusal, the parent's statement is kept with the record (FERPA 99.21)."""
    _parent(session)
    form = await checked_form(request, session)
    statement = form.get("statement", "").strip()
    await portal.services.records.file_statement(key, amendment_id, statement, token=session.token)
    return RedirectResponse(f"/parent/children/{key}/amendments?stated=1", status_code=303)


# --- linking a child (issue 24) -----------------------------------------------------------


@router.get("/link")
async def link_form(request: Request, session: CurrentSession) -> Response:
    _parent(session)
    return render(request, "parent/link.html", session, error=None, code="")


@router.post("/link", dependencies=[LinkingAttempt])
async def link(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    """Redeem a linking code; consent records the attempt, refused or not, and the link."""
    _parent(session)
    form = await checked_form(request, session)
    code = form.get("code", "")[:64]
    client = request.client.host if request.client else ""
    try:
        linked = await portal.services.consent.redeem(code, client, token=session.token)
    except UpstreamError as exc:
        if exc.status == 401:
            raise
        return render(request, "parent/link.html", session, status=422, error=exc.detail, code=code)
    await portal.sign_in.renew_guardian(session.sid)  # the next page's token names the child
    return RedirectResponse(f"/parent/children/{linked.student_key}", status_code=303)


@router.get("/children/{key}/summary")
async def summary(request: Request, portal: PortalDep, session: CurrentSession, key: StudentKey) -> Response:
    """One printable page (issue 24): what Homeroom holds about the child, in every district, and
    who has received it, with the agreements covering the child's districts, the parent's choices
    (directory opt-outs, written consents given and withdrawn, each choice in order) and their links."""
    _parent(session)
    records = await _records(portal, session, key)
    found = await portal.services.audit.student_disclosures(key, token=session.token)
    public = await portal.services.consent.public_agreements()
    # The parent's choices as consent keeps them (opt-outs, written consents given and withdrawn
    # (FERPA 99.30), every choice in order) and the links that let them act for the child.
    choices = await portal.services.consent.choices(key, token=session.token)
    links = await portal.services.consent.guardian_links(token=session.token)
    received: dict[str, dict[str, Any]] = {}
    for d in found.disclosures:
        who = str((d.recipient.organization if d.recipient else None) or "unnamed recipient")
        seen = received.setdefault(who, {"count": 0, "elements": set(), "first": d.when, "last": d.when})
        seen["count"] += 1
        seen["elements"].update(e.name if e.name is not None else "" for e in d.elements or [])
        seen["first"], seen["last"] = min(seen["first"], d.when), max(seen["last"], d.when)
    return render(
        request,
        "parent/summary.html",
        session,
        key=key,
        name=_display_name(records, key),
        records=raw_all(records),
        received={who: dict(v, elements=sorted(v["elements"])) for who, v in sorted(received.items())},
        own_views=len(found.own_views),
        agreements=raw_all(public.covering(_districts(records))),
        choices=choices,
        organisations=public.organisations(),
        links=[link.raw() for link in links.links if link.student_key == key],
        now=when(portal.clock().isoformat()),
    )
