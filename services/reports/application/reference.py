"""Use case: keep the school calendars and school names the tables count with (calendar.v1,
organization.v1), in the service's database, where every process of the tally reads them."""

from __future__ import annotations

from datetime import date

from homeroom.bus.consumer import HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.calendar import year_bounds
from homeroom.events.v1 import calendar_pb2, enrollment_pb2
from services.reports import store

SOURCES = {
    calendar_pb2.CALENDAR_SOURCE_SCHOOL_CALENDAR: "calendar",
    calendar_pb2.CALENDAR_SOURCE_ROSTER_TERMS: "terms",
}


def _required(value: str, field: str) -> str:
    if not value:
        raise RejectEvent("payload.missing_field", f"the event has no {field}", field)
    return value


def _district(event: IncomingEvent, payload_district: str) -> str:
    return _required(payload_district or event.meta.district_id, "district_id")


async def calendar_published(event: IncomingEvent, ctx: HandlerContext) -> None:
    p = event.payload
    assert isinstance(p, calendar_pb2.CalendarPublished)
    district = _district(event, p.district_id)
    school = _required(p.school_id, "school_id")
    source = SOURCES.get(p.source)
    if source is None:
        raise RejectEvent("calendar.source_unknown", "the calendar names no source", "source")
    first, last = year_bounds(p.school_year)
    try:
        days = sorted({date.fromisoformat(d) for d in p.instructional_dates})
    except ValueError:
        raise RejectEvent(
            "date.invalid", "an instructional date is not an ISO 8601 date", "instructional_dates"
        ) from None
    if any(not first <= d <= last for d in days):
        raise RejectEvent("calendar.date_outside_year", "an instructional date is outside the school year", "date")
    await store.upsert_calendar(ctx.conn, district, school, p.school_year, source, days, event.event_id)


async def school_registered(event: IncomingEvent, ctx: HandlerContext) -> None:
    p = event.payload
    assert isinstance(p, enrollment_pb2.SchoolRegistered)
    district = _district(event, p.district_id)
    school = _required(p.school_id, "school_id")
    await store.upsert_school(ctx.conn, district, school, p.name or school)


HANDLERS = {
    calendar_pb2.CalendarPublished: calendar_published,
    enrollment_pb2.SchoolRegistered: school_registered,
}


async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
    """One handler per event type; anything else on these topics is not reference data."""
    handler = HANDLERS.get(type(event.payload))
    if handler is not None:
        await handler(event, ctx)
