"""Use case: what enrollment.v1 does to the record, a poll's batch at a time.

- `student_registered`: the sealed elements are stored as received, the plain (non-PII) ones
  merged, the program flags sealed under the student's key. An element that is not in the
  catalogue, or a PII element sent unsealed, is refused.
- `student_enrolled`: the enrollment is upserted on (district, student, school, entry date).
- `student_withdrawn`: the enrollment open at that school is closed on the exit date (refused
  if there is none, or if it began after the exit date).
- `school_changed`: the old school's enrollment is closed (`school_change`), the new one opened.

Every student an enrollment, withdrawal or school change names is queued for the absence
reviewer in the same transaction (days enrolled may change): an enrollment's by the statement
that writes it, so a batch without withdrawals or school changes visits each district once.

Registrations and enrollments are written a run at a time (`_Run`: one statement per district
for each); a withdrawal or school change ends the run and is applied on its own, so each
student's events keep their order. Once a batch that registered or enrolled students commits,
the waiting-marks task (`waiting_marks.py`) is woken: marks that arrived before their student go
in then, not up to a poll later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

from homeroom.bus.consumer import HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.catalogue import CATALOGUE
from homeroom.crypto import EnvelopeCipher
from homeroom.events.v1 import enrollment_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.application.incoming import district_of, iso_date, required, scoped
from services.records.record import PROGRAM_FLAGS_ELEMENT


async def apply(runtime: Runtime, events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
    """Apply a batch of enrollment.v1 events in order (RejectEvent names the first bad one)."""
    cipher = runtime.require_cipher()
    run = _Run(ctx)
    # district → students a withdrawal or school change queues for the absence reviewer (an
    # enrollment's students are queued by the statement that writes the run's enrollments)
    review: dict[str, set[str]] = {}
    for event in events:
        payload = event.payload
        if isinstance(payload, enrollment_pb2.StudentRegistered):
            district = district_of(event, payload.district_id)
            await run.add(district, await _registration(cipher, district, payload))
        elif isinstance(payload, enrollment_pb2.StudentEnrolled):
            district, key, school = _enrollment_of(event, payload)
            entry = iso_date(payload.entry_date, "entry_date")
            await run.add(district, store.Enrollment(key, school, entry, payload.grade_level, payload.entry_type))
        elif isinstance(payload, enrollment_pb2.StudentWithdrawn):
            district, key, school = _enrollment_of(event, payload)
            exit_date = iso_date(payload.exit_date, "exit_date")
            await run.flush()
            await scoped(ctx, district)
            await _close(ctx, district, key, school, exit_date, payload.exit_code)
            review.setdefault(district, set()).add(key)
        elif isinstance(payload, enrollment_pb2.SchoolChanged):
            district = district_of(event, payload.district_id)
            key = required(payload.student_key, "student_key")
            from_school = required(payload.from_school_id, "from_school_id")
            to_school = required(payload.to_school_id, "to_school_id")
            when = iso_date(payload.change_date, "change_date")
            await run.flush()
            await scoped(ctx, district)
            await _close(ctx, district, key, from_school, when, "school_change")
            await store.enroll(ctx.conn, district, key, to_school, when, "", "school_change")
            review.setdefault(district, set()).add(key)
    await run.flush()
    for district, keys in sorted(review.items()):
        await scoped(ctx, district)
        await store.queue_review(ctx.conn, district, keys)
    waiting = runtime.state.waiting_marks
    if run.wrote and waiting is not None:
        # Marks that arrived before these students can go in as soon as the batch commits,
        # not a poll of the waiting-marks task later.
        ctx.after_commit.append(waiting.wake)


async def _registration(
    cipher: EnvelopeCipher, district: str, payload: enrollment_pb2.StudentRegistered
) -> store.Registration:
    """The registration to store; RejectEvent for an element outside the catalogue or PII sent unsealed."""
    key = required(payload.student_key, "student_key")
    for element in [*payload.sealed_elements, *payload.plain_elements]:
        if element not in CATALOGUE:
            raise RejectEvent("element.unknown", f"{element!r} is not a catalogue element", element)
    for element in payload.plain_elements:
        if CATALOGUE[element].pii:
            raise RejectEvent("element.pii_unsealed", f"{element} is PII and must arrive sealed", element)
    flags = None
    if payload.program_flags:
        flags = await cipher.seal(district, key, PROGRAM_FLAGS_ELEMENT, json.dumps(sorted(set(payload.program_flags))))
    return store.Registration(
        key,
        payload.local_student_id_hash,
        {k: bytes(v.ciphertext) for k, v in payload.sealed_elements.items()},
        dict(payload.plain_elements),
        flags,
    )


def _enrollment_of(
    event: IncomingEvent, payload: enrollment_pb2.StudentEnrolled | enrollment_pb2.StudentWithdrawn
) -> tuple[str, str, str]:
    """The district, student and school an enrollment event names (RejectEvent if one is missing)."""
    district = district_of(event, payload.district_id)
    return district, required(payload.student_key, "student_key"), required(payload.school_id, "school_id")


class _Run:
    """Registrations and enrollments written together: per district, every registration of
    the run (merged per student, in order) and then every enrollment. That order is the
    stream's own for each student unless a student registers again after enrolling, so
    such a registration starts a new run, as a withdrawal or school change does."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self.registrations: dict[str, list[store.Registration]] = {}
        self.enrollments: dict[str, list[store.Enrollment]] = {}
        self.enrolled: set[tuple[str, str]] = set()
        self.wrote = False  # a registration or enrollment was written: students may be known now

    async def add(self, district: str, item: store.Registration | store.Enrollment) -> None:
        if isinstance(item, store.Registration):
            if (district, item.student_key) in self.enrolled:
                await self.flush()
            self.registrations.setdefault(district, []).append(item)
        else:
            self.enrollments.setdefault(district, []).append(item)
            self.enrolled.add((district, item.student_key))

    async def flush(self) -> None:
        registrations, self.registrations = self.registrations, {}
        enrollments, self.enrollments = self.enrollments, {}
        self.enrolled = set()
        self.wrote = self.wrote or bool(registrations or enrollments)
        # District by district (each its own rows), so the district is set once for both.
        for district in sorted(registrations.keys() | enrollments.keys()):
            await scoped(self.ctx, district)
            if district in registrations:
                await store.register_students(self.ctx.conn, district, registrations[district])
            if district in enrollments:
                await store.enroll_many(self.ctx.conn, district, enrollments[district])


async def _close(ctx: HandlerContext, district: str, key: str, school: str, when: date, code: str) -> None:
    outcome = await store.withdraw(ctx.conn, district, key, school, when, code)
    if outcome == "no_enrollment":
        raise RejectEvent(
            "enrollment.exit_without_entry", f"no enrollment of the student at school {school} to close", "school_id"
        )
    if outcome == "before_entry":
        raise RejectEvent(
            "enrollment.exit_before_entry",
            f"the exit date precedes the student's entry at school {school} (out of order?)",
            "exit_date",
        )
