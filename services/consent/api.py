"""HTTP API of the consent service: the agreement registry, the Ed Law 2-d import, parents'
choices, the decision point and the public transparency page. See docs/services/consent.md."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from homeroom import outbox
from homeroom.auth import Forbidden, Principal, Role, require_roles
from homeroom.catalogue import CATALOGUE, FORBIDDEN, PURPOSES
from homeroom.contracts.consent import (
    Decision,
    DecisionBatch,
    DecisionBatchAnswer,
    DecisionRequest,
    ScreenAnswer,
    ScreenRequest,
)
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import RuntimeDep
from homeroom.storage import BIGINT_MAX, Connection
from services.consent import application as app
from services.consent import events, linking, metrics, store
from services.consent.agreements import (
    SUPPLEMENTAL_QUESTIONS,
    Agreement,
    AgreementCategory,
    AgreementStatus,
    AgreementTerms,
    Disposition,
    SupplementalInformation,
    current_status,
)
from services.consent.cedar_policy import policy_text
from services.consent.decisions import DENIAL_CODES, policy_document

_ID = r"^[a-z0-9][a-z0-9._-]{0,99}$"

Staff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.COMPLIANCE))]
Reader = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.COMPLIANCE, Role.VENDOR))]
ServiceOnly = Annotated[Principal, Depends(require_roles(Role.SERVICE))]
ScopeReader = Annotated[Principal, Depends(require_roles(Role.SERVICE, Role.VENDOR))]
ChoiceWriter = Annotated[Principal, Depends(require_roles(Role.PARENT, Role.DISTRICT_STAFF))]
ChoiceReader = Annotated[Principal, Depends(require_roles(Role.PARENT, Role.DISTRICT_STAFF, Role.COMPLIANCE))]


def actor(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.subject}"


def _manager_check(principal: Principal, *district_sets: Sequence[str]) -> None:
    """Compliance; or district staff when every given set of districts is their district alone.

    A district signs for itself only: an agreement that covers another district (too) is
    created, changed, suspended and ended by compliance staff."""
    if principal.role is Role.COMPLIANCE:
        return
    own = principal.district_id
    for districts in district_sets:
        others = sorted(set(districts) - {own})
        if others:
            raise Forbidden(
                f"district staff act for their own district only; this agreement covers {', '.join(others)} "
                "(compliance staff manage agreements that cover other districts)"
            )
        if not districts:
            raise Forbidden(f"an agreement district staff record must cover their district ({own!r})")


def _authorizer(principal: Principal, *extra: Sequence[str]) -> app.Authorize:
    def check(versions: Sequence[Agreement]) -> None:
        covered = sorted({d for v in versions for d in v.terms.districts})
        if versions and principal.role is Role.DISTRICT_STAFF and principal.district_id not in covered:
            # An agreement that does not concern the caller's district answers as a missing one.
            raise app.not_found(versions[-1].id)
        _manager_check(principal, covered, *extra)

    return check


def _may_read(principal: Principal, agreement_id: str, districts: Sequence[str]) -> bool:
    if principal.role is Role.COMPLIANCE:
        return True
    if principal.role is Role.VENDOR:
        return principal.agreement_id == agreement_id
    return principal.district_id in districts


# ------------------------------------------------------------------ view models


def _version_view(a: Agreement) -> dict[str, Any]:
    """One version as stored, with `agreement_id` beside the model's `id` (the name other routes use)."""
    return {"agreement_id": a.id, **a.model_dump(mode="json")}


def _agreement_view(versions: Sequence[Agreement], end: store.EndRecord | None, today: date) -> dict[str, Any]:
    version, active = app.scope_of(versions, today)
    latest = versions[-1]
    return {
        "agreement_id": latest.id,
        "organization": latest.organization,
        "category": latest.category.value,
        "status": current_status(versions).value,
        "releasing": active,
        "governing_version": version.version if version.status is not AgreementStatus.DRAFT else None,
        "latest_version": latest.version,
        "current": _version_view(version),
        "end": end.as_dict() if end else None,
    }


