"""The reports service: events the statewide tally absorbs per second, against raw aiokafka
consumption of the same events in the same run; and the time to compute and suppress a
statewide snapshot of a generated state.

    .venv/bin/python bench/reports.py [--students N] [--days N] [--districts N]
                                      [--schools-min N] [--schools-max N] [--state-students N]
                                      [--hold-burst] [--loop-floor] [--json PATH]

1. Absorption: on an embedded PostgreSQL and Tansu broker, the real reports runtime
   (`running`, as `homeroom serve reports` runs it: the tally's consumer group loop and the
   reference consumer) is started; each school's calendar is published and applied; then
   per student one enrollment, one groups.v1 record and `--days` daily marks are sent to
   enrollment.v1, groups.v1 and attendance.v1, timed from the first send until the tally
   has applied every one (its own counter of events read). The freshness figure is how long
   after the last event was acknowledged by the broker the tally had written it. Baseline:
   a plain AIOKafkaConsumer reading the same events from the same topics in the same run.
   CPU per event: this process's CPU time while the tally catches up after the last send
   (nothing else runs in it then), per event read, against the raw consumer's per event.
   The tally now keeps up with the producer, so little is left after the last send:
   `--hold-burst` makes it wait on its lock until the burst is sent, and the CPU is measured
   over the whole burst. `--loop-floor`: the consumer group loop alone (an apply doing nothing).
2. Snapshot: a generated state (`--districts`, schools per district between
   `--schools-min` and `--schools-max`, about `--state-students` students; the attacker
   tests' generator, tests/services/reports/statewide.py) summed into the state, district
   and school tables (`snapshots.tables`) and suppressed and written out
   (`snapshots.document`), as a publish does. Baseline: summing the same tables alone.

Prints a table and one JSON object; --json also writes it to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from homeroom.auth import AuthSettings  # noqa: E402
from homeroom.bus.batch_loop import BatchLoop, Records, StatefulConsumer  # noqa: E402
from homeroom.bus.envelope import OutgoingEvent  # noqa: E402
from homeroom.bus.topics import ALL_TOPICS, ATTENDANCE, ENROLLMENT, GROUPS, ensure_topics  # noqa: E402
from homeroom.calendar import weekdays  # noqa: E402
from homeroom.config import KafkaSettings  # noqa: E402
from homeroom.contracts.reports import Snapshot  # noqa: E402
from homeroom.service import running  # noqa: E402
from homeroom.storage import database_url  # noqa: E402
from homeroom_dev.infra.broker import EmbeddedBroker  # noqa: E402
from homeroom_dev.infra.postgres import EmbeddedPostgres  # noqa: E402
from homeroom_dev.profiling import start_py_spy, stop_py_spy  # noqa: E402
from services.portal.statistics import page_parts  # noqa: E402
from services.reports import metrics, snapshots  # noqa: E402
from services.reports.api import selection  # noqa: E402
from services.reports.service import SERVICE  # noqa: E402
from services.reports.settings import ReportsSettings  # noqa: E402
from services.reports.suppression import Rules  # noqa: E402
from services.reports.tallies import AbsenceRule  # noqa: E402
from tests.services.reports import statewide  # noqa: E402
from tests.services.reports.helpers import calendar, enrolled, groups, mark  # noqa: E402

SOURCES = (ENROLLMENT.name, GROUPS.name, ATTENDANCE.name)


def events_for(
    students: int, days: int, schools: int = 20, first_student: int = 0
) -> tuple[list[OutgoingEvent], list[OutgoingEvent]]:
    """(calendars, the timed events): students spread over `schools` schools of two districts."""
    school_days = [d.isoformat() for d in weekdays(date(2026, 9, 14), date(2026, 12, 18))][: max(days, 10)]
    places = [(f"d-{100 + s % 2}", f"d-{100 + s % 2}-s{s}") for s in range(schools)]
    calendars = [calendar(d, s, 2026, school_days) for d, s in places]
    timed: list[OutgoingEvent] = []
    for i in range(first_student, first_student + students):
        district, school = places[i % schools]
        key = f"stu_{i:032d}"
        timed.append(enrolled(district, key, school, school_days[0], grade=f"{1 + i % 12:02d}"))
        timed.append(groups(district, key, sex="female" if i % 2 else "male", iep="yes" if i % 7 == 0 else "no"))
        for d, day in enumerate(school_days[:days]):
            timed.append(mark(district, key, school, day, absent=(i + d) % 9 == 0))
    return calendars, timed


def tally_read() -> float:
    total = 0.0
    for metric in metrics.TALLY_EVENTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


async def raw_consume(bootstrap: str, topics: tuple[str, ...], n: int) -> float:
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id="raw-baseline", auto_offset_reset="earliest"
    )
    await consumer.start()
    started = time.perf_counter()
    seen = 0
    while seen < n:
        batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
        seen += sum(len(records) for records in batches.values())
        await consumer.commit()
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return elapsed


class Sampler:
    """Samples the tally's own freshness gauge (homeroom_reports_seconds_behind) while events flow."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.values.append(metrics.SECONDS_BEHIND._value.get())
            await asyncio.sleep(0.25)

    def __enter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.values) or [0.0]
        return {
            "max_s": round(ordered[-1], 2),
            "p50_s": round(ordered[len(ordered) // 2], 2),
            "p95_s": round(ordered[int(len(ordered) * 0.95)], 2),
        }


async def until_read(before: float, n: int, started: float) -> None:
    while tally_read() - before < n:
        if time.perf_counter() - started > 1800:
            raise TimeoutError("the tally did not read every event in 30 minutes")
        await asyncio.sleep(0.02)


async def absorption(
    students: int,
    days: int,
    paced_rate: int,
    paced_students: int,
    py_spy: Path | None = None,
    floor: bool = False,
    hold: bool = False,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="homeroom-bench-reports-"))
    pg = EmbeddedPostgres().start()
    broker = EmbeddedBroker().start()
    try:
        kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
        await ensure_topics(kafka.client_kwargs(), list(ALL_TOPICS))
        settings = ReportsSettings(
            database_url=database_url(pg.server_url, "homeroom_reports"), secrets_dir=tmp, start_consumers=True
        )
        auth = AuthSettings(dev_key_file=tmp / "dev-issuer.pem")
        calendars, events = events_for(students, days)
        _, paced = events_for(paced_students, days, first_student=students)
        async with running(SERVICE, settings, kafka=kafka, auth=auth) as runtime:
            producer = AIOKafkaProducer(**kafka.client_kwargs(), linger_ms=5, acks="all")
            await producer.start()
            for e in calendars:
                await producer.send_and_wait(e.topic, e.value, key=e.key, headers=e.headers)
            deadline = time.monotonic() + 120
            while await runtime.pool.fetchval("SELECT count(*) FROM calendars") < len(calendars):
                if time.monotonic() > deadline:
                    raise TimeoutError("the calendars were not applied")
                await asyncio.sleep(0.2)
            await asyncio.sleep(5)  # the tally's group settles and rebuilds its partitions before timing

            # 1. A burst: every event sent as fast as the producer goes.
            before = tally_read()
            batches_before = metrics.TALLY_BATCH_SECONDS._sum.get(), _batches()
            started = burst_started = time.perf_counter()
            tally = runtime.state.tally
            assert tally is not None
            if hold:  # the tally waits (its batch blocks on its lock) until the whole burst is sent
                await tally.lock.acquire()
            with Sampler() as burst:
                futures = [await producer.send(e.topic, e.value, key=e.key, headers=e.headers) for e in events]
                await asyncio.gather(*futures)
                produced = time.perf_counter()
                if hold:
                    tally.lock.release()
                # CPU of this process per event while the tally catches up alone (the producer done).
                read_at_send, cpu_at_send = tally_read(), time.process_time()
                spies = start_py_spy(py_spy, {"reports": os.getpid()}) if py_spy else []
                await until_read(before, len(events), started)
                stop_py_spy(spies)
                tail_cpu_s, tail_events = time.process_time() - cpu_at_send, tally_read() - read_at_send
            tally_s = time.perf_counter() - started
            behind_s = time.perf_counter() - produced
            batches = _batches() - batches_before[1]
            absorb_s = metrics.TALLY_BATCH_SECONDS._sum.get() - batches_before[0]
            writes = metrics.TALLY_WRITES._value.get()

            # 2. Paced at an ingest rate (docs/benchmarks.md: ingest accepts 1,740-4,699 events/s).
            await asyncio.sleep(2)
            before = tally_read()
            started = time.perf_counter()
            with Sampler() as steady:
                for i, e in enumerate(paced):
                    due = started + i / paced_rate
                    if (wait := due - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                    await producer.send(e.topic, e.value, key=e.key, headers=e.headers)
                await producer.flush()
                paced_sent = time.perf_counter()
                await until_read(before, len(paced), started)
            paced_done = time.perf_counter()
            await producer.stop()
            # The events-read counter moves before the batch's school rows are flushed: wait for them.
            settled = time.monotonic() + 10
            while True:
                enrolled_total = await runtime.pool.fetchval(
                    "SELECT sum((tally->'counts'->'enrolled'->>'all')::int) FROM school_tallies"
                )
                if (enrolled_total or 0) >= students + paced_students or time.monotonic() > settled:
                    break
                await asyncio.sleep(0.2)
            raw_cpu = time.process_time()
            raw_s = await raw_consume(broker.bootstrap_servers, SOURCES, len(events) + len(paced))
            raw_cpu_s = time.process_time() - raw_cpu
            loop_floor = await batch_loop_floor(kafka, settings, len(events) + len(paced)) if floor else None
        raw_rate = (len(events) + len(paced)) / raw_s
        return {
            "events": len(events),
            "students": students,
            "students_counted": int(enrolled_total or 0),
            "student_writes": int(writes),
            "produce_s": round(produced - burst_started, 2),
            "tally_s": round(tally_s, 2),
            "tally_events_per_s": round(len(events) / tally_s),
            "tally_batches": int(batches),
            "events_per_batch": round(len(events) / max(1, batches), 1),
            "absorb_share": round(absorb_s / tally_s, 3),
            "tally_behind_last_send_s": round(behind_s, 2),
            "burst_seconds_behind": burst.summary(),
            "paced_events": len(paced),
            "paced_rate_per_s": paced_rate,
            "paced_send_s": round(paced_sent - started, 2),
            "paced_done_after_last_send_s": round(paced_done - paced_sent, 2),
            "paced_seconds_behind": steady.summary(),
            "tally_cpu_us_per_event": round(tail_cpu_s * 1e6 / max(1.0, tail_events), 1),
            "tally_cpu_events": int(tail_events),
            "raw_cpu_us_per_event": round(raw_cpu_s * 1e6 / (len(events) + len(paced)), 1),
            "raw_s": round(raw_s, 2),
            "raw_aiokafka_events_per_s": round(raw_rate),
            "tally_to_raw_ratio": round((len(events) / tally_s) / raw_rate, 4),
            "loop_floor_cpu_us_per_event": loop_floor,
        }
    finally:
        broker.stop()
        pg.stop()


async def batch_loop_floor(kafka: KafkaSettings, settings: ReportsSettings, n: int) -> float:
    """CPU µs per event of a consumer group loop like the tally's (`BatchLoop`, its batch size and
    window) whose `apply` does nothing: what consuming costs before the tally's own work (from
    its first batch to the last)."""

    class Counting(StatefulConsumer):
        seen, first, cpu_first = 0, 0, 0.0
        done = asyncio.Event()

        async def apply(self, records: Records) -> None:
            batch = sum(len(r) for r in records.values())
            if not self.seen:
                self.cpu_first, self.first = time.process_time(), batch
            self.seen += batch
            if self.seen >= n:
                self.done.set()

    counting = Counting()
    loop = BatchLoop(
        target=counting,
        service="bench",
        name="floor",
        topics=SOURCES,
        group_id=f"bench-floor-{uuid.uuid4().hex[:8]}",
        client_kwargs=kafka.client_kwargs(),
        max_batch=settings.tally_batch,
        window_s=settings.tally_batch_window_s,
    )
    loop.start()
    try:
        await asyncio.wait_for(counting.done.wait(), 600)
        return round((time.process_time() - counting.cpu_first) * 1e6 / max(1, counting.seen - counting.first), 1)
    finally:
        await loop.stop()


def _batches() -> float:
    for metric in metrics.TALLY_BATCH_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


def snapshot(districts: int, schools: tuple[int, int], students: int) -> dict[str, Any]:
    started = time.perf_counter()
    state = statewide.state(22, statewide.Shape(districts, schools, students))
    generated_s = time.perf_counter() - started
    names: dict[tuple[str, str], str] = {}
    started = time.perf_counter()
    tables = snapshots.tables(state, names, "New York")
    sum_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    tables = snapshots.tables(state, names, "New York")
    built = snapshots.document(
        tables,
        2026,
        (date(2026, 9, 1), date(2026, 9, 1) + timedelta(days=90)),
        Rules(10, 30),
        AbsenceRule(0.1, 10),
        "New York",
    )
    snapshot_s = time.perf_counter() - started
    snapshot_cpu_s = time.process_time() - cpu
    cells = built.snapshot.cells
    sizes = page_bytes(built.snapshot)
    return {
        "districts": districts,
        "schools": len(state),
        "students": sum(t.students for t in state.values()),
        "generate_s": round(generated_s, 2),
        "sum_only_s": round(sum_s, 2),
        "snapshot_s": round(snapshot_s, 2),
        "snapshot_cpu_s": round(snapshot_cpu_s, 2),
        "snapshot_to_sum_ratio": round(snapshot_s / sum_s, 1),
        "cells": cells.total,
        "fewer_than": cells.fewer_than,
        "withheld": cells.withheld,
        **sizes,
    }


def page_bytes(snapshot: Snapshot) -> dict[str, int]:
    """What the portal's /statistics page reads from the reports API: before issue 22's fix the
    whole snapshot; now the filtered parts (services/portal/statistics.py `page_parts`), as
    JSON and gzipped (the reports app compresses answers for a client that accepts it)."""
    whole = snapshot.model_dump_json().encode()
    district = next(u.key for u in snapshot.units if u.level == "district")
    out = {"document_bytes": len(whole), "document_gzip_bytes": len(gzip.compress(whole, 6))}
    for name, chosen in (("state_page", None), ("district_page", district)):
        parts = [
            snapshots.select(snapshot, selection(**params)).model_dump_json().encode()  # type: ignore[arg-type]
            for params in page_parts(chosen, "all")
        ]
        out[f"{name}_bytes"] = sum(len(p) for p in parts)
        out[f"{name}_gzip_bytes"] = sum(len(gzip.compress(p, 6)) for p in parts)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=5_000, help="students whose events the tally absorbs")
    parser.add_argument("--days", type=int, default=10, help="daily marks per student")
    parser.add_argument("--paced-rate", type=int, default=1_740, help="events/s of the paced run (ingest's)")
    parser.add_argument("--paced-students", type=int, default=2_500, help="students of the paced run")
    parser.add_argument("--districts", type=int, default=700)
    parser.add_argument("--schools-min", type=int, default=1)
    parser.add_argument("--schools-max", type=int, default=12)
    parser.add_argument("--state-students", type=int, default=2_500_000)
    parser.add_argument("--skip-absorption", action="store_true")
    parser.add_argument(
        "--loop-floor", action="store_true", help="also time the consumer group loop alone (an apply doing nothing)"
    )
    parser.add_argument("--skip-snapshot", action="store_true")
    parser.add_argument(
        "--hold-burst",
        action="store_true",
        help="the tally waits until the burst is sent, so its CPU per event is measured over the whole burst",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--py-spy", type=Path, help="py-spy (installed separately) while the tally catches up: DIR/reports.folded"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "reports"}
    if not args.skip_absorption:
        result["absorption"] = await absorption(
            args.students,
            args.days,
            args.paced_rate,
            args.paced_students,
            args.py_spy,
            args.loop_floor,
            args.hold_burst,
        )
        a = result["absorption"]
        print(f"{'tally absorbs (events/s)':<44}{a['tally_events_per_s']:>12,}")
        print(f"{'raw aiokafka consume (same events)':<44}{a['raw_aiokafka_events_per_s']:>12,}")
        print(
            f"ratio tally/raw: {a['tally_to_raw_ratio']}; tally behind the last send: {a['tally_behind_last_send_s']} s"
        )
        print(
            f"{'CPU µs per event: tally catching up alone':<44}{a['tally_cpu_us_per_event']:>12}"
            f" ({a['tally_cpu_events']:,} events; raw aiokafka consume {a['raw_cpu_us_per_event']})"
        )
        if a["loop_floor_cpu_us_per_event"] is not None:
            print(f"{'CPU µs per event: the group loop alone':<44}{a['loop_floor_cpu_us_per_event']:>12}")
        print(f"burst: seconds behind {a['burst_seconds_behind']}; {a['events_per_batch']} events per batch")
        print(
            f"paced at {a['paced_rate_per_s']}/s: seconds behind {a['paced_seconds_behind']}; "
            f"done {a['paced_done_after_last_send_s']} s after the last send"
        )
    if not args.skip_snapshot:
        result["snapshot"] = snapshot(args.districts, (args.schools_min, args.schools_max), args.state_students)
        print_snapshot(result["snapshot"])
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def print_snapshot(s: dict[str, Any]) -> None:
    print(f"{'statewide snapshot (s)':<44}{s['snapshot_s']:>12} ({s['snapshot_cpu_s']} s of CPU)")
    print(f"{'summing the tables alone (s)':<44}{s['sum_only_s']:>12}")
    print(
        f"/statistics reads: whole document {s['document_bytes']:,} B ({s['document_gzip_bytes']:,} gzipped); "
        f"state page {s['state_page_bytes']:,} B ({s['state_page_gzip_bytes']:,}); "
        f"district page {s['district_page_bytes']:,} B ({s['district_page_gzip_bytes']:,})"
    )


if __name__ == "__main__":
    asyncio.run(main())
