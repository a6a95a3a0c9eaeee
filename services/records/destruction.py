"""Destruction that destroys, with proof (use cases of the records service).

- A student's record in a district: by the district's erasure order (`order_erasure`: `DELETE`
  on the student, district staff only) or when a retention period ends (`apply_retention`, by
  the runtime's clock). The
  student's data key is shredded first (so every copy sealed under it, in every topic,
  backup and replica, is noise), then the rows are removed and a tombstone kept; a sealed
  value is tried afterwards to prove it no longer opens. Logged in `destructions` and on
  keys.v1 (`data_keys_destroyed`, `data_destroyed`), which the audit log records.
- Retention by element group, from the student's last exit: `attendance` and `discipline`
  remove those rows; `record` erases the whole record as above.
- What was kept for a recipient under an agreement (release copies, sealed under the
  agreement's key): when consent shreds that key, records proves the copies unreadable,
  removes them and reports how many (`destroy_agreement_copies`: `data_destroyed`, scope agreement).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf.message import Message

from homeroom import outbox
from homeroom.auth import Principal
from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.topics import KEYS
from homeroom.crypto import DecryptionError, KeyDestroyedError
from homeroom.events.v1.consent_pb2 import DataDestroyed, DataKeysDestroyed
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.service import Runtime
from homeroom.storage import Connection
from services.records import store
from services.records.application.refusals import destroyed, not_found

log = logging.getLogger(__name__)

SOURCE = "/homeroom/records"
GROUPS = ("record", "attendance", "discipline")
_NAMESPACE = uuid.UUID("0b8f7f3e-6a65-4d7e-9d0a-3c0f4e2f1a77")


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def _keys_event(change: str, payload: Message, district: str, subject: str, event_id: str) -> OutgoingEvent:
    """A keys.v1 event of the district (keyed by it, so its destructions stay in order)."""
    return build_event(
        KEYS,
        change,
        payload,
        source=f"{SOURCE}/{district}",
        subject=subject,
        district_id=district,
        key=district,
        event_id=event_id,
    )


def _keys_destroyed(district: str, key: str, reason: str, who: Party, cause: str) -> OutgoingEvent:
    payload = DataKeysDestroyed(
        district_id=district, scope="student", subject=key, reason=reason, keys_destroyed=1, requested_by=who
    )
    return _keys_event("data_keys_destroyed", payload, district, key, _id("keys", cause))


def data_destroyed(
    *,
    district: str,
    scope: str,
    subject: str,
    reason: str,
    items: int,
    size: int,
    verified: bool,
    what: Sequence[str],
    who: Party,
    cause: str,
) -> OutgoingEvent:
    payload = DataDestroyed(
        district_id=district,
        scope=scope,
        subject=subject,
        reason=reason[:250],
        items_destroyed=items,
        bytes_destroyed=size,
        verified_unreadable=verified,
        what=list(what),
        requested_by=who,
    )
    return _keys_event("data_destroyed", payload, district, subject, _id("data", cause))


async def _unreadable(runtime: Runtime, district: str, subject: str, element: str, sealed: bytes, scope: str) -> bool:
    """The proof: a value sealed for the subject, tried now, does not open because its key is gone."""
    cipher = runtime.require_cipher()
    cipher.forget(district, subject, scope="agreement" if scope == "agreement" else "student")
    try:
        await cipher.open(district, subject, element, sealed, scope="agreement" if scope == "agreement" else "student")
    except KeyDestroyedError:
        return True
    except DecryptionError:
        return False
    return False


async def order_erasure(
    runtime: Runtime, principal: Principal, district_id: str, student_key: str, reason: str
) -> dict[str, Any]:
    """A district's erasure order (its own staff only): the student's record erased, once."""
    if principal.district_id != district_id:
        raise not_found()
    async with store.district_tx(runtime.pool, district_id) as conn:
        stored = await store.load_record(conn, district_id, student_key)
    if stored is None:
        raise not_found()
    if stored.destroyed_at is not None:
        raise destroyed(district_id)
    who = Party(organization=district_id, person=principal.subject, role=principal.role.value)
    try:
        return await erase_student(
            runtime,
            district_id,
            student_key,
            reason=reason,
            ordered_by=who,
            cause=f"erasure|{district_id}|{student_key}",
        )
    except (LookupError, KeyDestroyedError):
        raise destroyed(district_id) from None


async def erase_student(
    runtime: Runtime, district: str, key: str, *, reason: str, ordered_by: Party, cause: str
) -> dict[str, Any]:
    """Crypto-shred one student's record in one district and keep a tombstone."""
    cipher = runtime.require_cipher()
    async with store.district_tx(runtime.pool, district) as conn:
        stored = await store.load_record(conn, district, key)
        items, size = await store.count_student_rows(conn, district, key)
    if stored is None:
        raise LookupError(key)
    sample = next(iter(stored.sealed.items()), None)
    await cipher.destroy_subject(district, key)  # first: from here on every sealed copy is noise
    verified = sample is not None and await _unreadable(runtime, district, key, sample[0], sample[1], "student")
    async with store.district_tx(runtime.pool, district) as conn:
        await store.destroy_student(conn, district, key, reason)
        await _record(
            conn,
            Destroyed(district, key, "record", reason, items, size, verified),
            ordered_by,
            cause,
            first=_keys_destroyed(district, key, reason, ordered_by, cause),
        )
    return {
        "student_key": key,
        "district_id": district,
        "destroyed": True,
        "items_destroyed": items,
        "sealed_bytes_destroyed": size,
        "verified_unreadable": verified,
        "reason": reason,
    }


