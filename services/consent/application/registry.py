"""Use cases of the agreement registry: record an agreement (`create`), edit a draft's terms
(`set_terms`), amend (`amend`), activate or reactivate (`activate`), suspend (`suspend`),
rotate its keys after a breach (`rotate_keys`); and read it: the agreements a caller may see
(`list_agreements`), one with its versions and history (`agreement`), what it releases today
(`scope`), the public list (`public_agreements`, `awaiting_certification`).

Each change runs in one transaction holding the agreement's head row lock, and writes its
consent.v1 event in that same transaction (the outbox). Ending an agreement is in `ending`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

from pydantic import Field

from homeroom import outbox
from homeroom.auth import Forbidden, Principal, Role
from homeroom.catalogue import CATALOGUE, PURPOSES
from homeroom.crypto import KeyDestroyedError
from services.consent import events, store
from services.consent.agreements import (
    Agreement,
    AgreementCategory,
    AgreementStatus,
    AgreementTerms,
    SupplementalInformation,
    current_status,
    governing_version,
    validate_activation,
    validate_amendment,
    validate_terms,
)
from services.consent.application.common import (
    Command,
    actor,
    authorizer,
    changing,
    conflict,
    latest_non_draft,
    manager_check,
    may_read,
    not_found,
    rejected,
)
from services.consent.state import ConsentRuntime

_ID = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class CreateAgreement(Command):
    agreement_id: str | None = Field(default=None, pattern=_ID)
    organization: str = Field(min_length=1, max_length=300)
    category: AgreementCategory
    supplemental: SupplementalInformation = SupplementalInformation()
    terms: AgreementTerms = AgreementTerms()


class SetTerms(Command):
    terms: AgreementTerms | None = None
    supplemental: SupplementalInformation | None = None


class Amend(Command):
    organization: str | None = Field(default=None, min_length=1, max_length=300)
    category: AgreementCategory | None = None
    supplemental: SupplementalInformation | None = None
    terms: AgreementTerms
    status: Literal["draft", "active"] = "draft"


class Suspend(Command):
    reason: str = Field(min_length=1, max_length=500)


# ------------------------------------------------------------------------ changes


async def create(runtime: ConsentRuntime, principal: Principal, body: CreateAgreement) -> Agreement:
    """Record version 1 as a draft (`agreement_signed`, status draft): it releases nothing until activated."""
    manager_check(principal, body.terms.districts)
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
        recorded_at=runtime.clock(),
    )
    errors = validate_amendment([], agreement)
    if errors:
        raise rejected(errors)
    async with runtime.pool.acquire() as conn, conn.transaction():
        if await store.lock_agreement(conn, agreement.id) is not None:
            raise conflict(f"Agreement {agreement.id!r} already exists; amend it instead.", "agreement.exists")
        await store.insert_agreement(conn, agreement)
        await store.add_history(conn, agreement.id, 1, "signed", agreement.recorded_by, {"status": "draft"})
        await outbox.add(conn, events.agreement_changed("agreement_signed", agreement))
    return agreement


async def set_terms(runtime: ConsentRuntime, principal: Principal, agreement_id: str, body: SetTerms) -> Agreement:
    """Edit the latest version while it is a draft (a proposal: nothing was released under it)."""
    terms, supplemental = body.terms, body.supplemental
    authorize = authorizer(principal, *([terms.districts] if terms is not None else []))
    async with changing(runtime.pool, agreement_id, authorize) as (conn, _, versions):
        latest = versions[-1]
        if latest.status is not AgreementStatus.DRAFT:
            raise conflict(
                f"Version {latest.version} of {agreement_id!r} is {latest.status.value}; its terms are fixed. "
                "Record an amendment (POST /v1/agreements/{id}/versions) instead.",
                "terms.fixed",
            )
        update: dict[str, Any] = {}
        if terms is not None:
            update["terms"] = terms
        if supplemental is not None:
            update["supplemental"] = supplemental
        edited = latest.model_copy(update=update)
        errors = validate_terms(edited.terms)
        if errors:
            raise rejected(errors)
        await store.replace_version(conn, edited)
        await store.add_history(conn, agreement_id, edited.version, "terms_set", actor(principal))
        await outbox.add(conn, events.agreement_changed("agreement_amended", edited))
    return edited


async def amend(runtime: ConsentRuntime, principal: Principal, agreement_id: str, body: Amend) -> Agreement:
    """Record a new version (draft, or active when it passes the activation rules); what is not
    given is the latest version's."""
    now = runtime.clock()
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
    if not versions:
        raise not_found(agreement_id)
    latest = versions[-1]
    new_version = Agreement(
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
    authorize = authorizer(principal, body.terms.districts)
    async with changing(runtime.pool, new_version.id, authorize) as (conn, _, versions):
        candidate = new_version.model_copy(update={"version": versions[-1].version + 1})
        errors = validate_amendment(versions, candidate, today=now.date())
        if errors:
            if any(e.rule == "amendment.after_end" for e in errors):
                raise conflict(errors[0].message, "amendment.after_end")
            raise rejected(errors)
        await store.insert_version(conn, candidate)
        await store.add_history(
            conn, candidate.id, candidate.version, "amended", candidate.recorded_by, {"status": candidate.status.value}
        )
        await outbox.add(conn, events.agreement_changed("agreement_amended", candidate))
        if candidate.status is AgreementStatus.ACTIVE:
            await outbox.add(conn, events.agreement_changed("agreement_activated", candidate))
    return candidate


async def activate(runtime: ConsentRuntime, principal: Principal, agreement_id: str) -> Agreement:
    """Activate the latest draft version, or reactivate a suspended agreement (422 naming each unmet rule)."""
    today = runtime.clock().date()
    authorize = authorizer(principal)
    async with changing(runtime.pool, agreement_id, authorize) as (conn, _, versions):
        status = current_status(versions)
        latest = versions[-1]
        if status is AgreementStatus.ENDED:
            raise conflict(f"Agreement {agreement_id!r} has ended; record a new agreement.", "agreement.ended")
        if latest.status is AgreementStatus.DRAFT:
            target = latest.model_copy(update={"status": AgreementStatus.ACTIVE})
            errors = validate_activation(target, today=today, history=versions[:-1])
        elif latest.status is AgreementStatus.SUSPENDED:
            target = latest.model_copy(update={"status": AgreementStatus.ACTIVE})
            errors = [e for e in validate_activation(target, today=today) if e.rule != "versions.overlap"]
        else:
            target = latest_non_draft(versions)
            if target.status is AgreementStatus.ACTIVE:
                raise conflict(f"Agreement {agreement_id!r} is already active.", "agreement.already_active")
            target = target.model_copy(update={"status": AgreementStatus.ACTIVE})
            errors = [e for e in validate_activation(target, today=today) if e.rule != "versions.overlap"]
        if errors:
            raise rejected(errors, f"Agreement {agreement_id!r} version {target.version} cannot be activated.")
        await store.replace_version(conn, target)
        await store.add_history(conn, agreement_id, target.version, "activated", actor(principal))
        await outbox.add(conn, events.agreement_changed("agreement_activated", target))
    return target


async def suspend(runtime: ConsentRuntime, principal: Principal, agreement_id: str, body: Suspend) -> Agreement:
    """Suspend an active agreement: it releases nothing until reactivated."""
    authorize = authorizer(principal)
    async with changing(runtime.pool, agreement_id, authorize) as (conn, _, versions):
        if current_status(versions) is not AgreementStatus.ACTIVE:
            raise conflict(
                f"Only an active agreement can be suspended; {agreement_id!r} is {current_status(versions).value}.",
                "suspend.not_active",
            )
        target = latest_non_draft(versions).model_copy(update={"status": AgreementStatus.SUSPENDED})
        await store.replace_version(conn, target)
        await store.add_history(
            conn, agreement_id, target.version, "suspended", actor(principal), {"reason": body.reason}
        )
        await outbox.add(conn, events.agreement_changed("agreement_suspended", target))
    return target


async def rotate_keys(runtime: ConsentRuntime, principal: Principal, agreement_id: str) -> dict[str, Any]:
    """Containment after a breach: in every district the agreement covers, a new key-encryption
    key, and the agreement's data key (what Homeroom keeps for the recipient is sealed under it)
    wrapped under it. Recorded in the agreement's history, which its scope answer lists."""
    cipher = runtime.require_cipher()
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
    if not versions:
        raise not_found(agreement_id)
    authorizer(principal)(versions)
    districts = sorted({d for v in versions for d in v.terms.districts})
    rotated = []
    for district in districts:
        version = cipher.rotate_district_key(district)
        try:
            wrapped_under = await cipher.rewrap_subject(district, agreement_id, scope="agreement")
        except KeyDestroyedError:
            wrapped_under = None  # shredded when the agreement ended: nothing left to protect
        rotated.append(
            {"district_id": district, "kek_version": version, "agreement_key_rewrapped": wrapped_under is not None}
        )
    rotation_id = str(uuid.uuid4())
    at = runtime.clock()
    async with runtime.pool.acquire() as conn, conn.transaction():
        await store.lock_agreement(conn, agreement_id)
        await store.add_history(
            conn,
            agreement_id,
            versions[-1].version,
            "keys_rotated",
            actor(principal),
            {"rotation_id": rotation_id, "districts": rotated},
        )
    return {
        "agreement_id": agreement_id,
        "rotation_id": rotation_id,
        "rotated_at": at.isoformat(),
        "districts": rotated,
    }


# -------------------------------------------------------------------------- reads


def scope_of(versions: Sequence[Agreement], today: date) -> tuple[Agreement, bool]:
    """The version that describes the agreement's scope today, and whether it releases now."""
    status = current_status(versions)
    governing = governing_version(versions, today)
    non_draft = [v for v in versions if v.status is not AgreementStatus.DRAFT]
    version = governing or (non_draft[-1] if non_draft else versions[-1])
    return version, status is AgreementStatus.ACTIVE and governing is not None


def version_view(a: Agreement) -> dict[str, Any]:
    """One version as stored, with `agreement_id` beside the model's `id` (the name other routes use)."""
    return {"agreement_id": a.id, **a.model_dump(mode="json")}


def _agreement_view(versions: Sequence[Agreement], end: store.EndRecord | None, today: date) -> dict[str, Any]:
    version, active = scope_of(versions, today)
    latest = versions[-1]
    return {
        "agreement_id": latest.id,
        "organization": latest.organization,
        "category": latest.category.value,
        "status": current_status(versions).value,
        "releasing": active,
        "governing_version": version.version if version.status is not AgreementStatus.DRAFT else None,
        "latest_version": latest.version,
        "current": version_view(version),
        "end": end.as_dict() if end else None,
    }


async def list_agreements(
    runtime: ConsentRuntime, principal: Principal, *, status: AgreementStatus | None, limit: int, offset: int
) -> dict[str, Any]:
    """Agreements the caller may see: compliance all, district staff those covering their district, a vendor its own."""
    today = runtime.clock().date()
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


async def agreement(runtime: ConsentRuntime, principal: Principal, agreement_id: str) -> dict[str, Any]:
    """One agreement: its current state, every version kept, and its change history."""
    if principal.role is Role.VENDOR and principal.agreement_id != agreement_id:
        raise Forbidden(f"a vendor may read only its own agreement ({principal.agreement_id!r})")
    today = runtime.clock().date()
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
        if not versions:
            raise not_found(agreement_id)
        districts = sorted({d for v in versions for d in v.terms.districts})
        if not may_read(principal, agreement_id, districts):
            raise not_found(agreement_id)  # as for one that does not exist (no enumeration)
        end_record = await store.get_end(conn, agreement_id)
        changes = await store.change_log(conn, agreement_id)
    return {
        **_agreement_view(versions, end_record, today),
        "versions": [version_view(v) for v in versions],
        "history": changes,
    }


async def scope(runtime: ConsentRuntime, principal: Principal, agreement_id: str) -> dict[str, Any]:
    """What an agreement releases today (contract: docs/contracts.md): services, and the vendor of that agreement."""
    if principal.role is Role.VENDOR:
        principal.require_agreement(agreement_id)
    today = runtime.clock().date()
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
        rotations = [
            {"rotation_id": c["detail"].get("rotation_id"), "at": c["at"]}
            for c in await store.change_log(conn, agreement_id)
            if c["change"] == "keys_rotated"
        ]
    if not versions:
        raise not_found(agreement_id)
    version, active = scope_of(versions, today)
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


def _public_items(by_id: dict[str, list[Agreement]], today: date) -> list[dict[str, Any]]:
    items = []
    for versions in by_id.values():
        if not versions or current_status(versions) is not AgreementStatus.ACTIVE:
            continue
        version, _ = scope_of(versions, today)
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


async def public_agreements(runtime: ConsentRuntime) -> list[dict[str, Any]]:
    """No sign-in: every active agreement with its Ed Law 2-d supplemental information and data elements."""
    today = runtime.clock().date()
    async with runtime.pool.acquire() as conn:
        ids = await store.ids_with_status(conn, [AgreementStatus.ACTIVE])
        by_id = await store.histories(conn, ids)
    return _public_items(by_id, today)


async def awaiting_certification(runtime: ConsentRuntime) -> list[dict[str, Any]]:
    """Ended agreements whose recipient has not yet certified destroying or returning the data."""
    today = runtime.clock().date()
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
