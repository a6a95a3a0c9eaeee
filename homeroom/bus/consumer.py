"""Consuming from the bus with exactly-once effects.

For each message the consumer, in ONE PostgreSQL transaction, records the event id in
`processed_events` and runs the handler (which changes state and may write follow-on
events to the outbox). Only after that transaction commits are Kafka offsets committed.
A crash anywhere replays from the last committed offset, and replays of events already
applied are skipped by id: nothing lost, nothing applied twice.

Throughput: a partition's batch is applied in one transaction; if any event in it
fails, the batch is rolled back and replayed one event at a time so the failing event is
retried with backoff and finally dead-lettered (with its reason, to ingest.rejected.v1)
without holding up the others. Partitions are processed concurrently; order within a
partition (so within a student) is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import Message

from homeroom import outbox
from homeroom.bus.envelope import IncomingEvent, OutgoingEvent, PoisonMessage, build_event, decode
from homeroom.bus.topics import REJECTED, Topic
from homeroom.events.v1.rejected_pb2 import RecordRejected
from homeroom.storage import INFRASTRUCTURE_ERRORS, Connection
from homeroom.telemetry import (
    CONSUMER_ASSIGNED,
    CONSUMER_LAG,
    EVENTS_APPLIED,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    HANDLER_RETRIES,
    HANDLER_SECONDS,
)

log = logging.getLogger(__name__)


class InfrastructureUnavailable(Exception):
    """The consumer cannot reach what it writes to; nothing is committed or dead-lettered."""


class RejectEvent(Exception):
    """Raised by a handler for an event that breaks a business rule: never retried,
    dead-lettered at once with this rule and message."""

    def __init__(self, rule: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field


@dataclass(slots=True)
class HandlerContext:
    """What a handler gets besides the event: the open transaction and a way to emit."""

    conn: Connection
    service: str
    emitted: list[OutgoingEvent] = field(default_factory=list)

    def emit(self, topic: Topic, change: str, payload: Message, **kwargs: Any) -> OutgoingEvent:
        """Queue a follow-on event; it is written to the outbox in this transaction."""
        kwargs.setdefault("source", f"/homeroom/{self.service}")
        event = build_event(topic, change, payload, **kwargs)
        self.emitted.append(event)
        return event


Handler = Callable[[IncomingEvent, HandlerContext], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        name: str,
        topics: Sequence[str],
        handler: Handler,
        pool: asyncpg.Pool,
        client_kwargs: dict[str, Any],
        dead_letter_topic: str = REJECTED.name,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        max_batch: int = 500,
        group_id: str | None = None,
        session_timeout_ms: int = 10000,
    ) -> None:
        self.service = service
        self.name = name
        self.topics = list(topics)
        self.handler = handler
        self.pool = pool
        self.client_kwargs = client_kwargs
        self.dead_letter_topic = dead_letter_topic
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_batch = max_batch
        self.group_id = group_id or f"homeroom.{service}.{name}"
        self.session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.applied = 0
        self.dead_lettered = 0

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.service}-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_consumer()

    async def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 10)

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer else set()

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                self._consumer = AIOKafkaConsumer(
                    *self.topics,
                    **self.client_kwargs,
                    group_id=self.group_id,
                    client_id=f"homeroom-{self.service}-{self.name}",
                    enable_auto_commit=False,
                    # Never "latest": a new group must see everything (and the embedded
                    # broker's ListOffsets is unreliable, see ARCHITECTURE.md).
                    auto_offset_reset="earliest",
                    session_timeout_ms=self.session_timeout_ms,
                    heartbeat_interval_ms=max(1000, self.session_timeout_ms // 4),
                    max_poll_records=self.max_batch,
                )
                await self._consumer.start()
                backoff = 0.5
                await self._poll_loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database gone, group trouble: reconnect, resume from commits
                log.warning("consumer restarting", extra={"consumer": self.name, "error": repr(exc)})
                CONSUMER_ASSIGNED.labels(self.service, self.name).set(0)
                await self._close_consumer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _poll_loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self._stopping:
            batches = await consumer.getmany(timeout_ms=500, max_records=self.max_batch)
            if not batches:
                await self._record_lag(consumer)
                continue
            await asyncio.gather(*(self._apply_partition(tp, records) for tp, records in batches.items()))
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions away; their new owner replays from the last
                # commit and the idempotency table drops what we already applied.
                log.info("offset commit skipped", extra={"consumer": self.name, "error": repr(exc)})
            await self._record_lag(consumer)

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag = high-water mark minus our position (end_offsets() is unreliable on Tansu)."""
        CONSUMER_ASSIGNED.labels(self.service, self.name).set(len(consumer.assignment()))
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(Exception):
                position = await consumer.position(tp)
                CONSUMER_LAG.labels(self.service, self.name, tp.topic, str(tp.partition)).set(
                    max(0, highwater - position)
                )

    # --- applying --------------------------------------------------------------------------
    async def _apply_partition(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        decoded: list[IncomingEvent | tuple[ConsumerRecord[bytes, bytes], PoisonMessage]] = []
        for record in records:
            EVENTS_CONSUMED.labels(self.service, self.name, record.topic).inc()
            try:
                decoded.append(
                    decode(
                        record.topic, record.partition, record.offset, record.key, record.value, list(record.headers)
                    )
                )
            except PoisonMessage as poison:
                decoded.append((record, poison))
        if all(isinstance(d, IncomingEvent) for d in decoded) and len(decoded) > 1:
            events = [d for d in decoded if isinstance(d, IncomingEvent)]
            try:
                await self._apply_together(events)
                return
            except Exception:  # replay one by one to isolate the failing event
                log.debug("batch failed; applying one at a time", extra={"consumer": self.name})
        for item in decoded:
            if isinstance(item, IncomingEvent):
                await self._apply_one(item)
            else:
                record, bad = item
                await self._dead_letter_record(record, bad.rule, str(bad), bad.field, attempts=1)

    async def _apply_together(self, events: list[IncomingEvent]) -> None:
        started = time.perf_counter()
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await self._claim(conn, events)
            ctx = HandlerContext(conn, self.service)
            unapplied = set(fresh)  # a batch can hold two copies of one event: apply the first only
            applied: list[IncomingEvent] = []
            for event in events:
                if event.event_id in unapplied:
                    unapplied.discard(event.event_id)
                    await self.handler(event, ctx)
                    applied.append(event)
            await outbox.add(conn, ctx.emitted)
        elapsed = (time.perf_counter() - started) / max(1, len(events))
        for event in applied:
            EVENTS_APPLIED.labels(self.service, self.name, event.topic).inc()
            HANDLER_SECONDS.labels(self.service, self.name).observe(elapsed)
        for _ in range(len(events) - len(applied)):
            EVENTS_DUPLICATE.labels(self.service, self.name, events[0].topic).inc()
        self.applied += len(applied)

    async def _claim(self, conn: Connection, events: list[IncomingEvent]) -> set[str]:
        """Mark events as processed; return the ids that were not processed before."""
        rows = await conn.fetch(
            """INSERT INTO processed_events (consumer, event_id, topic, partition, "offset", outcome)
               SELECT $1, e.id, e.topic, e.part, e.off, 'applied'
               FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[]) AS e(id, topic, part, off)
               ON CONFLICT DO NOTHING RETURNING event_id""",
            self.name,
            [e.event_id for e in events],
            [e.topic for e in events],
            [e.partition for e in events],
            [e.offset for e in events],
        )
        return {r["event_id"] for r in rows}

    async def _apply_one(self, event: IncomingEvent) -> None:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    if not await self._claim(conn, [event]):
                        EVENTS_DUPLICATE.labels(self.service, self.name, event.topic).inc()
                        return
                    ctx = HandlerContext(conn, self.service)
                    await self.handler(event, ctx)
                    await outbox.add(conn, ctx.emitted)
                EVENTS_APPLIED.labels(self.service, self.name, event.topic).inc()
                HANDLER_SECONDS.labels(self.service, self.name).observe(time.perf_counter() - started)
                self.applied += 1
                return
            except RejectEvent as rejected:
                await self._dead_letter(event, rejected.rule, str(rejected), rejected.field, attempt)
                return
            except asyncio.CancelledError:
                raise
            except INFRASTRUCTURE_ERRORS as exc:
                raise InfrastructureUnavailable(f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                if attempt >= self.max_attempts:
                    await self._dead_letter(
                        event,
                        "handler.failed",
                        f"gave up after {attempt} attempts: {type(exc).__name__}: {exc}",
                        "",
                        attempt,
                    )
                    return
                HANDLER_RETRIES.labels(self.service, self.name).inc()
                log.warning(
                    "handler failed; retrying",
                    extra={"consumer": self.name, "event_id": event.event_id, "attempt": attempt, "error": repr(exc)},
                )
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))

    async def _dead_letter(self, event: IncomingEvent, rule: str, message: str, field: str, attempts: int) -> None:
        await self._write_dead_letter(
            event.event_id,
            event.topic,
            event.partition,
            event.offset,
            rule,
            message,
            field,
            attempts,
            event.meta.district_id,
        )

    async def _dead_letter_record(
        self, record: ConsumerRecord[bytes, bytes], rule: str, message: str, field: str, attempts: int
    ) -> None:
        headers = dict(record.headers)
        event_id = (
            headers.get("ce_id", b"").decode(errors="replace") or f"{record.topic}:{record.partition}:{record.offset}"
        )
        await self._write_dead_letter(
            event_id, record.topic, record.partition, record.offset, rule, message, field, attempts, ""
        )

    async def _write_dead_letter(
        self,
        event_id: str,
        topic: str,
        partition: int,
        offset: int,
        rule: str,
        message: str,
        field: str,
        attempts: int,
        district_id: str,
    ) -> None:
        payload = RecordRejected(
            stage=f"{self.service}.{self.name}",
            field=field,
            rule=rule,
            message=message,
            original_topic=topic,
            original_partition=partition,
            original_offset=offset,
            original_event_id=event_id,
            attempts=attempts,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                """INSERT INTO processed_events (consumer, event_id, topic, partition, "offset", outcome)
                   VALUES ($1, $2, $3, $4, $5, 'dead_lettered') ON CONFLICT DO NOTHING RETURNING 1""",
                self.name,
                event_id,
                topic,
                partition,
                offset,
            )
            if not claimed:
                return
            await outbox.add(
                conn,
                build_event(
                    REJECTED,
                    "record_rejected",
                    payload,
                    source=f"/homeroom/{self.service}/{self.name}",
                    subject="",
                    key=event_id,
                    district_id=district_id,
                    causation_id=event_id,
                    topic_name=self.dead_letter_topic,
                ),
            )
        EVENTS_DEAD_LETTERED.labels(self.service, self.name, rule).inc()
        self.dead_lettered += 1
        log.warning(
            "event dead-lettered", extra={"consumer": self.name, "event_id": event_id, "rule": rule, "reason": message}
        )
