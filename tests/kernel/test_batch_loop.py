"""The consumer group loop the reports tally runs on (homeroom/bus/batch_loop.py), on the real
broker: records reach `apply` as the broker's bytes and headers; offsets are committed only
once `apply` returned, so a failed batch comes again; a newly assigned partition's records
wait for `assigned`; a rebalance while a batch is being applied completes and loses nothing;
the lag it measures comes to zero. The tally's own tests (tests/services/reports/test_tally.py,
test_tally_faults.py) run it under the reports service."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from homeroom.bus.batch_loop import BatchLoop, Records, StatefulConsumer
from homeroom.bus.topics import ATTENDANCE, Topic, ensure_topics
from homeroom.telemetry import CONSUMER_LAG
from tests.services.reports.helpers import until

HEADERS = [("ce_id", b"event-1"), ("ce_type", b"homeroom.attendance.recorded.v1"), ("raw", bytes(range(256)))]


async def _topic(bootstrap: str, suffix: str, partitions: int) -> Topic:
    topic = replace(ATTENDANCE, name=f"{ATTENDANCE.name}.loop-{suffix}", partitions=partitions)
    await ensure_topics({"bootstrap_servers": bootstrap}, [topic])
    return topic


async def _send(bootstrap: str, topic: str, messages: list[tuple[int, bytes | None, bytes | None]]) -> None:
    """(partition, key, value) each, with HEADERS."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value in messages:
            await producer.send(topic, value, key=key, partition=partition, headers=HEADERS)
        await producer.flush()
    finally:
        await producer.stop()


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int | None]:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return [await probe.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await probe.stop()


async def _nothing_to_rebuild(held: set[TopicPartition]) -> None:
    return None


@dataclass(eq=False)
class Served(StatefulConsumer):
    """A test's consumer: its `apply` and `assigned`, and the lags it heard."""

    applying: Callable[[Records], Awaitable[None]]
    rebuilding: Callable[[set[TopicPartition]], Awaitable[None]] = _nothing_to_rebuild
    lags: dict[TopicPartition, int] = field(default_factory=dict)

    async def apply(self, records: Records) -> None:
        await self.applying(records)

    async def assigned(self, held: set[TopicPartition]) -> None:
        await self.rebuilding(held)

    def measured(self, lags: dict[TopicPartition, int]) -> None:
        self.lags.update(lags)


@contextlib.asynccontextmanager
async def running(bootstrap: str, topic: str, group: str, target: Served, **options: Any) -> AsyncIterator[BatchLoop]:
    settings: dict[str, Any] = {"session_timeout_ms": 6000, **options}
    loop = BatchLoop(
        target=target,
        service="test",
        name=f"loop-{uuid.uuid4().hex[:6]}",
        topics=[topic],
        group_id=group,
        client_kwargs={"bootstrap_servers": bootstrap},
        window_s=0.05,
        **settings,
    )
    loop.start()
    try:
        yield loop
    finally:
        await loop.stop()


async def test_apply_gets_the_brokers_bytes_and_headers_as_they_came(bootstrap: str, topic_suffix: str) -> None:
    topic = await _topic(bootstrap, topic_suffix, 1)
    body = b"\x0a\x03stu\x12\x00" + bytes(range(256))  # not text: nothing may decode it
    await _send(bootstrap, topic.name, [(0, b"stu_0001", body), (0, b"stu_0002", None), (0, None, b"keyless")])
    got: list[Any] = []

    async def apply(records: Records) -> None:
        got.extend(r for batch in records.values() for r in batch)

    async with running(bootstrap, topic.name, f"test-loop-{topic_suffix}", Served(apply)):
        await until(lambda: _ready(len(got) == 3), 60, "every record")
    first, tombstone, keyless = got
    assert (first.key, first.value, list(first.headers)) == (b"stu_0001", body, HEADERS)
    assert (first.topic, first.partition, first.offset) == (topic.name, 0, 0)
    assert (tombstone.key, tombstone.value, keyless.key, keyless.value) == (b"stu_0002", None, None, b"keyless")


async def test_offsets_are_committed_only_after_apply_returned(bootstrap: str, topic_suffix: str) -> None:
    """While `apply` waits, nothing is committed; a batch whose `apply` raised is not committed
    and comes again; once applied, Kafka holds the offset after each partition's last record."""
    topic = await _topic(bootstrap, topic_suffix, 2)
    group = f"test-loop-commit-{topic_suffix}"
    await _send(bootstrap, topic.name, [(n % 2, b"k", str(n).encode()) for n in range(10)])
    gate = asyncio.Event()
    waiting = asyncio.Event()
    attempts: list[list[bytes]] = []
    applied: set[bytes] = set()

    async def apply(records: Records) -> None:
        values = [r.value for batch in records.values() for r in batch]
        attempts.append(values)
        if len(attempts) == 1:
            waiting.set()
            await gate.wait()
            raise RuntimeError("the database refused the batch")
        applied.update(values)

    async with running(bootstrap, topic.name, group, Served(apply)):
        await asyncio.wait_for(waiting.wait(), 60)
        assert await _committed(bootstrap, group, topic.name, 2) == [None, None]
        gate.set()
        await until(lambda: _ready(len(applied) == 10), 60, "every record applied after the failure")
        assert set(attempts[0]) <= applied  # the failed batch came again
        await until(lambda: _equal(_committed(bootstrap, group, topic.name, 2), [5, 5]), 30, "the commits")


async def test_a_new_partition_waits_for_its_rebuild(bootstrap: str, topic_suffix: str) -> None:
    """`assigned` gets the partitions held; no record of a partition is applied until its
    rebuild returned."""
    topic = await _topic(bootstrap, topic_suffix, 2)
    await _send(bootstrap, topic.name, [(n % 2, b"k", str(n).encode()) for n in range(6)])
    journal: list[str] = []

    async def assigned(held: set[TopicPartition]) -> None:
        journal.append(f"rebuild {sorted(tp.partition for tp in held)}")
        await asyncio.sleep(1.0)  # a slow rebuild: aiokafka fetches meanwhile
        journal.append("rebuilt")

    async def apply(records: Records) -> None:
        journal.extend(f"apply {tp.partition}" for tp in records)

    async with running(bootstrap, topic.name, f"test-loop-rebuild-{topic_suffix}", Served(apply, assigned)):
        await until(lambda: _ready(journal.count("apply 0") + journal.count("apply 1") >= 2), 60, "both partitions")
    assert journal[:2] == ["rebuild [0, 1]", "rebuilt"], journal


async def test_a_rebalance_while_a_batch_is_applied_completes_and_loses_nothing(
    bootstrap: str, topic_suffix: str
) -> None:
    """One instance applies slowly (each batch takes a while); a second joins the group. The
    rebalance completes (a partition each) and every record is applied by one of them; the
    group's generation, which fences what a former holder writes, grew; the lag each measured
    ends at zero."""
    topic = await _topic(bootstrap, topic_suffix, 2)
    group = f"test-loop-rebalance-{topic_suffix}"
    sent = 120
    await _send(bootstrap, topic.name, [(n % 2, b"k", str(n).encode()) for n in range(sent)])
    seen: dict[str, set[bytes]] = {"a": set(), "b": set()}

    def instance(name: str) -> Served:
        async def apply(records: Records) -> None:
            await asyncio.sleep(0.2)  # slower than the broker
            seen[name].update(r.value for batch in records.values() for r in batch if r.value is not None)

        return Served(apply)

    a, b = instance("a"), instance("b")
    async with running(bootstrap, topic.name, group, a, max_batch=4) as first:
        await until(lambda: _ready(len(seen["a"]) >= 4), 60, "the first instance under way")
        alone = first.generation
        async with running(bootstrap, topic.name, group, b, max_batch=4) as second:
            await until(lambda: _ready(len(_held(first)) == 1 and len(_held(second)) == 1), 60, "a partition each")
            await until(lambda: _ready(len(seen["a"] | seen["b"]) == sent), 90, "every record applied")
            assert seen["b"], "the second instance applied its partition's records"
            assert first.generation == second.generation > alone
            await until(lambda: _ready(_caught_up([a, b], _held(first) | _held(second))), 30, "no lag left")
            tp = next(iter(_held(second)))
            assert CONSUMER_LAG.labels("test", second.name, tp.topic, str(tp.partition))._value.get() == 0


def _held(loop: BatchLoop) -> set[TopicPartition]:
    consumer = loop.consumer
    return set(consumer.assignment()) if consumer is not None else set()


def _caught_up(instances: list[Served], held: set[TopicPartition]) -> bool:
    latest = {tp: lag for served in instances for tp, lag in served.lags.items()}
    return len(held) == 2 and all(latest.get(tp) == 0 for tp in held)


async def _ready(value: bool) -> bool:
    return value


async def _equal(got: Awaitable[Any], expected: Any) -> bool:
    return bool(await got == expected)