# ---------------------------------------------------------------------- bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateAgreement(_Body):
    agreement_id: str | None = Field(default=None, pattern=_ID)
    organization: str = Field(min_length=1, max_length=300)
    category: AgreementCategory
    supplemental: SupplementalInformation = SupplementalInformation()
    terms: AgreementTerms = AgreementTerms()


class SetTerms(_Body):
    terms: AgreementTerms | None = None
    supplemental: SupplementalInformation | None = None


class Amend(_Body):
    organization: str | None = Field(default=None, min_length=1, max_length=300)
    category: AgreementCategory | None = None
    supplemental: SupplementalInformation | None = None
    terms: AgreementTerms
    status: Literal["draft", "active"] = "draft"


class Suspend(_Body):
    reason: str = Field(min_length=1, max_length=500)


class End(_Body):
    reason: Literal["expired", "terminated"] = "terminated"
    disposition: Disposition | None = None  # default: the agreement's own


class Certify(_Body):
    method: Literal["destroyed", "returned"]
    certified_by: str = Field(min_length=1, max_length=200, description="the person who certifies, by name and title")
    completed_on: date
    what: str = Field(
        min_length=1, max_length=2000, description="what was destroyed or returned, subcontractors' copies included"
    )


class Import2d(_Body):
    text: str = Field(min_length=1, max_length=5_000_000)
    source_name: str = Field(default="upload.txt", min_length=1, max_length=200)
    districts: list[str] = Field(default_factory=list, max_length=100)  # compliance only; staff: their own


Method = Literal["portal", "paper_form", "email", "in_person", "phone"]


class OptOut(_Body):
    district_id: str = Field(min_length=1, max_length=100)
    method: Method


class GiveConsent(_Body):
    district_id: str = Field(min_length=1, max_length=100)
    recipient: str = Field(min_length=1, max_length=200, description="the agreement id the consent is for")
    elements: list[str] = Field(min_length=1, max_length=100)
    purpose: str | None = None
    valid_until: date | None = None
    method: Method


class WithdrawConsent(_Body):
    method: Method


# --------------------------------------------------------------------- routers

agreements = APIRouter(prefix="/v1/agreements", tags=["agreements"])
public = APIRouter(prefix="/v1/public", tags=["public"])
decisions = APIRouter(prefix="/v1", tags=["decisions"])
choices = APIRouter(prefix="/v1/students", tags=["parents' choices"])


