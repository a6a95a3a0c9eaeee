"""The consent service's operations: load, apply the domain rules, save, publish via the outbox.

Each operation runs in one transaction holding the agreement's head row lock, and writes
its consent.v1 event in that same transaction. Ending an agreement is the one operation
in two steps, because the data keys live in another database: the end (status, end
record, `agreement_ended`) commits first; then each covered district's agreement-scoped
keys are shredded and the destruction is recorded with its `data_keys_destroyed` events
(deterministic ids). An end whose keys are not yet recorded as destroyed is finished by
the next expiry check, so a crash in between loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from homeroom import notices, outbox
from homeroom.contracts.consent import Decision, DecisionRequest, ScreenRequest
from homeroom.crypto import EnvelopeCipher, KeyDestroyedError
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import Runtime
from homeroom.storage import Connection
from services.consent import events, metrics, store
from services.consent.agreements import (
    Agreement,
    AgreementError,
    AgreementStatus,
    AgreementTerms,
    SupplementalInformation,
    current_status,
    governing_version,
    validate_activation,
    validate_amendment,
    validate_terms,
)
from services.consent.facts import DecisionLog, prune_changes
from services.consent.import_2d import parse_2d

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def clock(runtime: Runtime) -> datetime:
    """Now, from `runtime.extras["clock"]` when a test set one, else the runtime's clock (UTC)."""
    custom: Clock | None = runtime.extras.get("clock")
    return custom() if custom is not None else runtime.clock()


# ----------------------------------------------------------------------- errors


def rejected(errors: Sequence[AgreementError], detail: str | None = None) -> Problem:
    return Problem.validation([FieldError(e.field, e.rule, e.message) for e in errors], detail)


def not_found(agreement_id: str) -> Problem:
    return Problem(404, "Not found", f"No agreement {agreement_id!r} is on record.", type=problem_type("not-found"))


def conflict(message: str, rule: str) -> Problem:
    return Problem(409, "Conflict", message, type=problem_type("conflict"), extensions={"rule": rule})


# ------------------------------------------------------------------- agreements


async def _locked(conn: Connection, agreement_id: str) -> tuple[store.Head, list[Agreement]]:
    head = await store.lock_agreement(conn, agreement_id)
    if head is None:
        raise not_found(agreement_id)
    return head, await store.history(conn, agreement_id)


async def create(pool: asyncpg.Pool, agreement: Agreement) -> Agreement:
    """Record version 1 as a draft (`agreement_signed`, status draft)."""
    errors = validate_amendment([], agreement)
    if errors:
        raise rejected(errors)
    async with pool.acquire() as conn, conn.transaction():
        if await store.lock_agreement(conn, agreement.id) is not None:
            raise conflict(f"Agreement {agreement.id!r} already exists; amend it instead.", "agreement.exists")
        await store.insert_agreement(conn, agreement)
        await store.add_history(conn, agreement.id, 1, "signed", agreement.recorded_by, {"status": "draft"})
        await outbox.add(conn, events.agreement_changed("agreement_signed", agreement))
    return agreement


Authorize = Callable[[Sequence[Agreement]], None]


async def set_terms(
    pool: asyncpg.Pool,
    agreement_id: str,
    *,
    terms: AgreementTerms | None,
    supplemental: SupplementalInformation | None,
    actor: str,
    authorize: Authorize,
) -> Agreement:
    """Edit the latest version while it is a draft (a proposal: nothing was released under it)."""
    async with pool.acquire() as conn, conn.transaction():
        _, versions = await _locked(conn, agreement_id)
        authorize(versions)
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
        await store.add_history(conn, agreement_id, edited.version, "terms_set", actor)
        await outbox.add(conn, events.agreement_changed("agreement_amended", edited))
    return edited


async def amend(pool: asyncpg.Pool, new_version: Agreement, *, authorize: Authorize, today: date) -> Agreement:
    """Record a new version (draft, or active when it passes the activation rules)."""
    async with pool.acquire() as conn, conn.transaction():
        _, versions = await _locked(conn, new_version.id)
        authorize(versions)
        candidate = new_version.model_copy(update={"version": versions[-1].version + 1})
        errors = validate_amendment(versions, candidate, today=today)
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


