"""Bus handlers of the records service: thin adapters over the use cases (`application/`).
Each consumer hands its events to the use case for their change; changes records does not
consume are passed over.

| consumer | topic | use case |
|---|---|---|
| enrollment | enrollment.v1 (batches) | `enrolling.apply`: registrations, enrollments, withdrawals, school changes |
| organization | organization.v1 | `schools.school_registered` |
| attendance | attendance.v1 (batches) | `marking.apply`: marks, or kept waiting (`waiting_marks`) |
| discipline | discipline.v1 | `suspensions.suspension_recorded` |
| calendar | calendar.v1 | `schools.calendar_published` |
| consent | consent.v1 | `consent_changes.directory_opt_out`, `consent_changes.agreement_ended` |
| keys | keys.v1 | `shredding.keys_destroyed` |
| roster | roster.v1 (batches) | `roster_updates.apply`: sessions, courses, classes, staff, class enrollments |

The kernel runs each handler in one transaction with the event's "already applied" mark,
so a redelivered event is dropped by id; on top of that every write is an upsert keyed by
its natural key (student, school, date, period ...), so even a re-published copy under a
new id leaves the same state. Events of one student share a partition and arrive in
order. Each write runs as the RLS-confined app role with the event's district set
(`application/incoming.py`). Bad input is refused with `RejectEvent` (dead-lettered with the
rule and reason; the consumer keeps going).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from homeroom.bus.consumer import BatchHandler, Handler, HandlerContext
from homeroom.bus.envelope import IncomingEvent
from homeroom.bus.topics import ATTENDANCE, CALENDAR, CONSENT, DISCIPLINE, ENROLLMENT, KEYS, ORGANIZATION, ROSTER
from homeroom.events.v1 import calendar_pb2, consent_pb2, discipline_pb2, enrollment_pb2
from homeroom.service import ConsumerSpec, Runtime
from services.records.application import (
    consent_changes,
    enrolling,
    marking,
    roster_updates,
    schools,
    shredding,
    suspensions,
)
from services.records.application.suspensions import StudentNotYetKnown

__all__ = ["CONSUMERS", "StudentNotYetKnown"]

EventUseCase = Callable[[Runtime, IncomingEvent, Any, HandlerContext], Awaitable[None]]
BatchUseCase = Callable[[Runtime, Sequence[IncomingEvent], HandlerContext], Awaitable[None]]


def each(use_cases: Mapping[type, EventUseCase]) -> Callable[[Runtime], Handler]:
    """A per-event handler: the use case for the payload's type, with the payload as that type."""

    def build(runtime: Runtime) -> Handler:
        async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
            use_case = use_cases.get(type(event.payload))
            if use_case is not None:
                await use_case(runtime, event, event.payload, ctx)

        return handle

    return build


def batches(use_case: BatchUseCase) -> Callable[[Runtime], BatchHandler]:
    """A batch handler: a poll's events (partition after partition, each in order) to the use case."""

    def build(runtime: Runtime) -> BatchHandler:
        async def handle(events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
            await use_case(runtime, events, ctx)

        return handle

    return build


CONSUMERS: tuple[ConsumerSpec, ...] = (
    # Polls as large as attendance's: an enrollment consumer that takes 500 events a poll falls behind
    # the marks of the same upload, and a mark that finds its student unknown is written twice
    # (kept waiting, then moved) (bench/records.py, round 30).
    ConsumerSpec("enrollment", [ENROLLMENT], batch_handler=batches(enrolling.apply), max_batch=4000),
    ConsumerSpec("organization", [ORGANIZATION], each({enrollment_pb2.SchoolRegistered: schools.school_registered})),
    # A poll's statements go per district, not per mark: polls of 4,000 marks ran 0.049-0.058
    # statements per event in bench/records.py, polls of 1,000 0.066-0.070 (round 29).
    ConsumerSpec("attendance", [ATTENDANCE], batch_handler=batches(marking.apply), max_batch=4000),
    ConsumerSpec(
        "discipline", [DISCIPLINE], each({discipline_pb2.SuspensionRecorded: suspensions.suspension_recorded})
    ),
    ConsumerSpec("calendar", [CALENDAR], each({calendar_pb2.CalendarPublished: schools.calendar_published})),
    ConsumerSpec(
        "consent",
        [CONSENT],
        each(
            {
                consent_pb2.DirectoryOptOutRecorded: consent_changes.directory_opt_out,
                consent_pb2.DirectoryOptOutRescinded: consent_changes.directory_opt_out,
                consent_pb2.AgreementEnded: consent_changes.agreement_ended,
            }
        ),
    ),
    ConsumerSpec("keys", [KEYS], each({consent_pb2.DataKeysDestroyed: shredding.keys_destroyed})),
    ConsumerSpec("roster", [ROSTER], batch_handler=batches(roster_updates.apply), max_batch=1000),
)