@agreements.post("", status_code=201)
async def create_agreement(body: CreateAgreement, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Record a new agreement as a draft (version 1). Releases nothing until activated."""
    _manager_check(principal, body.terms.districts)
    now = app.clock(runtime)
    slug = re.sub(r"[^a-z0-9]+", "-", body.organization.lower()).strip("-")[:60] or "agreement"
    agreement = Agreement(
        id=body.agreement_id or f"{slug}-{uuid.uuid4().hex[:8]}",
        version=1,
        organization=body.organization,
        category=body.category,
        supplemental=body.supplemental,
        terms=body.terms,
        status=AgreementStatus.DRAFT,
        source="api",
        recorded_by=actor(principal),
        recorded_at=now,
    )
    created = await app.create(runtime.pool, agreement)
    return _version_view(created)


@agreements.put("/{agreement_id}/terms")
async def set_terms(agreement_id: str, body: SetTerms, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Set the elements, purposes, scope, dates (and supplemental answers) of the latest version while it is a draft."""
    extra = [body.terms.districts] if body.terms is not None else []
    edited = await app.set_terms(
        runtime.pool,
        agreement_id,
        terms=body.terms,
        supplemental=body.supplemental,
        actor=actor(principal),
        authorize=_authorizer(principal, *extra),
    )
    return _version_view(edited)


@agreements.post("/{agreement_id}/versions", status_code=201)
async def amend(agreement_id: str, body: Amend, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Record an amendment: a new version (draft, or active when it passes the activation rules)."""
    now = app.clock(runtime)
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
    if not versions:
        raise app.not_found(agreement_id)
    latest = versions[-1]
    new = Agreement(
        id=agreement_id,
        version=latest.version + 1,
        organization=body.organization or latest.organization,
        category=body.category or latest.category,
        supplemental=body.supplemental or latest.supplemental,
        terms=body.terms,
        status=AgreementStatus(body.status),
        source="api",
        recorded_by=actor(principal),
        recorded_at=now,
    )
    recorded = await app.amend(
        runtime.pool, new, authorize=_authorizer(principal, body.terms.districts), today=now.date()
    )
    return _version_view(recorded)


@agreements.post("/{agreement_id}/activate")
async def activate(agreement_id: str, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Activate the latest draft version (or reactivate a suspended agreement). 422 naming each unmet rule."""
    now = app.clock(runtime)
    version = await app.activate(
        runtime.pool, agreement_id, actor=actor(principal), authorize=_authorizer(principal), today=now.date()
    )
    return _version_view(version)


@agreements.post("/{agreement_id}/suspend")
async def suspend(agreement_id: str, body: Suspend, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Suspend an active agreement: it releases nothing until reactivated."""
    version = await app.suspend(
        runtime.pool, agreement_id, actor=actor(principal), reason=body.reason, authorize=_authorizer(principal)
    )
    return _version_view(version)


@agreements.post("/{agreement_id}/keys/rotate")
async def rotate_keys(agreement_id: str, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Containment after a breach: a new key-encryption key in each covered district, the agreement's
    data key wrapped under it; recorded (the scope answer lists rotations)."""
    return await app.rotate_keys(runtime, agreement_id, actor=actor(principal), authorize=_authorizer(principal))


@agreements.post("/{agreement_id}/end")
async def end(agreement_id: str, body: End, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """End an agreement (final): emits agreement_ended, shreds the keys of data released under it, records it."""
    now = app.clock(runtime)
    record = await app.end(
        runtime,
        agreement_id,
        reason=body.reason,
        disposition=body.disposition.value if body.disposition else None,
        actor=actor(principal),
        today=now.date(),
        authorize=_authorizer(principal),
    )
    return {"agreement_id": agreement_id, "status": "ended", **record.as_dict()}


Certifier = Annotated[Principal, Depends(require_roles(Role.VENDOR, Role.COMPLIANCE))]


def _require_certifier(principal: Principal, agreement_id: str) -> None:
    if principal.role is Role.VENDOR:
        principal.require_agreement(agreement_id)


@agreements.get("/{agreement_id}/certification")
async def get_certification(agreement_id: str, principal: Certifier, runtime: RuntimeDep) -> dict[str, Any]:
    """What the recipient must certify at the end of the agreement, by when, and whether it has."""
    _require_certifier(principal, agreement_id)
    async with runtime.pool.acquire() as conn:
        found = await store.certification(conn, agreement_id)
    if found is None:
        raise app.not_found(agreement_id)
    return found


@agreements.post("/{agreement_id}/certification")
async def certify(agreement_id: str, body: Certify, principal: Certifier, runtime: RuntimeDep) -> dict[str, Any]:
    """The recipient certifies that it destroyed (or returned) the data received under the ended agreement.
    Recorded once, in the audit log (`destruction_certified`)."""
    _require_certifier(principal, agreement_id)
    return await app.certify(
        runtime,
        agreement_id,
        method=body.method,
        certified_by=body.certified_by,
        completed_on=body.completed_on,
        what=body.what,
        principal_party=Party(
            organization=principal.organization or "", person=principal.subject, role=principal.role.value
        ),
        actor=actor(principal),
    )


@agreements.get("")
async def list_agreements(
    principal: Reader,
    runtime: RuntimeDep,
    status: Annotated[AgreementStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> dict[str, Any]:
    """Agreements the caller may see: compliance all, district staff those covering their district, a vendor its own."""
    today = app.clock(runtime).date()
    async with runtime.pool.acquire() as conn:
        if principal.role is Role.VENDOR:
            assert principal.agreement_id is not None
            ids = [principal.agreement_id]
        else:
            district = principal.district_id if principal.role is Role.DISTRICT_STAFF else None
            ids = await store.list_agreement_ids(
                conn, district=district, status=status.value if status else None, limit=limit, offset=offset
            )
        by_id = await store.histories(conn, ids)
        end_records = await store.ends(conn, ids)
        problems = await store.import_problems(conn, ids) if principal.role is not Role.VENDOR else {}
    items = [
        _agreement_view(versions, end_records.get(agreement_id), today)
        | {"import_problems": problems.get(agreement_id, [])}
        for agreement_id, versions in ((i, by_id.get(i, [])) for i in ids)
        if versions
    ]
    if status is not None:
        items = [i for i in items if i["status"] == status.value]
    return {"agreements": items, "limit": limit, "offset": offset}


@agreements.get("/{agreement_id}")
async def get_agreement(agreement_id: str, principal: Reader, runtime: RuntimeDep) -> dict[str, Any]:
    """One agreement: its current state, every version kept, and its change history."""
    if principal.role is Role.VENDOR and principal.agreement_id != agreement_id:
        raise Forbidden(f"a vendor may read only its own agreement ({principal.agreement_id!r})")
    today = app.clock(runtime).date()
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
        if not versions:
            raise app.not_found(agreement_id)
        districts = sorted({d for v in versions for d in v.terms.districts})
        if not _may_read(principal, agreement_id, districts):
            raise app.not_found(agreement_id)  # as for one that does not exist (no enumeration)
        end_record = await store.get_end(conn, agreement_id)
        changes = await store.change_log(conn, agreement_id)
    return {
        **_agreement_view(versions, end_record, today),
        "versions": [_version_view(v) for v in versions],
        "history": changes,
    }


@agreements.get("/{agreement_id}/scope")
async def agreement_scope(agreement_id: str, principal: ScopeReader, runtime: RuntimeDep) -> dict[str, Any]:
    """What an agreement releases today (contract: docs/contracts.md). Services, and the vendor of that agreement."""
    if principal.role is Role.VENDOR:
        principal.require_agreement(agreement_id)
    today = app.clock(runtime).date()
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
        rotations = [
            {"rotation_id": c["detail"].get("rotation_id"), "at": c["at"]}
            for c in await store.change_log(conn, agreement_id)
            if c["change"] == "keys_rotated"
        ]
    if not versions:
        raise app.not_found(agreement_id)
    version, active = app.scope_of(versions, today)
    terms = version.terms
    return {
        "agreement_id": agreement_id,
        "version": version.version,
        "status": current_status(versions).value,
        "active": active,
        "organization": version.organization,
        "districts": list(terms.districts) if active else [],
        "schools": list(terms.schools) if active else [],
        "classes": list(terms.classes) if active else [],
        "elements": list(terms.elements) if active else [],
        "purposes": list(terms.purposes),
        "start_date": terms.start_date.isoformat() if terms.start_date else None,
        "end_date": terms.end_date.isoformat() if terms.end_date else None,
        # Whatever its status: a breach report must reach every agency the agreement covered.
        "covered_districts": list(terms.districts),
        "key_rotations": rotations,  # containment after a breach (POST .../keys/rotate)
    }


@agreements.post("/import-2d")
async def import_2d(body: Import2d, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Import a published Ed Law 2-d page: every entry becomes a draft; problems are listed by entry."""
    if principal.role is Role.DISTRICT_STAFF:
        assert principal.district_id is not None
        if body.districts and body.districts != [principal.district_id]:
            raise Forbidden("district staff import for their own district only")
        districts: tuple[str, ...] = (principal.district_id,)
    else:
        districts = tuple(body.districts)
    summary = await app.import_page(
        runtime.pool,
        body.text,
        source_name=body.source_name,
        districts=districts,
        recorded_by=actor(principal),
        now=app.clock(runtime),
    )
    return summary.as_dict()


# ----------------------------------------------------------------------- public


def _public_items(by_id: dict[str, list[Agreement]], today: date) -> list[dict[str, Any]]:
    items = []
    for versions in by_id.values():
        if not versions or current_status(versions) is not AgreementStatus.ACTIVE:
            continue
        version, _ = app.scope_of(versions, today)
        terms = version.terms
        items.append(
            {
                "agreement_id": version.id,
                "version": version.version,
                "organization": version.organization,
                "category": version.category.value,
                "supplemental": version.supplemental.model_dump(),
                "term": {
                    "start_date": terms.start_date.isoformat() if terms.start_date else None,
                    "end_date": terms.end_date.isoformat() if terms.end_date else None,
                    "disposition": terms.disposition.value,
                    "storage_region": terms.storage_region,
                },
                "districts": list(terms.districts),
                "elements": [
                    {"id": e, "name": CATALOGUE[e].name, "sensitivity": CATALOGUE[e].sensitivity.value}
                    for e in terms.elements
                    if e in CATALOGUE
                ],
                "purposes": [{"id": p, "description": PURPOSES.get(p, p)} for p in terms.purposes],
            }
        )
    items.sort(key=lambda i: (str(i["category"]), str(i["organization"]).casefold()))
    return items


async def _active_public(runtime: RuntimeDep) -> list[dict[str, Any]]:
    today = app.clock(runtime).date()
    async with runtime.pool.acquire() as conn:
        ids = await store.ids_with_status(conn, [AgreementStatus.ACTIVE])
        by_id = await store.histories(conn, ids)
    return _public_items(by_id, today)


async def _awaiting_certification(runtime: RuntimeDep) -> list[dict[str, Any]]:
    today = app.clock(runtime).date()
    async with runtime.pool.acquire() as conn:
        waiting = await store.uncertified(conn)
    return [
        {
            "agreement_id": c["agreement_id"],
            "organization": c["organization"],
            "disposition": c["disposition"],
            "due_on": c["due_on"],
            "overdue": date.fromisoformat(c["due_on"]) < today,
        }
        for c in waiting
    ]


@public.get("/agreements")
async def public_agreements(runtime: RuntimeDep) -> dict[str, Any]:
    """No sign-in: every active agreement with its Ed Law 2-d supplemental information and data elements;
    and ended agreements whose recipient has not yet certified destroying or returning the data."""
    return {
        "agreements": await _active_public(runtime),
        "awaiting_certification": await _awaiting_certification(runtime),
    }


_QUESTIONS = tuple(SUPPLEMENTAL_QUESTIONS.items())


@public.get("/agreements.html", response_class=HTMLResponse)
async def public_agreements_page(runtime: RuntimeDep) -> HTMLResponse:
    """The same list as a page, in the shape of the NYC DOE supplemental-information page."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Data-sharing agreements</title></head>",
        "<body><h1>Supplemental information about agreements with third parties</h1>",
    ]
    for item in await _active_public(runtime):
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
    waiting = await _awaiting_certification(runtime)
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


@decisions.post("/decisions")
async def decide(body: DecisionRequest, principal: ServiceOnly, runtime: RuntimeDep) -> Decision:
    """Permit or deny one disclosure (contract: docs/contracts.md). Every decision is logged by its id."""
    [decision] = await app.decide_many(app.decision_log(runtime), [body], now=app.clock(runtime))
    return decision


@decisions.post("/decisions/batch")
async def decide_batch(body: DecisionBatch, principal: ServiceOnly, runtime: RuntimeDep) -> DecisionBatchAnswer:
    """Up to 1000 decisions, answered in order."""
    point = app.decision_log(runtime)
    return DecisionBatchAnswer(
        decisions=await app.decide_many(point, body.requests, now=app.clock(runtime), route="batch")
    )


@decisions.post("/decisions/screen")
async def screen(body: ScreenRequest, principal: ServiceOnly, runtime: RuntimeDep) -> ScreenAnswer:
    """The students (of up to 200,000) a read of these elements would release nothing to, or not
    every element of `require`: what a rostering list must leave out of its counts. Decided by
    the same rules as `/decisions`; nothing is released on it, so nothing is logged."""
    return ScreenAnswer(withheld=await app.screen(app.decision_log(runtime), body, now=app.clock(runtime)))


@decisions.get("/decisions/denials")
async def denials(
    principal: Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))],
    runtime: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=366, description="how many days back")] = 30,
) -> dict[str, Any]:
    """Decisions that released nothing in the last `days` days, counted by action and denial code."""
    since = app.clock(runtime) - timedelta(days=days)
    async with runtime.pool.acquire() as conn:
        total, groups = await store.denials_by_reason(conn, since)
    by_reason = [g | {"meaning": DENIAL_CODES.get(g["code"] or "", "not classified")} for g in groups]
    return {"since": since.isoformat(), "days": days, "total": total, "by_reason": by_reason}


@decisions.get("/decisions/{decision_id}")
async def get_decision(
    decision_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require_roles(Role.SERVICE, Role.COMPLIANCE))],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """A logged decision: the request and the answer as given."""
    async with runtime.pool.acquire() as conn:
        found = await store.get_decision(conn, str(decision_id))
    if found is None:
        raise Problem(404, "Not found", f"No decision {decision_id} is logged.", type=problem_type("not-found"))
    return found


