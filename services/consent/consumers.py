"""Bus handlers of the consent service.

`transfer.v1`: a parent's directory-information opt-out follows the student (FERPA 99.37).
When a transfer case delivers a record from district A to district B and the parent had
opted the student out of directory information in A, the same opt-out is recorded for B
(method `transfer`, by `homeroom-transfer:<case>`), with its `directory_opt_out_recorded`
event, so it applies in B at once and until the parent changes it there. A choice the
parent already made in B (opted out, or rescinded) is theirs and is left as it is.

`keys.v1`: records reports what shredding an agreement's keys destroyed
(`data_destroyed`, scope agreement); the end record of the agreement keeps it.
"""

from __future__ import annotations

from homeroom import outbox
from homeroom.bus.consumer import Handler, HandlerContext
from homeroom.bus.envelope import IncomingEvent
from homeroom.bus.topics import KEYS, TRANSFER
from homeroom.events.v1.consent_pb2 import DataDestroyed
from homeroom.events.v1.transfer_pb2 import TransferStep
from homeroom.service import ConsumerSpec, Runtime
from services.consent import events, metrics, store
from services.consent.application import clock

CARRIED_METHOD = "transfer"


def transfer_handler(runtime: Runtime) -> Handler:
    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        step = event.payload
        if event.change != "transfer_delivered" or not isinstance(step, TransferStep) or step.reason == "resent":
            return
        if not (step.student_key and step.from_district_id and step.to_district_id):
            return
        conn = ctx.conn
        if not await store.directory_opt_out(conn, step.student_key, step.from_district_id):
            return
        if await store.has_directory_choice(conn, step.student_key, step.to_district_id):
            return  # the parent has already chosen in the receiving district
        now = clock(runtime)
        who = f"homeroom-transfer:{step.case_id}"
        await store.set_directory_opt_out(
            conn,
            student_key=step.student_key,
            district_id=step.to_district_id,
            opted_out=True,
            recorded_by=who,
            method=CARRIED_METHOD,
            at=now,
        )
        await store.add_choice(
            conn,
            student_key=step.student_key,
            district_id=step.to_district_id,
            kind="directory_opt_out_recorded",
            recorded_by=who,
            method=CARRIED_METHOD,
            at=now,
            detail={"carried_from": step.from_district_id, "case_id": step.case_id},
        )
        await outbox.add(
            conn,
            events.directory_opt_out(
                True,
                student_key=step.student_key,
                district_id=step.to_district_id,
                recorded_by=who,
                method=CARRIED_METHOD,
                event_id=events.derived_id("opt_out_carried", step.case_id),
            ),
        )
        metrics.CHOICES_RECORDED.labels("directory_opt_out_carried").inc()

    return handle


def keys_handler(runtime: Runtime) -> Handler:
    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        destroyed = event.payload
        if not isinstance(destroyed, DataDestroyed) or destroyed.scope != "agreement":
            return
        await store.record_copies_destroyed(
            ctx.conn,
            destroyed.subject,
            destroyed.district_id,
            items=destroyed.items_destroyed,
            size=destroyed.bytes_destroyed,
            verified_unreadable=destroyed.verified_unreadable,
        )

    return handle


CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec("transfers", [TRANSFER], transfer_handler),
    ConsumerSpec("keys", [KEYS], keys_handler),
)
