"""Use cases: request a transfer. An enrollment in district B of a student last enrolled in
district A opens a case A → B (`request_transfers`); a move inside one district only keeps the
school current (`school_changed`); district staff send an escalated, undelivered case round
again (`request_again`).

The case id is derived from the student and the receiving enrollment (never from the event
id), and an open case per student and pair of districts is unique in the database: a
re-published enrollment, or an older enrollment in A arriving after B's, finds the same case
instead of opening another."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from homeroom import outbox
from homeroom.auth import Forbidden, Principal, Role
from homeroom.bus.envelope import OutgoingEvent
from homeroom.problems import Problem, problem_type
from homeroom.storage import Connection
from services.transfer import events, store
from services.transfer.application.reading import visible_case
from services.transfer.metrics import CASES_OPENED, TRANSITIONS
from services.transfer.settings import TransferSettings
from services.transfer.transfers import Enrollment, State, case_id, enrollment_ref, openings, step_event_id

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "homeroom_transfer_cases"  # wakes the case worker when a case is due at once


async def request_transfers(
    conn: Connection,
    settings: TransferSettings,
    student_key: str,
    new: Enrollment,
    *,
    enrolled_at: datetime,
    cause_event_id: str,
) -> list[OutgoingEvent]:
    """Record the enrollment; open the cases it reveals. Returns the events of the cases opened."""
    known = await store.known_enrollments(conn, student_key)
    found = openings(known, new)
    await store.record_enrollment(conn, student_key, new, cause_event_id)
    oldest = (enrolled_at - timedelta(days=settings.max_entry_age_days)).date()
    opened: list[OutgoingEvent] = []
    for opening in found:
        if opening.to.entry_date < oldest:
            log.info("enrollment too old to open a transfer", extra={"student_key": student_key})
            continue
        ref = enrollment_ref(opening.to.school_id, opening.to.entry_date)
        cid = case_id(student_key, opening.from_district, opening.to.district_id, ref)
        if not await store.open_case(
            conn,
            case_id=cid,
            student_key=student_key,
            from_district_id=opening.from_district,
            to=opening.to,
            enrollment_ref=ref,
            enrolled_at=enrolled_at,
            cause_event_id=cause_event_id,
        ):
            continue
        case = await store.get_case(conn, cid)
        assert case is not None
        await store.add_history(
            conn,
            cid,
            "requested",
            State.REQUESTED,
            reason="enrolled_in_receiving_district",
            detail={"enrollment": ref, "cause_event_id": cause_event_id},
            event_id=step_event_id(cid, "requested"),
        )
        opened.append(events.step(case, "transfer_requested", "requested", causation_id=cause_event_id))
    if opened:
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    for _ in opened:
        CASES_OPENED.inc()
        TRANSITIONS.labels(State.REQUESTED.value).inc()
    return opened


async def school_changed(conn: Connection, student_key: str, district_id: str, to_school_id: str) -> None:
    """A move inside one district: keep the school current, never a transfer."""
    if not student_key or not district_id or not to_school_id:
        return
    await conn.execute(
        "UPDATE student_enrollments SET school_id = $3, updated_at = now() WHERE student_key = $1 AND district_id = $2",
        student_key,
        district_id,
        to_school_id,
    )


async def request_again(
    pool: asyncpg.Pool, principal: Principal, case_id: str, note: str, now: datetime
) -> dict[str, Any]:
    """For the district staff of either district once the cause of the escalation (a peer
    down, a record missing) is fixed: the case starts again from the consent decision, with
    fresh attempts and a fresh delivery deadline. Returns the case with its history."""
    await visible_case(pool, principal, case_id)
    if principal.role is not Role.DISTRICT_STAFF:
        raise Forbidden("only district staff of the sending or receiving district may retry a transfer")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, delivered_at, retries FROM transfer_cases WHERE case_id = $1 FOR UPDATE", case_id
        )
        assert row is not None
        current = State(row["state"])
        if current is not State.ESCALATED or row["delivered_at"] is not None:
            raise Problem(
                409,
                "Transfer cannot be retried",
                f"the case is {current.value}; only an escalated case that was never delivered can be retried "
                "(a delivered one waits for the receiving district's answer)",
                type=problem_type("transfer.state_conflict"),
                extensions={"state": current.value},
            )
        n = int(row["retries"]) + 1
        moved = await store.move(
            conn,
            case_id,
            current,
            State.REQUESTED,
            reason="retried_by_staff",
            attempt=0,
            retries=n,
            clock_started_at=now,
            next_attempt_at=now,
            lease_until=None,
        )
        assert moved is not None
        event = events.step(moved, "transfer_requested", f"requested:retry:{n}", reason="retried_by_staff")
        await store.add_history(
            conn,
            case_id,
            f"retried:{n}",
            State.REQUESTED,
            reason="retried_by_staff",
            detail={"by": principal.subject, "district": principal.district_id, "note": note},
            event_id=event.event_id,
        )
        await outbox.add(conn, event)
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        history = await store.history(conn, case_id)
    TRANSITIONS.labels(State.REQUESTED.value).inc()
    return moved.public() | {"history": history}
