"""A consumer group's poll loop for a consumer that makes its effects exactly once itself.

The kernel's `EventConsumer` (homeroom/bus/consumer.py) stores each partition's offset and each
event's id in the handler's transaction. A consumer whose state already says which events it
applied (the reports tally: each student's value holds the offset of the last event applied
from each topic, so a redelivered event changes nothing) needs neither, only a group, batches
and commits. `BatchLoop` is that, on aiokafka alone:

* `apply` gets the records of up to `max_batch` events polled within `window_s` of the first
  (by partition, each partition's in offset order), as the broker's bytes and headers; once it
  returns (its transaction committed) their offsets are committed to Kafka. A crash in between
  brings the batch again, and the state recognises it.
* On every assignment the new partitions are paused, `assigned` is awaited with every partition
  held (the consumer rebuilds what it holds from its database) and they are resumed: aiokafka
  fetches a new assignment's records while the listener awaits (aio-libs/aiokafka#738), and
  discards what it fetched for a paused partition, so none is handed over before the rebuild.
* A revocation waits for the batch in hand to be applied and committed, so a partition's next
  holder starts after it; records polled for a partition the loop no longer holds are dropped.
* After every poll, the lag of each partition held (high-water mark minus the next offset to
  apply) goes to `homeroom_consumer_lag` and to `measured`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError

from homeroom.bus.consumer import group_member, record_lag
from homeroom.tasks import cancel
from homeroom.telemetry import CONSUMER_ASSIGNED

log = logging.getLogger(__name__)

Records = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class StatefulConsumer:
    """What a `BatchLoop` serves: a consumer keeping its own state, which applies batches and may
    rebuild what it holds on an assignment and hear the lag (the module docstring)."""

    async def apply(self, records: Records) -> None:
        """Apply the batch and commit it in the consumer's state (raise: it comes again)."""
        raise NotImplementedError

    async def assigned(self, held: set[TopicPartition]) -> None:
        """Every partition held after an assignment (the new ones paused until this returns)."""

    def measured(self, lags: dict[TopicPartition, int]) -> None:
        """The lag of each partition held whose high-water mark is known, after every poll."""


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: BatchLoop, consumer: AIOKafkaConsumer) -> None:
        self.loop = loop
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.loop.applying:  # the batch in hand is applied and committed first
            return

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.loop.rebuild(self.consumer, assigned)


@dataclass(kw_only=True, eq=False)
class BatchLoop:
    """One consumer group's loop for `target` (the module docstring). `service` and `name` label
    its lag."""

    target: StatefulConsumer
    service: str
    name: str
    topics: Sequence[str]
    group_id: str
    client_kwargs: Mapping[str, Any]
    max_batch: int = 1000
    window_s: float = 0.25
    idle_s: float = 0.5  # an empty poll's wait, after which the lag is measured again
    session_timeout_ms: int = 10000
    generation: int = field(default=0, init=False)  # the group's, as of the last assignment
    applying: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    consumer: AIOKafkaConsumer | None = field(default=None, init=False, repr=False)  # while one runs
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"batch-loop-{self.group_id}")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            consumer = group_member(
                self.client_kwargs, self.group_id, self.service, self.name, self.session_timeout_ms, self.max_batch
            )
            consumer.subscribe(list(self.topics), listener=_Rebalances(self, consumer))
            self.consumer = consumer
            try:
                await consumer.start()
                while True:
                    await self._poll(consumer)
                    backoff = 0.5
            except Exception as exc:  # the broker gone, group trouble: a new consumer resumes from the commits
                log.warning("batch loop restarting", extra={"group": self.group_id, "error": repr(exc)})
            finally:  # leaves the group at once, so the partitions move without waiting for its session
                self.consumer = None
                CONSUMER_ASSIGNED.labels(self.service, self.name).set(0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 10)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        records = await self._gather(consumer)
        if records:
            async with self.applying:
                held = consumer.assignment()
                records = {tp: batch for tp, batch in records.items() if tp in held}
                if records:
                    await self.target.apply(records)
                    # Applied and committed in the consumer's state: a crash from here until
                    # Kafka has the offsets brings the batch again, and the state drops it.
                    offsets = {tp: batch[-1].offset + 1 for tp, batch in records.items()}
                    try:
                        await consumer.commit(offsets)
                    except CommitFailedError as exc:  # a rebalance is under way: the next holder gets it again
                        log.info("offset commit skipped", extra={"group": self.group_id, "error": repr(exc)})
        self.target.measured(await record_lag(consumer, self.service, self.name))

    async def _gather(self, consumer: AIOKafkaConsumer) -> Records:
        """Up to `max_batch` records: what the first poll brings, and more until `window_s` after it."""
        records: Records = await consumer.getmany(timeout_ms=int(self.idle_s * 1000), max_records=self.max_batch)
        taken = sum(map(len, records.values()))
        deadline = asyncio.get_running_loop().time() + self.window_s
        while records and taken < self.max_batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            more = await consumer.getmany(timeout_ms=int(left * 1000), max_records=self.max_batch - taken)
            for tp, batch in more.items():
                records.setdefault(tp, []).extend(batch)
                taken += len(batch)
        return records

    async def rebuild(self, consumer: AIOKafkaConsumer, assigned: Sequence[TopicPartition]) -> None:
        """A new assignment: `target.assigned` awaited with the new partitions paused (module docstring).
        A failure is logged, not raised (it would end aiokafka's rebalance): the consumer's
        next batch finds the partitions it does not know and loads them."""
        self.generation = consumer._coordinator.generation  # the fence of the state written from now on
        consumer.pause(*assigned)
        try:
            await self.target.assigned(set(consumer.assignment()))
        except Exception:
            log.exception("rebuild after an assignment failed", extra={"group": self.group_id})
        finally:
            still = consumer.assignment()
            consumer.resume(*(tp for tp in assigned if tp in still))
