"""Publishing to the bus. Only the outbox relay (and benchmarks) publish directly.

No idempotent producer (the embedded broker lacks it): a retried send can duplicate a
message, which consumers absorb by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from homeroom.bus.envelope import OutgoingEvent
from homeroom.telemetry import EVENTS_PUBLISHED


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    """The Java client's murmur2 of a key (aiokafka's is pure Python, about 5 us): keys repeat
    (a student's events share theirs), so each is hashed once."""
    hashed: int = murmur2(key) & 0x7FFFFFFF
    return hashed


def partition_for(key: bytes | None, partitions: list[int]) -> int:
    """The partition a plain send would choose (aiokafka's DefaultPartitioner); `partitions` sorted."""
    if key is None:
        return random.choice(partitions)  # noqa: S311 (spreading keyless events, not security)
    return partitions[_key_hash(key) % len(partitions)]


class PartitionsNotOnBroker(Exception):
    """A topic (or some of its partitions) the broker does not have: events sent there were
    acknowledged but can never be read, so the publish counts as failed and is retried."""


async def _partitions_on_broker(producer: AIOKafkaProducer, topics: set[str]) -> dict[str, list[int]]:
    """Each topic's partitions as the broker reports them now, not from the producer's cache.

    The embedded broker restarts empty, acknowledges sends to topics and partitions it does
    not have (and drops them), and auto-creates a topic with 4 partitions when a consumer asks
    for it; a producer still holding the metadata from before the restart sends batches
    nobody can read. An all-topics request: asking for these topics by name would
    auto-create the missing ones with the wrong partition count."""
    cluster = await producer.client.fetch_all_metadata()
    found: dict[str, list[int]] = {}
    for topic in topics:
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise PartitionsNotOnBroker(f"topic {topic} is not on the broker")
        found[topic] = sorted(partitions)
    return found


class Publisher:
    def __init__(self, service: str, client_kwargs: dict[str, Any], *, linger_ms: int = 5) -> None:
        self.service = service
        self._kwargs = client_kwargs
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure_started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._kwargs,
                    client_id=f"homeroom-{self.service}",
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=self._linger_ms,
                    max_batch_size=512 * 1024,
                    request_timeout_ms=15000,
                )
                await producer.start()  # raises while the broker is unreachable; callers retry
                self._producer = producer
            return self._producer

    async def publish_many(self, events: list[OutgoingEvent]) -> None:
        """Send all and wait until the broker acknowledged every one, or raise.

        Events are partitioned here (the Java client's murmur2 of the key, as a plain send
        would) and handed over as one record batch per partition, instead of one future
        per event: the relay publishes thousands at a time. Order within a partition is
        the order of `events`.

        The partitions come from the broker before the send and are checked again after it
        (`_partitions_on_broker`): a broker that restarted in between fails the call, and
        the caller (the outbox relay) creates the topics again and resends."""
        producer = await self._ensure_started()
        try:
            by_partition: dict[tuple[str, int], list[OutgoingEvent]] = {}
            known = await _partitions_on_broker(producer, {e.topic for e in events})
            for e in events:
                partition = partition_for(e.key, known[e.topic])
                by_partition.setdefault((e.topic, partition), []).append(e)
            futures = []
            for (topic, partition), group in by_partition.items():
                batch = producer.create_batch()
                for e in group:
                    if batch.append(key=e.key, value=e.value, timestamp=None, headers=e.headers) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()  # the full one is on its way; start the next
                        batch.append(key=e.key, value=e.value, timestamp=None, headers=e.headers)
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*futures)
            now = await _partitions_on_broker(producer, set(known))
            gone = sorted(f"{t}/{p}" for t, p in by_partition if p not in now[t])
            if gone:
                raise PartitionsNotOnBroker(f"partitions {', '.join(gone)} are no longer on the broker")
        except Exception:
            await self._reset()
            raise
        counts: dict[str, int] = {}
        for e in events:
            counts[e.topic] = counts.get(e.topic, 0) + 1
        for topic, n in counts.items():
            EVENTS_PUBLISHED.labels(self.service, topic).inc(n)

    async def _reset(self) -> None:
        """Drop a producer that failed so the next attempt reconnects from scratch."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # it is being discarded either way
                await asyncio.wait_for(producer.stop(), 5)

    async def ping(self) -> None:
        producer = await self._ensure_started()
        await producer.client.fetch_all_metadata()

    async def stop(self) -> None:
        await self._reset()
