"""The transactional outbox: events are rows written in the same transaction as state.

Why: the embedded broker has no transactions and no idempotent producer, and even on
Apache Kafka a service cannot commit a database row and a Kafka write atomically. So a
service writes its events to `outbox` inside its own transaction, and `OutboxRelay`
publishes them afterwards, deleting each row only once the broker acknowledged it.
A crash between publish and delete republishes; consumers drop the repeat by event id.
With the broker down, writes still succeed and the backlog waits here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

from homeroom.bus.envelope import OutgoingEvent
from homeroom.bus.producer import Publisher
from homeroom.storage import Connection, keeps_session_state
from homeroom.telemetry import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_RELAY_FAILURES

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "homeroom_outbox"


async def add(conn: Connection, events: OutgoingEvent | Iterable[OutgoingEvent]) -> int:
    """Write events to the outbox on `conn` (call inside the caller's transaction).

    An event id already in the outbox is skipped, so re-running a step after a crash
    writes each event once.
    """
    batch = [events] if isinstance(events, OutgoingEvent) else list(events)
    if not batch:
        return 0
    await conn.executemany(
        """INSERT INTO outbox (event_id, topic, key, headers, payload) VALUES ($1, $2, $3, $4::jsonb, $5)
           ON CONFLICT (event_id) DO NOTHING""",
        [(e.event_id, e.topic, e.key, json.dumps([[k, v.hex()] for k, v in e.headers]), e.value) for e in batch],
    )
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return len(batch)


def _row_to_event(row: asyncpg.Record) -> OutgoingEvent:
    headers = [(k, bytes.fromhex(v)) for k, v in json.loads(row["headers"])]
    return OutgoingEvent(row["event_id"], row["topic"], row["key"], headers, row["payload"])


class OutboxRelay:
    """Publishes outbox rows in id order. One relay per database is active at a time
    (a session advisory lock), which keeps per-key order; others stand by."""

    def __init__(
        self,
        service: str,
        pool: asyncpg.Pool,
        publisher: Publisher,
        *,
        poll_interval_s: float = 0.05,
        batch_size: int = 2000,
        max_backoff_s: float = 5.0,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`prepare` runs before the first publish and again after every failure: the
        services pass topic creation, so a broker that lost its topics (the embedded one
        restarts empty) gets them back before anything is published to it."""
        self.service = service
        self.pool = pool
        self.publisher = publisher
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self._prepare = prepare
        self._prepared = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def backlog(self) -> int:
        count: int = await self.pool.fetchval("SELECT count(*) FROM outbox")
        return count

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything written so far has been published (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while await self.backlog() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox of {self.service} still has {await self.backlog()} events")
            self._wake.set()
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        lock_conn = await self.pool.acquire()
        keeps_session_state(lock_conn)  # the session advisory lock below
        try:
            wake = lambda *_: self._wake.set()  # noqa: E731
            await lock_conn.add_listener(NOTIFY_CHANNEL, wake)
            while not await lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext('homeroom.outbox.relay'))"):  # noqa: ASYNC110
                await asyncio.sleep(1.0)  # another instance relays; take over when it stops
            backoff = self.poll_interval_s
            while not self._stopping:
                try:
                    if self._prepare is not None and not self._prepared:
                        await self._prepare()
                        self._prepared = True
                    sent = await self._relay_once()
                    backoff = self.poll_interval_s
                except Exception as exc:  # broker down or slow: keep the rows, try again later
                    OUTBOX_RELAY_FAILURES.labels(self.service).inc()
                    self._prepared = False
                    log.warning("outbox relay failed; will retry", extra={"error": repr(exc), "backoff_s": backoff})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                if sent == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=max(self.poll_interval_s, 0.5))
        finally:
            with contextlib.suppress(Exception):
                await lock_conn.remove_listener(NOTIFY_CHANNEL, wake)
                await lock_conn.execute("SELECT pg_advisory_unlock_all()")
            await self.pool.release(lock_conn)

    async def _relay_once(self) -> int:
        rows = await self.pool.fetch(
            "SELECT id, event_id, topic, key, headers, payload, created_at FROM outbox ORDER BY id LIMIT $1",
            self.batch_size,
        )
        if not rows:
            OUTBOX_BACKLOG.labels(self.service).set(0)
            OUTBOX_OLDEST_AGE.labels(self.service).set(0)
            return 0
        OUTBOX_OLDEST_AGE.labels(self.service).set(max(0.0, time.time() - rows[0]["created_at"].timestamp()))
        await self.publisher.publish_many([_row_to_event(r) for r in rows])
        await self.pool.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published += len(rows)
        OUTBOX_BACKLOG.labels(self.service).set(await self.backlog())
        return len(rows)
