"""The kernel's bus against plain aiokafka, in the same run, on the same broker.

    .venv/bin/python bench/bus.py [--events N] [--size BYTES] [--call N] [--json PATH]
    .venv/bin/python bench/bus.py --build N

Both paths move the same N events of SIZE bytes (default 20,000 of 1 KiB) from a
producer to a consumer on embedded Tansu:

- raw: AIOKafkaProducer.send for every event, then an AIOKafkaConsumer reads them all.
- kernel: events written to the outbox in PostgreSQL transactions of 500, the
  OutboxRelay publishes them, an EventConsumer applies each poll's batch per partition in
  one database transaction (its stored offset and idempotency marks, and the handler's
  one multi-row INSERT, as hot-path handlers do), then commits offsets. This is the price
  of exactly-once effects without Kafka transactions.

And the publisher alone (no database, no consumer), against raw sends of the same events:
Publisher.publish_many in calls of --call events (the relay's call size when events trickle
in), which isolates what the publisher adds per call (its partition check on the embedded
broker). CPU is this process's user + system time and the broker process's, per event.

And a lone event's acknowledgement (a single transfer or consent event relayed on its own):
--lone sequential publish_many calls of one event each, p50 and p99 from the call to the
broker's acknowledgement, for the Publisher as it is configured and with the linger that was
its default before (5 ms), against a raw AIOKafkaProducer.send_and_wait with linger 0.

With --claim-rows N, the consumer's idempotency claim alone (`_CLAIM`, batches of 500) on a
`processed_events` already holding N marks, PostgreSQL backend CPU µs per event, against the
same statement with the marks keyed by partition offset (in index order, but blind to a
duplicate at another offset) and with no index at all (the floor).

With --build N, only the cost of building N events (no broker, no database): `build_event`
against `build_event_before` (how it made an event before round 30: the topic's protobuf message
filled and serialised whole, a frozen dataclass; the events are checked equal first), CPU µs per
event, best of three, alternated, for N attendance marks as ingest builds them and N / 4 student
registrations (a payload with maps).

Prints a table and one JSON object; --json also writes it to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import psutil  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from google.protobuf.message import Message  # noqa: E402

from homeroom import outbox  # noqa: E402
from homeroom.bus.consumer import _CLAIM, EventConsumer, HandlerContext  # noqa: E402
from homeroom.bus.envelope import (  # noqa: E402
    _CONTENT_TYPE_HEADER,
    _SPEC_VERSION_HEADER,
    IncomingEvent,
    _shared_header,
    build_event,
    derived_id,
    event_type,
    timestamp,
)
from homeroom.bus.producer import Publisher  # noqa: E402
from homeroom.bus.topics import ATTENDANCE, ENROLLMENT, REJECTED, Topic, ensure_topics, with_suffix  # noqa: E402
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_ABSENT, AttendanceRecorded  # noqa: E402
from homeroom.events.v1.enrollment_pb2 import StudentRegistered  # noqa: E402
from homeroom.storage import create_pool, database_url, migrate  # noqa: E402
from homeroom_dev.infra.broker import EmbeddedBroker  # noqa: E402
from homeroom_dev.infra.postgres import EmbeddedPostgres  # noqa: E402


def make_events(n: int, size: int, suffix: str) -> list:  # type: ignore[type-arg]
    topic = with_suffix(ATTENDANCE, suffix)
    events = []
    padding = "x" * max(0, size - 120)  # school id padded so the encoded event is about `size` bytes
    for i in range(n):
        payload = AttendanceRecorded(
            student_key=f"stu_{i % 5000:06d}",
            district_id="d-1",
            school_id=f"s-1{padding}",
            date="2026-11-02",
            category=ATTENDANCE_CATEGORY_ABSENT,
        )
        events.append(
            build_event(
                topic,
                "attendance_recorded",
                payload,
                source="/bench",
                subject=payload.student_key,
                topic_name=topic.name,
            )
        )
    return events


class CpuClock:
    """User + system CPU seconds of this process and of the broker's, between start and stop."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        assert broker._process is not None
        self._broker = psutil.Process(broker._process.pid)

    def _now(self) -> tuple[float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        theirs = self._broker.cpu_times()
        return own.ru_utime + own.ru_stime, theirs.user + theirs.system

    def __enter__(self) -> CpuClock:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.own_s, self.broker_s = end[0] - self._start[0], end[1] - self._start[1]


async def raw_publish(bootstrap: str, events: list, topic: str) -> float:  # type: ignore[type-arg]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024, acks="all")
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, e.value, key=e.key, headers=e.headers) for e in events]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed


