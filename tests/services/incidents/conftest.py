"""A breach world on real services in process: consent (the agreement), records (the students,
their home languages), audit (the disclosure log, fed through the broker on this test's own
topics), and incidents, with its peers wired to the others' ASGI apps and its notices going
to a real SMTP server. Time is injected: `world.at(...)` moves the incidents service's clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.producer import Publisher
from homeroom.bus.topics import DISCLOSURE, KEYS, REJECTED, Topic, ensure_topics, with_suffix
from homeroom.clock import fixed
from homeroom.events.v1.consent_pb2 import DataKeysDestroyed
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from homeroom.events.v1.envelope_pb2 import Party
from homeroom_dev.infra.smtp import EmbeddedSMTP
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.audit.consumers import SOURCE_TOPICS, consumer_spec
from services.audit.service import SERVICE as AUDIT
from services.consent.service import SERVICE as CONSENT
from services.incidents.service import SERVICE as INCIDENTS
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.mail import smtp_overrides
from tests.services.records.helpers import Records, apply, enrolled, records_service, registered

VENDOR = "Brightpath Learning"
ELEMENTS = ["student.first_name", "student.last_name", "enrollment.grade_level", "attendance.daily"]


@dataclass
class World:
    env: ServiceEnv
    audit: ServiceUnderTest
    consent: ServiceUnderTest
    records: Records
    incidents: ServiceUnderTest
    smtp: EmbeddedSMTP
    suffix: str
    publisher: Publisher
    district: str
    agreement: str
    now: datetime

    def at(self, moment: datetime) -> None:
        """The incidents service's clock reads `moment` from now on."""
        self.incidents.runtime.clock = fixed(moment)

    def auth(self, role: str, **scope: Any) -> dict[str, str]:
        return self.env.auth(role, **scope)

    def vendor(self, agreement: str | None = None, organization: str = VENDOR) -> dict[str, str]:
        return self.auth("vendor", agreement=agreement or self.agreement, organization=organization)

    def staff(self, district: str | None = None) -> dict[str, str]:
        return self.auth("district_staff", district=district or self.district)

    def _event(self, base: Topic, change: str, payload: Any, subject: str, at: datetime) -> OutgoingEvent:
        topic = with_suffix(base, self.suffix)
        return build_event(topic, change, payload, source="/test", subject=subject, time=at, topic_name=topic.name)

    def disclosure(
        self,
        student: str,
        at: datetime,
        *,
        agreement: str | None = None,
        organization: str = VENDOR,
        elements: list[str] | None = None,
        district: str | None = None,
    ) -> OutgoingEvent:
        payload = DisclosureRecorded(
            disclosure_id=str(uuid.uuid4()),
            requester=Party(organization=organization, client_id="app", role="vendor"),
            recipient=Party(organization=organization, client_id="app", role="vendor"),
            student_key=student,
            district_id=district or self.district,
            elements=elements or ELEMENTS,
            purpose="instruction",
            legal_basis="FERPA 99.31(a)(1) school official",
            agreement_id=self.agreement if agreement is None else agreement,
            decision_id=str(uuid.uuid4()),
            policy_version="consent-policy/1",
            channel="records-api",
            record_required=True,
        )
        return self._event(DISCLOSURE, "disclosure_recorded", payload, student, at)

    def student_key_destroyed(self, student: str, at: datetime, district: str | None = None) -> OutgoingEvent:
        payload = DataKeysDestroyed(
            district_id=district or self.district,
            scope="student",
            subject=student,
            reason="erasure order",
            keys_destroyed=1,
            requested_by=Party(organization=district or self.district, role="district_staff"),
        )
        return self._event(KEYS, "data_keys_destroyed", payload, student, at)

    async def log(self, *events: OutgoingEvent) -> None:
        """Into the audit log through the broker and its real consumer."""
        before: int = await self.audit.pool.fetchval("SELECT count(*) FROM entries")
        await self.publisher.publish_many(list(events))
        async with _deadline(30):
            while await self.audit.pool.fetchval("SELECT count(*) FROM entries") < before + len(events):
                await _sleep()

    async def register(self, key: str, language: str | None) -> None:
        sealed = {"student.first_name": "Ana", "student.last_name": "Lund"}
        if language is not None:
            sealed["student.home_language"] = language
        await apply(
            self.records.runtime,
            await registered(self.records.runtime, self.district, key, sealed),
            enrolled(self.district, key, "s-1", "2026-09-01"),
        )


def _deadline(seconds: float) -> Any:
    import asyncio

    return asyncio.timeout(seconds)


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.05)


def student() -> str:
    """A pseudonymous key as the log requires it (stu_ and 32 base32 characters)."""
    import base64
    import secrets

    return "stu_" + base64.b32encode(secrets.token_bytes(20)).decode().lower()


async def new_agreement(consent: ServiceUnderTest, env: ServiceEnv, districts: list[str]) -> str:
    compliance = env.auth("compliance")
    body = {
        "organization": VENDOR,
        "category": "vendor",
        "supplemental": SUPPLEMENTAL_ANSWERS,
        "terms": {
            "elements": ELEMENTS,
            "purposes": ["instruction"],
            "districts": districts,
            "start_date": "2025-01-01",
            "end_date": "2099-06-30",
            "disposition": "destroy",
        },
    }
    r = await consent.client.post("/v1/agreements", json=body, headers=compliance)
    assert r.status_code == 201, r.text
    agreement: str = r.json()["id"]
    r = await consent.client.post(f"/v1/agreements/{agreement}/activate", headers=compliance)
    assert r.status_code == 200, r.text
    return agreement


@pytest.fixture
async def world(service_env: ServiceEnv, topic_suffix: str, smtp: EmbeddedSMTP) -> AsyncIterator[World]:
    district = f"d-{uuid.uuid4().hex[:6]}"
    topics = [with_suffix(t, topic_suffix) for t in (*SOURCE_TOPICS, REJECTED)]
    await ensure_topics(service_env.kafka.client_kwargs(), topics)
    publisher = Publisher("incidents-test", service_env.kafka.client_kwargs())
    audit_spec = replace(AUDIT, consumers=(consumer_spec(topic_suffix),))
    try:
        async with (
            service_under_test(audit_spec, service_env, head_interval_s=3600.0, head_max_age_s=36000.0) as audit,
            service_under_test(CONSENT, service_env, start_consumers=False) as consent,
        ):
            await consent.runtime.relay.stop()
            agreement = await new_agreement(consent, service_env, [district])
            async with (
                records_service(service_env, consent=consent.transport) as rec,
                service_under_test(
                    INCIDENTS,
                    service_env,
                    peers={"audit": audit.transport, "consent": consent.transport, "records": rec.svc.transport},
                    clock_refresh_s=3600.0,
                    peer_timeout_s=60.0,
                    **smtp_overrides(smtp),
                ) as inc,
            ):
                await inc.runtime.relay.stop()  # its incident.v1 events stay in the outbox for the tests to read
                yield World(
                    service_env,
                    audit,
                    consent,
                    rec,
                    inc,
                    smtp,
                    topic_suffix,
                    publisher,
                    district,
                    agreement,
                    datetime.now(UTC).replace(microsecond=0),
                )
    finally:
        await publisher.stop()


def days(n: float) -> timedelta:
    return timedelta(days=n)


__all__ = ["ELEMENTS", "VENDOR", "World", "days", "httpx", "student"]