async def activate(
    pool: asyncpg.Pool, agreement_id: str, *, actor: str, authorize: Authorize, today: date
) -> Agreement:
    """Activate the latest draft version, or reactivate a suspended agreement."""
    async with pool.acquire() as conn, conn.transaction():
        _, versions = await _locked(conn, agreement_id)
        authorize(versions)
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
            target = _latest_non_draft(versions)
            if target.status is AgreementStatus.ACTIVE:
                raise conflict(f"Agreement {agreement_id!r} is already active.", "agreement.already_active")
            target = target.model_copy(update={"status": AgreementStatus.ACTIVE})
            errors = [e for e in validate_activation(target, today=today) if e.rule != "versions.overlap"]
        if errors:
            raise rejected(errors, f"Agreement {agreement_id!r} version {target.version} cannot be activated.")
        await store.replace_version(conn, target)
        await store.add_history(conn, agreement_id, target.version, "activated", actor)
        await outbox.add(conn, events.agreement_changed("agreement_activated", target))
    return target


def _latest_non_draft(versions: Sequence[Agreement]) -> Agreement:
    return [v for v in versions if v.status is not AgreementStatus.DRAFT][-1]


async def suspend(pool: asyncpg.Pool, agreement_id: str, *, actor: str, reason: str, authorize: Authorize) -> Agreement:
    async with pool.acquire() as conn, conn.transaction():
        _, versions = await _locked(conn, agreement_id)
        authorize(versions)
        if current_status(versions) is not AgreementStatus.ACTIVE:
            raise conflict(
                f"Only an active agreement can be suspended; {agreement_id!r} is {current_status(versions).value}.",
                "suspend.not_active",
            )
        target = _latest_non_draft(versions).model_copy(update={"status": AgreementStatus.SUSPENDED})
        await store.replace_version(conn, target)
        await store.add_history(conn, agreement_id, target.version, "suspended", actor, {"reason": reason})
        await outbox.add(conn, events.agreement_changed("agreement_suspended", target))
    return target


async def rotate_keys(runtime: Runtime, agreement_id: str, *, actor: str, authorize: Authorize) -> dict[str, Any]:
    """Containment after a breach: in every district the agreement covers, a new key-encryption
    key, and the agreement's data key (what Homeroom keeps for the recipient is sealed under it)
    wrapped under it. Recorded in the agreement's history, which its scope answer lists."""
    cipher: EnvelopeCipher = runtime.require_cipher()
    async with runtime.pool.acquire() as conn:
        versions = await store.history(conn, agreement_id)
    if not versions:
        raise not_found(agreement_id)
    authorize(versions)
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
    at = clock(runtime)
    async with runtime.pool.acquire() as conn, conn.transaction():
        await store.lock_agreement(conn, agreement_id)
        await store.add_history(
            conn,
            agreement_id,
            versions[-1].version,
            "keys_rotated",
            actor,
            {"rotation_id": rotation_id, "districts": rotated},
        )
    return {
        "agreement_id": agreement_id,
        "rotation_id": rotation_id,
        "rotated_at": at.isoformat(),
        "districts": rotated,
    }


