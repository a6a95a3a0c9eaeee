"""The relay of the process that wrote a batch sends it from memory: what it sends is still
exactly what the outbox table holds (homeroom/outbox.py, the module docstring)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from homeroom import outbox
from homeroom.bus.envelope import OutgoingEvent
from homeroom.bus.producer import Publisher
from homeroom.bus.topics import ensure_topics
from homeroom.outbox import OutboxRelay, pack_headers
from tests.kernel.busfixtures import absence, prepare, topics, write_to_outbox


class _RolledBack(Exception):
    pass


async def _published(
    bootstrap: str, topic: str, expected: int
) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend((r.key, r.value, list(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return found


def _record(e: OutgoingEvent) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    return (e.key, e.value, e.headers)


async def test_the_relay_sends_what_the_table_holds_whoever_wrote_it(
    pg_pool: asyncpg.Pool, bootstrap: str, topic_suffix: str
) -> None:
    """A batch this process wrote and rolled back, whose ids another writer then wrote with
    other content, goes out as the other writer's rows; a batch it wrote and committed goes
    out from memory, byte for byte as written."""
    await prepare(pg_pool)
    attendance, _ = topics(topic_suffix)
    await ensure_topics({"bootstrap_servers": bootstrap}, list(topics(topic_suffix)))
    rolled_back = [absence(i, topic_suffix) for i in range(100)]
    # the same ids, other content (other students): what another process wrote
    other = [absence(i + 7, topic_suffix, event_id=e.event_id) for i, e in enumerate(rolled_back)]
    assert all(_record(a) != _record(b) for a, b in zip(rolled_back, other, strict=True))
    committed = [absence(i, topic_suffix) for i in range(100, 300)]

    with pytest.raises(_RolledBack):
        async with pg_pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, rolled_back)
            raise _RolledBack
    async with pg_pool.acquire() as conn:
        rows = [(e.event_id, e.topic, e.key, pack_headers(e.headers), e.value) for e in other]
        await conn.copy_records_to_table(
            "outbox", records=rows, columns=["event_id", "topic", "key", "header_bytes", "payload"]
        )
    await write_to_outbox(pg_pool, committed)
    assert all(e.event_id in outbox._WRITTEN for e in committed)  # kept for the relay

    relay = OutboxRelay("test", pg_pool, Publisher("test", {"bootstrap_servers": bootstrap}), batch_size=120)
    relay.start()
    try:
        await relay.drain()
    finally:
        await relay.stop()
    got = await _published(bootstrap, attendance.name, len(other) + len(committed))
    assert sorted(got) == sorted(_record(e) for e in [*other, *committed])
    assert not any(e.event_id in outbox._WRITTEN for e in committed)  # let go once sent
