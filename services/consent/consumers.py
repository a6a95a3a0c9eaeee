"""Bus handlers of the consent service: thin adapters over the use cases (`application/`).

`transfer.v1` `transfer_delivered` (not a resend), read by two consumers:
- `transfers`: a parent's directory-information opt-out follows the student (FERPA 99.37):
  `choices.carry_opt_out`;
- `guardianships`: the student's move is kept and their guardianship links are proposed to the
  receiving district: `linking.record_transfer`.

`keys.v1`: records reports what shredding an agreement's keys destroyed
(`data_destroyed`, scope agreement); the end record of the agreement keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from homeroom.bus.consumer import Handler, HandlerContext
from homeroom.bus.envelope import IncomingEvent
from homeroom.bus.topics import KEYS, TRANSFER
from homeroom.events.v1.consent_pb2 import DataDestroyed
from homeroom.events.v1.transfer_pb2 import TransferStep
from homeroom.service import ConsumerSpec
from homeroom.storage import Connection
from services.consent import store
from services.consent.application import choices, linking
from services.consent.state import ConsentRuntime

OnDelivery = Callable[[ConsentRuntime, Connection, TransferStep], Awaitable[None]]


def delivered(event: IncomingEvent) -> TransferStep | None:
    """The step of a first delivery of a transfer that names the student and both districts, else None."""
    step = event.payload
    if event.change != "transfer_delivered" or not isinstance(step, TransferStep) or step.reason == "resent":
        return None
    if not (step.student_key and step.from_district_id and step.to_district_id):
        return None
    return step


def on_delivery(use_case: OnDelivery) -> Callable[[ConsentRuntime], Handler]:
    def build(runtime: ConsentRuntime) -> Handler:
        async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
            step = delivered(event)
            if step is not None:
                await use_case(runtime, ctx.conn, step)

        return handle

    return build


def keys_handler(runtime: ConsentRuntime) -> Handler:
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


GUARDIANSHIPS = ConsumerSpec("guardianships", [TRANSFER], on_delivery(linking.record_transfer))

CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec("transfers", [TRANSFER], on_delivery(choices.carry_opt_out)),
    ConsumerSpec("keys", [KEYS], keys_handler),
    GUARDIANSHIPS,
)
