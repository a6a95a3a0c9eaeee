"""Time from an enrollment event in district B to the student's record delivered into B.

    .venv/bin/python bench/transfer_latency.py [--transfers N] [--rate PER_S] [--attendance-rate PER_S] [--json PATH]

Runs the real consent, records and transfer services in process on embedded PostgreSQL
and Tansu (records and transfer consume from the bus, the peers are called over their
ASGI apps). First N students are registered and enrolled in district A (ingest's events,
PII sealed) and records takes them in. Then each student enrolls in district B, at
--rate events per second; the figure is, per case, the delivered time (records has
committed B's copy and answered, so B's staff can read it) minus the enrollment event's
time. With --attendance-rate, attendance events flow through records at that rate
during the measurement. For scale, the same run measures a raw aiokafka produce → consume
round trip of one small message.

Prints a table and one JSON object; --json also writes it to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from homeroom.bus.envelope import OutgoingEvent, build_event  # noqa: E402
from homeroom.bus.producer import Publisher  # noqa: E402
from homeroom.bus.topics import ALL_TOPICS, ATTENDANCE, ENROLLMENT, ensure_topics  # noqa: E402
from homeroom.events.v1 import attendance_pb2, enrollment_pb2  # noqa: E402
from homeroom.events.v1.envelope_pb2 import SealedValue  # noqa: E402
from homeroom.service import Runtime  # noqa: E402
from homeroom_dev.infra.broker import EmbeddedBroker  # noqa: E402
from homeroom_dev.infra.postgres import EmbeddedPostgres  # noqa: E402
from services.consent.service import SERVICE as CONSENT  # noqa: E402
from services.records.service import SERVICE as RECORDS  # noqa: E402
from services.transfer.service import SERVICE as TRANSFER  # noqa: E402
from tests.harness import ServiceEnv, new_database, service_under_test  # noqa: E402

A, B = "d-bench-a", "d-bench-b"


def _event(topic: Any, change: str, payload: Any, key: str, district: str) -> OutgoingEvent:
    return build_event(topic, change, payload, source="/bench/ingest", subject=key, district_id=district)


async def registered(runtime: Runtime, key: str, i: int) -> OutgoingEvent:
    sealed = await runtime.require_cipher().seal_many(
        A, key, {"student.first_name": f"Student{i}", "student.last_name": "Bench", "student.birth_date": "2014-03-02"}
    )
    payload = enrollment_pb2.StudentRegistered(
        student_key=key,
        district_id=A,
        local_student_id_hash=f"lh_{key}",
        sealed_elements={k: SealedValue(ciphertext=v) for k, v in sealed.items()},
        plain_elements={"enrollment.grade_level": "05"},
        program_flags=["iep"] if i % 10 == 0 else [],
    )
    return _event(ENROLLMENT, "student_registered", payload, key, A)


def enrolled(key: str, district: str, school: str, entry: str) -> OutgoingEvent:
    payload = enrollment_pb2.StudentEnrolled(
        student_key=key, district_id=district, school_id=school, entry_date=entry, grade_level="05"
    )
    return _event(ENROLLMENT, "student_enrolled", payload, key, district)


def attendance(key: str, day: str) -> OutgoingEvent:
    payload = attendance_pb2.AttendanceRecorded(
        student_key=key, district_id=A, school_id="a-1", date=day, category=attendance_pb2.ATTENDANCE_CATEGORY_ABSENT
    )
    return _event(ATTENDANCE, "attendance_recorded", payload, key, A)


async def count(runtime: Runtime, sql: str, *args: Any) -> int:
    n: int = await runtime.pool.fetchval(sql, *args)
    return n


async def wait_for(check: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def raw_round_trip(bootstrap: str, samples: int = 200) -> list[float]:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=topic, auto_offset_reset="earliest")
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    await consumer.start()
    await consumer.getone()
    out = []
    try:
        for i in range(samples):
            started = time.perf_counter()
            await producer.send_and_wait(topic, str(i).encode())
            await consumer.getone()
            out.append(time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
    return out


async def attendance_flood(publisher: Publisher, keys: list[str], rate: int, stop: asyncio.Event) -> int:
    sent = 0
    tick = 0.1
    per_tick = max(1, int(rate * tick))
    day = 0
    while not stop.is_set():
        started = time.perf_counter()
        batch = [
            attendance(keys[(sent + j) % len(keys)], f"2026-{9 + (day // 28) % 3:02d}-{1 + day % 28:02d}")
            for j in range(per_tick)
        ]
        day += 1
        await publisher.publish_many(batch)
        sent += len(batch)
        await asyncio.sleep(max(0.0, tick - (time.perf_counter() - started)))
    return sent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int, rate: float, attendance_rate: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="transfer-bench-"))
    postgres = EmbeddedPostgres().start()
    broker = EmbeddedBroker().start()
    try:
        env = ServiceEnv(postgres, broker.bootstrap_servers, home / "secrets", await new_database(postgres, "keys"))
        (home / "secrets").mkdir(exist_ok=True)
        await ensure_topics(env.kafka.client_kwargs(), ALL_TOPICS)
        raw = await raw_round_trip(broker.bootstrap_servers)
        async with (
            service_under_test(CONSENT, env, start_consumers=False) as consent,
            service_under_test(RECORDS, env) as records,
            service_under_test(
                TRANSFER,
                env,
                peers={"consent": consent.transport, "records": records.transport},
                worker_poll_interval_s=0.2,
            ) as transfer,
        ):
            publisher = Publisher("bench", env.kafka.client_kwargs())
            keys = [f"stu_bench{uuid.uuid4().hex}" for _ in range(n)]
            seed: list[OutgoingEvent] = []
            for i, key in enumerate(keys):
                seed += [await registered(records.runtime, key, i), enrolled(key, A, "a-1", "2025-08-20")]
            await publisher.publish_many(seed)
            seeded = time.perf_counter()
            await wait_for(
                lambda: _at_least(count(transfer.runtime, "SELECT count(*) FROM student_enrollments"), n),
                "transfer to see A's enrollments",
                300,
            )
            await wait_for(
                lambda: _at_least(
                    count(records.runtime, "SELECT count(*) FROM processed_events WHERE consumer = 'enrollment'"), 2 * n
                ),
                "records to take in A's students",
                300,
            )
            seed_s = time.perf_counter() - seeded

            stop = asyncio.Event()
            flood = (
                asyncio.create_task(attendance_flood(publisher, keys, attendance_rate, stop))
                if attendance_rate
                else None
            )
            started = time.perf_counter()
            interval = 1.0 / rate if rate > 0 else 0.0
            for i, key in enumerate(keys):
                await publisher.publish_many([enrolled(key, B, "b-1", "2026-11-02")])
                if interval:
                    await asyncio.sleep(max(0.0, started + (i + 1) * interval - time.perf_counter()))
            await wait_for(
                lambda: _at_least(
                    count(transfer.runtime, "SELECT count(*) FROM transfer_cases WHERE delivered_at IS NOT NULL"), n
                ),
                "every case delivered",
                600,
            )
            elapsed = time.perf_counter() - started
            flooded = 0
            if flood is not None:
                stop.set()
                flooded = await flood
            rows = await transfer.runtime.pool.fetch(
                "SELECT extract(epoch FROM delivered_at - enrolled_at) AS s FROM transfer_cases"
            )
            latencies = [float(r["s"]) for r in rows]
            phases = await transfer.runtime.pool.fetchrow(
                """SELECT
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM opened_at - enrolled_at)) AS open,
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM decided_at - opened_at)) AS decide,
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - decided_at))
                       AS package_deliver
                   FROM transfer_cases"""
            )
            states = await transfer.runtime.pool.fetch("SELECT state, count(*) AS n FROM transfer_cases GROUP BY state")
            await publisher.stop()
        return {
            "transfers": n,
            "enrollment_rate_per_s": rate,
            "attendance_rate_target_per_s": attendance_rate,
            "attendance_rate_achieved_per_s": round(flooded / elapsed, 1) if elapsed else 0,
            "seed_seconds": round(seed_s, 2),
            "wall_seconds": round(elapsed, 2),
            "transfers_per_s": round(n / elapsed, 1),
            "latency_p50_s": round(pct(latencies, 0.50), 4),
            "latency_p90_s": round(pct(latencies, 0.90), 4),
            "latency_p99_s": round(pct(latencies, 0.99), 4),
            "latency_max_s": round(max(latencies), 4),
            "latency_mean_s": round(statistics.fmean(latencies), 4),
            "raw_bus_round_trip_p50_s": round(pct(raw, 0.5), 5),
            "raw_bus_round_trip_p99_s": round(pct(raw, 0.99), 5),
            "p50_vs_raw_bus": round(pct(latencies, 0.5) / pct(raw, 0.5), 1),
            "states": {r["state"]: r["n"] for r in states},
            "p50_phases_s": {k: round(float(v), 4) for k, v in dict(phases or {}).items()},
        }
    finally:
        broker.stop()
        postgres.stop()
        with contextlib.suppress(Exception):
            postgres.cleanup()


async def _at_least(value: Any, n: int) -> bool:
    return bool(await value >= n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="enrollments in B per second (0: all at once)")
    parser.add_argument("--attendance-rate", type=int, default=0, help="attendance events per second alongside")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.transfers, args.rate, args.attendance_rate))
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