async def kernel_publish(bootstrap: str, events: list, call: int) -> float:  # type: ignore[type-arg]
    publisher = Publisher("bench", {"bootstrap_servers": bootstrap})
    await publisher.publish_many(events[:1])  # connected, as the raw producer is after start()
    started = time.perf_counter()
    for i in range(0, len(events), call):
        await publisher.publish_many(events[i : i + call])
    elapsed = time.perf_counter() - started
    await publisher.stop()
    return elapsed


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def lone_event_latencies(bootstrap: str, events: list, publisher: Publisher | None) -> list[float]:  # type: ignore[type-arg]
    """Seconds from a single event's send to its acknowledgement, one call after another
    (the first call, which connects, is left out)."""
    raw = None
    if publisher is None:
        raw = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
        await raw.start()
    latencies: list[float] = []
    for i, e in enumerate(events):
        started = time.perf_counter()
        if raw is not None:
            await raw.send_and_wait(e.topic, e.value, key=e.key, headers=e.headers)
        else:
            assert publisher is not None
            await publisher.publish_many([e])
        if i:
            latencies.append(time.perf_counter() - started)
    if raw is not None:
        await raw.stop()
    if publisher is not None:
        await publisher.stop()
    return latencies


_CLAIM_KEYS = {
    "event_id_key": "PRIMARY KEY (consumer, event_id)",  # the kernel's (migrations/kernel/)
    "offset_key": 'PRIMARY KEY (consumer, topic, partition, "offset")',
    "no_index": "",
}


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def claim_cost(server_url: str, variant: str, rows: int, batches: int = 200, size: int = 500) -> float:
    """PostgreSQL backend CPU µs per event of the claim statement, marks keyed as `variant`."""
    name = f"claim_{variant}"
    admin = await asyncpg.connect(database_url(server_url, "postgres"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    conn = await asyncpg.connect(database_url(server_url, name))
    key = _CLAIM_KEYS[variant]
    await conn.execute(
        f"""CREATE TABLE consumer_offsets (consumer_group text, topic text, partition int, next_offset bigint,
                PRIMARY KEY (consumer_group, topic, partition));
            CREATE TABLE processed_events (consumer text NOT NULL, event_id text NOT NULL, topic text NOT NULL,
                partition int NOT NULL, "offset" bigint NOT NULL, outcome text NOT NULL,
                processed_at timestamptz NOT NULL DEFAULT now(){", " + key if key else ""});
            INSERT INTO processed_events (consumer, event_id, topic, partition, "offset", outcome)
                SELECT 'c', gen_random_uuid()::text, 't', 0, g, 'applied' FROM generate_series(1, {rows}) g"""  # noqa: S608 (constants and an int)
    )
    await conn.execute("VACUUM ANALYZE processed_events")
    sql = _CLAIM
    if variant == "offset_key":
        sql = sql.replace("ON CONFLICT DO NOTHING", 'ON CONFLICT (consumer, topic, partition, "offset") DO NOTHING')
    elif variant == "no_index":
        sql = sql.replace("ON CONFLICT DO NOTHING", "")
    statement = await conn.prepare(sql)
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    offset = rows + 1
    started = _backend_cpu_s(pid)
    for _ in range(batches):
        ids = [str(uuid.uuid4()) for _ in range(size)]
        offsets = list(range(offset, offset + size))
        offset += size
        async with conn.transaction():
            await statement.fetchrow("g", "t", 0, offset, "c", ids, offsets, "applied")
    spent = _backend_cpu_s(pid) - started
    await conn.close()
    return round(spent / (batches * size) * 1e6, 2)


async def raw_round_trip(bootstrap: str, events: list, topic: str) -> float:  # type: ignore[type-arg]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024, acks="all")
    await producer.start()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"raw-{topic}", auto_offset_reset="earliest", max_poll_records=2000
    )
    await consumer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, e.value, key=e.key, headers=e.headers) for e in events]
    await asyncio.gather(*futures)
    seen = 0
    while seen < len(events):
        batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
        seen += sum(len(records) for records in batches.values())
        await consumer.commit()
    elapsed = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    return elapsed