async def apply_retention(runtime: Runtime) -> list[dict[str, Any]]:
    """Remove what each district's retention periods say has been kept long enough, as of the
    runtime's clock (tests move it)."""
    day = runtime.clock().date()
    done: list[dict[str, Any]] = []
    async with runtime.pool.acquire() as conn:
        districts = await store.districts_with_retention(conn)
    job = Party(organization="homeroom-records", person="retention", role="service")
    for district in districts:
        async with store.district_tx(runtime.pool, district) as conn:
            policy = await store.retention_policy(conn, district)
            shortest = min(policy.values())
            exited = await store.exited_students(conn, district, day - timedelta(days=shortest))
        for key, last_exit in exited:
            for group in sorted(policy, key=lambda g: GROUPS.index(g)):
                if last_exit + timedelta(days=policy[group]) > day:
                    continue
                reason = f"retention: {group} kept {policy[group]} days after exit on {last_exit.isoformat()}"
                cause = f"retention|{district}|{key}|{group}"
                if group == "record":
                    with contextlib.suppress(LookupError, KeyDestroyedError):
                        done.append(
                            await erase_student(runtime, district, key, reason=reason, ordered_by=job, cause=cause)
                        )
                    break
                async with store.district_tx(runtime.pool, district) as conn:
                    if not await store.has_group_data(conn, district, key, group):
                        continue
                    items = await store.delete_group(conn, district, key, group)
                    await _record(conn, Destroyed(district, key, group, reason, items, 0, False), job, cause)
                done.append({"student_key": key, "district_id": district, "group": group, "items_destroyed": items})
    return done


@dataclass(frozen=True, slots=True)
class Destroyed:
    """What one destruction of a student's data removed."""

    district: str
    student_key: str
    scope: str  # record, attendance, discipline
    reason: str
    items: int
    size: int
    verified: bool


async def _record(
    conn: Connection, done: Destroyed, who: Party, cause: str, *, first: OutgoingEvent | None = None
) -> None:
    """Log a destruction in `destructions` and on keys.v1 (data_destroyed), in the caller's transaction."""
    row = store.DestructionLog(
        district_id=done.district,
        student_key=done.student_key,
        scope=done.scope,
        reason=done.reason,
        ordered_by=f"{who.role}:{who.person}",
        items=done.items,
        verified_unreadable=done.verified,
    )
    await store.log_destruction(conn, row)
    report = data_destroyed(
        district=done.district,
        scope="student",
        subject=done.student_key,
        reason=done.reason,
        items=done.items,
        size=done.size,
        verified=done.verified,
        what=["the whole record"] if done.scope == "record" else [done.scope],
        who=who,
        cause=cause,
    )
    await outbox.add(conn, [first, report] if first is not None else [report])


async def retention_loop(runtime: Runtime, interval_s: float) -> None:
    while True:
        try:
            removed = await apply_retention(runtime)
            if removed:
                log.info("retention applied", extra={"destroyed": len(removed)})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention pass failed; retrying next round")
        await asyncio.sleep(interval_s)


async def destroy_agreement_copies(
    runtime: Runtime, conn: Connection, district: str, agreement_id: str
) -> OutgoingEvent:
    """Consent shredded the agreement's key in `district`: prove the copies kept for the
    recipient unreadable, remove them, and say what was destroyed (in the handler's transaction)."""
    await store.enter_district(conn, district)
    copies = await store.release_copies(conn, agreement_id)
    size = sum(len(bytes(c["payload"])) for c in copies)
    students = sum(int(c["students"]) for c in copies)
    verified = bool(copies) and await _unreadable(
        runtime, district, agreement_id, "record.release_copy", bytes(copies[0]["payload"]), "agreement"
    )
    await store.drop_release_copies(conn, agreement_id)
    return data_destroyed(
        district=district,
        scope="agreement",
        subject=agreement_id,
        reason=f"agreement {agreement_id} ended: its data key in {district} was shredded",
        items=len(copies),
        size=size,
        verified=verified,
        what=[f"{len(copies)} release copies ({students} students' releases)"] if copies else [],
        who=Party(organization="homeroom-records", role="service"),
        cause=f"agreement|{agreement_id}|{district}",
    )


def copy_summary(raw: bytes) -> list[dict[str, Any]]:
    """A release copy, opened (tests and tools): one entry per student released."""
    found: list[dict[str, Any]] = json.loads(raw)
    return found
