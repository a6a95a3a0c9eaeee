"""What every bus use case checks of an event before it writes (the rules shared by
`enrolling`, `marking`, `schools`, `suspensions`, `consent_changes`, `shredding` and
`roster_updates`), and the one way they confine a transaction to the event's district.

A missing field, an unreadable date or a district the payload and the envelope disagree on is
refused with `RejectEvent` (dead-lettered with the rule and reason; the consumer keeps going).
"""

from __future__ import annotations

from datetime import date

from homeroom.bus.consumer import HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from services.records import store


def required(value: str, field: str) -> str:
    if not value:
        raise RejectEvent("payload.missing_field", f"the event has no {field}", field)
    return value


def iso_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(required(value, field))
    except ValueError:
        raise RejectEvent("date.invalid", f"{field} is not an ISO 8601 date", field) from None


def optional_date(value: str, field: str) -> date | None:
    return iso_date(value, field) if value else None


def district_of(event: IncomingEvent, payload_district: str) -> str:
    """The event's district: the payload's, else the envelope's; refused if neither or if they differ."""
    district = payload_district or event.meta.district_id
    if not district:
        raise RejectEvent("payload.missing_field", "the event names no district", "district_id")
    if event.meta.district_id and payload_district and event.meta.district_id != payload_district:
        raise RejectEvent(
            "district.mismatch", "the payload's district differs from the envelope's district", "district_id"
        )
    return district


async def scoped(ctx: HandlerContext, district: str) -> None:
    """Confine the transaction to the event's district; set once per transaction and district."""
    if ctx.state.get("district") != district:
        await store.enter_district(ctx.conn, district)
        ctx.state["district"] = district