@decisions.get("/policy")
async def policy(principal: Reader) -> dict[str, Any]:
    """The decision rules as data, with their legal bases, and the Cedar policy that bounds every release."""
    return {**policy_document(), "cedar": policy_text()}


# ------------------------------------------------------------- parents' choices


async def _require_choice_writer(conn: Connection, principal: Principal, student_key: str, district_id: str) -> None:
    if principal.role is Role.PARENT:
        # A parent acts for the child only where their guardianship link is active (issue 24):
        # not in a district a transfer carried the link to, before that district accepts it.
        principal.require_parent_of(student_key)
        refusal = (await linking.parent_districts(conn, principal.subject)).refusal(student_key, district_id)
        if refusal is not None:
            raise Forbidden(refusal[1])
    else:
        principal.require_district(district_id)


@choices.post("/{student_key}/directory-opt-out", status_code=201)
async def opt_out(student_key: str, body: OptOut, principal: ChoiceWriter, runtime: RuntimeDep) -> dict[str, Any]:
    """Record the parent's directory-information opt-out (holds after the student leaves, until rescinded)."""
    return await _set_opt_out(student_key, body, principal, runtime, opted_out=True)


@choices.post("/{student_key}/directory-opt-out/rescind")
async def rescind_opt_out(
    student_key: str, body: OptOut, principal: ChoiceWriter, runtime: RuntimeDep
) -> dict[str, Any]:
    """Rescind a directory-information opt-out."""
    return await _set_opt_out(student_key, body, principal, runtime, opted_out=False)


