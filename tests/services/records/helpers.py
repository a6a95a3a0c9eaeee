"""Building records' input events as ingest and consent publish them, and applying them
with the service's real handlers exactly as the kernel's consumer does (one transaction:
the processed-event mark, the handler, its outbox writes)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from homeroom import outbox
from homeroom.bus.consumer import HandlerContext
from homeroom.bus.envelope import OutgoingEvent, build_event, decode
from homeroom.bus.topics import (
    ALL_TOPICS,
    ATTENDANCE,
    CALENDAR,
    CONSENT,
    DISCIPLINE,
    ENROLLMENT,
    KEYS,
    ORGANIZATION,
    Topic,
    with_suffix,
)
from homeroom.events.v1 import attendance_pb2, calendar_pb2, consent_pb2, discipline_pb2, enrollment_pb2
from homeroom.events.v1.envelope_pb2 import SealedValue
from homeroom.service import ConsumerSpec, Runtime, ServiceSpec
from homeroom.storage import create_pool
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.consent.service import SERVICE as CONSENT_SERVICE
from services.records.consumers import CONSUMERS
from services.records.service import SERVICE
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test


def renamed(suffix: str) -> tuple[ServiceSpec, dict[str, Topic]]:
    """The records service with its consumers on topics renamed for one test, and those
    topics by their real names."""
    topics = {t.name: with_suffix(t, suffix) for t in ALL_TOPICS}
    spec = dataclasses.replace(
        SERVICE,
        consumers=tuple(
            dataclasses.replace(c, name=f"{c.name}-{suffix}", topics=[topics[t.name] for t in c.topics])
            for c in SERVICE.consumers
        ),
    )
    return spec, topics


def _event(
    topic: Topic, change: str, payload: Any, key: str, district: str, event_id: str | None = None
) -> OutgoingEvent:
    return build_event(
        topic, change, payload, source="/homeroom/ingest/test", subject=key, district_id=district, event_id=event_id
    )


async def registered(
    runtime: Runtime,
    district: str,
    key: str,
    sealed: Mapping[str, str],
    plain: Mapping[str, str] | None = None,
    flags: Sequence[str] = (),
    event_id: str | None = None,
) -> OutgoingEvent:
    """StudentRegistered with its PII sealed under (district, key, element), as ingest does."""
    cipher = runtime.require_cipher()
    values = await cipher.seal_many(district, key, dict(sealed))
    payload = enrollment_pb2.StudentRegistered(
        student_key=key,
        district_id=district,
        local_student_id_hash=f"lh_{key}",
        sealed_elements={k: SealedValue(ciphertext=v) for k, v in values.items()},
        plain_elements=dict(plain or {}),
        program_flags=list(flags),
    )
    return _event(ENROLLMENT, "student_registered", payload, key, district, event_id)


def enrolled(
    district: str, key: str, school: str, entry: str, grade: str = "05", event_id: str | None = None
) -> OutgoingEvent:
    payload = enrollment_pb2.StudentEnrolled(
        student_key=key, district_id=district, school_id=school, entry_date=entry, grade_level=grade
    )
    return _event(ENROLLMENT, "student_enrolled", payload, key, district, event_id)


def withdrawn(district: str, key: str, school: str, exit_date: str, code: str = "T1") -> OutgoingEvent:
    payload = enrollment_pb2.StudentWithdrawn(
        student_key=key, district_id=district, school_id=school, exit_date=exit_date, exit_code=code
    )
    return _event(ENROLLMENT, "student_withdrawn", payload, key, district)


def school_changed(district: str, key: str, from_school: str, to_school: str, when: str) -> OutgoingEvent:
    payload = enrollment_pb2.SchoolChanged(
        student_key=key, district_id=district, from_school_id=from_school, to_school_id=to_school, change_date=when
    )
    return _event(ENROLLMENT, "school_changed", payload, key, district)


def school(district: str, school_id: str, name: str) -> OutgoingEvent:
    payload = enrollment_pb2.SchoolRegistered(
        district_id=district, school_id=school_id, name=name, nces_id="N" + school_id
    )
    return build_event(
        ORGANIZATION, "school_registered", payload, source="/test", subject="", key=district, district_id=district
    )


def attendance(
    district: str,
    key: str,
    day: str,
    category: int = attendance_pb2.ATTENDANCE_CATEGORY_ABSENT,
    period: str = "",
    excused: bool = False,
) -> OutgoingEvent:
    payload = attendance_pb2.AttendanceRecorded(
        student_key=key,
        district_id=district,
        school_id="s",
        date=day,
        category=attendance_pb2.AttendanceCategory.ValueType(category),
        period=period,
        excused=excused,
    )
    return _event(ATTENDANCE, "attendance_recorded", payload, key, district)


def calendar(
    district: str,
    school_id: str,
    year: int,
    days: Sequence[str],
    source: int = calendar_pb2.CALENDAR_SOURCE_SCHOOL_CALENDAR,
) -> OutgoingEvent:
    """calendar.v1: the school year's instructional days, as ingest publishes them."""
    payload = calendar_pb2.CalendarPublished(
        district_id=district,
        school_id=school_id,
        school_year=year,
        source=calendar_pb2.CalendarSource.ValueType(source),
        instructional_dates=list(days),
        source_format="batch",
    )
    return build_event(
        CALENDAR, "calendar_published", payload, source="/test", subject=school_id, key=district, district_id=district
    )


