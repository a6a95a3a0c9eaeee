"""Use cases: the district's schools (organization.v1) and their calendars (calendar.v1).

- `school_registered`: the school's name, NCES id, grades and deletion, per district (not
  student data: no row-level security).
- `calendar_published`: a school year's instructional days for the school, per source
  (`calendar` replaces `calendar`, `terms` replaces `terms`); a date outside the school year or
  a calendar without a source is refused. Everyone enrolled at the school that year is queued
  for the absence reviewer (days enrolled come from the calendar).
"""

from __future__ import annotations

from homeroom import calendar
from homeroom.bus.consumer import HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.events.v1 import calendar_pb2, enrollment_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.application.incoming import district_of, iso_date, required, scoped

CALENDAR_SOURCES: dict[int, str] = {
    calendar_pb2.CALENDAR_SOURCE_SCHOOL_CALENDAR: "calendar",
    calendar_pb2.CALENDAR_SOURCE_ROSTER_TERMS: "terms",
}


async def school_registered(
    runtime: Runtime, event: IncomingEvent, payload: enrollment_pb2.SchoolRegistered, ctx: HandlerContext
) -> None:
    district = district_of(event, payload.district_id)
    school = required(payload.school_id, "school_id")
    await store.upsert_school(
        ctx.conn, district, school, payload.name, payload.nces_id, list(payload.grades), payload.deleted
    )


async def calendar_published(
    runtime: Runtime, event: IncomingEvent, payload: calendar_pb2.CalendarPublished, ctx: HandlerContext
) -> None:
    district = district_of(event, payload.district_id)
    school = required(payload.school_id, "school_id")
    source = CALENDAR_SOURCES.get(payload.source)
    if source is None:
        raise RejectEvent("calendar.source_unknown", "the calendar names no source", "source")
    first, last = calendar.year_bounds(payload.school_year)
    days = sorted({iso_date(d, "instructional_dates") for d in payload.instructional_dates})
    if any(not first <= d <= last for d in days):
        raise RejectEvent("calendar.date_outside_year", "an instructional date is outside the school year", "date")
    terms = [
        {"name": t.name, "begin_date": t.begin_date, "end_date": t.end_date, "declared_days": t.declared_days}
        for t in payload.terms
    ]
    days_off = sorted({iso_date(d, "non_instructional_dates") for d in payload.non_instructional_dates})
    await store.upsert_calendar(
        ctx.conn,
        district,
        school,
        payload.school_year,
        source,
        days,
        terms,
        days_off,
        payload.source_format,
        event.event_id,
    )
    await scoped(ctx, district)
    await store.queue_school_review(ctx.conn, district, school, first, last)