async def end(
    runtime: Runtime,
    agreement_id: str,
    *,
    reason: str,
    disposition: str | None,
    actor: str,
    today: date,
    authorize: Authorize | None = None,
) -> store.EndRecord:
    """End an agreement (final), then shred what was released under it."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        head, versions = await _locked(conn, agreement_id)
        if authorize is not None:
            authorize(versions)
        status = current_status(versions)
        if status is AgreementStatus.ENDED:
            raise conflict(f"Agreement {agreement_id!r} has already ended.", "agreement.ended")
        if status is AgreementStatus.DRAFT:
            raise conflict(
                f"Agreement {agreement_id!r} was never active and released nothing; there is nothing to end.",
                "end.never_active",
            )
        target = _latest_non_draft(versions)
        if reason == "expired" and (target.terms.end_date is None or target.terms.end_date >= today):
            raise rejected(
                [
                    AgreementError(
                        field="/reason",
                        rule="end.not_expired",
                        message=f"Agreement {agreement_id!r} has not expired (its end date is "
                        f"{target.terms.end_date or 'open'}); end it as terminated.",
                    )
                ]
            )
        chosen = disposition or target.terms.disposition.value
        ended = target.model_copy(update={"status": AgreementStatus.ENDED})
        ended_on = today
        if reason == "expired" and target.terms.end_date is not None:
            ended_on = target.terms.end_date
        await store.replace_version(conn, ended)
        await store.insert_end(
            conn,
            agreement_id=agreement_id,
            version=target.version,
            reason=reason,
            disposition=chosen,
            ended_on=ended_on,
            ended_by=actor,
            districts=head.districts,
        )
        await store.add_history(
            conn, agreement_id, target.version, "ended", actor, {"reason": reason, "disposition": chosen}
        )
        await outbox.add(conn, events.agreement_ended(ended, ended_on=ended_on, reason=reason, disposition=chosen))
        await _request_certification(runtime, conn, ended, disposition=chosen, ended_on=ended_on)
    metrics.AGREEMENTS_ENDED.labels(reason).inc()
    try:
        await destroy_released(runtime, agreement_id)
    except Exception:
        # The end stands; the record shows keys_destroyed_at null and the next expiry check shreds.
        log.exception("shredding after the end of %s failed; the expiry check will retry", agreement_id)
    async with runtime.pool.acquire() as conn:
        record = await store.get_end(conn, agreement_id)
    assert record is not None
    return record


# --- the recipient's certification of destruction or return -------------------------------


def _due_days(runtime: Runtime) -> int:
    return int(getattr(runtime.settings, "certification_due_days", 30))


def _recipient(agreement_id: str) -> notices.Recipient:
    return notices.Recipient("recipient", agreement_id)


async def _request_certification(
    runtime: Runtime, conn: Connection, ended: Agreement, *, disposition: str, ended_on: date
) -> None:
    """At the end: ask the recipient, by its API (GET/POST .../certification) and by e-mail,
    to destroy or return its copies as the disposition says and to certify it by a date."""
    due_on = ended_on + timedelta(days=_due_days(runtime))
    if not await store.request_certification(
        conn, agreement_id=ended.id, organization=ended.organization, disposition=disposition, due_on=due_on
    ):
        return
    verb = "destroy" if disposition == "destroy" else "return to the district"
    await notices.add(
        conn,
        notices.Notice(
            recipient=_recipient(ended.id),
            kind="destruction_requested",
            subject=f"Agreement {ended.id} has ended: certify by {due_on.isoformat()} that the data is "
            + ("destroyed" if disposition == "destroy" else "returned"),
            body=(
                f"To {ended.organization}:\n\nYour data-sharing agreement {ended.id} ended on {ended_on.isoformat()}.\n"
                f"As the agreement's disposition says, {verb} every copy of the student data you received under it,\n"
                "including copies held by your subcontractors (New York Education Law 2-d; 8 NYCRR 121.3(c)(3)).\n\n"
                f"Then certify it by {due_on.isoformat()}: POST /v1/agreements/{ended.id}/certification on the\n"
                "Homeroom consent service, with who certifies, the date, what was destroyed or returned, and how.\n"
                "A certification not received by that date is reported to the state's compliance staff and shown\n"
                "on the public list of agreements."
            ),
            cause=f"agreement:{ended.id}",
        ),
    )
    await outbox.add(
        conn,
        events.destruction_certification(
            "destruction_requested",
            agreement_id=ended.id,
            organization=ended.organization,
            disposition=disposition,
            due_on=due_on,
        ),
    )


async def certify(
    runtime: Runtime,
    agreement_id: str,
    *,
    method: str,
    certified_by: str,
    completed_on: date,
    what: str,
    principal_party: Party,
    actor: str,
) -> dict[str, Any]:
    """Record the recipient's certification (once); it goes to the audit log as `destruction_certified`."""
    now = clock(runtime)
    async with runtime.pool.acquire() as conn, conn.transaction():
        found = await store.certification(conn, agreement_id, lock=True)
        if found is None:
            raise conflict(
                f"Agreement {agreement_id!r} has not ended: there is no destruction to certify yet.",
                "certification.not_requested",
            )
        if found["certified"]:
            raise conflict(f"The end of agreement {agreement_id!r} was already certified.", "certification.done")
        if (method == "destroyed") != (found["disposition"] == "destroy"):
            raise rejected(
                [
                    AgreementError(
                        field="/method",
                        rule="certification.method_disposition",
                        message=f"The agreement's disposition is {found['disposition']!r}; certify it as "
                        f"{'destroyed' if found['disposition'] == 'destroy' else 'returned'}.",
                    )
                ]
            )
        if completed_on > now.date():
            raise rejected(
                [
                    AgreementError(
                        field="/completed_on", rule="date.future", message="Certify what is done, not planned."
                    )
                ]
            )
        await store.certify(
            conn,
            agreement_id,
            certified_by=certified_by,
            method=method,
            completed_on=completed_on,
            what=what,
            recorded_by=actor,
            at=now,
        )
        ended = await store.get_end(conn, agreement_id)
        await store.add_history(
            conn,
            agreement_id,
            ended.version if ended is not None else 1,
            "destruction_certified",
            actor,
            {"method": method, "certified_by": certified_by, "completed_on": completed_on.isoformat()},
        )
        await outbox.add(
            conn,
            events.destruction_certification(
                "destruction_certified",
                agreement_id=agreement_id,
                organization=found["organization"],
                disposition=found["disposition"],
                due_on=date.fromisoformat(found["due_on"]),
                recorded_by=principal_party,
                method=method,
                certified_by=certified_by,
                completed_on=completed_on,
                what=what,
            ),
        )
        done = await store.certification(conn, agreement_id)
    assert done is not None
    return done


