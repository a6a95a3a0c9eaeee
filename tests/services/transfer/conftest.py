"""The transfer service under test: real PostgreSQL, the real broker (its own copy of the
enrollment topic per test), the REAL consent service in process (its own database; district A
does not transfer immunizations, district NOTHING transfers nothing), and a records peer over
real HTTP (tests/services/transfer/peers.py) that lets a test make records refuse or fail."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from homeroom.bus.envelope import IncomingEvent, OutgoingEvent, build_event, decode
from homeroom.bus.producer import Publisher
from homeroom.bus.topics import ENROLLMENT, ensure_topics, with_suffix
from homeroom.catalogue import ELEMENTS
from homeroom.config import ServiceSettings
from homeroom.events.v1.enrollment_pb2 import StudentEnrolled
from homeroom.service import ServiceSpec
from services.consent.service import SERVICE as CONSENT
from services.transfer.consumers import consumer_spec
from services.transfer.service import SERVICE
from services.transfer.store import Case, get_case
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.services.transfer.peers import RecordsPeer, sample_record, serve

A, B, C = "d-a", "d-b", "d-c"
NOTHING = "d-nothing"  # excludes every element from transfers: consent releases nothing from it


def new_key() -> str:
    return "stu_" + uuid.uuid4().hex


async def wait_until(check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0, what: str = "") -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                value = await check()
                if value:
                    return value
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or check}") from None


@dataclass
class World:
    env: ServiceEnv
    suffix: str
    spec: ServiceSpec
    consent: ServiceUnderTest
    records: RecordsPeer
    records_url: str
    publisher: Publisher

    def enrolled(
        self, key: str, district: str, school: str, entry_date: str, *, event_id: str | None = None
    ) -> OutgoingEvent:
        topic = with_suffix(ENROLLMENT, self.suffix)
        payload = StudentEnrolled(student_key=key, district_id=district, school_id=school, entry_date=entry_date)
        return build_event(
            topic,
            "student_enrolled",
            payload,
            source="/test/ingest",
            subject=key,
            district_id=district,
            event_id=event_id,
            topic_name=topic.name,
        )

    async def publish(self, *events: OutgoingEvent) -> None:
        await self.publisher.publish_many(list(events))

    async def settings(self, **overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {
            "records_url": self.records_url,
            "worker_poll_interval_s": 0.1,
            "retry_base_backoff_s": 0.05,
            "retry_max_backoff_s": 0.2,
            **overrides,
        }
        return await self.env.settings_for(self.spec, **values)

    @contextlib.asynccontextmanager
    async def service(
        self,
        settings: ServiceSettings | None = None,
        peers: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[ServiceUnderTest]:
        """The transfer service, asking this world's consent service (and `peers` besides)."""
        resolved = settings or await self.settings(**overrides)
        wired = {"consent": self.consent.transport, **(peers or {})}
        async with service_under_test(self.spec, self.env, settings=resolved, peers=wired) as svc:
            yield svc

    def auth(self, role: str, **scope: Any) -> dict[str, str]:
        return self.env.auth(role, **scope)


async def cases_of(svc: ServiceUnderTest, key: str) -> list[Case]:
    rows = await svc.pool.fetch("SELECT case_id FROM transfer_cases WHERE student_key = $1", key)
    found = [await get_case(svc.pool, r["case_id"]) for r in rows]
    return [c for c in found if c is not None]


async def processed(svc: ServiceUnderTest) -> int:
    n: int = await svc.pool.fetchval("SELECT count(*) FROM processed_events")
    return n


async def wait_state(svc: ServiceUnderTest, key: str, state: str, timeout_s: float = 30.0) -> Case:
    async def check() -> Case | None:
        cases = await cases_of(svc, key)
        return cases[0] if len(cases) == 1 and cases[0].state.value == state else None

    result: Case = await wait_until(check, timeout_s, f"the case of {key} to reach {state}")
    return result


@pytest.fixture
async def world(service_env: ServiceEnv, topic_suffix: str) -> AsyncIterator[World]:
    await ensure_topics(service_env.kafka.client_kwargs(), [with_suffix(ENROLLMENT, topic_suffix)])
    records = RecordsPeer(service_env.issuer.verifier())
    spec = replace(SERVICE, consumers=(consumer_spec(topic_suffix),))
    publisher = Publisher("transfer-test", service_env.kafka.client_kwargs())
    async with (
        service_under_test(CONSENT, service_env, start_consumers=False) as consent,
        serve(records.app()) as records_url,
    ):
        await exclude_from_transfers(consent, service_env, A, ["health.immunizations"])
        await exclude_from_transfers(consent, service_env, NOTHING, [e.id for e in ELEMENTS])
        try:
            yield World(service_env, topic_suffix, spec, consent, records, records_url, publisher)
        finally:
            await publisher.stop()


async def exclude_from_transfers(
    consent: ServiceUnderTest, env: ServiceEnv, district: str, elements: list[str]
) -> None:
    """The district's own list of elements it does not send with a transfer, set in consent."""
    r = await consent.client.put(
        f"/v1/districts/{district}/transfer-exclusions",
        json={"elements": elements},
        headers=env.auth("district_staff", district=district),
    )
    assert r.status_code == 200, r.text


__all__ = [
    "NOTHING",
    "A",
    "B",
    "C",
    "World",
    "cases_of",
    "new_key",
    "processed",
    "read_bus",
    "read_matching",
    "sample_record",
    "wait_state",
    "wait_until",
]


async def read_bus(bootstrap: str, topic: str, event_ids: set[str], timeout_s: float = 20.0) -> list[IncomingEvent]:
    """Read `topic` from the start until every id in `event_ids` was seen; returns every copy
    of those events (so a test can see duplicates, too)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        await consumer.topics()  # fetches metadata
        partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in partitions])  # no group: nothing to join
    found: list[IncomingEvent] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not event_ids <= {e.event_id for e in found}:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for r in records:
                        event = decode(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers))
                        if event.event_id in event_ids:
                            found.append(event)
        await asyncio.sleep(0.2)  # a duplicate right behind would show up here
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for r in records:
                event = decode(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers))
                if event.event_id in event_ids:
                    found.append(event)
    finally:
        await consumer.stop()
    return found


async def read_matching(
    bootstrap: str, topic: str, match: Callable[[IncomingEvent], bool], want: int, timeout_s: float = 20.0
) -> list[IncomingEvent]:
    """Read `topic` from the start until `want` events satisfy `match`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    await consumer.topics()  # fetches metadata
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()])
    found: list[IncomingEvent] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < want:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        event = decode(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers))
                        if match(event):
                            found.append(event)
    finally:
        await consumer.stop()
    return found
