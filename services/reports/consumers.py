"""Bus adapters of the reports service.

* The tally: a faust-streaming agent (homeroom/streams.py) over enrollment.v1, attendance.v1,
  discipline.v1 and groups.v1, its own consumer group (the faust app id), taking events in
  batches and handing each batch to the tally use case (application/tally.py). faust keeps no
  table here: the students' values are in PostgreSQL (issue 22), and after every rebalance the
  use case reloads the partitions the process holds and rebuilds their school rows.
* Reference data: a kernel consumer of calendar.v1 and organization.v1 into the database
  (application/reference.py), exactly once like every kernel consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import faust
from faust.types import TP

from homeroom import streams, tasks
from homeroom.bus.envelope import IncomingEvent, PoisonMessage, decode
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

APP_ID = "homeroom-reports-tally"
CONSUMER = "tally"


def reference_consumer(topics: ReportTopics) -> ConsumerSpec:
    return ConsumerSpec(name="reference", topics=topics.reference, handler=lambda runtime: reference.handle)


def _headers(raw: Any) -> Sequence[tuple[str, bytes]]:
    if not raw:
        return ()
    if isinstance(raw, dict):
        return [(str(k), bytes(v)) for k, v in raw.items()]
    # aiokafka's (str, bytes) pairs already: not copied per event, and the type named as a string
    # (a subscripted generic built at run time cost microseconds an event)
    return cast("Sequence[tuple[str, bytes]]", raw)


class TallyStream:
    """The faust app and agent of the tally, run inside a reports process."""

    def __init__(self, runtime: Runtime, topics: ReportTopics, settings: ReportsSettings, clock: Clock) -> None:
        self.runtime = runtime
        self.sources = topics.sources
        self.settings = settings
        partitions = self.sources[0].partitions
        app_id = APP_ID + (f"-{topics.suffix}" if topics.suffix else "")
        self.app = streams.app(app_id, runtime.kafka, settings, partitions=partitions)
        self.tally = Tally(
            runtime.pool,
            clock,
            AbsenceRule(settings.chronic_absence_threshold, settings.chronic_absence_min_days),
            lambda: int(self.app.consumer_generation_id or 0),
            topics.dead_letters,
            app_id,
        )
        # Freshness compares the broker's record times with real time, never the business day's clock.
        self.freshness = FreshnessTracker(started=system_clock())
        self.positions: dict[TP, int] = {}
        source = self.app.topic(*(t.name for t in self.sources), schema=streams.RAW)  # decoded in the agent
        self.app.agent(source, name=f"{app_id}.students")(self._agent)
        # Sent after every rebalance, before faust resumes the agent's partitions.
        self.app.on_rebalance_complete.connect(cast(Any, self._rebalanced), weak=False)  # a receiver takes signal=
        self._refresher: asyncio.Task[None] | None = None

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        batch_size, window = self.settings.tally_batch, self.settings.tally_batch_window_s
        batches = cast(faust.Stream[bytes], stream).take_events(batch_size, within=window)
        async for events in batches:
            decoded: list[IncomingEvent] = []
            unreadable: list[Refusal] = []
            newest: dict[tuple[str, int], float] = {}
            read: dict[tuple[str, int], int] = {}  # the next offset per partition, set once per batch
            for event in events:
                message = event.message
                headers = _headers(message.headers)
                place = (message.topic, message.partition)
                read[place] = message.offset + 1
                if message.timestamp and message.timestamp > newest.get(place, 0.0):
                    newest[place] = float(message.timestamp)
                try:
                    decoded.append(
                        decode(
                            message.topic,
                            message.partition,
                            message.offset,
                            message.key,
                            message.value,
                            headers,
                        )
                    )
                except PoisonMessage as poison:  # dead-lettered in the batch's transaction
                    event_id = dict(headers).get("ce_id", b"").decode(errors="replace")
                    unreadable.append(
                        Refusal(
                            message.topic,
                            message.partition,
                            message.offset,
                            event_id or f"{message.topic}:{message.partition}:{message.offset}",
                            poison.rule,
                            str(poison),
                            poison.field,
                        )
                    )
            for (topic, partition), position in read.items():
                self.positions[TP(topic, partition)] = position
            await self._absorb(decoded, unreadable)
            for place, stamp in newest.items():
                self.freshness.applied(place, datetime.fromtimestamp(stamp, UTC))
            self._measure()

    def _measure(self) -> None:
        """Lag in events (homeroom_consumer_lag) and in seconds (homeroom_reports_seconds_behind)."""
        lags = streams.record_lag(self.app, "reports", CONSUMER, self.positions)
        if lags is None:
            return
        now = system_clock()
        names = {t.name for t in self.sources}  # not faust's own leader topic
        self.freshness.measured({(tp.topic, tp.partition): lag for tp, lag in lags.items() if tp.topic in names}, now)
        metrics.SECONDS_BEHIND.set(self.freshness.seconds_behind(now))

    async def _absorb(self, decoded: list[IncomingEvent], unreadable: list[Refusal]) -> None:
        """The batch into the tally, again until its transaction commits: faust acknowledges the
        batch's events when the agent moves on, whether or not the batch was written."""
        while True:
            try:
                await self.tally.absorb(decoded, unreadable)
                return
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                metrics.TALLY_RETRIES.inc()
                log.warning("tally batch not written; trying again", extra={"error": repr(exc)})
                await asyncio.sleep(self.settings.tally_retry_s)

    async def _rebalanced(self, sender: Any, **kwargs: Any) -> None:
        try:
            names = {t.name for t in self.sources}
            held = {tp for tp in self.app.consumer.assignment() if tp.topic in names}
            await self._positions_of(held)
            assigned = {tp.partition for tp in held}
            await self.tally.rebuild(assigned)
        except Exception:  # raising here would stop faust's rebalance; the next batch reloads
            log.exception("tally rebuild after a rebalance failed; partitions are rebuilt on their next batch")

    async def _positions_of(self, held: set[TP]) -> None:
        """Start the lag of newly held partitions at the offset the group committed (where this
        process starts reading), not at 0: the events before it were counted by a former holder."""
        for tp in set(self.positions) - held:
            del self.positions[tp]
        for tp in held - set(self.positions):
            with contextlib.suppress(Exception):  # revoked meanwhile: its lag is not ours
                position = await self.app.consumer.position(tp)
                if position is not None:
                    self.positions[tp] = position

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.calendar_poll_s)
            try:
                await self.tally.refresh()
            except Exception as exc:  # the database is away: try again next time
                log.warning("tally refresh failed", extra={"error": repr(exc)})
            self._measure()

    async def start(self) -> None:
        await streams.create_topics(self.runtime.kafka, self.sources, self.settings.topic_replication_factor)
        await self.app.start()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="reports-tally-refresh")

    async def stop(self) -> None:
        await tasks.cancel(self._refresher)
        await self.app.stop()