async def _set_opt_out(
    student_key: str, body: OptOut, principal: Principal, runtime: RuntimeDep, *, opted_out: bool
) -> dict[str, Any]:
    now = app.clock(runtime)
    who = actor(principal)
    kind = "directory_opt_out_recorded" if opted_out else "directory_opt_out_rescinded"
    async with runtime.pool.acquire() as conn, conn.transaction():
        await _require_choice_writer(conn, principal, student_key, body.district_id)
        current = await store.directory_opt_out(conn, student_key, body.district_id)
        if not opted_out and not current:
            raise app.conflict("There is no directory opt-out to rescind for this student.", "opt_out.none")
        await store.set_directory_opt_out(
            conn,
            student_key=student_key,
            district_id=body.district_id,
            opted_out=opted_out,
            recorded_by=who,
            method=body.method,
            at=now,
        )
        await store.add_choice(
            conn,
            student_key=student_key,
            district_id=body.district_id,
            kind=kind,
            recorded_by=who,
            method=body.method,
            at=now,
        )
        await outbox.add(
            conn,
            events.directory_opt_out(
                opted_out, student_key=student_key, district_id=body.district_id, recorded_by=who, method=body.method
            ),
        )
    metrics.CHOICES_RECORDED.labels(kind).inc()
    return {
        "student_key": student_key,
        "district_id": body.district_id,
        "directory_opt_out": opted_out,
        "recorded_by": who,
        "method": body.method,
        "recorded_at": now.isoformat(),
    }


