"""Publishing to the bus. Only the outbox relay (and benchmarks) publish directly.

No idempotent producer (the embedded broker lacks it): a retried send can duplicate a
message, which consumers absorb by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from homeroom.bus.envelope import OutgoingEvent
from homeroom.telemetry import EVENTS_PUBLISHED

# What the broker is sent of one event: key, value and headers (`OutgoingEvent` less the id and
# topic; the relay reads them from an outbox row, topic by topic).
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


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


# How long one metadata answer stands in for the broker's partitions while its connections
# last; past it the answer is read again (partitions added to a topic are seen within it).
ANSWER_MAX_AGE_S = 30.0


def _connections(producer: AIOKafkaProducer) -> dict[Any, Any]:
    """The producer's connections by node (aiokafka opens a new object on every reconnect).
    aiokafka has no public view of them (`client.cluster` stays the same across a broker
    restart); tests/kernel/test_bus.py::test_the_partition_guard_sees_a_connection_the_broker_dropped
    fails by name if an upgrade changes what this reads."""
    conns: dict[Any, Any] = producer.client._conns
    return dict(conns)


@dataclass(frozen=True)
class PartitionsAnswer:
    """The broker's partitions of every topic, as one metadata answer gave them, and the
    connections the producer held when it arrived.

    A broker that restarts closes every connection, so while each of these connections is
    still the producer's, still open, and no other has been opened, every request since went
    to the broker process that gave this answer, which never drops a partition it had: its
    partitions are still there. A reconnect (or a new connection) voids the answer."""

    producer: AIOKafkaProducer
    partitions: dict[str, list[int]]
    connections: dict[Any, Any]
    read_at: float

    @classmethod
    async def read(cls, producer: AIOKafkaProducer) -> PartitionsAnswer:
        """An all-topics request: asking for topics by name would make the embedded broker
        auto-create the missing ones with the wrong partition count. Kept only if no
        connection changed while it was asked (else the answer and the connections could
        belong to two incarnations of the broker)."""
        for _ in range(3):  # the first request of a producer may open its connection
            before = _connections(producer)
            cluster = await producer.client.fetch_all_metadata()
            answer = cls(
                producer,
                {t: sorted(cluster.partitions_for_topic(t) or ()) for t in cluster.topics()},
                before,
                time.monotonic(),
            )
            if answer.connections_held(producer):
                return answer
        raise PartitionsNotOnBroker("the connections to the broker kept changing while its partitions were read")

    def connections_held(self, producer: AIOKafkaProducer) -> bool:
        now = _connections(producer)
        return (
            producer is self.producer
            and now.keys() == self.connections.keys()
            and all(now[k] is c and c.connected() for k, c in self.connections.items())
        )

    def usable(self, producer: AIOKafkaProducer, topics: set[str]) -> bool:
        return (
            time.monotonic() - self.read_at < ANSWER_MAX_AGE_S
            and topics <= self.partitions.keys()
            and self.connections_held(producer)
        )

    def partitions_of(self, topics: set[str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for topic in topics:
            partitions = self.partitions.get(topic)
            if not partitions:
                raise PartitionsNotOnBroker(f"topic {topic} is not on the broker")
            found[topic] = partitions
        return found


class Publisher:
    def __init__(
        self, service: str, client_kwargs: dict[str, Any], *, linger_ms: int = 0, check_partitions: bool = True
    ) -> None:
        """`check_partitions` (`KafkaSettings.check_partitions`): guard against a broker that
        acknowledges sends to partitions it does not have (the embedded one after a restart).
        Apache Kafka refuses such sends, so it can go without.

        `linger_ms` is 0: `publish_many` hands aiokafka each partition's batch already built, so
        lingering adds nothing to it and only delays the send (a lone transfer or consent event
        waited 5-7 ms for its acknowledgement at linger 5). Batches still travel together: aiokafka
        keeps one produce request in flight per broker, and what the relay's other lanes hand
        over meanwhile goes in the next request (`bench/bus.py`, docs/benchmarks.md)."""
        self.service = service
        self._kwargs = client_kwargs
        self._linger_ms = linger_ms
        self._check_partitions = check_partitions
        self._answer: PartitionsAnswer | None = None  # the last one that held through a send
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
        """Send all and wait until the broker acknowledged every one, or raise (`publish_records`).
        Order within a partition is the order of `events`."""
        by_topic: dict[str, list[Record]] = {}
        for e in events:
            by_topic.setdefault(e.topic, []).append((e.key, e.value, e.headers))
        await self.publish_records(by_topic)

    async def publish_records(self, by_topic: Mapping[str, Sequence[Record]]) -> None:
        """Send each topic's records (key, value, headers) and wait until the broker acknowledged
        every one, or raise. The outbox relay calls this with the rows it read, one topic at a
        time, without building an `OutgoingEvent` per row again.

        Records are partitioned here (the Java client's murmur2 of the key, as a plain send
        would) and handed over as one record batch per partition, instead of one future
        per record: the relay publishes thousands at a time. Order within a partition is
        the order of the records.

        With `check_partitions`, the partitions come from a metadata answer the broker gave
        over connections the producer still holds (`PartitionsAnswer`): while they last, no
        request is needed. If a connection changed by the time every send was acknowledged,
        the broker may have restarted in between: an answer read for this call is read again
        and the partitions used checked against it; one kept from an earlier call fails the
        call. A failed call is resent by the caller (the outbox relay creates the topics
        again first)."""
        producer = await self._ensure_started()
        topics = set(by_topic)
        try:
            answer = self._answer if self._check_partitions else None
            read_now = False
            if self._check_partitions and (answer is None or not answer.usable(producer, topics)):
                answer, read_now = await PartitionsAnswer.read(producer), True
            if answer is not None:
                known = answer.partitions_of(topics)
            else:
                known = {t: sorted(await producer.partitions_for(t)) for t in topics}
            by_partition: dict[tuple[str, int], list[Record]] = {}
            for topic, records in by_topic.items():
                partitions = known[topic]
                for record in records:
                    by_partition.setdefault((topic, partition_for(record[0], partitions)), []).append(record)
            futures = []
            for (topic, partition), group in by_partition.items():
                batch = producer.create_batch()
                for key, value, headers in group:
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()  # the full one is on its way; start the next
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*futures)
            if answer is not None and not answer.connections_held(producer):
                if not read_now:
                    raise PartitionsNotOnBroker("the connection to the broker changed since its partitions were read")
                answer = await PartitionsAnswer.read(producer)
                gone = sorted(f"{t}/{p}" for t, p in by_partition if p not in answer.partitions.get(t, ()))
                if gone:
                    raise PartitionsNotOnBroker(f"partitions {', '.join(gone)} are no longer on the broker")
            self._answer = answer
        except Exception:
            await self._reset()
            raise
        for topic, records in by_topic.items():
            if records:
                EVENTS_PUBLISHED.labels(self.service, topic).inc(len(records))

    async def _reset(self) -> None:
        """Drop a producer that failed so the next attempt reconnects from scratch."""
        async with self._lock:
            producer, self._producer = self._producer, None
            self._answer = None
        if producer is not None:
            with contextlib.suppress(Exception):  # it is being discarded either way
                await asyncio.wait_for(producer.stop(), 5)

    async def ping(self) -> None:
        producer = await self._ensure_started()
        await producer.client.fetch_all_metadata()

    async def stop(self) -> None:
        await self._reset()
