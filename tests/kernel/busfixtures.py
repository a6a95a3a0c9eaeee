"""Shared pieces for the bus tests: a tiny "attendance tally" service and helpers.

Also runnable as a script (`python -m tests.kernel.busfixtures DSN BOOTSTRAP SUFFIX`) so a
test can run the consumer in its own process and kill -9 it mid-stream.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg

from homeroom import outbox
from homeroom.bus.consumer import EventConsumer, HandlerContext
from homeroom.bus.envelope import IncomingEvent, OutgoingEvent, build_event
from homeroom.bus.topics import ATTENDANCE, REJECTED, Topic, with_suffix
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_ABSENT, AttendanceRecorded
from homeroom.storage import migrate

TALLY_SCHEMA = """
CREATE TABLE IF NOT EXISTS tally (
    event_id text PRIMARY KEY,
    student_key text NOT NULL,
    times_applied int NOT NULL DEFAULT 1
);
"""


def topics(suffix: str) -> tuple[Topic, Topic]:
    return with_suffix(ATTENDANCE, suffix), with_suffix(REJECTED, suffix)


def absence(i: int, suffix: str, event_id: str | None = None) -> OutgoingEvent:
    attendance, _ = topics(suffix)
    payload = AttendanceRecorded(
        student_key=f"stu_{i % 50}",
        district_id="d-1",
        school_id="s-1",
        date="2026-11-02",
        category=ATTENDANCE_CATEGORY_ABSENT,
    )
    return build_event(
        attendance,
        "attendance_recorded",
        payload,
        source="/test",
        subject=payload.student_key,
        district_id="d-1",
        event_id=event_id,
        topic_name=attendance.name,
    )


async def tally_handler(event: IncomingEvent, ctx: HandlerContext) -> None:
    # times_applied would reach 2 if an event were ever applied twice.
    await ctx.conn.execute(
        """INSERT INTO tally (event_id, student_key) VALUES ($1, $2)
           ON CONFLICT (event_id) DO UPDATE SET times_applied = tally.times_applied + 1""",
        event.event_id,
        event.meta.subject,
    )


def make_consumer(
    pool: asyncpg.Pool,
    bootstrap: str,
    suffix: str,
    handler: Callable[[IncomingEvent, HandlerContext], Awaitable[None]] | None = tally_handler,
    **kwargs: object,
) -> EventConsumer:
    attendance, rejected = topics(suffix)
    return EventConsumer(
        service="test",
        name="tally",
        topics=[attendance.name],
        handler=handler,
        pool=pool,
        client_kwargs={"bootstrap_servers": bootstrap},
        dead_letter_topic=rejected.name,
        group_id=f"tally-{suffix}",
        backoff_s=0.01,
        session_timeout_ms=6000,
        **kwargs,  # type: ignore[arg-type]
    )


async def prepare(pool: asyncpg.Pool) -> None:
    await migrate(pool, "test", None, extra_schema=TALLY_SCHEMA)


async def write_to_outbox(pool: asyncpg.Pool, events: list[OutgoingEvent]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, events)


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met in time")


async def _run_slow_consumer(dsn: str, bootstrap: str, suffix: str) -> None:
    """Applies events slowly so the parent can kill this process mid-batch."""
    pool = await asyncpg.create_pool(dsn)
    assert pool is not None

    async def slow(event: IncomingEvent, ctx: HandlerContext) -> None:
        await tally_handler(event, ctx)
        await asyncio.sleep(0.002)

    consumer = make_consumer(pool, bootstrap, suffix, handler=slow, max_batch=50)
    consumer.start()
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(_run_slow_consumer(sys.argv[1], sys.argv[2], sys.argv[3]))