@choices.post("/{student_key}/consents", status_code=201)
async def give_consent(
    student_key: str, body: GiveConsent, principal: ChoiceWriter, runtime: RuntimeDep
) -> dict[str, Any]:
    """Record a parent's written consent (FERPA 99.30) to release named elements to one agreement's recipient."""
    async with runtime.pool.acquire() as conn:
        await _require_choice_writer(conn, principal, student_key, body.district_id)
    now = app.clock(runtime)
    errors: list[FieldError] = []
    for i, element_id in enumerate(body.elements):
        if element_id in FORBIDDEN:
            errors.append(FieldError(f"/elements/{i}", "element.forbidden", FORBIDDEN[element_id]))
        elif element_id not in CATALOGUE:
            errors.append(
                FieldError(
                    f"/elements/{i}",
                    "element.unknown",
                    f"Data element {element_id!r} is not in the data-element catalogue.",
                )
            )
    if body.purpose is not None and body.purpose not in PURPOSES:
        errors.append(FieldError("/purpose", "purpose.unknown", f"Purpose {body.purpose!r} is not in the catalogue."))
    if body.valid_until is not None and body.valid_until < now.date():
        errors.append(FieldError("/valid_until", "date.in_past", "A consent cannot expire before it is given."))
    async with runtime.pool.acquire() as conn, conn.transaction():
        if not await store.history(conn, body.recipient):
            errors.append(
                FieldError("/recipient", "agreement.unknown", f"No agreement {body.recipient!r} is on record.")
            )
        if errors:
            raise Problem.validation(errors)
        consent_id = app.new_consent_id()
        who = actor(principal)
        elements = list(dict.fromkeys(body.elements))
        await store.insert_consent(
            conn,
            consent_id=consent_id,
            student_key=student_key,
            district_id=body.district_id,
            recipient=body.recipient,
            elements=elements,
            purpose=body.purpose,
            valid_until=body.valid_until,
            recorded_by=who,
            method=body.method,
            at=now,
        )
        await store.add_choice(
            conn,
            student_key=student_key,
            district_id=body.district_id,
            kind="consent_given",
            recorded_by=who,
            method=body.method,
            at=now,
            consent_id=consent_id,
            detail={"recipient": body.recipient, "elements": elements, "purpose": body.purpose},
        )
        await outbox.add(
            conn,
            events.consent_given(
                consent_id=consent_id,
                student_key=student_key,
                district_id=body.district_id,
                recipient=body.recipient,
                elements=elements,
                purpose=body.purpose,
                recorded_by=who,
                method=body.method,
                valid_until=body.valid_until,
            ),
        )
    metrics.CHOICES_RECORDED.labels("consent_given").inc()
    return {
        "consent_id": consent_id,
        "student_key": student_key,
        "district_id": body.district_id,
        "recipient": body.recipient,
        "elements": elements,
        "purpose": body.purpose,
        "valid_until": body.valid_until.isoformat() if body.valid_until else None,
        "recorded_by": who,
        "method": body.method,
        "given_at": now.isoformat(),
    }


