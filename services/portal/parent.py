"""Parent pages: a child's record (FERPA 99.10), who received it (99.32), directory
opt-out and consent choices with their history, amendment requests (99.20) and a
downloadable disclosure report.

Every read goes to the owning service with the parent's own token: records and audit
refuse a child who is not in the parent's token, and the page shows that refusal.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Path
from starlette.responses import RedirectResponse, Response

from homeroom.auth import Role
from homeroom.catalogue import ELEMENTS, DataElement
from homeroom.contracts.answers import JsonObject, Recipient, StudentRecord, raw_all
from services.portal.clients import UpstreamError
from services.portal.web import LinkingAttempt, Page, page_for, refusal_messages, when

router = APIRouter(prefix="/parent", include_in_schema=False)

StudentKey = Annotated[str, Path(pattern=r"^stu_[A-Za-z0-9_-]{1,120}$", description="a pseudonymous student key")]
METHOD = "portal"  # how a choice made here is recorded (consent's `method`)

# Every page here is a parent's (records and audit then refuse a child not in the parent's token).
Parent = Annotated[Page, page_for(Role.PARENT)]


async def _records(parent: Page, key: str) -> list[StudentRecord]:
    return (await parent.services.records.student(key, token=parent.token)).records


def _display_name(records: list[StudentRecord], key: str) -> str:
    return next((name for name in (r.display_name() for r in records) if name), key)


def _districts(records: list[StudentRecord]) -> list[str]:
    """The districts that hold a record of the child."""
    return sorted({r.district_id for r in records if r.district_id})


@router.get("")
async def children(parent: Parent) -> Response:
    listed = []
    for key in sorted(parent.session.principal.student_keys):
        try:
            name = _display_name(await _records(parent, key), key)
            problem = None
        except UpstreamError as exc:
            if exc.status == 401:
                raise
            name, problem = key, exc.detail
        listed.append({"key": key, "name": name, "problem": problem})
    return parent.render("parent/children.html", children=listed)


@router.get("/children/{key}")
async def record(parent: Parent, key: StudentKey) -> Response:
    records = await _records(parent, key)
    return parent.render("parent/record.html", key=key, name=_display_name(records, key), records=raw_all(records))


@router.get("/children/{key}/disclosures")
async def disclosures(parent: Parent, key: StudentKey) -> Response:
    found = await parent.services.audit.student_disclosures(key, token=parent.token)
    letters, letters_unavailable = await breach_letters(parent, key)
    return parent.render(
        "parent/disclosures.html",
        key=key,
        disclosures=raw_all(found.disclosures),
        own_views=found.own_views,
        witnessed=await witnessed_checkpoint(parent),
        breach_letters=letters,
        letters_unavailable=letters_unavailable,
    )


async def breach_letters(parent: Page, key: str) -> tuple[list[dict[str, Any]], bool]:
    """Breach letters about this child (8 NYCRR 121.10(e)), shown beside the disclosure report;
    the report still shows when the incidents service does not answer."""
    try:
        found = await parent.services.incidents.breach_letters(key, token=parent.token)
    except UpstreamError as exc:
        if exc.status in (401, 403):
            raise
        return [], True
    return found.letters, False


async def witnessed_checkpoint(parent: Page) -> dict[str, Any] | None:
    """The latest head of the log an independent witness cosigned (None before the first)."""
    return await parent.services.audit.checkpoint(token=parent.token)


@router.get("/children/{key}/transfers")
async def transfers(parent: Parent, key: StudentKey) -> Response:
    """Where the child's record went when they changed districts: when, what was sent and what
    withheld and why, and whether the new school acknowledged it (FERPA 99.34)."""
    if key not in parent.session.principal.student_keys:
        raise UpstreamError("transfer", 404, "no transfer case of this child that you may see")
    listed = await parent.services.transfer.transfers(token=parent.token)
    cases = [
        await parent.services.transfer.case(c.case_id, token=parent.token)
        for c in listed.transfers
        if c.student_key == key
    ]
    shown = [dict(c.raw(), acknowledged=c.step("acknowledged"), delivered=c.step("delivered")) for c in cases]
    return parent.render("parent/transfers.html", key=key, cases=shown)


def _cell(value: object) -> str:
    """A spreadsheet never runs a cell as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/children/{key}/disclosures.csv")
