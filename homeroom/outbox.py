"""The transactional outbox: events are rows written in the same transaction as state.

Why: the embedded broker has no transactions and no idempotent producer, and even on
Apache Kafka a service cannot commit a database row and a Kafka write atomically. So a
service writes its events to `outbox` inside its own transaction, and `OutboxRelay`
publishes them afterwards, deleting each row only once the broker acknowledged it.
A crash between publish and delete republishes; consumers drop the repeat by event id.
With the broker down, writes still succeed and the backlog waits here.

Cost: `add` writes a batch with one binary COPY (or, for a few events, one multi-row
INSERT) and notifies the relay. The headers travel as one length-prefixed bytea per event
(`pack_headers`: key length, key, value length, value), which PostgreSQL stores as it is and
the relay slices apart without decoding any text; as two arrays (text[] and bytea[]) they
cost PostgreSQL twice as much to write. The relay publishes each topic in its own lane, so
an enrollment never waits behind another topic's backlog (order within a topic, so within a
topic partition, is kept; nothing more is promised); the backlog gauge is read from the ids,
not counted. A lane sends a lone event at once; in a stream it waits `stream_pace_s` between
calls so that each carries more rows (the producer itself does not linger).

The relay of the process that wrote a batch does not read its rows back: `add` keeps what it
copied (key, payload, headers) by event id with the transaction id that wrote the rows (`xmin`),
and the relay reads only each row's id, event id and `xmin`, taking the content from memory when
both ids match, so it is the content of that very insert. Anything else (rows of another
process, of a run before a restart, of a rolled-back write whose id was written again) is read
from the table as before. The outbox stays the only record of what is to be published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field

import asyncpg

from homeroom.bus.envelope import OutgoingEvent
from homeroom.bus.producer import Publisher, Record
from homeroom.storage import Connection
from homeroom.tasks import RELAY_FALLBACK_S, NotifyWake, cancel
from homeroom.telemetry import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_RELAY_FAILURES

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "homeroom_outbox"


_INSERT = f"""WITH added AS (
        INSERT INTO outbox (event_id, topic, key, header_bytes, payload)
        SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[])
        ON CONFLICT (event_id) DO NOTHING RETURNING 1)
    SELECT pg_notify('{NOTIFY_CHANNEL}', ''), (SELECT count(*) FROM added)"""  # noqa: S608 (constant)
_NOTIFY = f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"
_COLUMNS = ["event_id", "topic", "key", "header_bytes", "payload"]
COPY_FROM = 64  # events: from here on a COPY (and its savepoint) costs less than the INSERT


# Header names are a handful of constants (ce_id, ce_type ...): each is framed once.
_NAME_FRAMES: dict[str, bytes] = {}
_NAMES_KEPT = 256
_U32 = struct.Struct(">I")
# Most header pairs repeat from event to event (spec version, type, source, time, content type,
# correlation id; a student's subject): the relay hands aiokafka one shared (name, value) tuple
# per distinct frame instead of slicing a new one, sparing the allocations and the garbage
# collections they set off (thousands a batch). The event id never repeats, so it is not kept.
_PAIRS: dict[bytes, tuple[str, bytes]] = {}
_PAIRS_KEPT = 4096
_UNIQUE_HEADERS = frozenset({"ce_id"})


def _name_frame(key: str) -> bytes:
    name = key.encode()
    if len(name) > 255:
        raise ValueError(f"header name longer than 255 bytes: {key[:40]!r}...")
    frame = bytes((len(name),)) + name
    if len(_NAME_FRAMES) < _NAMES_KEPT:
        _NAME_FRAMES[key] = frame
    return frame


# The same pairs, framed: `build_event` shares one tuple per distinct value, so each pair's
# frame is looked up by the tuple (its hash is the name's and the value's, both kept by Python).
_FRAMES: dict[tuple[str, bytes], bytes] = {}
_FRAMES_KEPT = 4096


def _frame(pair: tuple[str, bytes]) -> bytes:
    key, value = pair
    name = _NAME_FRAMES.get(key)
    if name is None:
        name = _name_frame(key)
    frame = name + _U32.pack(len(value)) + value
    if key not in _UNIQUE_HEADERS:
        if len(_FRAMES) >= _FRAMES_KEPT:
            _FRAMES.clear()  # a new upload's values: the constant ones come back at once
        _FRAMES[pair] = frame
    return frame


def pack_headers(headers: Iterable[tuple[str, bytes]]) -> bytes:
    """Kafka record headers as one bytea: per header, key length (1 byte), key (UTF-8), value
    length (4 bytes, big-endian), value."""
    frames = _FRAMES
    parts: list[bytes] = []
    for pair in headers:
        frame = frames.get(pair)
        parts.append(_frame(pair) if frame is None else frame)
    return b"".join(parts)


def unpack_headers(block: bytes) -> list[tuple[str, bytes]]:
    """The headers `pack_headers` packed, by slicing."""
    out: list[tuple[str, bytes]] = []
    pairs, length = _PAIRS, _U32.unpack_from
    i, end = 0, len(block)
    while i < end:
        k = i + 1 + block[i]
        v = k + 4 + length(block, k)[0]
        frame = block[i:v]
        pair = pairs.get(frame)
        if pair is None:
            pair = (block[i + 1 : k].decode(), block[k + 4 : v])
            if pair[0] not in _UNIQUE_HEADERS:
                if len(pairs) >= _PAIRS_KEPT:
                    pairs.clear()  # a new upload's values: the constant ones come back at once
                pairs[frame] = pair
        out.append(pair)
        i = v
    return out


# What `add` copied in this process, by event id: the transaction id that wrote the rows and the
# record the relay sends. Bounded; a miss only means the relay reads the row.
_WRITTEN: dict[str, tuple[int, Record]] = {}
_WRITTEN_KEPT = 20_000
# The transaction id of a row as a number (xid has no cast to bigint; its text form is the number).
_XMIN_OF = "SELECT xmin::text::bigint FROM outbox WHERE event_id = $1"
_UNREAD: tuple[int, Record] = (-1, (None, b"", []))  # a place the relay fills from the table


def _remember(batch: list[OutgoingEvent], xmin: int) -> None:
    """Keep the batch's records for this process's relay, all of them or none."""
    written = _WRITTEN
    if len(written) + len(batch) > _WRITTEN_KEPT:
        for e in batch:  # an older entry under one of these ids must not stand for the new row
            written.pop(e.event_id, None)
        return
    for e in batch:
        written[e.event_id] = (xmin, (e.key, e.value, e.headers))


async def add(conn: Connection, events: OutgoingEvent | Iterable[OutgoingEvent]) -> int:
    """Write events to the outbox on `conn` (call inside the caller's transaction).

    An event id already in the outbox is skipped, so re-running a step after a crash
    writes each event once: a batch goes in by COPY inside a savepoint, and only if one of
    its ids is already there is it written again by INSERT ... ON CONFLICT DO NOTHING.
    A batch that went in by COPY is also kept in memory for the relay (module docstring).
    """
    batch = [events] if isinstance(events, OutgoingEvent) else list(events)
    if not batch:
        return 0
    rows = [(e.event_id, e.topic, e.key, pack_headers(e.headers), e.value) for e in batch]
    if len(rows) >= COPY_FROM:
        try:
            async with conn.transaction():  # a savepoint: a duplicate id undoes the COPY only
                await conn.copy_records_to_table("outbox", records=rows, columns=_COLUMNS)
                xmin: int = await conn.fetchval(_XMIN_OF, batch[0].event_id)
        except asyncpg.UniqueViolationError:
            pass
        else:
            await conn.execute(_NOTIFY)
            _remember(batch, xmin)
            return len(batch)
    for e in batch:  # written (or not) by INSERT: the relay reads these rows
        _WRITTEN.pop(e.event_id, None)
    await conn.fetchrow(_INSERT, *[list(column) for column in zip(*rows, strict=True)])
    return len(batch)


# A topic's waiting events, oldest first, at most $2 of them (NULL: all), in the column order
# `outbox_event` reads.
EVENTS_OF_TOPIC = """SELECT id, event_id, topic, key, header_bytes, payload FROM outbox
    WHERE topic = $1 ORDER BY id LIMIT $2"""
# What the relay reads first: which rows wait, and which insert wrote each (`_WRITTEN`).
_WAITING = """SELECT id, event_id, xmin::text::bigint FROM outbox
    WHERE topic = $1 ORDER BY id LIMIT $2"""
# ... then the content of the rows it does not hold, by id.
_CONTENT = "SELECT id, key, payload, header_bytes FROM outbox WHERE id = ANY($1::bigint[])"


def outbox_event(row: asyncpg.Record) -> OutgoingEvent:
    """The event of a row of `EVENTS_OF_TOPIC`, read by position (a lookup by name costs more
    than the rest of the row, so a `SELECT *` row will not do). The relay reads the same
    positions and hands the publisher key, payload and headers without this object."""
    _, event_id, topic, key, header_bytes, payload = row
    return OutgoingEvent(event_id, topic, key, unpack_headers(header_bytes), payload)


# The distinct topics waiting, by a loose index scan of (topic, id): one probe per topic.
_TOPICS = """WITH RECURSIVE t(topic) AS (
        (SELECT topic FROM outbox ORDER BY topic LIMIT 1)
        UNION ALL
        SELECT (SELECT o.topic FROM outbox o WHERE o.topic > t.topic ORDER BY o.topic LIMIT 1) FROM t
        WHERE t.topic IS NOT NULL)
    SELECT topic FROM t WHERE topic IS NOT NULL"""


@dataclass(eq=False)
class OutboxRelay:
    """Publishes outbox rows, each topic in its own lane and in id order within it. One relay
    per database is active at a time (a session advisory lock); others stand by."""

    service: str
    pool: asyncpg.Pool
    publisher: Publisher
    _: KW_ONLY
    poll_interval_s: float = 0.05
    batch_size: int = 2000
    max_backoff_s: float = 5.0
    # After a call that found a stream (more than one row, fewer than a batch), the lane waits
    # this long before it looks again, so the next call carries what arrived meanwhile. A lone
    # event after a quiet spell is sent at once (bench/bus.py, docs/benchmarks.md).
    stream_pace_s: float = 0.005
    # Runs before the first publish and again after every failure: the services pass topic
    # creation, so a broker that lost its topics (the embedded one restarts empty) gets them
    # back before anything is published to it.
    prepare: Callable[[], Awaitable[None]] | None = None
    published: int = field(default=0, init=False)
    fallback_s: float = RELAY_FALLBACK_S  # the short poll: max(poll_interval_s, 0.5) s
    wake: NotifyWake = field(init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _lanes: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False, repr=False)
    _prepared: bool = field(default=False, init=False, repr=False)
    _prepare_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.wake = NotifyWake(self.pool, NOTIFY_CHANNEL, max(self.poll_interval_s, 0.5), self.fallback_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        self._stopping = True
        self.wake.event.set()
        await cancel(self._task, *self._lanes.values())

    async def backlog(self) -> int:
        """Exactly how many events wait (tests and shutdown; the gauge uses `_estimate`)."""
        count: int = await self.pool.fetchval("SELECT count(*) FROM outbox")
        return count

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything written so far has been published (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while await self.backlog() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox of {self.service} still has {await self.backlog()} events")
            self.wake.event.set()
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        wake, backoff = self.wake, self.poll_interval_s
        try:
            while not self._stopping:
                try:
                    if not wake.listening:  # first, or the server dropped it (and the lock with it)
                        await self._take_over(await wake.listen())
                    waiting = await self._start_lanes()
                except Exception as exc:  # database trouble: keep the rows, try again later
                    OUTBOX_RELAY_FAILURES.labels(self.service).inc()
                    log.warning("outbox relay failed; will retry", extra={"error": repr(exc), "backoff_s": backoff})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                backoff = self.poll_interval_s
                wake.found(waiting > 0)
                # rows waiting: lanes run and fail or finish; look again soon (new topics, gauges)
                await wake.wait(busy=waiting > 0)
        finally:
            if wake.conn is not None:
                with contextlib.suppress(Exception):
                    await wake.conn.execute("SELECT pg_advisory_unlock_all()")
            await wake.close()

    async def _take_over(self, conn: Connection) -> None:
        """Relay only while holding the advisory lock, on the LISTEN connection: another
        instance relays until it stops (or its connection drops)."""
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('homeroom.outbox.relay'))"):  # noqa: ASYNC110
            await asyncio.sleep(1.0)

    async def _start_lanes(self) -> int:
        """A lane for every topic with rows waiting and no lane running; then the gauges. With
        none waiting, what `add` kept is dropped (rolled-back writes; a miss is only a read).
        Returns how many topics wait."""
        waiting = await self.pool.fetch(_TOPICS)
        if not waiting:
            _WRITTEN.clear()
        for record in waiting:
            topic = record["topic"]
            lane = self._lanes.get(topic)
            if lane is None or lane.done():
                self._lanes[topic] = asyncio.create_task(self._lane(topic), name=f"outbox-{self.service}-{topic}")
        await self._estimate()
        return len(waiting)

    async def _estimate(self) -> None:
        row = await self.pool.fetchrow(
            """SELECT max(id) - min(id) + 1 AS span,
                      (SELECT created_at FROM outbox ORDER BY id LIMIT 1) AS oldest FROM outbox"""
        )
        assert row is not None
        # An upper bound (lanes delete out of id order, leaving gaps), exact while one topic waits.
        OUTBOX_BACKLOG.labels(self.service).set(row["span"] or 0)
        oldest = row["oldest"]
        OUTBOX_OLDEST_AGE.labels(self.service).set(0 if oldest is None else max(0.0, time.time() - oldest.timestamp()))

    async def _lane(self, topic: str) -> None:
        """Publish one topic's rows in id order until none are left (the relay starts the
        lane again when more arrive); on failure, back off and retry in place."""
        backoff = self.poll_interval_s
        while not self._stopping:
            try:
                await self._ensure_prepared()
                sent = await self._relay_once(topic)
                backoff = self.poll_interval_s
            except Exception as exc:  # broker down or slow: keep the rows, try again later
                OUTBOX_RELAY_FAILURES.labels(self.service).inc()
                self._prepared = False
                log.warning(
                    "outbox relay failed; will retry",
                    extra={"topic": topic, "error": repr(exc), "backoff_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if sent >= self.batch_size:
                continue
            if sent <= 1 or self.stream_pace_s <= 0:
                return
            await asyncio.sleep(self.stream_pace_s)

    async def _ensure_prepared(self) -> None:
        if self.prepare is None or self._prepared:
            return
        async with self._prepare_lock:  # one topic creation for all lanes
            if not self._prepared:
                await self.prepare()
                self._prepared = True

    async def _relay_once(self, topic: str) -> int:
        rows = await self.pool.fetch(_WAITING, topic, self.batch_size)
        if not rows:
            return 0
        written = _WRITTEN
        records: list[Record] = []
        unread: dict[int, int] = {}  # row id -> its place in `records`
        for row_id, event_id, xmin in rows:
            kept = written.get(event_id)
            if kept is None or kept[0] != xmin:
                unread[row_id] = len(records)
                kept = _UNREAD
            records.append(kept[1])
        if unread:
            # key, payload and headers by position, straight to the publisher (no event object per row)
            content = await self.pool.fetch(_CONTENT, list(unread))
            if len(content) != len(unread):  # only this relay deletes rows (the advisory lock)
                raise RuntimeError(f"outbox rows of {topic} went away while they were read")
            for row_id, key, payload, header_bytes in content:
                records[unread[row_id]] = (key, payload, unpack_headers(header_bytes))
        await self.publisher.publish_records({topic: records})
        await self.pool.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r[0] for r in rows])
        for row in rows:
            written.pop(row[1], None)
        self.published += len(rows)
        return len(rows)