@choices.post("/{student_key}/consents/{consent_id}/withdraw")
async def withdraw_consent(
    student_key: str, consent_id: uuid.UUID, body: WithdrawConsent, principal: ChoiceWriter, runtime: RuntimeDep
) -> dict[str, Any]:
    """Withdraw a written consent: nothing more is released under it."""
    now = app.clock(runtime)
    who = actor(principal)
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await store.lock_consent(conn, str(consent_id))
        if row is None or row["student_key"] != student_key:
            raise Problem(
                404, "Not found", f"No consent {consent_id} for this student.", type=problem_type("not-found")
            )
        try:
            await _require_choice_writer(conn, principal, student_key, row["district_id"])
        except Forbidden:  # as for a consent that does not exist: ids are not enumerable
            raise Problem(
                404, "Not found", f"No consent {consent_id} for this student.", type=problem_type("not-found")
            ) from None
        if row["withdrawn_at"] is not None:
            raise app.conflict(f"Consent {consent_id} was already withdrawn.", "consent.withdrawn")
        await store.withdraw_consent(conn, str(consent_id), recorded_by=who, method=body.method, at=now)
        await store.add_choice(
            conn,
            student_key=student_key,
            district_id=row["district_id"],
            kind="consent_withdrawn",
            recorded_by=who,
            method=body.method,
            at=now,
            consent_id=str(consent_id),
        )
        await outbox.add(
            conn,
            events.consent_withdrawn(
                consent_id=str(consent_id),
                student_key=student_key,
                district_id=row["district_id"],
                recorded_by=who,
                method=body.method,
            ),
        )
    metrics.CHOICES_RECORDED.labels("consent_withdrawn").inc()
    return {"consent_id": str(consent_id), "withdrawn_at": now.isoformat(), "withdrawn_by": who, "method": body.method}


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
    if principal.role is Role.DISTRICT_STAFF:
        if district_id is not None and district_id != principal.district_id:
            raise Forbidden(f"staff of {principal.district_id!r} see only their own district's records")
        district_id = principal.district_id
    async with runtime.pool.acquire() as conn:
        parent = principal.role is Role.PARENT
        if parent:
            principal.require_parent_of(student_key)
        standing = await linking.parent_districts(conn, principal.subject) if parent else None
        consent_rows = await store.consents(conn, student_key, district_id)
        history = await store.choices(conn, student_key, district_id)
        opt_outs = await store.opt_outs(conn, student_key, district_id)
    if standing is not None:
        consent_rows = [r for r in consent_rows if standing.refusal(student_key, r["district_id"]) is None]
        history = [r for r in history if standing.refusal(student_key, r["district_id"]) is None]
        opt_outs = [r for r in opt_outs if standing.refusal(student_key, r["district_id"]) is None]
    return {
        "student_key": student_key,
        "directory_opt_outs": opt_outs,
        "consents": consent_rows,
        "history": history,
    }


