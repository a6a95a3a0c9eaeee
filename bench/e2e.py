"""End to end on the real stack: attendance through ingest → bus → records, disclosures
through records → bus → audit, transfer latency under that load, CPU per event across
every process, peak memory per service, and the raw aiokafka produce-and-consume rate of
the same events on the same broker.

    .venv/bin/python bench/e2e.py [--students N] [--days D] [--transfers T] [--json PATH]
                                  [--statements]

Five service processes on embedded PostgreSQL and Tansu, as `./run stack` runs them.
Counts are read from the services' own databases when each stage is done, so a figure
is only printed when every event arrived exactly once.

Transfer latency is measured *during* the attendance load: the transfers are submitted
one after another while the upload is being applied, and each latency runs from the
moment its enrollment submission is sent to the case's `delivered_at` in the transfer
database (not to when this script happened to look).

CPU per attendance event is the CPU time (user + system) that every process of the stack
spent between the upload and the last mark applied in records, divided by the events:
the services, PostgreSQL (postmaster, its live backends and the ones that exited) and the
broker. `--statements` restarts PostgreSQL with pg_stat_statements loaded before the load
and prints the statements that cost the most per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from homeroom.auth import DevIssuer, Role  # noqa: E402
from homeroom.bus.envelope import build_event  # noqa: E402
from homeroom.bus.topics import ATTENDANCE, ensure_topics, with_suffix  # noqa: E402
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_ABSENT, AttendanceRecorded  # noqa: E402
from homeroom.pseudonym import Pseudonymizer, load_or_create_key  # noqa: E402
from homeroom.storage import database_url  # noqa: E402
from homeroom_dev.generate import (  # noqa: E402
    batch_records,
    daily_marks,
    generate_world,
    json_batch,
    oneroster_zip,
    transfer_batch,
)
from homeroom_dev.stack import Stack  # noqa: E402


class MemoryWatch(threading.Thread):
    """Samples each service process's RSS every 200 ms and keeps the peak."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            for name, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):  # a process restarting between samples
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss / 2**20)
            time.sleep(0.2)