def suspension(district: str, key: str, start: str, end: str) -> OutgoingEvent:
    payload = discipline_pb2.SuspensionRecorded(student_key=key, district_id=district, start_date=start, end_date=end)
    return _event(DISCIPLINE, "suspension_recorded", payload, key, district)


def opt_out(district: str, key: str) -> OutgoingEvent:
    payload = consent_pb2.DirectoryOptOutRecorded(student_key=key, district_id=district, recorded_by="p")
    return _event(CONSENT, "directory_opt_out_recorded", payload, key, district)


def agreement_ended(agreement_id: str) -> OutgoingEvent:
    payload = consent_pb2.AgreementEnded(
        agreement_id=agreement_id, version=1, ended_on="2026-11-01", reason="terminated"
    )
    return build_event(CONSENT, "agreement_ended", payload, source="/homeroom/consent", subject="", key=agreement_id)


def keys_destroyed(district: str, scope: str, subject: str) -> OutgoingEvent:
    payload = consent_pb2.DataKeysDestroyed(
        district_id=district, scope=scope, subject=subject, reason="erasure", keys_destroyed=1
    )
    return build_event(
        KEYS, "data_keys_destroyed", payload, source="/test", subject="", key=district, district_id=district
    )


async def apply(runtime: Runtime, *events: OutgoingEvent, consumers: Sequence[ConsumerSpec] = CONSUMERS) -> int:
    """Apply events with the real handlers (records', or another service's `consumers`) as the
    kernel consumer does; returns how many were new (not already processed by id). A
    RejectEvent propagates to the test."""
    handlers = {c.topics[0].name: c for c in consumers}
    fresh = 0
    for i, event in enumerate(events):
        incoming = decode(event.topic, 0, i, event.key, event.value, list(event.headers))
        handler = handlers[event.topic].build(runtime)
        async with runtime.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                """INSERT INTO processed_events (consumer, event_id, topic, partition, "offset", outcome)
                   VALUES ($1, $2, $3, 0, $4, 'applied') ON CONFLICT DO NOTHING RETURNING 1""",
                event.topic,
                incoming.event_id,
                event.topic,
                i,
            )
            if not claimed:
                continue
            ctx = HandlerContext(conn, runtime.name, consumer=event.topic)
            await handler([incoming], ctx)
            await outbox.add(conn, ctx.emitted)
            fresh += 1
        for call in ctx.after_commit:  # as the kernel consumer does, once the transaction has committed
            call()
    return fresh


async def apply_batches(runtime: Runtime, *events: OutgoingEvent) -> None:
    """Apply events as the kernel consumer does under load: each topic's events (in order)
    as ONE batch, in one transaction, through the consumer's batch handler."""
    by_topic: dict[str, list[OutgoingEvent]] = {}
    for event in events:
        by_topic.setdefault(event.topic, []).append(event)
    for topic, batch in by_topic.items():
        incoming = [decode(e.topic, 0, i, e.key, e.value, list(e.headers)) for i, e in enumerate(batch)]
        handler = {c.topics[0].name: c for c in CONSUMERS}[topic].build(runtime)
        async with runtime.pool.acquire() as conn, conn.transaction():
            ctx = HandlerContext(conn, runtime.name)
            await handler(incoming, ctx)
            await outbox.add(conn, ctx.emitted)