async def escalate_overdue(runtime: Runtime) -> list[str]:
    """Certifications past their due date: escalated once to compliance (notice and event)."""
    now = clock(runtime)
    escalated: list[str] = []
    async with runtime.pool.acquire() as conn, conn.transaction():
        for overdue in await store.overdue_certifications(conn, now.date()):
            agreement_id = overdue["agreement_id"]
            await store.mark_escalated(conn, agreement_id, now)
            await notices.add(
                conn,
                notices.Notice(
                    recipient=notices.Recipient("compliance", "compliance"),
                    kind="destruction_overdue",
                    subject=f"{overdue['organization']} has not certified the "
                    + ("destruction" if overdue["disposition"] == "destroy" else "return")
                    + f" of data under agreement {agreement_id}",
                    body=(
                        f"Agreement {agreement_id} with {overdue['organization']} has ended. The recipient was asked "
                        f"to certify that it\n{'destroyed' if overdue['disposition'] == 'destroy' else 'returned'} "
                        f"its copies of the student data by {overdue['due_on']}, and has not.\n"
                        "Homeroom's own copies were shredded when the agreement ended. The agreement is now listed\n"
                        "on the public page as awaiting certification. Follow it up with the recipient."
                    ),
                    cause=f"agreement:{agreement_id}",
                ),
            )
            await outbox.add(
                conn,
                events.destruction_certification(
                    "destruction_overdue",
                    agreement_id=agreement_id,
                    organization=overdue["organization"],
                    disposition=overdue["disposition"],
                    due_on=date.fromisoformat(overdue["due_on"]),
                ),
            )
            escalated.append(agreement_id)
    return escalated


async def destroy_released(runtime: Runtime, agreement_id: str) -> int | None:
    """Shred the agreement-scoped data keys of every covered district and record it.

    Idempotent: destroying an already destroyed key is a no-op, and the record and its
    events are written once (deterministic ids, and the row lock)."""
    cipher: EnvelopeCipher = runtime.require_cipher()
    async with runtime.pool.acquire() as conn:
        record = await store.get_end(conn, agreement_id)
    if record is None or record.keys_destroyed_at is not None:
        return None
    counts = {
        district: await cipher.destroy_subject(district, agreement_id, scope="agreement")
        for district in record.districts
    }
    async with runtime.pool.acquire() as conn, conn.transaction():
        pending = await store.lock_pending_destruction(conn, agreement_id)
        if pending is None:
            return None
        total = sum(counts.values())
        await store.mark_destroyed(conn, agreement_id, total)
        metrics.KEYS_DESTROYED.inc(total)
        await store.add_history(
            conn, agreement_id, pending.version, "keys_destroyed", "homeroom-consent", {"districts": counts}
        )
        await outbox.add(
            conn,
            [
                events.data_keys_destroyed(
                    agreement_id,
                    district,
                    keys_destroyed=count,
                    reason=f"agreement {agreement_id} {pending.reason}; disposition {pending.disposition}",
                    requested_by=pending.ended_by,
                )
                for district, count in counts.items()
            ],
        )
    return total


async def end_expired(runtime: Runtime) -> list[str]:
    """End (reason "expired") every active or suspended agreement whose term is over; finish
    any shredding a crash left undone. Returns the ids ended now."""
    now = clock(runtime)
    today = now.date()
    async with runtime.pool.acquire() as conn:
        ids = await store.ids_with_status(conn, [AgreementStatus.ACTIVE, AgreementStatus.SUSPENDED])
        by_id = await store.histories(conn, ids)
    ended: list[str] = []
    for agreement_id, versions in by_id.items():
        if not versions:
            continue
        latest = _latest_non_draft(versions)
        if latest.terms.end_date is None or latest.terms.end_date >= today:
            continue
        try:
            await end(runtime, agreement_id, reason="expired", disposition=None, actor="homeroom-consent", today=today)
            ended.append(agreement_id)
        except Problem as exc:  # ended concurrently by someone else
            log.info("expiry check skipped %s: %s", agreement_id, exc.detail)
    async with runtime.pool.acquire() as conn:
        pending = await store.pending_destructions(conn)
    for agreement_id in pending:
        await destroy_released(runtime, agreement_id)
    await escalate_overdue(runtime)
    return ended