async def kernel_round_trip(bootstrap: str, dsn: str, events: list, suffix: str) -> float:  # type: ignore[type-arg]
    pool = await create_pool(dsn, max_size=12)
    await migrate(pool, "bench", None, "CREATE TABLE IF NOT EXISTS seen (event_id text PRIMARY KEY)")
    done = asyncio.Event()
    applied = 0

    async def handler(batch: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
        nonlocal applied
        await ctx.conn.execute("INSERT INTO seen SELECT unnest($1::text[])", [e.event_id for e in batch])
        applied += len(batch)  # counted before the commit: the wait below checks the table too
        if applied >= len(events):
            done.set()

    kafka = {"bootstrap_servers": bootstrap}
    relay = outbox.OutboxRelay("bench", pool, Publisher("bench", kafka))
    consumer = EventConsumer(
        service="bench",
        name="bench",
        topics=[with_suffix(ATTENDANCE, suffix).name],
        batch_handler=handler,
        pool=pool,
        client_kwargs=kafka,
        dead_letter_topic=with_suffix(REJECTED, suffix).name,
        group_id=f"kernel-{suffix}",
    )
    consumer.start()
    await asyncio.sleep(2)  # let the group form before timing, as the raw consumer did in start()
    started = time.perf_counter()
    relay.start()
    for i in range(0, len(events), 500):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, events[i : i + 500])
    await asyncio.wait_for(done.wait(), 600)
    while await pool.fetchval("SELECT count(*) FROM seen") < len(events):  # noqa: ASYNC110 (the last batch commits)
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    count = await pool.fetchval("SELECT count(*) FROM seen")
    assert count == len(events), f"applied {count} of {len(events)}"
    await consumer.stop()
    await relay.stop()
    await pool.close()
    return elapsed


BUILD_TIME = datetime(2024, 9, 4, 12, 0, 0, 123000, tzinfo=UTC)
BUILD_META = {
    "source": "/homeroom/ingest/d-bench",
    "district_id": "d-bench",
    "correlation_id": "upload-1",
    "causation_id": "upload-1",
}


@dataclass(frozen=True, slots=True)
class FrozenOutgoingEvent:
    """OutgoingEvent as it was before round 30 (frozen)."""

    event_id: str
    topic: str
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes


def build_event_before(
    topic: Topic, change: str, payload: Message, *, subject: str, event_id: str
) -> FrozenOutgoingEvent:
    """build_event as it was before round 30: the topic's message filled field by field (meta,
    then a copy of the payload) and serialised whole, the same headers, a frozen dataclass."""
    event = topic.message()
    meta = event.meta  # type: ignore[attr-defined]
    ce_type = event_type(topic.name, change)
    meta.id = event_id
    meta.type = ce_type
    meta.source = BUILD_META["source"]
    meta.subject = subject
    meta.district_id = BUILD_META["district_id"]
    meta.correlation_id = BUILD_META["correlation_id"]
    meta.causation_id = BUILD_META["causation_id"]
    seconds, nanos, time_text = timestamp(BUILD_TIME)
    meta.time.seconds = seconds
    meta.time.nanos = nanos
    getattr(event, change).CopyFrom(payload)
    headers = [
        _SPEC_VERSION_HEADER,
        ("ce_id", event_id.encode()),
        _shared_header("ce_type", ce_type),
        _shared_header("ce_source", BUILD_META["source"]),
        _shared_header("ce_time", time_text),
        ("ce_subject", subject.encode()),
        _CONTENT_TYPE_HEADER,
        _shared_header("ce_correlationid", BUILD_META["correlation_id"]),
    ]
    return FrozenOutgoingEvent(event_id, topic.name, subject.encode(), headers, event.SerializeToString())


