"""Compliance pages: the disclosure log with the audit service's filters, one entry with
its inclusion proof checked here against the latest signed tree head, the whole log's
verification, agreements ending in the next 30 days, denials by reason, and exports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Path
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from homeroom.auth import Role
from homeroom.catalogue import ELEMENTS, FORBIDDEN, PURPOSES, DataElement
from homeroom.contracts.answers import JsonObject
from homeroom.tlog.signing import key_id, load_public_key
from services.consent.agreements import SUPPLEMENTAL_QUESTIONS
from services.portal.clients import UpstreamError
from services.portal.proofs import check_entry
from services.portal.web import Page, page_for, refusal_messages

router = APIRouter(prefix="/compliance", include_in_schema=False)

# The audit service's search filters, in the order the form shows them.
FILTERS: tuple[tuple[str, str], ...] = (
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
)
ENDING_WITHIN_DAYS = 30

# Every page here is for compliance staff.
Compliance = Annotated[Page, page_for(Role.COMPLIANCE)]


async def _ending_soon(staff: Page, today: date) -> list[dict[str, Any]]:
    found = await staff.services.consent.agreements(token=staff.token, status="active")
    horizon = today + timedelta(days=ENDING_WITHIN_DAYS)
    ending = []
    for agreement in found.agreements:
        terms = agreement.current.terms if agreement.current is not None else None
        end = terms.end_date if terms is not None else None
        if end and today <= date.fromisoformat(end) <= horizon:
            ending.append({**agreement.raw(), "end_date": end, "days_left": (date.fromisoformat(end) - today).days})
    return sorted(ending, key=lambda a: a["end_date"])


@router.get("")
async def overview(staff: Compliance) -> Response:
    head = await staff.services.audit.latest_head(token=staff.token)
    ending = await _ending_soon(staff, date.today())
    denials = await staff.services.consent.denials(token=staff.token)
    return staff.render(
        "compliance/overview.html", head=head, ending=ending, within=ENDING_WITHIN_DAYS, denials=denials
    )


@router.get("/verification")
async def verification(staff: Compliance) -> Response:
    """The whole stored log checked now: on its own page, since it reads every entry."""
    report = await staff.services.audit.verification(token=staff.token)
    return staff.render("compliance/verification.html", verification=report)


@dataclass(frozen=True, slots=True)
class Log:
    """One page of the disclosure log searched with the audit service's filters, or why the
    search was refused (field by field)."""

    template: ClassVar[str] = "compliance/log.html"
    given: dict[str, str]  # every filter as typed; the search uses those given
    entries: list[JsonObject]
    errors: list[dict[str, str]]
    next_query: str | None  # the next page's query string, when there is one
    filters: tuple[tuple[str, str], ...] = FILTERS
    elements: tuple[DataElement, ...] = ELEMENTS

    @classmethod
    async def search(cls, staff: Page) -> Log:
        query = staff.request.query_params
        given = {name: query.get(name, "").strip() for name, _ in FILTERS}
        after = query.get("after", "")
        try:
            found = await staff.services.audit.entries(
                {name: value for name, value in given.items() if value},
                after=int(after) if after.lstrip("-").isdigit() else None,
                limit=50,
                token=staff.token,
            )
        except UpstreamError as exc:
            if exc.status != 422:
                raise
            return cls(given, [], exc.field_errors or [{"field": "", "message": exc.detail}], None)
        next_query = None
        if found.next_after is not None:
            following = {**given, "after": found.next_after}
            next_query = "&".join(f"{k}={v}" for k, v in following.items() if v != "")
        return cls(given, found.entries, [], next_query)


@router.get("/log")
async def log(staff: Compliance) -> Response:
    found = await Log.search(staff)
    return staff.show(found, status=422 if found.errors else 200)


@router.get("/log/{seq}")
async def entry(staff: Compliance, seq: Annotated[int, Path(ge=0)]) -> Response:
    answer = await staff.services.audit.entry(seq, token=staff.token)
    pinned = staff.portal.settings.audit_public_key_file
    if pinned is not None:
        pem = pinned.read_text()
        keys, key_source = {key_id(load_public_key(pem.encode())): pem}, "pinned in the portal's settings"
    else:
        published = await staff.services.audit.keys(token=staff.token)
        keys, key_source = published.keys, "as published by the audit service"
    check = check_entry(answer, keys)
    return staff.render("compliance/entry.html", answer=answer, check=check, key_source=key_source, seq=seq)


@router.get("/export.{fmt}")
async def export(staff: Compliance, fmt: Literal["jsonl", "csv"]) -> Response:
    upstream = await staff.services.audit.export(fmt, token=staff.token)
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        upstream.aiter_bytes(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="homeroom-audit.{fmt}"'},
        background=BackgroundTask(upstream.aclose),
    )


# --- reviewing and activating drafts in bulk (the Ed Law 2-d import) ------------------------


async def _drafts(staff: Page) -> list[dict[str, Any]]:
    found = await staff.services.consent.agreements(token=staff.token, status="draft")
    return [a.raw() for a in sorted(found.agreements, key=lambda a: a.organization.casefold())]


def _review_page(staff: Page, drafts: list[dict[str, Any]], results: list[dict[str, Any]]) -> Response:
    return staff.render(
        "compliance/agreements.html",
        drafts=drafts,
        results=results,
        elements=[e for e in ELEMENTS if e.id not in FORBIDDEN],
        purposes=sorted(PURPOSES.items()),
        questions=SUPPLEMENTAL_QUESTIONS,
    )


@router.get("/agreements")
async def agreements(staff: Compliance) -> Response:
    """Draft agreements (the 42 of an imported NYC DOE page, say) with their six answers and the
    problems the import found beside each, to review and activate in bulk."""
    return _review_page(staff, await _drafts(staff), [])


@router.post("/agreements/activate")
async def activate_agreements(staff: Compliance) -> Response:
    """Set the chosen elements and purposes on the selected drafts (their other terms kept), then
    activate each: every one either becomes active or is listed with the rules it does not meet."""
    await staff.form()
    form = await staff.request.form()
    chosen = [str(a) for a in form.getlist("agreement")]
    elements = [str(e) for e in form.getlist("elements")]
    purposes = [str(p) for p in form.getlist("purposes")]
    drafts = {a["agreement_id"]: a for a in await _drafts(staff)}
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
                await staff.services.consent.set_terms(agreement_id, terms, token=staff.token)
            await staff.services.consent.activate(agreement_id, token=staff.token)
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
    return _review_page(staff, await _drafts(staff), results)
