"""Bus adapters of the reports service.

* The tally: a plain aiokafka consumer group (`homeroom/bus/batch_loop.py`) over enrollment.v1,
  attendance.v1, discipline.v1 and groups.v1, its own group id (`APP_ID`), taking events in
  batches of up to `tally_batch` within `tally_batch_window_s` and handing each batch to the
  tally use case (application/tally.py); the batch's offsets are committed to Kafka once its
  transaction committed. The students' values are in PostgreSQL (issue 22), each with the
  offsets of the events applied, so a batch that comes again changes nothing; on every
  assignment the use case reloads the partitions the process holds and rebuilds their school
  rows. (It ran on faust-streaming until round 30: docs/architecture.md says why no longer.)
* Reference data: a kernel consumer of calendar.v1 and organization.v1 into the database
  (application/reference.py), exactly once like every kernel consumer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg
from aiokafka import TopicPartition

from homeroom import tasks
from homeroom.bus.batch_loop import BatchLoop, Records, StatefulConsumer
from homeroom.bus.envelope import IncomingEvent, PoisonMessage, decode, undecoded_event_id
from homeroom.bus.topics import ensure_topics
from homeroom.clock import Clock, system_clock
from homeroom.service import ConsumerSpec, Runtime
from services.reports import metrics
from services.reports.application import reference
from services.reports.application.tally import Refusal, Tally
from services.reports.freshness import FreshnessTracker
from services.reports.settings import ReportsSettings
from services.reports.state import ReportTopics
from services.reports.tallies import AbsenceRule

log = logging.getLogger(__name__)

APP_ID = "homeroom-reports-tally"  # the consumer group (the faust app id it was)
CONSUMER = "tally"


def reference_consumer(topics: ReportTopics) -> ConsumerSpec:
    return ConsumerSpec(name="reference", topics=topics.reference, handler=lambda runtime: reference.handle)


def _decoded(records: Records) -> tuple[list[IncomingEvent], list[Refusal]]:
    """A batch's events, and the records that could not be decoded (dead-lettered in the batch's
    transaction), with their rule."""
    decoded: list[IncomingEvent] = []
    unreadable: list[Refusal] = []
    for batch in records.values():
        for record in batch:
            try:
                decoded.append(
                    decode(record.topic, record.partition, record.offset, record.key, record.value, record.headers)
                )
            except PoisonMessage as poison:
                unreadable.append(
                    Refusal(
                        record.topic,
                        record.partition,
                        record.offset,
                        undecoded_event_id(record.topic, record.partition, record.offset, record.headers),
                        poison.rule,
                        str(poison),
                        poison.field,
                    )
                )
    return decoded, unreadable


class TallyStream(StatefulConsumer):
    """The tally's consumer group loop, run inside a reports process: it applies the loop's
    batches to the tally, rebuilds the partitions assigned and keeps the freshness."""

    def __init__(self, runtime: Runtime, topics: ReportTopics, settings: ReportsSettings, clock: Clock) -> None:
        self.runtime = runtime
        self.sources = topics.sources
        self.settings = settings
        app_id = APP_ID + (f"-{topics.suffix}" if topics.suffix else "")
        self.loop = BatchLoop(
            target=self,
            service="reports",
            name=CONSUMER,
            topics=[t.name for t in self.sources],
            group_id=app_id,
            client_kwargs=runtime.kafka.client_kwargs(),
            max_batch=settings.tally_batch,
            window_s=settings.tally_batch_window_s,
            session_timeout_ms=settings.consumer_session_timeout_ms,
        )
        self.tally = Tally(
            runtime.pool,
            clock,
            AbsenceRule(settings.chronic_absence_threshold, settings.chronic_absence_min_days),
            lambda: self.loop.generation,
            topics.dead_letters,
            app_id,
        )
        # Freshness compares the broker's record times with real time, never the business day's clock.
        self.freshness = FreshnessTracker(started=system_clock())
        self._refresher: asyncio.Task[None] | None = None

    async def apply(self, records: Records) -> None:
        decoded, unreadable = _decoded(records)
        await self._absorb(decoded, unreadable)
        for tp, batch in records.items():
            stamp = max(record.timestamp for record in batch)  # the broker's record time, in ms
            if stamp > 0:  # -1: a record without one
                self.freshness.applied((tp.topic, tp.partition), datetime.fromtimestamp(stamp / 1000, UTC))

    def measured(self, lags: dict[TopicPartition, int]) -> None:
        """Lag in seconds (homeroom_reports_seconds_behind), from the lag in events the loop measured."""
        now = system_clock()
        self.freshness.measured({(tp.topic, tp.partition): lag for tp, lag in lags.items()}, now)
        metrics.SECONDS_BEHIND.set(self.freshness.seconds_behind(now))

    async def _absorb(self, decoded: list[IncomingEvent], unreadable: list[Refusal]) -> None:
        """The batch into the tally, again until its transaction commits: the loop commits the
        batch's offsets to Kafka once this returns."""
        while True:
            try:
                await self.tally.absorb(decoded, unreadable)
                return
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                metrics.TALLY_RETRIES.inc()
                log.warning("tally batch not written; trying again", extra={"error": repr(exc)})
                await asyncio.sleep(self.settings.tally_retry_s)

    async def assigned(self, held: set[TopicPartition]) -> None:
        await self.tally.rebuild({tp.partition for tp in held})

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.calendar_poll_s)
            try:
                await self.tally.refresh()
            except Exception as exc:  # the database is away: try again next time
                log.warning("tally refresh failed", extra={"error": repr(exc)})

    async def start(self) -> None:
        # Created before the group subscribes (Tansu gives auto-created topics 4 partitions).
        await ensure_topics(self.runtime.kafka.client_kwargs(), self.sources, self.settings.topic_replication_factor)
        self.loop.start()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="reports-tally-refresh")

    async def stop(self) -> None:
        await tasks.cancel(self._refresher)
        await self.loop.stop()
