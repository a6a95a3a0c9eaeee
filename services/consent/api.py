"""HTTP API of the consent service: the agreement registry, the Ed Law 2-d import, parents'
choices, the decision point and the public transparency page: thin adapters over the use cases
in `application/` (the routes check the caller's role and shape the answer). See
docs/services/consent.md."""

from __future__ import annotations

import html
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from homeroom.auth import Principal, Role, require_roles
from homeroom.contracts.consent import (
    Decision,
    DecisionBatch,
    DecisionBatchAnswer,
    DecisionRequest,
    ScreenAnswer,
    ScreenRequest,
)
from homeroom.lean_routes import LeanServiceRoute
from homeroom.storage import BIGINT_MAX
from services.consent.agreements import SUPPLEMENTAL_QUESTIONS, AgreementStatus
from services.consent.application import choices as choice
from services.consent.application import deciding, ending, importing, registry
from services.consent.state import RuntimeDep

Staff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.COMPLIANCE))]
Reader = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.COMPLIANCE, Role.VENDOR))]
ServiceOnly = Annotated[Principal, Depends(require_roles(Role.SERVICE))]
ScopeReader = Annotated[Principal, Depends(require_roles(Role.SERVICE, Role.VENDOR))]
ChoiceWriter = Annotated[Principal, Depends(require_roles(Role.PARENT, Role.DISTRICT_STAFF))]
ChoiceReader = Annotated[Principal, Depends(require_roles(Role.PARENT, Role.DISTRICT_STAFF, Role.COMPLIANCE))]
Certifier = Annotated[Principal, Depends(require_roles(Role.VENDOR, Role.COMPLIANCE))]


# ---------------------------------------------------------------------- bodies
# (each use case's own request bodies are beside it in application/)


# --------------------------------------------------------------------- routers

agreements = APIRouter(prefix="/v1/agreements", tags=["agreements"])
public = APIRouter(prefix="/v1/public", tags=["public"])
# The two routes every disclosure passes: matched first, and answered without FastAPI's
# per-request dependency solving when a service with a remembered token asks (lean_routes).
deciding_routes = APIRouter(prefix="/v1", tags=["decisions"], route_class=LeanServiceRoute)
decisions = APIRouter(prefix="/v1", tags=["decisions"])
choices = APIRouter(prefix="/v1/students", tags=["parents' choices"])
districts = APIRouter(prefix="/v1/districts", tags=["decisions"])