@dataclass
class Records:
    svc: ServiceUnderTest
    # The real consent service records asks (None when a test gave records another transport).
    consent: ServiceUnderTest | None
    env: ServiceEnv
    # The superuser on the same database: every district's rows, for checking state (the
    # service's own login sees one district at a time under row-level security).
    admin: asyncpg.Pool

    @property
    def runtime(self) -> Runtime:
        return self.svc.runtime

    @property
    def client(self) -> httpx.AsyncClient:
        return self.svc.client

    async def get(self, path: str, role: str, **scope: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.env.auth(role, **scope))

    async def post(self, path: str, body: Any, role: str, **scope: Any) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.env.auth(role, **scope))

    async def disclosures(self) -> list[Any]:
        """DisclosureRecorded payloads waiting in the outbox (the relay is stopped in tests)."""
        from homeroom.events.v1.disclosure_pb2 import DisclosureEvent

        rows = await self.runtime.pool.fetch("SELECT payload FROM outbox WHERE topic = 'disclosure.v1' ORDER BY id")
        out = []
        for r in rows:
            message = DisclosureEvent()
            message.ParseFromString(bytes(r["payload"]))
            out.append(message.disclosure_recorded)
        return out

    async def read_log(self) -> list[Any]:
        async with self.admin.acquire() as conn:
            return list(await conn.fetch("SELECT * FROM read_log ORDER BY id"))

    async def agreement(
        self,
        agreement_id: str,
        organization: str,
        *,
        districts: Sequence[str],
        elements: Sequence[str],
        schools: Sequence[str] = (),
        purposes: Sequence[str] = ("instruction", "rostering"),
        start_date: str = "2026-01-01",
        end_date: str = "2027-06-30",
    ) -> None:
        """An active vendor agreement in the real consent service, recorded and activated
        through its API as compliance staff do."""
        assert self.consent is not None, "records was given another consent transport"
        compliance = self.env.auth("compliance")
        body = {
            "agreement_id": agreement_id,
            "organization": organization,
            "category": "vendor",
            "supplemental": SUPPLEMENTAL_ANSWERS,
            "terms": {
                "elements": list(elements),
                "purposes": list(purposes),
                "districts": list(districts),
                "schools": list(schools),
                "start_date": start_date,
                "end_date": end_date,
                "disposition": "destroy",
            },
        }
        r = await self.consent.client.post("/v1/agreements", json=body, headers=compliance)
        assert r.status_code == 201, r.text
        r = await self.consent.client.post(f"/v1/agreements/{agreement_id}/activate", headers=compliance)
        assert r.status_code == 200, r.text

    async def consent_opt_out(self, district_id: str, student_key: str) -> None:
        """The parent's directory opt-out, recorded in the real consent service by district staff."""
        assert self.consent is not None, "records was given another consent transport"
        r = await self.consent.client.post(
            f"/v1/students/{student_key}/directory-opt-out",
            json={"district_id": district_id, "method": "paper_form"},
            headers=self.env.auth("district_staff", district=district_id),
        )
        assert r.status_code == 201, r.text


@contextlib.asynccontextmanager
async def records_service(
    env: ServiceEnv,
    spec: ServiceSpec = SERVICE,
    consent: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> AsyncIterator[Records]:
    """Records on real PostgreSQL and the real broker, asking the REAL consent service, run in
    process on its own database (or `consent`, another transport: an unreachable one, or a
    consent service the test started itself); the outbox relay stopped so tests can read
    what it holds."""
    overrides.setdefault("start_consumers", False)
    async with contextlib.AsyncExitStack() as stack:
        decision_point: ServiceUnderTest | None = None
        if consent is None:
            decision_point = await stack.enter_async_context(
                service_under_test(CONSENT_SERVICE, env, start_consumers=False)
            )
            consent = decision_point.transport
        svc = await stack.enter_async_context(service_under_test(spec, env, peers={"consent": consent}, **overrides))
        await svc.runtime.relay.stop()
        admin = await create_pool(env.superuser_url(svc.runtime.settings.database_url), max_size=2)
        try:
            yield Records(svc, decision_point, env, admin)
        finally:
            await admin.close()