def _build_figures(topic: Topic, change: str, payloads: list[tuple[Message, str, str]]) -> dict[str, float]:
    """CPU µs per event of build_event and of the whole-message way, best of three, alternated;
    `payloads` are (payload, subject, event id)."""

    def now() -> list[tuple[str, str, bytes | None, list[tuple[str, bytes]], bytes]]:
        built = (
            build_event(topic, change, p, subject=s, event_id=i, time=BUILD_TIME, **BUILD_META) for p, s, i in payloads
        )
        return [(e.event_id, e.topic, e.key, e.headers, e.value) for e in built]

    def before() -> list[tuple[str, str, bytes | None, list[tuple[str, bytes]], bytes]]:
        built = (build_event_before(topic, change, p, subject=s, event_id=i) for p, s, i in payloads)
        return [(e.event_id, e.topic, e.key, e.headers, e.value) for e in built]

    if now() != before():
        raise SystemExit(f"{change}: build_event's events differ from the ones it built before")
    best = {"build_event": float("inf"), "before_round_30": float("inf")}
    for _ in range(3):
        for name, step in (("build_event", now), ("before_round_30", before)):
            cpu = time.process_time()
            step()
            best[name] = min(best[name], time.process_time() - cpu)
    figures = {name: round(seconds / len(payloads) * 1e6, 2) for name, seconds in best.items()}
    return {**figures, "ratio": round(figures["build_event"] / figures["before_round_30"], 2)}


