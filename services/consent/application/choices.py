"""Use cases of parents' choices: a directory-information opt-out and its rescission
(`set_opt_out`), carried to the receiving district when a transfer delivers the student's
record (`carry_opt_out`, FERPA 99.37); a written consent (`give_consent`, FERPA 99.30) and
its withdrawal (`withdraw_consent`); a student's choices and their history (`choices_of`);
and a district's own choice of elements it does not transfer (`transfer_exclusions`,
`set_transfer_exclusions`).

A parent acts for their child only where their guardianship link is active (`linking`);
district staff for their own district. Each choice is kept as its current state, in the
history of choices, and as a consent.v1 event, in one transaction."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from pydantic import Field

from homeroom import outbox
from homeroom.auth import Forbidden, Principal, Role
from homeroom.catalogue import CATALOGUE, FORBIDDEN, PURPOSES
from homeroom.events.v1.transfer_pb2 import TransferStep
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.storage import Connection
from services.consent import events, metrics, store
from services.consent.application.common import Command, actor, conflict, require_district_or_compliance
from services.consent.application.linking import parent_districts
from services.consent.state import ConsentRuntime

CARRIED_METHOD = "transfer"

Method = Literal["portal", "paper_form", "email", "in_person", "phone"]


class OptOut(Command):
    district_id: str = Field(min_length=1, max_length=100)
    method: Method


class GiveConsent(Command):
    district_id: str = Field(min_length=1, max_length=100)
    recipient: str = Field(min_length=1, max_length=200, description="the agreement id the consent is for")
    elements: list[str] = Field(min_length=1, max_length=100)
    purpose: str | None = None
    valid_until: date | None = None
    method: Method


class WithdrawConsent(Command):
    method: Method


class TransferExclusions(Command):
    elements: list[str] = Field(max_length=100)


async def _require_choice_writer(conn: Connection, principal: Principal, student_key: str, district_id: str) -> None:
    if principal.role is Role.PARENT:
        # A parent acts for the child only where their guardianship link is active (issue 24):
        # not in a district a transfer carried the link to, before that district accepts it.
        principal.require_parent_of(student_key)
        refusal = (await parent_districts(conn, principal.subject)).refusal(student_key, district_id)
        if refusal is not None:
            raise Forbidden(refusal[1])
    else:
        principal.require_district(district_id)


async def _record_opt_out(
    conn: Connection,
    choice: store.Choice,
    opted_out: bool,
    *,
    detail: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> str:
    """The opt-out's state, its place in the history of choices, and its event; the kind of choice."""
    kind = "directory_opt_out_recorded" if opted_out else "directory_opt_out_rescinded"
    await store.set_directory_opt_out(conn, choice, opted_out)
    await store.add_choice(conn, choice, kind, detail=detail)
    await outbox.add(conn, events.directory_opt_out(opted_out, choice, event_id=event_id))
    return kind


async def set_opt_out(
    runtime: ConsentRuntime, principal: Principal, student_key: str, body: OptOut, *, opted_out: bool
) -> dict[str, Any]:
    """Record the parent's directory-information opt-out (holds after the student leaves, until
    rescinded), or rescind it (`opted_out` False; 409 when there is none)."""
    district_id, method = body.district_id, body.method
    now = runtime.clock()
    who = actor(principal)
    async with runtime.pool.acquire() as conn, conn.transaction():
        await _require_choice_writer(conn, principal, student_key, district_id)
        current = await store.directory_opt_out(conn, student_key, district_id)
        if not opted_out and not current:
            raise conflict("There is no directory opt-out to rescind for this student.", "opt_out.none")
        kind = await _record_opt_out(conn, store.Choice(student_key, district_id, who, method, now), opted_out)
    metrics.CHOICES_RECORDED.labels(kind).inc()
    return {
        "student_key": student_key,
        "district_id": district_id,
        "directory_opt_out": opted_out,
        "recorded_by": who,
        "method": method,
        "recorded_at": now.isoformat(),
    }


async def carry_opt_out(runtime: ConsentRuntime, conn: Connection, step: TransferStep) -> None:
    """A delivered transfer: the parent's opt-out in the sending district is recorded for the
    receiving one (method `transfer`, by `homeroom-transfer:<case>`), unless the parent has
    already chosen there (opted out, or rescinded: theirs, left as it is)."""
    if not await store.directory_opt_out(conn, step.student_key, step.from_district_id):
        return
    if await store.has_directory_choice(conn, step.student_key, step.to_district_id):
        return  # the parent has already chosen in the receiving district
    who = f"homeroom-transfer:{step.case_id}"
    await _record_opt_out(
        conn,
        store.Choice(step.student_key, step.to_district_id, who, CARRIED_METHOD, runtime.clock()),
        True,
        detail={"carried_from": step.from_district_id, "case_id": step.case_id},
        event_id=events.derived_id("opt_out_carried", step.case_id),
    )
    metrics.CHOICES_RECORDED.labels("directory_opt_out_carried").inc()


