"""Use cases of an agreement's end: end it (`end`), then shred what was released under it
(`destroy_released`); ask the recipient to certify the destruction or return of its copies
(at the end) and record its certification (`certification`, `certify`); escalate an overdue
certification to compliance (`escalate_overdue`); the periodic expiry check that ends
agreements past their end date and finishes what a crash left undone (`end_expired`,
`expiry_checks`), with the registry's gauges.

Ending is the one change in two steps, because the data keys live in another database: the
end (status, end record, `agreement_ended`) commits first; then each covered district's
agreement-scoped keys are shredded and the destruction is recorded with its
`data_keys_destroyed` events (deterministic ids). An end whose keys are not yet recorded as
destroyed is finished by the next expiry check, so a crash in between loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any, Literal

import asyncpg
from pydantic import Field

from homeroom import notices, outbox
from homeroom.auth import Principal, Role
from homeroom.bus.envelope import OutgoingEvent
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.problems import Problem
from homeroom.storage import Connection
from homeroom.tasks import cancel
from services.consent import events, metrics, store
from services.consent.agreements import Agreement, AgreementError, AgreementStatus, Disposition, current_status
from services.consent.application import common
from services.consent.facts import prune_changes
from services.consent.state import ConsentRuntime

log = logging.getLogger(__name__)

EXPIRY_ACTOR = "homeroom-consent"  # who ends an agreement on expiry, and shreds after any end


class End(common.Command):
    reason: Literal["expired", "terminated"] = "terminated"
    disposition: Disposition | None = None  # default: the agreement's own


class Certify(common.Command):
    method: Literal["destroyed", "returned"]
    certified_by: str = Field(min_length=1, max_length=200, description="the person who certifies, by name and title")
    completed_on: date
    what: str = Field(
        min_length=1, max_length=2000, description="what was destroyed or returned, subcontractors' copies included"
    )


async def end(
    runtime: ConsentRuntime,
    agreement_id: str,
    *,
    reason: str,
    disposition: str | None,
    principal: Principal | None = None,
) -> store.EndRecord:
    """End an agreement (final), then shred what was released under it. By a manager
    (`principal`), or by the expiry check (None) when its end date has passed."""
    today = runtime.clock().date()
    who = common.actor(principal) if principal is not None else EXPIRY_ACTOR
    authorize = common.authorizer(principal) if principal is not None else None
    async with common.changing(runtime.pool, agreement_id, authorize) as (conn, head, versions):
        status = current_status(versions)
        if status is AgreementStatus.ENDED:
            raise common.conflict(f"Agreement {agreement_id!r} has already ended.", "agreement.ended")
        if status is AgreementStatus.DRAFT:
            raise common.conflict(
                f"Agreement {agreement_id!r} was never active and released nothing; there is nothing to end.",
                "end.never_active",
            )
        target = common.latest_non_draft(versions)
        if reason == "expired" and (target.terms.end_date is None or target.terms.end_date >= today):
            raise common.rejected(
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
            ended_by=who,
            districts=head.districts,
        )
        await store.add_history(
            conn, agreement_id, target.version, "ended", who, {"reason": reason, "disposition": chosen}
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


def _recipient(agreement_id: str) -> notices.Recipient:
    return notices.Recipient("recipient", agreement_id)


async def _request_certification(
    runtime: ConsentRuntime, conn: Connection, ended: Agreement, *, disposition: str, ended_on: date
) -> None:
    """At the end: ask the recipient, by its API (GET/POST .../certification) and by e-mail,
    to destroy or return its copies as the disposition says and to certify it by a date."""
    due_on = ended_on + timedelta(days=runtime.settings.certification_due_days)
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


def _certification_event(change: str, certification: dict[str, Any], **certified: Any) -> OutgoingEvent:
    """An event about the certification as stored (store.certification), with what was certified."""
    return events.destruction_certification(
        change,
        agreement_id=certification["agreement_id"],
        organization=certification["organization"],
        disposition=certification["disposition"],
        due_on=date.fromisoformat(certification["due_on"]),
        **certified,
    )


def _require_certifier(principal: Principal, agreement_id: str) -> None:
    """The agreement's own recipient (a vendor of that agreement), or compliance."""
    if principal.role is Role.VENDOR:
        principal.require_agreement(agreement_id)


async def certification(runtime: ConsentRuntime, principal: Principal, agreement_id: str) -> dict[str, Any]:
    """What the recipient must certify at the end of the agreement, by when, and whether it has."""
    _require_certifier(principal, agreement_id)
    async with runtime.pool.acquire() as conn:
        found = await store.certification(conn, agreement_id)
    if found is None:
        raise common.not_found(agreement_id)
    return found