def build_cost(n: int) -> dict[str, dict[str, float]]:
    """Attendance marks as ingest builds them (n), and student registrations (n / 4)."""
    namespace = uuid.UUID("6f1c1c36-8a52-4a51-9a7b-5d5a0d7e9c11")
    ids = [derived_id(namespace, f"d-bench|{i}|content") for i in range(n)]
    marks: list[tuple[Message, str, str]] = []
    registrations: list[tuple[Message, str, str]] = []
    for i, event_id in enumerate(ids):
        key = f"stu_{i % 5000:032d}"
        mark = AttendanceRecorded(
            student_key=key,
            district_id="d-bench",
            school_id=f"sch-{i % 7}",
            date="2024-09-04",
            category=ATTENDANCE_CATEGORY_ABSENT,
            source_record_id=f"rec_{i:032d}",
        )
        marks.append((mark, key, event_id))
        if i % 4 == 0:
            registered = StudentRegistered(student_key=key, district_id="d-bench")
            registered.plain_elements.update({"enrollment.grade_level": "07", "student.sex": "F"})
            registered.sealed_elements["student.first_name"].ciphertext = os.urandom(40)
            registrations.append((registered, key, event_id))
    return {
        "attendance_recorded": _build_figures(ATTENDANCE, "attendance_recorded", marks),
        "student_registered": _build_figures(ENROLLMENT, "student_registered", registrations),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--call", type=int, default=200, help="events per publish_many call, publisher alone")
    parser.add_argument("--claim-rows", type=int, default=0, help="marks already kept (0: no claim figures)")
    parser.add_argument("--lone", type=int, default=300, help="single-event publish calls per path")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--build", type=int, default=0, help="only the cost of building N events (no broker)")
    args = parser.parse_args()
    if args.build:
        cost = build_cost(args.build)
        for label, figures in cost.items():
            print(
                f"{label:22} build_event {figures['build_event']:6.2f} us  before round 30 "
                f"{figures['before_round_30']:6.2f} us  ratio {figures['ratio']}"
            )
        built = {"build_cpu_us_per_event": cost, "load_average": os.getloadavg()}
        print(json.dumps(built))
        if args.json:
            args.json.write_text(json.dumps(built, indent=2))
        return

    t0 = time.perf_counter()
    pg = EmbeddedPostgres().start()
    broker = EmbeddedBroker().start()
    try:
        admin = await asyncpg.connect(database_url(pg.server_url, "postgres"))
        await admin.execute("CREATE DATABASE bench")
        await admin.close()
        events_raw = make_events(args.events, args.size, "raw")
        events_kernel = make_events(args.events, args.size, "kernel")
        events_pub_raw = make_events(args.events, args.size, "pubraw")
        events_pub = make_events(args.events, args.size, "pub")
        events_lone = make_events(args.lone, 300, "lone")
        size = sum(len(e.value) for e in events_raw) / len(events_raw)
        kafka = {"bootstrap_servers": broker.bootstrap_servers}
        await ensure_topics(
            kafka,
            [with_suffix(ATTENDANCE, s) for s in ("raw", "kernel", "pubraw", "pub", "lone")]
            + [with_suffix(REJECTED, "kernel")],
        )
        bootstrap = broker.bootstrap_servers
        with CpuClock(broker) as pub_raw_cpu:
            pub_raw_s = await raw_publish(bootstrap, events_pub_raw, with_suffix(ATTENDANCE, "pubraw").name)
        with CpuClock(broker) as pub_cpu:
            pub_s = await kernel_publish(bootstrap, events_pub, args.call)
        # Alternated, so that the three paths share the machine's load.
        lone: dict[str, list[float]] = {"raw_linger_0": [], "publisher": [], "publisher_linger_5": []}
        third = max(2, args.lone // 3)
        for start in range(0, args.lone, third):
            chunk = events_lone[start : start + third]
            lone["raw_linger_0"] += await lone_event_latencies(bootstrap, chunk, None)
            lone["publisher"] += await lone_event_latencies(bootstrap, chunk, Publisher("bench", kafka))
            lone["publisher_linger_5"] += await lone_event_latencies(
                bootstrap, chunk, Publisher("bench", kafka, linger_ms=5)
            )
        claim: dict[str, list[float]] = {variant: [] for variant in _CLAIM_KEYS}
        for _ in range(2 if args.claim_rows else 0):  # alternated, twice
            for variant in claim:
                claim[variant].append(await claim_cost(pg.server_url, variant, args.claim_rows))
        with CpuClock(broker) as raw_cpu:
            raw_s = await raw_round_trip(bootstrap, events_raw, with_suffix(ATTENDANCE, "raw").name)
        with CpuClock(broker) as kernel_cpu:
            kernel_s = await kernel_round_trip(bootstrap, database_url(pg.server_url, "bench"), events_kernel, "kernel")
    finally:
        broker.stop()
        pg.cleanup()

    def per_event_us(seconds: float) -> float:
        return round(seconds / int(args.events) * 1e6, 1)

    result = {
        "benchmark": "bus",
        "events": args.events,
        "mean_event_bytes": round(size),
        "postgres_start_s": round(pg.started_in_s, 3),
        "broker_start_s": round(broker.started_in_s, 3),
        "raw_aiokafka_events_per_s": round(args.events / raw_s),
        "kernel_outbox_consumer_events_per_s": round(args.events / kernel_s),
        "kernel_to_raw_ratio": round((args.events / kernel_s) / (args.events / raw_s), 3),
        "cpu_us_per_event": {
            name: {"bench_process": per_event_us(c.own_s), "broker": per_event_us(c.broker_s)}
            for name, c in (
                ("raw", raw_cpu),
                ("kernel", kernel_cpu),
                ("raw_publish", pub_raw_cpu),
                ("publisher", pub_cpu),
            )
        },
        "publish_call_events": args.call,
        "raw_publish_events_per_s": round(args.events / pub_raw_s),
        "publisher_events_per_s": round(args.events / pub_s),
        "publisher_to_raw_ratio": round(pub_raw_s / pub_s, 3),
        "lone_event_ack_ms": {
            path: {"p50": round(_percentile(t, 0.5) * 1e3, 2), "p99": round(_percentile(t, 0.99) * 1e3, 2), "n": len(t)}
            for path, t in lone.items()
        },
        "claim_rows": args.claim_rows,
        "claim_postgres_cpu_us_per_event": claim,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(f"{'path':<34}{'events/s':>12}")
    print(f"{'raw aiokafka produce+consume':<34}{result['raw_aiokafka_events_per_s']:>12,}")
    print(f"{'kernel outbox→relay→consumer+DB':<34}{result['kernel_outbox_consumer_events_per_s']:>12,}")
    print(f"{'raw aiokafka produce only':<34}{result['raw_publish_events_per_s']:>12,}")
    print(f"{'Publisher.publish_many, calls of ' + str(args.call):<34}{result['publisher_events_per_s']:>12,}")
    print(f"ratio kernel/raw: {result['kernel_to_raw_ratio']}; publisher/raw: {result['publisher_to_raw_ratio']}")
    print(f"CPU us per event (bench process, broker): {result['cpu_us_per_event']}")
    print(f"a lone event's acknowledgement, ms: {result['lone_event_ack_ms']}")
    if args.claim_rows:
        print(f"claim, PostgreSQL CPU us per event over {args.claim_rows:,} marks: {claim}")
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
