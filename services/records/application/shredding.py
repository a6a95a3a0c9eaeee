"""Use case: what keys.v1's `data_keys_destroyed` does to the record.

Once a student's (or a whole district's) keys are destroyed, the sealed values are noise: the
student's rows are dropped too and a tombstone kept, so reads answer "destroyed" (410) and never
partial data. Once an agreement's key is destroyed, what records kept for the recipient (release
copies, sealed under that key) is proven unreadable, removed and reported in the outbox (consent
keeps the report with the agreement's end record).
"""

from __future__ import annotations

from homeroom import outbox
from homeroom.bus.consumer import HandlerContext
from homeroom.bus.envelope import IncomingEvent
from homeroom.events.v1 import consent_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.application.incoming import district_of, required, scoped
from services.records.destruction import destroy_agreement_copies


async def keys_destroyed(
    runtime: Runtime, event: IncomingEvent, payload: consent_pb2.DataKeysDestroyed, ctx: HandlerContext
) -> None:
    district = district_of(event, payload.district_id)
    reason = payload.reason or "keys destroyed"
    if payload.scope == "student":
        await scoped(ctx, district)
        await store.destroy_student(ctx.conn, district, required(payload.subject, "subject"), reason)
    elif payload.scope == "district":
        await scoped(ctx, district)
        await store.destroy_district_students(ctx.conn, district, reason)
    elif payload.scope == "agreement":
        subject = required(payload.subject, "subject")
        await outbox.add(ctx.conn, await destroy_agreement_copies(runtime, ctx.conn, district, subject))
