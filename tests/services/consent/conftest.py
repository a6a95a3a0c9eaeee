"""One consent service for the API tests of a module (each test uses its own agreement and
district ids), on the session's embedded PostgreSQL and broker; helpers to drive it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from homeroom.bus.envelope import IncomingEvent, decode
from homeroom_dev.infra.broker import EmbeddedBroker
from homeroom_dev.infra.postgres import EmbeddedPostgres
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.consent.service import SERVICE
from tests.harness import ServiceEnv, ServiceUnderTest, drop_database, new_database, service_under_test


@pytest.fixture(scope="module")
async def module_env(
    postgres: EmbeddedPostgres, broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceEnv]:
    if not broker.running:
        broker.start()
    keys_url = await new_database(postgres, "keys")
    env = ServiceEnv(postgres, broker.bootstrap_servers, tmp_path_factory.mktemp("secrets"), keys_url)
    yield env
    for url in [*env.databases, keys_url]:
        await drop_database(postgres, url)


@pytest.fixture(scope="module")
async def svc(module_env: ServiceEnv) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(SERVICE, module_env) as running:
        yield running


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def terms(
    district: str,
    *,
    elements: tuple[str, ...] = ("student.first_name", "student.last_name", "attendance.daily"),
    purposes: tuple[str, ...] = ("instruction",),
    start: date | None = date(2020, 1, 1),
    end: date | None = date(2099, 6, 30),
    schools: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "elements": list(elements),
        "purposes": list(purposes),
        "districts": [district],
        "schools": list(schools),
        "start_date": start.isoformat() if start else None,
        "end_date": end.isoformat() if end else None,
        "storage_region": "US",
        "disposition": "destroy",
    }


async def active_agreement(
    client: httpx.AsyncClient,
    env: ServiceEnv,
    district: str,
    *,
    category: str = "vendor",
    **term_overrides: Any,
) -> str:
    """Create a draft for `district`, set its terms and activate it; the agreement id."""
    staff = env.auth("district_staff", district=district)
    r = await client.post(
        "/v1/agreements",
        json={
            "organization": uid("Acme Learning"),
            "category": category,
            "supplemental": SUPPLEMENTAL_ANSWERS,
            "terms": terms(district, **term_overrides),
        },
        headers=staff,
    )
    assert r.status_code == 201, r.text
    agreement_id: str = r.json()["id"]
    r = await client.post(f"/v1/agreements/{agreement_id}/activate", headers=staff)
    assert r.status_code == 200, r.text
    return agreement_id


def decision_request(
    agreement_id: str,
    district: str,
    *,
    student: str = "stu_abc",
    elements: tuple[str, ...] = ("student.first_name", "attendance.daily"),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "action": "read",
        "requester": {"role": "vendor", "subject": "app-7", "organization": "Acme", "agreement_id": agreement_id},
        "student_key": student,
        "district_id": district,
        "elements": list(elements),
        **extra,
    }


async def bus_events(bootstrap: str, topic: str, subject: str, expected: set[str], timeout_s: float = 20) -> set[str]:
    """The changes (event cases) on `topic` whose subject is `subject`, once all of `expected` are seen."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4().hex}", auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: set[str] = set()
    events: list[IncomingEvent] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not expected <= seen:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        event = decode(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers))
                        if event.meta.subject == subject:
                            seen.add(event.change)
                            events.append(event)
    finally:
        await consumer.stop()
    return seen