@agreements.post("", status_code=201)
async def create_agreement(body: registry.CreateAgreement, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Record a new agreement as a draft (version 1). Releases nothing until activated."""
    return registry.version_view(await registry.create(runtime, principal, body))


@agreements.put("/{agreement_id}/terms")
async def set_terms(
    agreement_id: str, body: registry.SetTerms, principal: Staff, runtime: RuntimeDep
) -> dict[str, Any]:
    """Set the elements, purposes, scope, dates (and supplemental answers) of the latest version while it is a draft."""
    return registry.version_view(await registry.set_terms(runtime, principal, agreement_id, body))


@agreements.post("/{agreement_id}/versions", status_code=201)
async def amend(agreement_id: str, body: registry.Amend, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Record an amendment: a new version (draft, or active when it passes the activation rules)."""
    return registry.version_view(await registry.amend(runtime, principal, agreement_id, body))


@agreements.post("/{agreement_id}/activate")
async def activate(agreement_id: str, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Activate the latest draft version (or reactivate a suspended agreement). 422 naming each unmet rule."""
    return registry.version_view(await registry.activate(runtime, principal, agreement_id))


@agreements.post("/{agreement_id}/suspend")
async def suspend(agreement_id: str, body: registry.Suspend, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Suspend an active agreement: it releases nothing until reactivated."""
    return registry.version_view(await registry.suspend(runtime, principal, agreement_id, body))


@agreements.post("/{agreement_id}/keys/rotate")
async def rotate_keys(agreement_id: str, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Containment after a breach: a new key-encryption key in each covered district, the agreement's
    data key wrapped under it; recorded (the scope answer lists rotations)."""
    return await registry.rotate_keys(runtime, principal, agreement_id)


@agreements.post("/{agreement_id}/end")
async def end(agreement_id: str, body: ending.End, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """End an agreement (final): emits agreement_ended, shreds the keys of data released under it, records it."""
    record = await ending.end(
        runtime,
        agreement_id,
        reason=body.reason,
        disposition=body.disposition.value if body.disposition else None,
        principal=principal,
    )
    return {"agreement_id": agreement_id, "status": "ended", **record.as_dict()}


@agreements.get("/{agreement_id}/certification")
async def get_certification(agreement_id: str, principal: Certifier, runtime: RuntimeDep) -> dict[str, Any]:
    """What the recipient must certify at the end of the agreement, by when, and whether it has."""
    return await ending.certification(runtime, principal, agreement_id)


@agreements.post("/{agreement_id}/certification")
async def certify(agreement_id: str, body: ending.Certify, principal: Certifier, runtime: RuntimeDep) -> dict[str, Any]:
    """The recipient certifies that it destroyed (or returned) the data received under the ended agreement.
    Recorded once, in the audit log (`destruction_certified`)."""
    return await ending.certify(runtime, principal, agreement_id, body)


@agreements.get("")
async def list_agreements(
    principal: Reader,
    runtime: RuntimeDep,
    status: Annotated[AgreementStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> dict[str, Any]:
    """Agreements the caller may see: compliance all, district staff those covering their district, a vendor its own."""
    return await registry.list_agreements(runtime, principal, status=status, limit=limit, offset=offset)


@agreements.get("/{agreement_id}")
async def get_agreement(agreement_id: str, principal: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """One agreement: its current state, every version kept, and its change history."""
    return await registry.agreement(runtime, principal, agreement_id)


@agreements.get("/{agreement_id}/scope")
async def agreement_scope(agreement_id: str, principal: ScopeReader, runtime: RuntimeDep) -> dict[str, Any]:
    """What an agreement releases today (contract: docs/contracts.md). Services, and the vendor of that agreement."""
    return await registry.scope(runtime, principal, agreement_id)


@agreements.post("/import-2d")
async def import_2d(body: importing.Import2d, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Import a published Ed Law 2-d page: every entry becomes a draft; problems are listed by entry."""
    return (await importing.import_for(runtime, principal, body)).as_dict()


# ----------------------------------------------------------------------- public


@public.get("/agreements")
async def public_agreements(runtime: RuntimeDep) -> dict[str, Any]:
    """No sign-in: every active agreement with its Ed Law 2-d supplemental information and data elements;
    and ended agreements whose recipient has not yet certified destroying or returning the data."""
    return {
        "agreements": await registry.public_agreements(runtime),
        "awaiting_certification": await registry.awaiting_certification(runtime),
    }


_QUESTIONS = tuple(SUPPLEMENTAL_QUESTIONS.items())


@public.get("/agreements.html", response_class=HTMLResponse)
async def public_agreements_page(runtime: RuntimeDep) -> HTMLResponse:
    """The same list as a page, in the shape of the NYC DOE supplemental-information page."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Data-sharing agreements</title></head>",
        "<body><h1>Supplemental information about agreements with third parties</h1>",
    ]
    for item in await registry.public_agreements(runtime):
        parts.append(f"<section><h2>{html.escape(item['organization'])}</h2>")
        parts.append(
            f"<p>Category: {html.escape(item['category'])}. Term: {item['term']['start_date']} to "
            f"{item['term']['end_date'] or 'until ended'}.</p><ol>"
        )
        for key, question in _QUESTIONS:
            answer = item["supplemental"].get(key, "")
            parts.append(f"<li><strong>{html.escape(question)}:</strong> {html.escape(answer)}</li>")
        parts.append("</ol><p>Data elements it may receive:</p><ul>")
        parts.extend(f"<li>{html.escape(e['name'])} ({html.escape(e['sensitivity'])})</li>" for e in item["elements"])
        parts.append("</ul></section>")
    waiting = await registry.awaiting_certification(runtime)
    if waiting:
        parts.append(
            "<section><h2>Ended agreements awaiting certification that the data was destroyed or returned</h2><ul>"
        )
        for w in waiting:
            late = " (overdue)" if w["overdue"] else ""
            parts.append(
                f"<li>{html.escape(w['organization'])}: {html.escape(w['disposition'])} by {w['due_on']}{late}</li>"
            )
        parts.append("</ul></section>")
    parts.append("</body></html>")
    return HTMLResponse("".join(parts))


# -------------------------------------------------------------------- decisions


# The decision routes answer with the JSON their log rows hold (serialised once, by the log):
# `response_model` documents it, as the return annotation would.


@deciding_routes.post("/decisions", response_model=Decision)
async def decide(body: DecisionRequest, principal: ServiceOnly, runtime: RuntimeDep) -> Response:
    """Permit or deny one disclosure (contract: docs/contracts.md). Every decision is logged by its id."""
    logged = await deciding.decide(runtime, [body])
    return Response(logged.json[0], media_type="application/json")


@deciding_routes.post("/decisions/batch", response_model=DecisionBatchAnswer)
async def decide_batch(body: DecisionBatch, principal: ServiceOnly, runtime: RuntimeDep) -> Response:
    """Up to 1000 decisions, answered in order."""
    logged = await deciding.decide(runtime, body.requests, route="batch")
    return Response(f'{{"decisions":[{",".join(logged.json)}]}}', media_type="application/json")


@decisions.post("/decisions/screen")
async def screen(body: ScreenRequest, principal: ServiceOnly, runtime: RuntimeDep) -> ScreenAnswer:
    """The students (of up to 200,000) a read of these elements would release nothing to, or not
    every element of `require`: what a rostering list must leave out of its counts. Decided by
    the same rules as `/decisions`; nothing is released on it, so nothing is logged."""
    return ScreenAnswer(withheld=await deciding.screen(runtime, body))


@decisions.get("/decisions/denials")
async def denials(
    principal: Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))],
    runtime: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=366, description="how many days back")] = 30,
) -> dict[str, Any]:
    """Decisions that released nothing in the last `days` days, counted by action and denial code."""
    return await deciding.denials(runtime, days)


@decisions.get("/decisions/{decision_id}")
async def get_decision(
    decision_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require_roles(Role.SERVICE, Role.COMPLIANCE))],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """A logged decision: the request and the answer as given."""
    return await deciding.decision(runtime, str(decision_id))


@decisions.get("/policy")
async def policy(principal: Reader) -> dict[str, Any]:
    """The decision rules as data, with their legal bases, and the Cedar policy that bounds every release."""
    return deciding.policy()


# ------------------------------------------------------------- parents' choices


@choices.post("/{student_key}/directory-opt-out", status_code=201)
async def opt_out(
    student_key: str, body: choice.OptOut, principal: ChoiceWriter, runtime: RuntimeDep
) -> dict[str, Any]:
    """Record the parent's directory-information opt-out (holds after the student leaves, until rescinded)."""
    return await choice.set_opt_out(runtime, principal, student_key, body, opted_out=True)


@choices.post("/{student_key}/directory-opt-out/rescind")
async def rescind_opt_out(
    student_key: str, body: choice.OptOut, principal: ChoiceWriter, runtime: RuntimeDep
) -> dict[str, Any]:
    """Rescind a directory-information opt-out."""
    return await choice.set_opt_out(runtime, principal, student_key, body, opted_out=False)


@choices.post("/{student_key}/consents", status_code=201)
async def give_consent(
    student_key: str, body: choice.GiveConsent, principal: ChoiceWriter, runtime: RuntimeDep
) -> dict[str, Any]:
    """Record a parent's written consent (FERPA 99.30) to release named elements to one agreement's recipient."""
    return await choice.give_consent(runtime, principal, student_key, body)


@choices.post("/{student_key}/consents/{consent_id}/withdraw")
async def withdraw_consent(
    student_key: str, consent_id: uuid.UUID, body: choice.WithdrawConsent, principal: ChoiceWriter, runtime: RuntimeDep
) -> dict[str, Any]:
    """Withdraw a written consent: nothing more is released under it."""
    return await choice.withdraw_consent(runtime, principal, student_key, str(consent_id), body)


@choices.get("/{student_key}/choices")
async def list_choices(
    student_key: str,
    principal: ChoiceReader,
    runtime: RuntimeDep,
    district_id: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """A student's directory opt-outs, consents and the full history of choices recorded.

    A parent sees their own child's in every district where their guardianship link is active;
    district staff only their district's."""
    return await choice.choices_of(runtime, principal, student_key, district_id)


# ------------------------------------------------------------ transfer exclusions


@districts.get("/{district_id}/transfer-exclusions")
async def get_transfer_exclusions(district_id: str, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Elements this district does not send with a transfer (besides those the catalogue never transfers)."""
    return await choice.transfer_exclusions(runtime, principal, district_id)


@districts.put("/{district_id}/transfer-exclusions")
async def set_transfer_exclusions(
    district_id: str, body: choice.TransferExclusions, principal: Staff, runtime: RuntimeDep
) -> dict[str, Any]:
    """Replace the district's list of elements it does not transfer."""
    return await choice.set_transfer_exclusions(runtime, principal, district_id, body)


# Matched in this order: the decision point first (its paths overlap no other router's).
ROUTERS = (deciding_routes, decisions, agreements, public, choices, districts)
# The OpenAPI document's groups, in its order.
TAGS = {
    "agreements": "The registry of data-sharing agreements and the Ed Law 2-d import.",
    "public": "Read without signing in: the active agreements and what they receive.",
    "decisions": "The decision point every disclosure passes.",
    "parents' choices": "Directory opt-outs and written consents.",
}