async def expiry_loop(runtime: Runtime, interval_s: float) -> None:
    while True:
        try:
            ended = await end_expired(runtime)
            if ended:
                log.info("agreements ended on expiry", extra={"agreements": ended})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("expiry check failed; retrying next round")
        await asyncio.sleep(interval_s)


async def refresh_agreement_gauges(pool: asyncpg.Pool, today: date) -> None:
    """Agreements by status, and active ones ending within 30 days, for the privacy dashboard."""
    rows = await pool.fetch("SELECT status, count(*) AS n FROM agreements GROUP BY status")
    counts = {r["status"]: r["n"] for r in rows}
    for status in ("draft", "active", "suspended", "ended"):
        metrics.AGREEMENTS.labels(status).set(counts.get(status, 0))
    ending: int = await pool.fetchval(
        """SELECT count(*) FROM agreements a JOIN agreement_versions v
             ON v.agreement_id = a.agreement_id AND v.version = a.latest_version
           WHERE a.status = 'active' AND (v.document->'terms'->>'end_date') IS NOT NULL
             AND (v.document->'terms'->>'end_date')::date BETWEEN $1 AND $1 + 30""",
        today,
    )
    metrics.AGREEMENTS_ENDING_SOON.set(ending)


async def _gauge_loop(runtime: Runtime, interval_s: float) -> None:
    while True:
        try:
            await refresh_agreement_gauges(runtime.pool, datetime.now(UTC).date())
            async with runtime.pool.acquire() as conn:
                await prune_changes(conn)
        except asyncio.CancelledError:
            raise
        except Exception:  # metrics must never take the service down; the next pass retries
            log.warning("agreement gauges not refreshed", exc_info=True)
        await asyncio.sleep(interval_s)


async def start_expiry_checks(runtime: Runtime) -> None:
    """The decision point's facts and log, the expiry check and the gauges."""
    point = DecisionLog(runtime.pool)
    await point.start()
    runtime.extras["decision_log"] = point
    interval = float(getattr(runtime.settings, "expiry_check_interval_s", 3600.0))
    runtime.extras["expiry_task"] = asyncio.create_task(expiry_loop(runtime, interval), name="consent-expiry")
    runtime.extras["gauge_task"] = asyncio.create_task(_gauge_loop(runtime, 15.0), name="consent-gauges")


async def stop_expiry_checks(runtime: Runtime) -> None:
    for name in ("expiry_task", "gauge_task"):
        task: asyncio.Task[None] | None = runtime.extras.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    point: DecisionLog | None = runtime.extras.pop("decision_log", None)
    if point is not None:
        await point.stop()


# ----------------------------------------------------------------------- import


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    new_versions: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    agreements: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": len(self.created),
            "new_versions": len(self.new_versions),
            "unchanged": len(self.unchanged),
            "agreements": self.agreements,
            "problems": self.problems,
        }