async def certify(runtime: ConsentRuntime, principal: Principal, agreement_id: str, body: Certify) -> dict[str, Any]:
    """Record the recipient's certification (once); it goes to the audit log as `destruction_certified`."""
    _require_certifier(principal, agreement_id)
    method, certified_by, completed_on, what = body.method, body.certified_by, body.completed_on, body.what
    who = common.actor(principal)
    now = runtime.clock()
    async with runtime.pool.acquire() as conn, conn.transaction():
        found = await store.certification(conn, agreement_id, lock=True)
        if found is None:
            raise common.conflict(
                f"Agreement {agreement_id!r} has not ended: there is no destruction to certify yet.",
                "certification.not_requested",
            )
        if found["certified"]:
            raise common.conflict(f"The end of agreement {agreement_id!r} was already certified.", "certification.done")
        if (method == "destroyed") != (found["disposition"] == "destroy"):
            raise common.rejected(
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
            raise common.rejected(
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
            recorded_by=who,
            at=now,
        )
        ended = await store.get_end(conn, agreement_id)
        await store.add_history(
            conn,
            agreement_id,
            ended.version if ended is not None else 1,
            "destruction_certified",
            who,
            {"method": method, "certified_by": certified_by, "completed_on": completed_on.isoformat()},
        )
        await outbox.add(
            conn,
            _certification_event(
                "destruction_certified",
                found,
                recorded_by=Party(
                    organization=principal.organization or "", person=principal.subject, role=principal.role.value
                ),
                method=method,
                certified_by=certified_by,
                completed_on=completed_on,
                what=what,
            ),
        )
        done = await store.certification(conn, agreement_id)
    assert done is not None
    return done


async def escalate_overdue(runtime: ConsentRuntime) -> list[str]:
    """Certifications past their due date: escalated once to compliance (notice and event)."""
    now = runtime.clock()
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
            await outbox.add(conn, _certification_event("destruction_overdue", overdue))
            escalated.append(agreement_id)
    return escalated


async def destroy_released(runtime: ConsentRuntime, agreement_id: str) -> int | None:
    """Shred the agreement-scoped data keys of every covered district and record it.

    Idempotent: destroying an already destroyed key is a no-op, and the record and its
    events are written once (deterministic ids, and the row lock)."""
    cipher = runtime.require_cipher()
    async with runtime.pool.acquire() as conn:
        record = await store.get_end(conn, agreement_id)
    if record is None or record.keys_destroyed_at is not None:
        return None
    counts = {
        district: await cipher.destroy_subject(district, agreement_id, scope="agreement")
        for district in record.districts
    }
    async with runtime.pool.acquire() as conn, conn.transaction():
        total = sum(counts.values())
        pending = await store.mark_destroyed(conn, agreement_id, total)
        if pending is None:
            return None
        metrics.KEYS_DESTROYED.inc(total)
        await store.add_history(
            conn, agreement_id, pending.version, "keys_destroyed", EXPIRY_ACTOR, {"districts": counts}
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


async def end_expired(runtime: ConsentRuntime) -> list[str]:
    """End (reason "expired") every active or suspended agreement whose term is over; finish
    any shredding a crash left undone. Returns the ids ended now."""
    now = runtime.clock()
    today = now.date()
    async with runtime.pool.acquire() as conn:
        ids = await store.ids_with_status(conn, [AgreementStatus.ACTIVE, AgreementStatus.SUSPENDED])
        by_id = await store.histories(conn, ids)
    ended: list[str] = []
    for agreement_id, versions in by_id.items():
        if not versions:
            continue
        latest = common.latest_non_draft(versions)
        if latest.terms.end_date is None or latest.terms.end_date >= today:
            continue
        try:
            await end(runtime, agreement_id, reason="expired", disposition=None)
            ended.append(agreement_id)
        except Problem as exc:  # ended concurrently by someone else
            log.info("expiry check skipped %s: %s", agreement_id, exc.detail)
    async with runtime.pool.acquire() as conn:
        pending = await store.pending_destructions(conn)
    for agreement_id in pending:
        await destroy_released(runtime, agreement_id)
    await escalate_overdue(runtime)
    return ended


async def expiry_loop(runtime: ConsentRuntime, interval_s: float) -> None:
    while True:
        try:
            ended = await end_expired(runtime)
            if ended:
                log.info("agreements ended on expiry", extra={"agreements": ended})
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


async def _gauge_loop(runtime: ConsentRuntime, interval_s: float) -> None:
    while True:
        try:
            await refresh_agreement_gauges(runtime.pool, runtime.clock().date())
            async with runtime.pool.acquire() as conn:
                await prune_changes(conn)
        except Exception:  # metrics must never take the service down; the next pass retries
            log.warning("agreement gauges not refreshed", exc_info=True)
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def expiry_checks(runtime: ConsentRuntime) -> AsyncIterator[None]:
    """The expiry check (once at start, then every `expiry_check_interval_s`) and the registry's
    gauges, for as long as the service runs."""
    tasks = (
        asyncio.create_task(expiry_loop(runtime, runtime.settings.expiry_check_interval_s), name="consent-expiry"),
        asyncio.create_task(_gauge_loop(runtime, 15.0), name="consent-gauges"),
    )
    try:
        yield
    finally:
        await cancel(*tasks)
