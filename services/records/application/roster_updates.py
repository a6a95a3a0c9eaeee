"""Use case: keep the district's roster from roster.v1, a poll's batch at a time.

A district's roster is mostly class enrollments (250,000 for 50,000 students): they are gathered
per district and upserted in one pipelined statement. Academic sessions, courses, classes and
staff go through the writer for their type, in order (pending class enrollments are written
first, so the partition's order holds). Each write is an upsert on its natural key; sessions,
courses and classes are not personal data (no row-level security), staff and class enrollments
are written as the district's. Refused: an end before the start, a class enrollment role other
than student or teacher, a staff element that is not a staff element of the catalogue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeroom.bus.consumer import HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.catalogue import CATALOGUE
from homeroom.events.v1 import roster_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.application.incoming import district_of, iso_date, optional_date, required, scoped


async def apply(runtime: Runtime, events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
    """Apply a batch of roster.v1 events in order (RejectEvent names the first bad one)."""
    pending: dict[str, list[store.ClassEnrollmentRow]] = {}

    async def flush() -> None:
        for district, rows in pending.items():
            await scoped(ctx, district)
            await store.upsert_class_enrollments(ctx.conn, district, rows)
        pending.clear()

    for event in events:
        payload = event.payload
        if isinstance(payload, roster_pb2.ClassEnrollmentRecorded):
            district, row = _class_enrollment_row(event, payload)
            pending.setdefault(district, []).append(row)
            continue
        await flush()
        writer = _WRITERS.get(type(payload))
        if writer is not None:
            await writer(event, payload, ctx)
    await flush()


async def _session(event: IncomingEvent, p: roster_pb2.AcademicSessionRegistered, ctx: HandlerContext) -> None:
    district = district_of(event, p.district_id)
    start, end = iso_date(p.start_date, "start_date"), iso_date(p.end_date, "end_date")
    if end < start:
        raise RejectEvent("date.end_before_start", "the session ends before it starts", "end_date")
    await store.upsert_session(
        ctx.conn,
        district,
        required(p.session_id, "session_id"),
        title=required(p.title, "title"),
        session_type=required(p.session_type, "session_type"),
        start=start,
        end=end,
        parent_id=p.parent_id,
        school_year=p.school_year,
        deleted=p.deleted,
    )


def _values(p: Any, plain: Sequence[str], lists: Sequence[str], **given: object) -> dict[str, object]:
    """A roster object's columns: fields copied as sent, repeated fields as lists, and `given`."""
    return {**{f: getattr(p, f) for f in plain}, **{f: list(getattr(p, f)) for f in lists}, **given}


async def _course(event: IncomingEvent, p: roster_pb2.CourseRegistered, ctx: HandlerContext) -> None:
    district = district_of(event, p.district_id)
    plain, lists = ("course_code", "school_id", "school_year_id", "deleted"), ("grades", "subjects")
    values = _values(p, plain, lists, title=required(p.title, "title"))
    await store.upsert_course(ctx.conn, district, required(p.course_id, "course_id"), values)


async def _class(event: IncomingEvent, p: roster_pb2.ClassRegistered, ctx: HandlerContext) -> None:
    district = district_of(event, p.district_id)
    plain, lists = ("class_code", "course_id", "location", "deleted"), ("term_ids", "periods", "grades", "subjects")
    values = _values(
        p,
        plain,
        lists,
        title=required(p.title, "title"),
        class_type=p.class_type or "scheduled",
        school_id=required(p.school_id, "school_id"),
    )
    await store.upsert_class(ctx.conn, district, required(p.class_id, "class_id"), values)


async def _staff(event: IncomingEvent, p: roster_pb2.StaffRegistered, ctx: HandlerContext) -> None:
    district = district_of(event, p.district_id)
    key = required(p.staff_key, "staff_key")
    for element in p.sealed_elements:
        if element not in CATALOGUE or CATALOGUE[element].subject != "staff":
            raise RejectEvent("element.unknown", f"{element!r} is not a staff element of the catalogue", element)
    await scoped(ctx, district)
    await store.upsert_staff(
        ctx.conn,
        district,
        key,
        role=p.role or "teacher",
        school_ids=list(p.school_ids),
        sealed={k: bytes(v.ciphertext) for k, v in p.sealed_elements.items()},
        deleted=p.deleted,
    )


def _class_enrollment_row(
    event: IncomingEvent, p: roster_pb2.ClassEnrollmentRecorded
) -> tuple[str, store.ClassEnrollmentRow]:
    """The district and the row of a class enrollment; RejectEvent names what is wrong."""
    district = district_of(event, p.district_id)
    if p.role not in ("student", "teacher"):
        raise RejectEvent("role.unknown", "a class enrollment's role is student or teacher", "role")
    begin, end = optional_date(p.begin_date, "begin_date"), optional_date(p.end_date, "end_date")
    if begin and end and end < begin:
        raise RejectEvent("date.end_before_start", "the class enrollment ends before it begins", "end_date")
    row = (
        required(p.class_id, "class_id"),
        p.role,
        required(p.user_key, "user_key"),
        required(p.school_id, "school_id"),
        p.primary,
        begin,
        end,
        p.deleted,
    )
    return district, row


_WRITERS: dict[type, Callable[[IncomingEvent, Any, HandlerContext], Awaitable[None]]] = {
    roster_pb2.AcademicSessionRegistered: _session,
    roster_pb2.CourseRegistered: _course,
    roster_pb2.ClassRegistered: _class,
    roster_pb2.StaffRegistered: _staff,
}