async def import_page(
    pool: asyncpg.Pool,
    text: str,
    *,
    source_name: str,
    districts: tuple[str, ...],
    recorded_by: str,
    now: datetime,
) -> ImportSummary:
    """Record every entry of an Ed Law 2-d page as a draft. A re-import leaves unchanged
    entries alone and records a changed one as a new draft version."""
    result = parse_2d(text, source_name=source_name, recorded_by=recorded_by, recorded_at=now, districts=districts)
    summary = ImportSummary()
    by_entry: dict[int, str] = {}
    for agreement in result.agreements:
        entry = int(agreement.source.rsplit("#", 1)[1])
        by_entry[entry] = agreement.id
        digest = result.digests.get(agreement.id) or hashlib.sha256(agreement.model_dump_json().encode()).hexdigest()
        outcome = "created"
        async with pool.acquire() as conn, conn.transaction():
            head = await store.lock_agreement(conn, agreement.id)
            if head is None:
                await store.insert_agreement(conn, agreement, digest=digest)
                await store.add_history(conn, agreement.id, 1, "signed", recorded_by, {"source": agreement.source})
                await outbox.add(conn, events.agreement_changed("agreement_signed", agreement))
                summary.created.append(agreement.id)
            elif head.source_digest == digest:
                outcome = "unchanged"
                summary.unchanged.append(agreement.id)
            elif head.status == AgreementStatus.ENDED.value:
                outcome = "unchanged"
                summary.unchanged.append(agreement.id)
                summary.problems.append(
                    _problem(
                        entry, agreement, "/status", "The agreement has ended; its changed entry was not recorded."
                    )
                )
            else:
                versions = await store.history(conn, agreement.id)
                candidate = agreement.model_copy(update={"version": versions[-1].version + 1})
                errors = validate_amendment(versions, candidate)
                if errors:
                    outcome = "unchanged"
                    summary.unchanged.append(agreement.id)
                    for e in errors:
                        summary.problems.append(_problem(entry, agreement, e.field, f"{e.message} [{e.rule}]"))
                else:
                    outcome = "new_version"
                    await store.insert_version(conn, candidate, digest=digest)
                    await store.add_history(
                        conn, agreement.id, candidate.version, "amended", recorded_by, {"source": agreement.source}
                    )
                    await outbox.add(conn, events.agreement_changed("agreement_amended", candidate))
                    summary.new_versions.append(agreement.id)
        summary.agreements.append(
            {
                "entry": entry,
                "agreement_id": agreement.id,
                "organization": agreement.organization,
                "category": agreement.category.value,
                "start_date": agreement.terms.start_date.isoformat() if agreement.terms.start_date else None,
                "end_date": agreement.terms.end_date.isoformat() if agreement.terms.end_date else None,
                "outcome": outcome,
            }
        )
    for problem in result.problems:
        summary.problems.append(
            {
                "entry": problem.entry_index,
                "organization": problem.organization,
                "agreement_id": by_entry.get(problem.entry_index) if problem.entry_index is not None else None,
                "field": problem.field,
                "message": problem.message,
            }
        )
    summary.problems.sort(key=lambda p: (p["entry"] is not None, p["entry"] or 0))
    by_agreement: dict[str, list[dict[str, Any]]] = {a: [] for a in by_entry.values()}
    for listed in summary.problems:
        if listed.get("agreement_id") in by_agreement:
            by_agreement[listed["agreement_id"]].append({"field": listed["field"], "message": listed["message"]})
    async with pool.acquire() as conn, conn.transaction():
        for agreement_id, found in by_agreement.items():
            await store.set_import_problems(conn, agreement_id, found)
    return summary


def _problem(entry: int, agreement: Agreement, where: str, message: str) -> dict[str, Any]:
    return {
        "entry": entry,
        "organization": agreement.organization,
        "agreement_id": agreement.id,
        "field": where,
        "message": message,
    }


# -------------------------------------------------------------------- decisions


def decision_log(runtime: Runtime) -> DecisionLog:
    point: DecisionLog = runtime.extras["decision_log"]
    return point


async def decide_many(
    point: DecisionLog, requests: Sequence[DecisionRequest], *, now: datetime, route: str = "single"
) -> list[Decision]:
    """Decide every request on the facts in memory; each answer waits for its logged row
    (facts.DecisionLog: group commit, decided again if the facts moved)."""
    with metrics.DECISION_SECONDS.labels(route).time():
        decisions = await point.decide(requests, now)
    for request, decision in zip(requests, decisions, strict=True):
        metrics.DECISIONS.labels(request.action, "permit" if decision.allow else "deny").inc()
        if not decision.allow:
            metrics.DENIALS.labels(decision.denial or "nothing_releasable").inc()
    return decisions


async def screen(point: DecisionLog, screen: ScreenRequest, *, now: datetime) -> list[str]:
    """The students a read would release nothing to, on facts brought up to date first (a
    count must not include a student whose parent just opted out)."""
    async with point.pool.acquire() as conn:
        await point.facts.refresh(conn)
    with metrics.DECISION_SECONDS.labels("screen").time():
        return point.facts.screen(screen, now)


def scope_of(versions: Sequence[Agreement], today: date) -> tuple[Agreement, bool]:
    """The version that describes the agreement's scope today, and whether it releases now."""
    status = current_status(versions)
    governing = governing_version(versions, today)
    non_draft = [v for v in versions if v.status is not AgreementStatus.DRAFT]
    version = governing or (non_draft[-1] if non_draft else versions[-1])
    return version, status is AgreementStatus.ACTIVE and governing is not None


def new_consent_id() -> str:
    return str(uuid.uuid4())
