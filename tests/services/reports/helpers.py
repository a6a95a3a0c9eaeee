"""The reports service in process on the real broker and PostgreSQL, and the events it reads,
built as ingest publishes them (records' test builders where they fit)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.topics import ALL_TOPICS, ATTENDANCE, GROUPS, Topic, ensure_topics, with_suffix
from homeroom.events.v1 import attendance_pb2, groups_pb2
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.services.records.helpers import calendar, enrolled, school, suspension, withdrawn

__all__ = ["calendar", "enrolled", "school", "suspension", "withdrawn"]

TODAY = date(2026, 11, 20)


def fixed_clock(day: date = TODAY) -> Callable[[], datetime]:
    return lambda: datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def mark(district: str, key: str, school_id: str, day: str, absent: bool = True) -> OutgoingEvent:
    category = attendance_pb2.ATTENDANCE_CATEGORY_ABSENT if absent else attendance_pb2.ATTENDANCE_CATEGORY_PRESENT
    payload = attendance_pb2.AttendanceRecorded(
        student_key=key, district_id=district, school_id=school_id, date=day, category=category
    )
    return build_event(
        ATTENDANCE, "attendance_recorded", payload, source="/homeroom/ingest/test", subject=key, district_id=district
    )


def groups(district: str, key: str, **codes: str) -> OutgoingEvent:
    payload = groups_pb2.StudentGroupsRecorded(student_key=key, district_id=district, groups=codes)
    return build_event(
        GROUPS, "student_groups_recorded", payload, source="/homeroom/ingest/test", subject=key, district_id=district
    )


class Bus:
    """A producer onto one test's copies of the topics."""

    def __init__(self, env: ServiceEnv, suffix: str) -> None:
        self.env, self.suffix = env, suffix
        self.topics: dict[str, Topic] = {t.name: with_suffix(t, suffix) for t in ALL_TOPICS}
        self.producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Bus:
        await ensure_topics(self.env.kafka.client_kwargs(), list(self.topics.values()))
        self.producer = AIOKafkaProducer(**self.env.kafka.client_kwargs())
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send(self, *events: OutgoingEvent) -> None:
        assert self.producer is not None
        for e in events:
            await self.producer.send(self.topics[e.topic].name, e.value, key=e.key, headers=e.headers)
        await self.producer.flush()


async def until(check: Callable[[], Awaitable[Any]], timeout_s: float = 180, what: str = "") -> Any:
    """Poll until check() answers something truthy (the tally is eventually consistent)."""
    last: Any = None

    async def poll() -> Any:
        nonlocal last
        while True:
            last = await check()
            if last:
                return last
            await asyncio.sleep(0.2)

    try:
        return await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or check}: last saw {str(last)[:500]}") from None


@contextlib.asynccontextmanager
async def reports_service(
    env: ServiceEnv, suffix: str, *, clock: Callable[[], datetime] | None = None, **overrides: Any
) -> AsyncIterator[ServiceUnderTest]:
    from services.reports.service import build_spec

    spec = build_spec(suffix)
    options: dict[str, Any] = {"tally_batch_window_s": 0.1, "calendar_poll_s": 0.3, **overrides}
    async with service_under_test(spec, env, clock=clock or fixed_clock(), **options) as svc:
        yield svc
