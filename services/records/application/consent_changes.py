"""Use cases: what consent.v1 changes in records.

- `directory_opt_out`: a parent's directory-information opt-out (FERPA 99.37), recorded or
  rescinded, marks the student's record, so directory elements are withheld on later reads.
- `agreement_ended`: an ended agreement is kept (not student data), so a vendor's read under it
  releases nothing from then on, whatever consent answers.
"""

from __future__ import annotations

from homeroom.bus.consumer import HandlerContext
from homeroom.bus.envelope import IncomingEvent
from homeroom.events.v1 import consent_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.application.incoming import district_of, required, scoped


async def directory_opt_out(
    runtime: Runtime,
    event: IncomingEvent,
    payload: consent_pb2.DirectoryOptOutRecorded | consent_pb2.DirectoryOptOutRescinded,
    ctx: HandlerContext,
) -> None:
    district = district_of(event, payload.district_id)
    key = required(payload.student_key, "student_key")
    await scoped(ctx, district)
    await store.set_directory_opt_out(ctx.conn, district, key, isinstance(payload, consent_pb2.DirectoryOptOutRecorded))


async def agreement_ended(
    runtime: Runtime, event: IncomingEvent, payload: consent_pb2.AgreementEnded, ctx: HandlerContext
) -> None:
    agreement = required(payload.agreement_id, "agreement_id")
    await store.end_agreement(ctx.conn, agreement, payload.version, payload.ended_on, payload.reason)