# ------------------------------------------------------------ transfer exclusions

districts = APIRouter(prefix="/v1/districts", tags=["decisions"])


class TransferExclusions(_Body):
    elements: list[str] = Field(max_length=100)


def _require_district_or_compliance(principal: Principal, district_id: str) -> None:
    if principal.role is not Role.COMPLIANCE:
        principal.require_district(district_id)


@districts.get("/{district_id}/transfer-exclusions")
async def get_transfer_exclusions(district_id: str, principal: Staff, runtime: RuntimeDep) -> dict[str, Any]:
    """Elements this district does not send with a transfer (besides those the catalogue never transfers)."""
    _require_district_or_compliance(principal, district_id)
    async with runtime.pool.acquire() as conn:
        found = await store.transfer_exclusions(conn, district_id)
    return found or {"district_id": district_id, "elements": [], "recorded_by": None, "recorded_at": None}


@districts.put("/{district_id}/transfer-exclusions")
async def set_transfer_exclusions(
    district_id: str, body: TransferExclusions, principal: Staff, runtime: RuntimeDep
) -> dict[str, Any]:
    """Replace the district's list of elements it does not transfer."""
    _require_district_or_compliance(principal, district_id)
    errors = [
        FieldError(f"/elements/{i}", "element.unknown", f"Data element {e!r} is not in the data-element catalogue.")
        for i, e in enumerate(body.elements)
        if e not in CATALOGUE
    ]
    if errors:
        raise Problem.validation(errors)
    now = app.clock(runtime)
    async with runtime.pool.acquire() as conn:
        await store.set_transfer_exclusions(
            conn, district_id, list(dict.fromkeys(body.elements)), recorded_by=actor(principal), at=now
        )
        found = await store.transfer_exclusions(conn, district_id)
    assert found is not None
    return found


ROUTERS = (agreements, public, decisions, choices, districts)