class CpuMeter:
    """CPU seconds (user + system) of a set of process trees: each root, its live children
    and (through the root's children_* times) the children that already exited."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = {name: psutil.Process(pid) for name, pid in roots.items()}

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, root in self.roots.items():
            total = 0.0
            with contextlib.suppress(psutil.Error):
                t = root.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        c = child.cpu_times()
                        total += c.user + c.system
            out[name] = total
        return out


def cpu_us_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    per = {name: round((after[name] - before[name]) * 1e6 / events, 1) for name in before}
    per["total"] = round(sum(per.values()), 1)
    return per


async def enable_statement_stats(stack: Stack) -> None:
    """Restart PostgreSQL with pg_stat_statements preloaded (the services reconnect)."""
    assert stack.postgres is not None
    conn = await asyncpg.connect(stack.postgres.url())
    try:
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    finally:
        await conn.close()
    stack.postgres.stop()
    stack.postgres.start()
    stack.wait_ready(120)
    for database in ("postgres", *(f"homeroom_{n}" for n in ("ingest", "records", "audit", "consent", "transfer"))):
        conn = await asyncpg.connect(database_url(stack.postgres.server_url, database))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await conn.close()


async def reset_statement_stats(stack: Stack) -> None:
    assert stack.postgres is not None
    conn = await asyncpg.connect(stack.postgres.url())
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def top_statements(stack: Stack, events: int, limit: int = 15) -> list[dict[str, Any]]:
    assert stack.postgres is not None
    conn = await asyncpg.connect(stack.postgres.url())
    try:
        rows = await conn.fetch(
            """SELECT d.datname AS db, s.calls, s.rows, s.total_exec_time, s.query
               FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
               ORDER BY s.total_exec_time DESC LIMIT $1""",
            limit,
        )
        totals = await conn.fetchrow(
            """SELECT d.datname AS db, sum(s.calls) AS calls FROM pg_stat_statements s
               JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'homeroom_records' GROUP BY 1"""
        )
    finally:
        await conn.close()
    out = [
        {
            "db": r["db"].removeprefix("homeroom_"),
            "calls_per_event": round(r["calls"] / events, 4),
            "exec_us_per_event": round(r["total_exec_time"] * 1000 / events, 1),
            "query": " ".join(r["query"].split())[:110],
        }
        for r in rows
    ]
    if totals is not None:
        out.append({"db": "records", "statements_per_event": round(int(totals["calls"]) / events, 4)})
    return out


def start_py_spy(directory: Path, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each service process (collapsed stacks, flamegraph.pl's input)."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "100",
                "--format",
                "raw",
                "-o",
                str(directory / f"{name}.folded"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def stop_py_spy(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    for spy in spies:
        spy.wait(30)


def wait_for(what: str, probe: Any, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


async def count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


async def raw_bus(bootstrap: str, n: int) -> float:
    topic = with_suffix(ATTENDANCE, "rawbench")
    await ensure_topics({"bootstrap_servers": bootstrap}, [topic])
    events = [
        build_event(
            topic,
            "attendance_recorded",
            AttendanceRecorded(
                student_key=f"stu_{i:032d}",
                district_id="d-100",
                school_id="d-100-s1",
                date="2026-11-02",
                category=ATTENDANCE_CATEGORY_ABSENT,
            ),
            source="/bench",
            subject=f"stu_{i:032d}",
            topic_name=topic.name,
        )
        for i in range(n)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic.name, bootstrap_servers=bootstrap, group_id="rawbench", auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic.name, e.value, key=e.key, headers=e.headers) for e in events]
    await asyncio.gather(*futures)
    seen = 0
    while seen < n:
        batch = await consumer.getmany(timeout_ms=500, max_records=5000)
        seen += sum(len(v) for v in batch.values())
        await consumer.commit()
    elapsed = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--transfers", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--statements", action="store_true", help="pg_stat_statements: the costliest statements")
    parser.add_argument(
        "--py-spy", type=Path, help="record each service with py-spy (installed separately) into DIR/<service>.folded"
    )
    args = parser.parse_args()

    # Weeks in the past, so no attendance day is refused as a future date.
    monday = date.today() - timedelta(days=date.today().weekday() + 7 * (args.days // 5 + 2))
    world = generate_world(
        start=monday,
        seed=42,
        districts=2,
        students_per_district=args.students,
        days=args.days,
        transfers=args.transfers,
    )
    a, b = world.districts
    # The benchmark reads as fast as it can with one vendor token: no per-principal limit.
    os.environ.setdefault("HOMEROOM_RATE_LIMIT", "")
    stack = Stack(fixed_ports=False)
    result: dict[str, Any] = {"benchmark": "e2e", "students_per_district": args.students, "days": args.days}
    try:
        stack.start()
        if args.statements:
            asyncio.run(enable_statement_stats(stack))
        watch = MemoryWatch({name: child.pid for name, child in stack._children.items()})
        watch.start()
        issuer = DevIssuer(stack.secrets_dir / "dev-issuer.pem")
        pseudonyms = Pseudonymizer(load_or_create_key(stack.secrets_dir / "pseudonym.key"))
        staff = {
            d.id: {
                "Authorization": "Bearer "
                + issuer.issue(Role.DISTRICT_STAFF, subject="bench", district=d.id, ttl_s=7200)
            }
            for d in (a, b)
        }
        assert stack.postgres is not None and stack.broker is not None
        records_db = database_url(stack.postgres.server_url, "homeroom_records")
        transfer_db = database_url(stack.postgres.server_url, "homeroom_transfer")
        assert stack.postgres._process is not None and stack.broker._process is not None
        cpu = CpuMeter(
            {
                **{name: child.pid for name, child in stack._children.items()},
                "postgres": stack.postgres._process.pid,
                "broker": stack.broker._process.pid,
            }
        )
        audit_db = database_url(stack.postgres.server_url, "homeroom_audit")
        with httpx.Client(timeout=120) as http:

            def submit(district: str, kind: str, body: bytes) -> dict[str, Any]:
                r = http.post(
                    f"{stack.url('ingest')}/v1/districts/{district}/submissions/{kind}",
                    content=body,
                    headers=staff[district],
                )
                r.raise_for_status()
                link = r.json()["links"]["self"]

                def done() -> dict[str, Any] | None:
                    rep: dict[str, Any] = http.get(f"{stack.url('ingest')}{link}", headers=staff[district]).json()
                    return rep if rep["status"] in ("completed", "failed", "held") else None

                report: dict[str, Any] = wait_for("submission", done)
                assert report["status"] == "completed", report
                return report

            submit(a.id, "oneroster", oneroster_zip(a, world.start))
            submit(b.id, "oneroster", oneroster_zip(b, world.start))
            wait_for(
                "rosters in records",
                lambda: asyncio.run(count(records_db, "SELECT count(*) FROM students")) >= 2 * args.students,
            )

            # Attendance: the whole of both districts' school days, from upload to applied in records,
            # uploaded one district after the other in a thread while transfers are submitted here.
            base_attendance = asyncio.run(count(records_db, "SELECT count(*) FROM attendance"))
            # the schools' calendars travel with the attendance (calendar.v1): days enrolled come from them
            bodies = [json_batch(batch_records(d, world.start, enrollments=False, world=world)) for d in (a, b)]
            expected_days = base_attendance + sum(len(daily_marks(s)) for d in (a, b) for s in d.students)
            if args.statements:
                asyncio.run(reset_statement_stats(stack))
            uploads: dict[str, Any] = {}

            def upload() -> None:
                uploads["reports"] = [submit(d.id, "batch", body) for d, body in zip((a, b), bodies, strict=True)]
                uploads["done"] = time.perf_counter()

            spies = start_py_spy(args.py_spy, {n: c.pid for n, c in stack._children.items()}) if args.py_spy else []
            cpu_before = cpu.sample()
            started = time.perf_counter()
            started_wall = time.time()
            uploader = threading.Thread(target=upload, daemon=True)
            uploader.start()

            # Transfers during the load: each latency runs from sending the enrollment in the new
            # district to the case's delivered_at, both on this machine's wall clock.
            enroll_sent: dict[str, float] = {}
            for move in world.transfers:
                withdraw, enroll = transfer_batch(world, move)
                submit(move.from_district, "batch", withdraw)
                enroll_sent[pseudonyms.student_key(move.state_id)] = time.time()
                submit(move.to_district, "batch", enroll)
            transfers_submitted = time.perf_counter() - started
            uploader.join()
            reports = uploads["reports"]
            accepted = sum(r["counts"]["accepted"] for r in reports)
            attendance_events = sum(r["counts"]["events"] for r in reports)
            ingest_done = uploads["done"] - started
            wait_for(
                "attendance applied",
                lambda: asyncio.run(count(records_db, "SELECT count(*) FROM attendance")) >= expected_days,
            )
            records_done = time.perf_counter() - started
            cpu_after = cpu.sample()
            stop_py_spy(spies)
            applied = asyncio.run(count(records_db, "SELECT count(*) FROM attendance")) - base_attendance
            statements = asyncio.run(top_statements(stack, attendance_events)) if args.statements else []

            async def delivered() -> dict[str, float]:
                conn = await asyncpg.connect(transfer_db)
                try:
                    rows = await conn.fetch(
                        """SELECT student_key, extract(epoch FROM delivered_at)::float8 AS at
                           FROM transfer_cases WHERE delivered_at IS NOT NULL AND student_key = ANY($1::text[])""",
                        list(enroll_sent),
                    )
                finally:
                    await conn.close()
                return {r["student_key"]: r["at"] for r in rows}

            transfer_deadline = time.monotonic() + 300
            delivered_at = asyncio.run(delivered())
            while len(delivered_at) < len(enroll_sent) and time.monotonic() < transfer_deadline:
                time.sleep(0.2)
                delivered_at = asyncio.run(delivered())
            latencies = [delivered_at[k] - sent for k, sent in enroll_sent.items() if k in delivered_at]
            pending = [k for k in enroll_sent if k not in delivered_at]

            # Disclosures: a vendor reads district A's roster page by page; every student read is one audit entry.
            consent = stack.url("consent")
            compliance = {"Authorization": f"Bearer {issuer.issue(Role.COMPLIANCE, subject='bench')}"}
            created = http.post(
                f"{consent}/v1/agreements",
                headers=compliance,
                json={
                    "organization": "Bench Vendor",
                    "category": "vendor",
                    "supplemental": SUPPLEMENTAL_ANSWERS,
                    "terms": {
                        "elements": ["student.first_name", "enrollment.grade_level"],
                        "purposes": ["rostering"],
                        "districts": [a.id],
                        "start_date": "2026-01-01",
                        "end_date": "2027-12-31",
                    },
                },
            )
            created.raise_for_status()
            agreement = created.json().get("agreement_id") or created.json()["id"]
            http.post(f"{consent}/v1/agreements/{agreement}/activate", headers=compliance).raise_for_status()
            vendor_token = issuer.issue(
                Role.VENDOR, subject="bench-app", agreement=agreement, organization="Bench Vendor", ttl_s=7200
            )
            vendor = {"Authorization": f"Bearer {vendor_token}"}
            base_entries = asyncio.run(count(audit_db, "SELECT count(*) FROM entries"))
            started = time.perf_counter()
            read = 0
            offset = 0
            while True:
                page = http.get(
                    f"{stack.url('records')}/ims/oneroster/rostering/v1p2/students",
                    params={"limit": 200, "offset": offset},
                    headers=vendor,
                )
                page.raise_for_status()
                users = page.json()["users"]
                if not users:
                    break
                read += len(users)
                offset += len(users)
            reads_done = time.perf_counter() - started
            wait_for(
                "disclosures audited",
                lambda: (
                    asyncio.run(count(audit_db, "SELECT count(*) FROM entries WHERE kind = 'disclosure_recorded'"))
                    >= read
                ),
            )
            audit_done = time.perf_counter() - started
            audited = asyncio.run(count(audit_db, "SELECT count(*) FROM entries")) - base_entries
        raw_s = asyncio.run(raw_bus(stack.broker.bootstrap_servers, attendance_events))
        watch.stop_flag.set()
        watch.join()
        result.update(
            attendance_records_accepted=accepted,
            attendance_events=attendance_events,
            attendance_rows_applied_in_records=applied,
            ingest_accept_events_per_s=round(attendance_events / ingest_done),
            ingest_to_records_events_per_s=round(attendance_events / records_done),
            raw_aiokafka_events_per_s=round(attendance_events / raw_s),
            ingest_to_records_vs_raw_ratio=round((attendance_events / records_done) / (attendance_events / raw_s), 4),
            vendor_students_read=read,
            vendor_read_students_per_s=round(read / reads_done),
            disclosures_audited=audited,
            read_to_audited_students_per_s=round(read / audit_done),
            cpu_us_per_attendance_event=cpu_us_per_event(cpu_before, cpu_after, attendance_events),
            transfers=len(latencies),
            transfers_submitted_during_load=sum(1 for t in enroll_sent.values() if t - started_wall < records_done),
            transfers_submitted_s=round(transfers_submitted, 2),
            transfers_not_delivered=len(pending),
            transfer_latency_p50_s=round(statistics.median(latencies), 3) if latencies else None,
            transfer_latency_max_s=round(max(latencies), 3) if latencies else None,
            transfer_latency_p99_s=round(statistics.quantiles(latencies, n=100, method="inclusive")[98], 3)
            if len(latencies) >= 2
            else None,
            peak_rss_mib={k: round(v, 1) for k, v in watch.peak.items()},
            stack_start_s=round(stack.timings["stack_ready_s"], 2),
            load_average=[round(x, 2) for x in psutil.getloadavg()],
        )
        if statements:
            result["statements"] = statements
    finally:
        stack.cleanup()
    print(f"{'stage':<44}{'figure':>14}")
    for key in (
        "ingest_accept_events_per_s",
        "ingest_to_records_events_per_s",
        "raw_aiokafka_events_per_s",
        "ingest_to_records_vs_raw_ratio",
        "vendor_read_students_per_s",
        "read_to_audited_students_per_s",
        "transfer_latency_p50_s",
        "transfer_latency_p99_s",
    ):
        print(f"{key:<44}{result[key]!s:>14}")
    print("CPU µs per attendance event:", result["cpu_us_per_attendance_event"])
    print("peak RSS MiB:", result["peak_rss_mib"])
    for row in result.get("statements", []):
        print("  ", row)
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
