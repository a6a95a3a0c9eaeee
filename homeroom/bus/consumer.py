"""Consuming from the bus with exactly-once effects.

Handlers take batches. For each poll the consumer opens ONE PostgreSQL transaction and, in
its first statements (one per partition, in (topic, partition) order), (a) locks the
partition's row in `consumer_offsets` and moves it past the batch, (b) drops the events below
the offset stored there (already applied: a replay after a crash between the database commit
and the Kafka commit) and (c) records the event ids of the rest in `processed_events`,
dropping ids seen before (the same event at a second offset: an outbox relay that published
twice, a producer retry). The handler then applies the fresh events of every partition
(partition after partition, each in offset order) with set-based SQL and may write follow-on
events to the outbox; all of it commits together. Only after that are Kafka offsets
committed, and on every partition assignment the consumer seeks to the offsets stored in the
database, which are never behind Kafka's. The row lock also fences two instances that both
believe they own a partition during a rebalance: the second waits, then finds the batch
applied (both lock in the same order, so neither waits for the other in a cycle). Nothing
lost, nothing applied twice.

A per-event handler (`Handler`) still works: `one_at_a_time` runs it for each event of the
batch inside the same transaction. Hot paths use `BatchHandler`.

If a batch fails, it is rolled back and halved, each half applied as a batch the same
way, until the failing event is alone: that one is retried with backoff in its own
transaction and finally dead-lettered (with its reason, to ingest.rejected.v1) without
holding up the others, which still go in batches. Order within a partition (so within a
student) is kept.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import Message
from prometheus_client import Histogram

from homeroom import failpoints, outbox
from homeroom.bus.envelope import (
    IncomingEvent,
    OutgoingEvent,
    PoisonMessage,
    build_event,
    decode,
    undecoded_event_id,
)
from homeroom.bus.topics import REJECTED, Topic
from homeroom.events.v1.rejected_pb2 import RecordRejected
from homeroom.gc_tuning import YOUNG_GC_THRESHOLD, young_threshold
from homeroom.storage import INFRASTRUCTURE_ERRORS, Connection
from homeroom.tasks import cancel
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
    """What a handler gets besides the events: the open transaction, a way to emit, and a
    place for state that lives exactly as long as the transaction (e.g. the district a
    row-level-security setting was made for, so it is set once per transaction). `consumer`
    and `dead_letter_topic` let a handler that keeps an event aside (to apply it later) dead-
    letter it later as the consumer would (`rejection`, `mark_dead_lettered`). `after_commit`:
    calls the consumer makes once the transaction has committed (never if it rolls back), e.g.
    to wake a task that works on what the batch wrote; they must not raise or block."""

    conn: Connection
    service: str
    emitted: list[OutgoingEvent] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    consumer: str = ""
    dead_letter_topic: str = REJECTED.name
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def emit(self, topic: Topic, change: str, payload: Message, **kwargs: Any) -> OutgoingEvent:
        """Queue a follow-on event; it is written to the outbox in this transaction."""
        kwargs.setdefault("source", f"/homeroom/{self.service}")
        event = build_event(topic, change, payload, **kwargs)
        self.emitted.append(event)
        return event


Handler = Callable[[IncomingEvent, HandlerContext], Awaitable[None]]
# Applies a batch of events (a poll's, partition after partition, each partition's in offset
# order, duplicates removed) inside the transaction of `ctx`. Raise (RejectEvent or anything
# else) to have the batch rolled back and halved until the bad event is alone.
BatchHandler = Callable[[Sequence[IncomingEvent], HandlerContext], Awaitable[None]]


def one_at_a_time(handler: Handler) -> BatchHandler:
    """A per-event handler as a batch handler: each event in order, in the batch's transaction."""

    async def apply(events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
        for event in events:
            await handler(event, ctx)

    return apply


# The kernel's first statement in every batch transaction: lock the partition's stored
# offset and move it past the batch, and claim the ids of the events at or above the offset
# that was stored (see the module docstring). One round trip.
_CLAIM = """WITH stored AS (
        SELECT next_offset FROM consumer_offsets
        WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE),
    advanced AS (
        INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
        ON CONFLICT (consumer_group, topic, partition)
        DO UPDATE SET next_offset = greatest(consumer_offsets.next_offset, EXCLUDED.next_offset)),
    claimed AS (
        INSERT INTO processed_events (consumer, event_id, topic, partition, "offset", outcome)
        SELECT $5, e.id, $2, $3, e.off, $8 FROM unnest($6::text[], $7::bigint[]) AS e(id, off)
        WHERE e.off >= coalesce((SELECT next_offset FROM stored), 0)
        ON CONFLICT DO NOTHING RETURNING event_id)
    SELECT coalesce((SELECT next_offset FROM stored), 0) AS stored, array(SELECT event_id FROM claimed) AS fresh"""


def rejection(
    service: str,
    consumer: str,
    *,
    event_id: str,
    topic: str,
    partition: int,
    offset: int,
    rule: str,
    message: str,
    field: str = "",
    attempts: int = 1,
    district_id: str = "",
    dead_letter_topic: str = REJECTED.name,
    dead_letter_id: str | None = None,
) -> OutgoingEvent:
    """The dead letter (`RecordRejected` on ingest.rejected.v1) for an event a consumer gives up on.
    `dead_letter_id`: a deterministic id for a dead letter that may be written again (the outbox keeps one)."""
    payload = RecordRejected(
        stage=f"{service}.{consumer}",
        field=field,
        rule=rule,
        message=message,
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        original_event_id=event_id,
        attempts=attempts,
    )
    return build_event(
        REJECTED,
        "record_rejected",
        payload,
        source=f"/homeroom/{service}/{consumer}",
        subject="",
        key=event_id,
        district_id=district_id,
        causation_id=event_id,
        topic_name=dead_letter_topic,
        event_id=dead_letter_id,
    )


async def mark_dead_lettered(conn: Connection, consumer: str, event_ids: Sequence[str]) -> None:
    """Events a handler kept aside and now gives up on: their idempotency marks say so
    (outcome `dead_lettered`). The caller writes their `rejection` events to the outbox in
    the same transaction and, once it commits, counts them in `EVENTS_DEAD_LETTERED`."""
    if event_ids:
        await conn.execute(
            """UPDATE processed_events SET outcome = 'dead_lettered', processed_at = now()
               WHERE consumer = $1 AND event_id = ANY($2::text[])""",
            consumer,
            list(event_ids),
        )


def _committed(ctx: HandlerContext) -> None:
    """The handler's `after_commit` calls, once its transaction has committed."""
    for call in ctx.after_commit:
        call()


def observe_times(histogram: Histogram, amount: float, times: int) -> None:
    """What `times` calls of `histogram.observe(amount)` record, in one step: a batch's handler
    time is observed once per event at the batch's mean, and a call per event cost about 1 µs
    of each event's CPU. prometheus_client has no weighted observe, so this adds to the
    histogram's sum and its bucket as `observe` does (tests/kernel/test_bus.py compares them)."""
    histogram._sum.inc(amount * times)
    histogram._buckets[bisect.bisect_left(histogram._upper_bounds, amount)].inc(times)


def group_member(
    client_kwargs: Mapping[str, Any], group_id: str, service: str, name: str, session_timeout_ms: int, max_batch: int
) -> AIOKafkaConsumer:
    """A member of a consumer group that commits its offsets itself, after the state they
    belong to is committed."""
    return AIOKafkaConsumer(
        **client_kwargs,
        group_id=group_id,
        client_id=f"homeroom-{service}-{name}",
        enable_auto_commit=False,
        # Never "latest": a new group must see everything (and the embedded broker's
        # ListOffsets is unreliable, see ARCHITECTURE.md).
        auto_offset_reset="earliest",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(1000, session_timeout_ms // 4),
        max_poll_records=max_batch,
    )


async def record_lag(consumer: AIOKafkaConsumer, service: str, name: str) -> dict[TopicPartition, int]:
    """Each held partition's lag, high-water mark minus the position (end_offsets() is unreliable
    on Tansu), into `homeroom_consumer_lag` with the partitions held; partitions with no known
    mark yet are left out."""
    held = consumer.assignment()
    CONSUMER_ASSIGNED.labels(service, name).set(len(held))
    lags: dict[TopicPartition, int] = {}
    for tp in held:
        highwater = consumer.highwater(tp)
        if highwater is None:  # nothing fetched from it yet
            continue
        with contextlib.suppress(Exception):  # revoked meanwhile
            lags[tp] = max(0, highwater - await consumer.position(tp))
            CONSUMER_LAG.labels(service, name, tp.topic, str(tp.partition)).set(lags[tp])
    return lags


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.owner._seek_to_stored(self.consumer, assigned)


@dataclass(kw_only=True, eq=False)
class EventConsumer:
    """One consumer group's loop over its topics (what the module docstring describes). Give
    exactly one of `handler` (per event) or `batch_handler`; `group_id` defaults to
    homeroom.<service>.<name>."""

    service: str
    name: str
    topics: Sequence[str]
    pool: asyncpg.Pool
    client_kwargs: dict[str, Any]
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    dead_letter_topic: str = REJECTED.name
    max_attempts: int = 5
    backoff_s: float = 0.2
    max_batch: int = 500
    group_id: str = ""
    session_timeout_ms: int = 10000
    gc_young_threshold: int = YOUNG_GC_THRESHOLD  # 0: leave Python's
    applied: int = field(default=0, init=False)
    duplicates: int = field(default=0, init=False)  # dropped as already applied (by stored offset or by id)
    dead_lettered: int = field(default=0, init=False)
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)
    _young_gc: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False, repr=False)

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.batch_handler is None):
            raise ValueError("give a consumer exactly one of handler (per event) or batch_handler")
        self.apply_batch: BatchHandler = self.batch_handler or one_at_a_time(self.handler)  # type: ignore[arg-type]
        self.topics = list(self.topics)
        self.group_id = self.group_id or f"homeroom.{self.service}.{self.name}"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._young_gc.enter_context(young_threshold(self.gc_young_threshold))
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.service}-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        try:
            await cancel(self._task)
            await self._close_consumer()
        finally:
            self._young_gc.close()

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
                self._consumer = group_member(
                    self.client_kwargs, self.group_id, self.service, self.name, self.session_timeout_ms, self.max_batch
                )
                self._consumer.subscribe(self.topics, listener=_SeekToStoredOffsets(self, self._consumer))
                await self._consumer.start()
                backoff = 0.5
                await self._poll_loop()
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
                await record_lag(consumer, self.service, self.name)
                continue
            await self._apply_poll(batches)
            # The state (and the offsets stored with it) is committed; a crash from here to the
            # Kafka commit replays nothing: the next owner seeks to the stored offsets.
            failpoints.reached("consumer.after_state_commit", self.name)
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions away; their new owner seeks to the offsets
                # stored with the state, so nothing we applied is applied again.
                log.info("offset commit skipped", extra={"consumer": self.name, "error": repr(exc)})
            await record_lag(consumer, self.service, self.name)

    async def _seek_to_stored(self, consumer: AIOKafkaConsumer, assigned: Sequence[TopicPartition]) -> None:
        """Start each newly assigned partition where the state stored in the database ends
        (never behind Kafka's committed offset, which is only written afterwards).

        aiokafka lets `getmany` return a new assignment's records as soon as this listener
        awaits (aio-libs/aiokafka#738): meanwhile the fetcher starts the partitions at Kafka's
        committed offset (or the earliest), and the poll loop would re-read what the stored
        offsets cover. So the partitions are paused before the first await and resumed after
        the seek; aiokafka discards what it fetched for a paused partition or at a stale
        position. The coordinator awaits this listener, so the assignment cannot change
        meanwhile (only the consumer's stop can end it)."""
        if not assigned:
            return
        consumer.pause(*assigned)
        stored: dict[TopicPartition, int] = {}
        try:
            rows = await self.pool.fetch(
                """SELECT topic, partition, next_offset FROM consumer_offsets
                   WHERE consumer_group = $1 AND topic = ANY($2::text[])""",
                self.group_id,
                sorted({tp.topic for tp in assigned}),
            )
            stored = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        except Exception as exc:  # the claim in each transaction still drops what was applied
            log.warning("stored offsets not read; resuming from Kafka's", extra={"error": repr(exc)})
        finally:
            still_assigned = consumer.assignment()
            for tp in assigned:
                if tp in still_assigned:
                    if tp in stored:
                        consumer.seek(tp, stored[tp])
                    consumer.resume(tp)

    # --- applying --------------------------------------------------------------------------
    async def _apply_poll(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Apply a poll's records as one batch: partition after partition in (topic, partition)
        order, so that two instances lock stored offsets in the same order, each partition's in
        offset order. One transaction for the poll, not one per partition: a handler sets its
        district (or takes its lock) once for the poll's events instead of once per partition."""
        decoded: list[IncomingEvent | tuple[ConsumerRecord[bytes, bytes], PoisonMessage]] = []
        for tp in sorted(batches):
            records = batches[tp]
            EVENTS_CONSUMED.labels(self.service, self.name, tp.topic).inc(len(records))
            for record in records:
                try:
                    decoded.append(
                        decode(record.topic, record.partition, record.offset, record.key, record.value, record.headers)
                    )
                except PoisonMessage as poison:
                    decoded.append((record, poison))
        # Runs of readable events go in batches; an unreadable record is dead-lettered in its place.
        run: list[IncomingEvent] = []
        for item in decoded:
            if isinstance(item, IncomingEvent):
                run.append(item)
                continue
            await self._apply_run(run)
            run = []
            record, bad = item
            await self._dead_letter_record(record, bad.rule, str(bad), bad.field, attempts=1)
        await self._apply_run(run)

    async def _apply_run(self, events: list[IncomingEvent]) -> None:
        """Apply events as one batch; if that fails, halve it and apply each half the same way,
        so a failing event ends up alone (retried with backoff, then dead-lettered) after
        log2(n) rolled-back batches while the events around it still go in batches."""
        if len(events) <= 1:
            for event in events:
                await self._apply_one(event)
            return
        try:
            await self._apply_together(events)
            return
        except INFRASTRUCTURE_ERRORS as exc:
            raise InfrastructureUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            log.debug("batch failed; halving it", extra={"consumer": self.name, "error": repr(exc)})
        middle = len(events) // 2
        await self._apply_run(events[:middle])
        await self._apply_run(events[middle:])

    async def _claim(self, conn: Connection, events: Sequence[IncomingEvent]) -> list[IncomingEvent]:
        """For each partition of `events` (they come partition by partition), lock and advance its
        stored offset; return the events to apply: at or above the offset stored before, not
        applied before by id, first copy only, in order."""
        fresh: list[IncomingEvent] = []
        for (topic, partition), share in itertools.groupby(events, key=lambda e: (e.topic, e.partition)):
            of_partition = list(share)
            row = await conn.fetchrow(
                _CLAIM,
                self.group_id,
                topic,
                partition,
                of_partition[-1].offset + 1,
                self.name,
                [e.event_id for e in of_partition],
                [e.offset for e in of_partition],
                "applied",
            )
            assert row is not None
            unapplied = set(row["fresh"])
            for event in of_partition:
                if event.event_id in unapplied:
                    unapplied.discard(event.event_id)  # a batch can hold two copies of one event
                    fresh.append(event)
        return fresh

    async def _apply_together(self, events: list[IncomingEvent]) -> None:
        started = time.perf_counter()
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await self._claim(conn, events)
            ctx = self._context(conn)
            if fresh:
                await self.apply_batch(fresh, ctx)
            await outbox.add(conn, ctx.emitted)
        self._count(events, fresh, time.perf_counter() - started)
        _committed(ctx)

    def _context(self, conn: Connection) -> HandlerContext:
        return HandlerContext(conn, self.service, consumer=self.name, dead_letter_topic=self.dead_letter_topic)

    def _count(self, events: Sequence[IncomingEvent], fresh: Sequence[IncomingEvent], elapsed: float) -> None:
        """Count the applied (`fresh`) and the dropped of `events`, per topic."""
        applied = collections.Counter(e.topic for e in fresh)
        for topic, n in applied.items():
            EVENTS_APPLIED.labels(self.service, self.name, topic).inc(n)
        if fresh:
            observe_times(HANDLER_SECONDS.labels(self.service, self.name), elapsed / len(fresh), len(fresh))
            self.applied += len(fresh)
        if len(fresh) < len(events):
            for topic, n in collections.Counter(e.topic for e in events).items():
                if n > applied[topic]:
                    EVENTS_DUPLICATE.labels(self.service, self.name, topic).inc(n - applied[topic])
            self.duplicates += len(events) - len(fresh)

    async def _apply_one(self, event: IncomingEvent) -> None:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    fresh = await self._claim(conn, [event])
                    if not fresh:
                        self._count([event], fresh, 0.0)
                        return
                    ctx = self._context(conn)
                    await self.apply_batch(fresh, ctx)
                    await outbox.add(conn, ctx.emitted)
                self._count([event], fresh, time.perf_counter() - started)
                _committed(ctx)
                return
            except RejectEvent as rejected:
                await self._dead_letter(event, rejected.rule, str(rejected), rejected.field, attempt)
                return
            # (A cancellation is no Exception: it passes every clause here and stops the consumer.)
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
        await self._write_dead_letter(event.event_id, event, event.meta.district_id, rule, message, field, attempts)

    async def _dead_letter_record(
        self, record: ConsumerRecord[bytes, bytes], rule: str, message: str, field: str, attempts: int
    ) -> None:
        event_id = undecoded_event_id(record.topic, record.partition, record.offset, record.headers)
        await self._write_dead_letter(event_id, record, "", rule, message, field, attempts)

    async def _write_dead_letter(
        self,
        event_id: str,
        origin: IncomingEvent | ConsumerRecord[bytes, bytes],
        district_id: str,
        rule: str,
        message: str,
        field: str,
        attempts: int,
    ) -> None:
        """Dead-letter the event at `origin`'s topic, partition and offset, once: the claim of its
        offset in the same transaction means a redelivery writes no second dead letter."""
        topic, partition, offset = origin.topic, origin.partition, origin.offset
        rejected = rejection(
            self.service,
            self.name,
            event_id=event_id,
            topic=topic,
            partition=partition,
            offset=offset,
            rule=rule,
            message=message,
            field=field,
            attempts=attempts,
            district_id=district_id,
            dead_letter_topic=self.dead_letter_topic,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _CLAIM, self.group_id, topic, partition, offset + 1, self.name, [event_id], [offset], "dead_lettered"
            )
            assert row is not None
            claimed = bool(row["fresh"])
            if not claimed:
                return
            await outbox.add(conn, rejected)
        EVENTS_DEAD_LETTERED.labels(self.service, self.name, rule).inc()
        self.dead_lettered += 1
        log.warning(
            "event dead-lettered", extra={"consumer": self.name, "event_id": event_id, "rule": rule, "reason": message}
        )
