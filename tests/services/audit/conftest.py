"""The audit service under test: real PostgreSQL, the real broker, its own copies of the topics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from google.protobuf.message import Message

from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.producer import Publisher
from homeroom.bus.topics import DISCLOSURE, REJECTED, Topic, ensure_topics, with_suffix
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from homeroom.events.v1.envelope_pb2 import Party
from services.audit.consumers import SOURCE_TOPICS, consumer_spec
from services.audit.service import SERVICE
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test

STUDENT_A = "stu_" + "a" * 32
STUDENT_B = "stu_" + "b" * 32


def disclosure(student_key: str = STUDENT_A, **overrides: Any) -> DisclosureRecorded:
    fields: dict[str, Any] = {
        "disclosure_id": str(uuid.uuid4()),
        "requester": Party(organization="Acme Learning", client_id="acme-app", person="teacher-9", role="vendor"),
        "recipient": Party(organization="Acme Learning", client_id="acme-app", role="vendor"),
        "student_key": student_key,
        "district_id": "d-100",
        "elements": ["student.first_name", "attendance.daily"],
        "purpose": "instruction",
        "legal_basis": "FERPA 99.31(a)(1) school official",
        "agreement_id": "agr-12",
        "decision_id": str(uuid.uuid4()),
        "policy_version": "consent-policy/1",
        "channel": "records-api",
        "record_required": True,
    }
    fields.update(overrides)
    return DisclosureRecorded(**fields)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    """Poll ``check`` until it holds; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


@dataclass
class Audit:
    svc: ServiceUnderTest
    env: ServiceEnv
    suffix: str
    publisher: Publisher

    def topic(self, base: Topic) -> Topic:
        return with_suffix(base, self.suffix)

    def event(
        self, base: Topic, change: str, payload: Message, *, event_id: str | None = None, subject: str = ""
    ) -> OutgoingEvent:
        topic = self.topic(base)
        return build_event(
            topic,
            change,
            payload,
            source="/test",
            subject=subject or getattr(payload, "student_key", "") or "x",
            event_id=event_id,
            topic_name=topic.name,
        )

    async def publish(self, *events: OutgoingEvent) -> None:
        await self.publisher.publish_many(list(events))

    async def count(self) -> int:
        n: int = await self.svc.pool.fetchval("SELECT count(*) FROM entries")
        return n

    async def wait_for_entries(self, n: int, timeout_s: float = 30.0) -> None:
        async def enough() -> bool:
            return await self.count() >= n

        await until(enough, timeout_s)

    async def wait_for_processed(self, n: int, timeout_s: float = 30.0) -> None:
        """Until the consumer has settled n events (applied or dead-lettered)."""

        async def enough() -> bool:
            settled: int = await self.svc.pool.fetchval("SELECT count(*) FROM processed_events")
            return settled >= n

        await until(enough, timeout_s)

    def auth(self, role: str, **scope: Any) -> dict[str, str]:
        return self.env.auth(role, **scope)


@pytest.fixture
async def audit(service_env: ServiceEnv, topic_suffix: str) -> AsyncIterator[Audit]:
    topics = [with_suffix(t, topic_suffix) for t in (*SOURCE_TOPICS, REJECTED)]
    await ensure_topics(service_env.kafka.client_kwargs(), topics)
    spec = replace(SERVICE, consumers=(consumer_spec(topic_suffix),))
    publisher = Publisher("audit-test", service_env.kafka.client_kwargs())
    try:
        async with service_under_test(spec, service_env, head_interval_s=3600.0, head_max_age_s=36000.0) as svc:
            yield Audit(svc, service_env, topic_suffix, publisher)
    finally:
        await publisher.stop()


async def seed(audit: Audit, sizes: tuple[int, ...] = (5, 12)) -> list[dict[str, Any]]:
    """Append disclosures through the broker, signing a head (POST /v1/tree-heads) at each size.

    Students alternate A, B, A ...; returns the signed heads as the API gave them."""
    heads: list[dict[str, Any]] = []
    done = 0
    for size in sizes:
        events = [
            audit.event(DISCLOSURE, "disclosure_recorded", disclosure(STUDENT_A if i % 2 == 0 else STUDENT_B))
            for i in range(done, size)
        ]
        await audit.publish(*events)
        await audit.wait_for_entries(size)
        done = size
        response = await audit.svc.client.post("/v1/tree-heads", headers=audit.auth("compliance"))
        assert response.status_code == 201, response.text
        assert response.json()["size"] == size
        heads.append(response.json())
    return heads