async def disclosure_report(parent: Parent, key: StudentKey) -> Response:
    found = await parent.services.audit.student_disclosures(key, token=parent.token)
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


@dataclass(frozen=True, slots=True)
class Choices:
    """A child's choices page: opt-outs and written consents, and to whom consent can go."""

    template: ClassVar[str] = "parent/choices.html"
    key: str
    choices: JsonObject
    districts: list[str]
    # Written consent goes to an organisation under an active agreement covering a district of the child's.
    recipients: list[JsonObject]
    organisations: dict[str, str]


@router.get("/children/{key}/choices")
async def choices(parent: Parent, key: StudentKey) -> Response:
    found = await parent.services.consent.choices(key, token=parent.token)
    districts = _districts(await _records(parent, key))
    public = await parent.services.consent.public_agreements()
    covering = public.covering(districts)
    recipients = [dict(a.raw(), districts_here=[d for d in a.districts if d in districts]) for a in covering]
    return parent.show(Choices(key, found, districts, recipients, public.organisations()))


@router.post("/children/{key}/consents")
async def give_consent(parent: Parent, key: StudentKey) -> Response:
    form = await parent.form()
    submitted = await parent.request.form()  # parsed once and cached by Starlette
    await parent.services.consent.give_consent(
        key,
        district_id=form.get("district_id", ""),
        recipient=form.get("recipient", ""),
        elements=[e for e in submitted.getlist("elements") if isinstance(e, str)],
        method=METHOD,
        token=parent.token,
    )
    return _choices_saved(key)


def _choices_saved(key: str) -> Response:
    return RedirectResponse(f"/parent/children/{key}/choices?saved=1", status_code=303)


async def _directory(parent: Page, key: str, *, rescind: bool) -> Response:
    form = await parent.form()
    await parent.services.consent.directory_opt_out(
        key, district_id=form.get("district_id", ""), method=METHOD, token=parent.token, rescind=rescind
    )
    return _choices_saved(key)


@router.post("/children/{key}/directory-opt-out")
async def opt_out(parent: Parent, key: StudentKey) -> Response:
    return await _directory(parent, key, rescind=False)


@router.post("/children/{key}/directory-opt-out/rescind")
async def rescind(parent: Parent, key: StudentKey) -> Response:
    return await _directory(parent, key, rescind=True)


@router.post("/children/{key}/consents/{consent_id}/withdraw")
async def withdraw(parent: Parent, key: StudentKey, consent_id: Annotated[str, Path(max_length=100)]) -> Response:
    await parent.form()
    await parent.services.consent.withdraw_consent(key, consent_id, method=METHOD, token=parent.token)
    return _choices_saved(key)


@dataclass(frozen=True, slots=True)
class Amendments:
    """A child's correction requests (FERPA 99.20) with the parent's statements, and the form."""

    template: ClassVar[str] = "parent/amendments.html"
    key: str
    districts: list[str]
    amendments: list[JsonObject]
    form: dict[str, str]
    errors: list[str]
    # Any element but the parent's own statement, which is filed after a refusal instead.
    elements: list[DataElement]

    @classmethod
    def of(cls, key: str, records: list[StudentRecord], form: dict[str, str], errors: list[str]) -> Amendments:
        stated = {st.get("amendment_id"): st for r in records for st in r.parent_statements or []}
        requests = [
            dict(a.raw(), district_id=r.district_id, statement=stated.get(a.id or None))
            for r in records
            for a in r.amendments or []
        ]
        elements = [e for e in ELEMENTS if e.id != "record.parent_statement"]
        return cls(key, _districts(records), requests, form, errors, elements)