def _consent_problems(
    elements: list[str], purpose: str | None, valid_until: date | None, today: date
) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, element_id in enumerate(elements):
        if element_id in FORBIDDEN:
            errors.append(FieldError(f"/elements/{i}", "element.forbidden", FORBIDDEN[element_id]))
        elif element_id not in CATALOGUE:
            errors.append(_unknown_element(i, element_id))
    if purpose is not None and purpose not in PURPOSES:
        errors.append(FieldError("/purpose", "purpose.unknown", f"Purpose {purpose!r} is not in the catalogue."))
    if valid_until is not None and valid_until < today:
        errors.append(FieldError("/valid_until", "date.in_past", "A consent cannot expire before it is given."))
    return errors


def _unknown_element(index: int, element_id: str) -> FieldError:
    return FieldError(
        f"/elements/{index}", "element.unknown", f"Data element {element_id!r} is not in the data-element catalogue."
    )


async def give_consent(
    runtime: ConsentRuntime, principal: Principal, student_key: str, body: GiveConsent
) -> dict[str, Any]:
    """Record a parent's written consent (FERPA 99.30) to release named elements to one agreement's recipient."""
    district_id, recipient, purpose, valid_until, method = (
        body.district_id,
        body.recipient,
        body.purpose,
        body.valid_until,
        body.method,
    )
    async with runtime.pool.acquire() as conn:
        await _require_choice_writer(conn, principal, student_key, district_id)
    now = runtime.clock()
    errors = _consent_problems(body.elements, purpose, valid_until, now.date())
    async with runtime.pool.acquire() as conn, conn.transaction():
        if not await store.history(conn, recipient):
            errors.append(FieldError("/recipient", "agreement.unknown", f"No agreement {recipient!r} is on record."))
        if errors:
            raise Problem.validation(errors)
        consent_id = str(uuid.uuid4())
        who = actor(principal)
        elements = list(dict.fromkeys(body.elements))
        choice = store.Choice(student_key, district_id, who, method, now)
        terms: dict[str, Any] = {"recipient": recipient, "elements": elements, "purpose": purpose}
        await store.insert_consent(conn, choice, consent_id=consent_id, valid_until=valid_until, **terms)
        await store.add_choice(conn, choice, "consent_given", consent_id=consent_id, detail=terms)
        await outbox.add(conn, events.consent_given(choice, consent_id=consent_id, valid_until=valid_until, **terms))
    metrics.CHOICES_RECORDED.labels("consent_given").inc()
    return {
        "consent_id": consent_id,
        "student_key": student_key,
        "district_id": district_id,
        "recipient": recipient,
        "elements": elements,
        "purpose": purpose,
        "valid_until": valid_until.isoformat() if valid_until else None,
        "recorded_by": who,
        "method": method,
        "given_at": now.isoformat(),
    }


async def withdraw_consent(
    runtime: ConsentRuntime, principal: Principal, student_key: str, consent_id: str, body: WithdrawConsent
) -> dict[str, Any]:
    """Withdraw a written consent: nothing more is released under it."""
    method = body.method
    now = runtime.clock()
    who = actor(principal)
    absent = Problem(404, "Not found", f"No consent {consent_id} for this student.", type=problem_type("not-found"))
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await store.lock_consent(conn, consent_id)
        if row is None or row["student_key"] != student_key:
            raise absent
        try:
            await _require_choice_writer(conn, principal, student_key, row["district_id"])
        except Forbidden:  # as for a consent that does not exist: ids are not enumerable
            raise absent from None
        if row["withdrawn_at"] is not None:
            raise conflict(f"Consent {consent_id} was already withdrawn.", "consent.withdrawn")
        choice = store.Choice(student_key, row["district_id"], who, method, now)
        await store.withdraw_consent(conn, consent_id, choice)
        await store.add_choice(conn, choice, "consent_withdrawn", consent_id=consent_id)
        await outbox.add(conn, events.consent_withdrawn(choice, consent_id=consent_id))
    metrics.CHOICES_RECORDED.labels("consent_withdrawn").inc()
    return {"consent_id": consent_id, "withdrawn_at": now.isoformat(), "withdrawn_by": who, "method": method}


async def choices_of(
    runtime: ConsentRuntime, principal: Principal, student_key: str, district_id: str | None
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
        standing = await parent_districts(conn, principal.subject) if parent else None
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


# ------------------------------------------------------------------ transfer exclusions


async def transfer_exclusions(runtime: ConsentRuntime, principal: Principal, district_id: str) -> dict[str, Any]:
    """Elements this district does not send with a transfer (besides those the catalogue never transfers)."""
    require_district_or_compliance(principal, district_id)
    async with runtime.pool.acquire() as conn:
        found = await store.transfer_exclusions(conn, district_id)
    return found or {"district_id": district_id, "elements": [], "recorded_by": None, "recorded_at": None}


async def set_transfer_exclusions(
    runtime: ConsentRuntime, principal: Principal, district_id: str, body: TransferExclusions
) -> dict[str, Any]:
    """Replace the district's list of elements it does not transfer."""
    require_district_or_compliance(principal, district_id)
    elements = body.elements
    errors = [_unknown_element(i, e) for i, e in enumerate(elements) if e not in CATALOGUE]
    if errors:
        raise Problem.validation(errors)
    now = runtime.clock()
    async with runtime.pool.acquire() as conn:
        await store.set_transfer_exclusions(
            conn, district_id, list(dict.fromkeys(elements)), recorded_by=actor(principal), at=now
        )
        found = await store.transfer_exclusions(conn, district_id)
    assert found is not None
    return found