@router.get("/children/{key}/amendments")
async def amendments(parent: Parent, key: StudentKey) -> Response:
    return parent.show(Amendments.of(key, await _records(parent, key), form={}, errors=[]))


@router.post("/children/{key}/amendments")
async def request_amendment(parent: Parent, key: StudentKey) -> Response:
    form = await parent.form()
    try:
        await parent.services.records.request_amendment(
            key,
            element=form.get("element", ""),
            reason=form.get("reason", "").strip(),
            requested_value=form.get("requested_value", "").strip() or None,
            district_id=form.get("district_id") or None,
            token=parent.token,
        )
    except UpstreamError as exc:
        if exc.status != 422:
            raise
        records = await _records(parent, key)
        return parent.show(Amendments.of(key, records, form, refusal_messages(exc)), status=422)
    return RedirectResponse(f"/parent/children/{key}/amendments?saved=1", status_code=303)


@router.post("/children/{key}/amendments/{amendment_id}/statement")
async def file_statement(
    parent: Parent, key: StudentKey, amendment_id: Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
) -> Response:
    """After a refusal, the parent's statement is kept with the record (FERPA 99.21)."""
    form = await parent.form()
    statement = form.get("statement", "").strip()
    await parent.services.records.file_statement(key, amendment_id, statement, token=parent.token)
    return RedirectResponse(f"/parent/children/{key}/amendments?stated=1", status_code=303)


# --- linking a child (issue 24) -----------------------------------------------------------


@router.get("/link")
async def link_form(parent: Parent) -> Response:
    return parent.render("parent/link.html", error=None, code="")


@router.post("/link", dependencies=[LinkingAttempt])
async def link(parent: Parent) -> Response:
    """Redeem a linking code; consent records the attempt, refused or not, and the link."""
    form = await parent.form()
    code = form.get("code", "")[:64]
    client = parent.request.client.host if parent.request.client else ""
    try:
        linked = await parent.services.consent.redeem(code, client, token=parent.token)
    except UpstreamError as exc:
        if exc.status == 401:
            raise
        return parent.render("parent/link.html", status=422, error=exc.detail, code=code)
    await parent.portal.sign_in.renew_guardian(parent.session.sid)  # the next page's token names the child
    return RedirectResponse(f"/parent/children/{linked.student_key}", status_code=303)


@router.get("/children/{key}/summary")
async def summary(parent: Parent, key: StudentKey) -> Response:
    """One printable page (issue 24): what Homeroom holds about the child, in every district, and
    who has received it, with the agreements covering the child's districts, the parent's choices
    (directory opt-outs, written consents given and withdrawn, each choice in order) and their links."""
    records = await _records(parent, key)
    found = await parent.services.audit.student_disclosures(key, token=parent.token)
    public = await parent.services.consent.public_agreements()
    # The parent's choices as consent keeps them (opt-outs, written consents given and withdrawn
    # (FERPA 99.30), every choice in order) and the links that let them act for the child.
    choices = await parent.services.consent.choices(key, token=parent.token)
    links = await parent.services.consent.guardian_links(token=parent.token)
    received: dict[str, dict[str, Any]] = {}
    for d in found.disclosures:
        who = str((d.recipient.organization if d.recipient else None) or "unnamed recipient")
        seen = received.setdefault(who, {"count": 0, "elements": set(), "first": d.when, "last": d.when})
        seen["count"] += 1
        seen["elements"].update(e.name if e.name is not None else "" for e in d.elements or [])
        seen["first"], seen["last"] = min(seen["first"], d.when), max(seen["last"], d.when)
    return parent.render(
        "parent/summary.html",
        key=key,
        name=_display_name(records, key),
        records=raw_all(records),
        received={who: dict(v, elements=sorted(v["elements"])) for who, v in sorted(received.items())},
        own_views=len(found.own_views),
        agreements=raw_all(public.covering(_districts(records))),
        choices=choices,
        organisations=public.organisations(),
        links=[link.raw() for link in links.links if link.student_key == key],
        now=when(parent.portal.clock().isoformat()),
    )
