"""The records service: events applied from the bus against raw consumption of the same
events in the same run, and p99 read latency with many students stored.

    .venv/bin/python bench/records.py [--students N] [--bus-students N] [--days N]
                                      [--reads N] [--pages N] [--json PATH]
                                      [--profile PATH] [--statements] [--sweep-in-window]

On an embedded PostgreSQL and Tansu broker, the real records runtime (`running`, the
same as `homeroom serve records`: its kernel consumers and its absence reviewer) is
started, then:

1. Stored students (`--students`, default 100,000; 1,000,000 is the issue's figure):
   `--bus-students` of them (default 2,000) arrive through the bus (below); the rest are
   bulk-loaded with COPY: real rows in the real schema (students, two sealed name elements
   each, a current enrollment, the student index), the names sealed by the real
   EnvelopeCipher under a fresh data key per student whose wrapped keys are COPYed into
   the keys database. COPY runs as the database owner (as a restore would); every read
   below goes through the API, as the RLS-confined app role.
2. Events applied per second: an attendance-heavy mix (per bus student one
   registration with sealed names, one enrollment, `--days` daily marks) published to
   enrollment.v1/attendance.v1 while records runs without consumers; then records is started
   again with its consumers, which find the whole backlog. Timed from the first event applied
   until records has applied every one (its idempotency marks in PostgreSQL, no mark left
   waiting for its student): consumption and application only, no producer, no group join.
   Today's absence sweep of the stored students (every one still enrolled counted again) is
   done before the window, as in a service that has run today (a process started again the same
   day does not sweep again, migration 012); `--sweep-in-window` leaves it to the window (the
   day's first start). The absence reviewer's catch-up (every student it was asked to count counted,
   `absence_reviews` empty) is timed from the same start. Baseline, in the same run: a plain
   AIOKafkaConsumer assigned every partition of the same topics (no group), reading the same
   events from the beginning, timed from its first record to its last, over as many passes as
   take `--raw-s` seconds (default 3) so that the figure is a rate over seconds, not a
   fraction of one. CPU per event (user + system) over the records window: this process
   (records, its consumers and its absence reviewer; nothing else runs in it then) and
   PostgreSQL (the server and its backends). `--profile PATH` writes a cProfile of this
   process over the window (pstats format); `--statements` restarts the embedded PostgreSQL
   with pg_stat_statements preloaded and prints the statements records' database ran per event
   over the window (BEGIN and COMMIT included, the bench's own polls not) and records'
   costliest statements by execution time per event.
3. p99 read latency over the ASGI app (no network): the owning district staff reading
   one student's full record (`--reads` random students of all stored), and a vendor's
   OneRoster page of 1,000 students (`--pages` random pages; decisions from the real
   consent service run in process on its own database, `consent_service` below; each page
   writes 1,000 disclosures).

Prints a table and one JSON object; --json also writes it to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from homeroom import crypto  # noqa: E402
from homeroom.auth import AuthSettings  # noqa: E402
from homeroom.bus.envelope import OutgoingEvent, build_event  # noqa: E402
from homeroom.bus.topics import ATTENDANCE, ENROLLMENT  # noqa: E402
from homeroom.config import KafkaSettings  # noqa: E402
from homeroom.events.v1 import attendance_pb2, enrollment_pb2  # noqa: E402
from homeroom.events.v1.envelope_pb2 import SealedValue  # noqa: E402
from homeroom.service import attach, create_app, running  # noqa: E402
from homeroom.storage import database_url  # noqa: E402
from homeroom_dev.infra.broker import EmbeddedBroker  # noqa: E402
from homeroom_dev.infra.postgres import EmbeddedPostgres  # noqa: E402
from homeroom_dev.profiling import start_py_spy, stop_py_spy  # noqa: E402
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS  # noqa: E402
from services.consent.service import SERVICE as CONSENT  # noqa: E402
from services.consent.settings import ConsentSettings  # noqa: E402
from services.records.absence import AbsenceReviewer  # noqa: E402
from services.records.service import SERVICE  # noqa: E402
from services.records.settings import RecordsSettings  # noqa: E402


@contextlib.asynccontextmanager
async def consent_service(
    pg: EmbeddedPostgres,
    tmp: Path,
    kafka: KafkaSettings,
    auth: AuthSettings,
    agreement_id: str,
    *,
    districts: Sequence[str],
    elements: Sequence[str],
) -> AsyncIterator[httpx.AsyncBaseTransport]:
    """The real consent service in process (its own database) with one active vendor agreement,
    recorded through its API by compliance staff: the decision point records asks."""
    settings = ConsentSettings(
        database_url=database_url(pg.server_url, "homeroom_consent"),
        keys_database_url=database_url(pg.server_url, "homeroom_keys"),
        secrets_dir=tmp,
        start_consumers=False,
    )
    async with running(CONSENT, settings, kafka=kafka, auth=auth) as runtime:
        app = create_app(CONSENT, settings, lifespan=False)
        attach(app, runtime)
        transport = httpx.ASGITransport(app=app)
        compliance = {"Authorization": f"Bearer {auth.dev_issuer().issue('compliance', subject='bench')}"}
        terms = {
            "elements": list(elements),
            "purposes": ["instruction", "rostering"],
            "districts": list(districts),
            "start_date": "2020-01-01",
            "end_date": "2099-06-30",
            "disposition": "destroy",
        }
        body = {
            "agreement_id": agreement_id,
            "organization": "Rosterly",
            "category": "vendor",
            "supplemental": SUPPLEMENTAL_ANSWERS,
            "terms": terms,
        }
        async with httpx.AsyncClient(transport=transport, base_url="http://consent") as client:
            for path, json_body in (("/v1/agreements", body), (f"/v1/agreements/{agreement_id}/activate", None)):
                r = await client.post(path, json=json_body, headers=compliance)
                assert r.status_code in (200, 201), r.text
        yield transport


DISTRICTS = [f"d-{i:02d}" for i in range(10)]
SCHOOLS_PER_DISTRICT = 20
NAMES = ("student.first_name", "student.last_name")
FIRST = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo"]
ENTRY = date(2026, 8, 24)


def student_key(i: int) -> str:
    return f"stu_{i:07d}"


def place(i: int) -> tuple[str, str]:
    district = DISTRICTS[i % len(DISTRICTS)]
    return district, f"{district}-s{(i // len(DISTRICTS)) % SCHOOLS_PER_DISTRICT:02d}"


class CollectingKeyStore:
    """A DataKeyStore that keeps new wrapped keys in memory for one COPY afterwards."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, int, bytes]] = []
        self._keys: dict[tuple[str, str, str], crypto.WrappedKey] = {}

    async def get(self, district_id: str, scope: crypto.Scope, subject: str) -> crypto.WrappedKey | None:
        return self._keys.get((district_id, scope, subject))

    async def get_many(
        self, district_id: str, scope: crypto.Scope, subjects: Sequence[str]
    ) -> dict[str, crypto.WrappedKey]:
        return {s: k for s in subjects if (k := self._keys.get((district_id, scope, s))) is not None}

    async def put_if_absent(
        self, district_id: str, scope: crypto.Scope, subject: str, key: crypto.WrappedKey
    ) -> crypto.WrappedKey:
        self._keys[(district_id, scope, subject)] = key
        self.rows.append((district_id, scope, subject, key.kek_version, key.wrapped))
        return key

    async def destroy(self, district_id: str, scope: crypto.Scope, subject: str) -> int:
        raise NotImplementedError

    async def destroy_district(self, district_id: str) -> int:
        raise NotImplementedError

    async def rewrap(
        self, district_id: str, scope: crypto.Scope, subject: str, old: crypto.WrappedKey, new: crypto.WrappedKey
    ) -> bool:
        raise NotImplementedError


async def bulk_load(settings: RecordsSettings, first: int, count: int, chunk: int = 50_000) -> float:
    """Students first..first+count-1 as real sealed rows, by COPY."""
    started = time.perf_counter()
    keyring = crypto.FileKeyring(settings.keyring_path)
    records = await asyncpg.connect(settings.database_url)
    keys = await asyncpg.connect(settings.keys_database_url or settings.database_url)
    now = datetime.now(UTC)
    try:
        for lo in range(first, first + count, chunk):
            store = CollectingKeyStore()
            cipher = crypto.EnvelopeCipher(keyring, store, cache_size=chunk + 10)
            students: list[tuple[object, ...]] = []
            elements: list[tuple[object, ...]] = []
            enrollments: list[tuple[object, ...]] = []
            index: list[tuple[object, ...]] = []
            for i in range(lo, min(first + count, lo + chunk)):
                key = student_key(i)
                district, school = place(i)
                sealed = await cipher.seal_many(district, key, {NAMES[0]: FIRST[i % 10], NAMES[1]: f"Family{i}"})
                students.append((district, key, f"h{i}", '{"enrollment.grade_level": "05"}', True, now, now))
                elements.extend((district, key, element, value, "ingest", now) for element, value in sealed.items())
                enrollments.append((district, key, school, ENTRY, "05", now))
                index.append((key, district))
            await keys.copy_records_to_table(
                "data_keys", records=store.rows, columns=["district_id", "scope", "subject", "kek_version", "wrapped"]
            )
            async with records.transaction():
                await records.copy_records_to_table(
                    "students",
                    records=students,
                    columns=[
                        "district_id",
                        "student_key",
                        "local_id_hash",
                        "plain_elements",
                        "registered",
                        "created_at",
                        "updated_at",
                    ],
                )
                await records.copy_records_to_table(
                    "student_elements",
                    records=elements,
                    columns=["district_id", "student_key", "element", "sealed", "source", "updated_at"],
                )
                await records.copy_records_to_table(
                    "enrollments",
                    records=enrollments,
                    columns=["district_id", "student_key", "school_id", "entry_date", "grade_level", "updated_at"],
                )
                await records.copy_records_to_table(
                    "student_index", records=index, columns=["student_key", "district_id"]
                )
        await records.execute("ANALYZE")
    finally:
        await records.close()
        await keys.close()
    return time.perf_counter() - started


async def bus_events(cipher: crypto.EnvelopeCipher, students: int, days: int) -> list[OutgoingEvent]:
    """Per student: registration (sealed names), enrollment, `days` daily marks (1 in 8 absent)."""
    out: list[OutgoingEvent] = []
    school_days = [d for d in (date.fromordinal(ENTRY.toordinal() + n) for n in range(days * 2)) if d.weekday() < 5]
    for i in range(students):
        key = student_key(i)
        district, school = place(i)
        sealed = await cipher.seal_many(district, key, {NAMES[0]: FIRST[i % 10], NAMES[1]: f"Family{i}"})
        common: dict[str, Any] = {"source": "/bench", "subject": key, "district_id": district}
        out.append(
            build_event(
                ENROLLMENT,
                "student_registered",
                enrollment_pb2.StudentRegistered(
                    student_key=key,
                    district_id=district,
                    local_student_id_hash=f"h{i}",
                    sealed_elements={k: SealedValue(ciphertext=v) for k, v in sealed.items()},
                    plain_elements={"enrollment.grade_level": "05"},
                ),
                **common,
            )
        )
        out.append(
            build_event(
                ENROLLMENT,
                "student_enrolled",
                enrollment_pb2.StudentEnrolled(
                    student_key=key,
                    district_id=district,
                    school_id=school,
                    entry_date=ENTRY.isoformat(),
                    grade_level="05",
                ),
                **common,
            )
        )
        for n, day in enumerate(school_days[:days]):
            category = (
                attendance_pb2.ATTENDANCE_CATEGORY_ABSENT
                if (i + n) % 8 == 0
                else attendance_pb2.ATTENDANCE_CATEGORY_PRESENT
            )
            out.append(
                build_event(
                    ATTENDANCE,
                    "attendance_recorded",
                    attendance_pb2.AttendanceRecorded(
                        student_key=key, district_id=district, school_id=school, date=day.isoformat(), category=category
                    ),
                    **common,
                )
            )
    return out


async def raw_consume(bootstrap: str, topics: list[str], n: int, at_least_s: float) -> float:
    """Events per second a plain consumer reads: every partition of `topics` assigned directly
    (no group, so no join or rebalance), read from the beginning to the `n` events they hold,
    pass after pass until `at_least_s` seconds have gone; timed from the first record received
    (the records counted after it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=2000)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, so the topics' partitions are known
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        started = 0.0
        read = 0
        while not started or time.perf_counter() - started < at_least_s:
            await consumer.seek_to_beginning(*partitions)
            seen = 0
            while seen < n:
                batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
                got = sum(len(records) for records in batches.values())
                seen += got
                if not started and got:
                    started = time.perf_counter()  # the first batch is the start, not counted
                elif started:
                    read += got
        return read / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def cpu_s(proc: psutil.Process, tree: bool = True) -> float:
    """User + system CPU seconds of a process, and with `tree` of its children too (live ones
    and those already reaped). This process's own children (PostgreSQL, the broker, py-spy)
    are not records: it is measured with `tree=False`."""
    total = 0.0
    for one in [proc, *(proc.children(recursive=True) if tree else [])]:
        with contextlib.suppress(psutil.Error):
            t = one.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if tree and one is proc else 0.0)
    return total


async def produce(kafka: KafkaSettings, events: Sequence[OutgoingEvent], topic: str | None = None) -> float:
    """Send every event (to `topic` instead of its own if given); returns the seconds taken."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), linger_ms=5, acks="all")
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic or e.topic, e.value, key=e.key, headers=e.headers) for e in events]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed


async def preload_statement_stats(pg: EmbeddedPostgres) -> None:
    """Restart PostgreSQL with pg_stat_statements preloaded (before the service connects)."""
    conn = await asyncpg.connect(pg.url())
    try:
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    finally:
        await conn.close()
    pg.stop()
    pg.start()


async def top_statements(pg: EmbeddedPostgres, events: int, limit: int = 12) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(pg.url())
    try:
        rows = await conn.fetch(
            """SELECT s.calls, s.rows, s.total_exec_time, s.shared_blks_hit + s.shared_blks_read AS blocks, s.query
               FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
               WHERE d.datname = 'homeroom_records' ORDER BY s.total_exec_time DESC LIMIT $1""",
            limit,
        )
    finally:
        await conn.close()
    return [
        {
            "calls_per_event": round(r["calls"] / events, 4),
            "rows_per_call": round(r["rows"] / max(1, r["calls"]), 1),
            "exec_us_per_event": round(r["total_exec_time"] * 1000 / events, 1),
            "blocks_per_event": round(r["blocks"] / events, 2),
            "query": " ".join(r["query"].split())[:140],
        }
        for r in rows
    ]


async def statement_calls(pg: EmbeddedPostgres) -> int:
    """Statements records' database has run so far (BEGIN and COMMIT included; the bench's own
    polls left out)."""
    conn = await asyncpg.connect(pg.url())
    try:
        calls: int = await conn.fetchval(
            """SELECT coalesce(sum(s.calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
               WHERE d.datname = 'homeroom_records' AND s.query <> ALL($1::text[])""",
            [APPLIED, QUEUED],
        )
    finally:
        await conn.close()
    return calls


async def reset_statement_stats(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(pg.url())
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


# Every event applied (its idempotency mark) and no attendance mark left waiting for its student.
APPLIED = """SELECT (SELECT count(*) FROM processed_events) >= $1
                 AND NOT EXISTS (SELECT 1 FROM marks_waiting)"""


QUEUED = "SELECT EXISTS (SELECT 1 FROM absence_reviews)"


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=100_000, help="students stored in all")
    parser.add_argument("--bus-students", type=int, default=2_000, help="of which arrive through the bus")
    parser.add_argument("--days", type=int, default=8, help="daily attendance marks per bus student")
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the applying window here")
    parser.add_argument("--py-spy", type=Path, help="py-spy (installed separately) over the window: DIR/records.folded")
    parser.add_argument("--statements", action="store_true", help="pg_stat_statements: records' costliest statements")
    parser.add_argument("--raw-s", type=float, default=3.0, help="seconds the raw baseline reads for (at least)")
    parser.add_argument(
        "--sweep-in-window",
        action="store_true",
        help="leave today's absence sweep of the stored students to the timed window (the first start of a day)",
    )
    args = parser.parse_args()
    bus_students = min(args.bus_students, args.students)

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="homeroom-bench-records-"))
    pg = EmbeddedPostgres().start()
    broker = EmbeddedBroker().start()
    result: dict[str, Any] = {"benchmark": "records"}
    statements: list[dict[str, Any]] = []
    try:
        if args.statements:
            await preload_statement_stats(pg)
        me = psutil.Process()
        assert pg._process is not None
        postgres = psutil.Process(pg._process.pid)
        kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
        settings = RecordsSettings(
            database_url=database_url(pg.server_url, "homeroom_records"),
            keys_database_url=database_url(pg.server_url, "homeroom_keys"),
            secrets_dir=tmp,
            start_consumers=True,
            outbox_poll_interval_s=0.05,
        )
        auth = AuthSettings(dev_key_file=tmp / "dev-issuer.pem")
        rosterly = {"districts": [DISTRICTS[0]], "elements": [*NAMES, "enrollment.school_id"]}
        async with consent_service(pg, tmp, kafka, auth, "agr-bench", **rosterly) as consent:
            # 1. stored students, and the events on the bus, while records runs without consumers
            quiet = settings.model_copy(update={"start_consumers": False})
            async with running(SERVICE, quiet, kafka=kafka, auth=auth, peers={"consent": consent}) as setup:
                load_s = await bulk_load(settings, bus_students, args.students - bus_students)
                if not args.sweep_in_window:
                    # Today's sweep of the stored students, done before the window as in a service
                    # that has run today: a records process started again the same day does not
                    # sweep a district again (migration 012). Code before it sweeps on every start.
                    sweep = AbsenceReviewer(
                        setup, settings.chronic_absence_threshold, settings.chronic_absence_min_days
                    )
                    while await sweep.run_once():
                        pass
                events = await bus_events(setup.require_cipher(), bus_students, args.days)
                produce_s = await produce(kafka, events)
            marks = sum(1 for e in events if e.topic == ATTENDANCE.name)
            # 2. events applied, from the first to the last, against raw consumption of the same events
            async with running(SERVICE, settings, kafka=kafka, auth=auth, peers={"consent": consent}) as runtime:
                if args.statements:
                    await reset_statement_stats(pg)
                profile = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not wall time
                waited = time.perf_counter()
                while not await runtime.pool.fetchval("SELECT EXISTS (SELECT 1 FROM processed_events)"):
                    await asyncio.sleep(0.01)  # the consumer groups join: not timed
                    if time.perf_counter() - waited > 120:
                        raise TimeoutError("records applied nothing in 2 minutes")
                cpu_before = (cpu_s(me, tree=False), cpu_s(postgres))
                calls_before = await statement_calls(pg) if args.statements else 0
                started = time.perf_counter()
                if profile is not None:
                    profile.enable()
                spies = start_py_spy(args.py_spy, {"records": os.getpid()}) if args.py_spy else []
                reviewed_s = records_s = 0.0
                cpu_applied = cpu_before
                while not (records_s and reviewed_s):
                    await asyncio.sleep(0.05)
                    if not records_s and await runtime.pool.fetchval(APPLIED, len(events)):
                        records_s = time.perf_counter() - started
                        cpu_applied = (cpu_s(me, tree=False), cpu_s(postgres))
                        if args.statements:
                            calls = await statement_calls(pg) - calls_before
                            result["statements_per_event"] = round(calls / len(events), 4)
                        if profile is not None:
                            profile.disable()
                        stop_py_spy(spies)
                    # Asked only once every event is applied: a count over the queue the reviewer
                    # is writing, every 50 ms, was among PostgreSQL's costliest statements.
                    if records_s and not reviewed_s and not await runtime.pool.fetchval(QUEUED):
                        reviewed_s = time.perf_counter() - started
                    if time.perf_counter() - started > 1800:
                        raise TimeoutError("records did not apply every event in 30 minutes")
                if args.statements:
                    statements = await top_statements(pg, len(events))
                if profile is not None:
                    profile.dump_stats(args.profile)
                raw_rate = await raw_consume(
                    broker.bootstrap_servers, [ENROLLMENT.name, ATTENDANCE.name], len(events), args.raw_s
                )
                # 3. reads
                app = create_app(SERVICE, settings, lifespan=False)
                attach(app, runtime)
                issuer = auth.dev_issuer()
                rng = random.Random(7)
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://records"
                ) as client:
                    one: list[float] = []
                    for _ in range(args.reads):
                        i = rng.randrange(args.students)
                        district, _school = place(i)
                        headers = {
                            "Authorization": f"Bearer {issuer.issue('district_staff', subject='b', district=district)}"
                        }
                        t = time.perf_counter()
                        r = await client.get(f"/v1/districts/{district}/students/{student_key(i)}", headers=headers)
                        one.append(time.perf_counter() - t)
                        assert r.status_code == 200, r.text
                    vendor = issuer.issue("vendor", subject="v", agreement="agr-bench", organization="Rosterly")
                    in_district = args.students // len(DISTRICTS)
                    pages: list[float] = []
                    for _ in range(args.pages):
                        offset = rng.randrange(max(1, in_district - 1000))
                        t = time.perf_counter()
                        r = await client.get(
                            f"/ims/oneroster/rostering/v1p2/students?limit=1000&offset={offset}",
                            headers={"Authorization": f"Bearer {vendor}"},
                        )
                        pages.append(time.perf_counter() - t)
                        assert r.status_code == 200, r.text
                        assert len(r.json()["users"]) == min(1000, in_district - offset), len(r.json()["users"])
                stored = await runtime.pool.fetchval("SELECT count(*) FROM students")
    finally:
        broker.stop()
        pg.cleanup()
    result.update(
        {
            "students_stored": stored,
            "students_via_bus": bus_students,
            "seed_method": "bus for the sampled students; COPY of rows sealed by the real EnvelopeCipher for the rest",
            "bulk_load_s": round(load_s, 1),
            "events": len(events),
            "attendance_share": round(marks / len(events), 3),
            "produce_events_per_s": round(len(events) / produce_s),
            "raw_aiokafka_consume_events_per_s": round(raw_rate),
            "records_applied_events_per_s": round(len(events) / records_s),
            "records_to_raw_ratio": round(len(events) / records_s / raw_rate, 4),
            "absence_reviewed_marks_per_s": round(marks / reviewed_s),
            "cpu_us_per_event_records": round((cpu_applied[0] - cpu_before[0]) * 1e6 / len(events), 1),
            "cpu_us_per_event_postgres": round((cpu_applied[1] - cpu_before[1]) * 1e6 / len(events), 1),
            "record_read_p50_ms": round(p(one, 0.5) * 1000, 1),
            "record_read_p99_ms": round(p(one, 0.99) * 1000, 1),
            "reads": len(one),
            "vendor_page_1000_p50_ms": round(p(pages, 0.5) * 1000),
            "vendor_page_1000_p99_ms": round(p(pages, 0.99) * 1000),
            "pages": len(pages),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 1),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    )
    print(f"students stored {stored:,} ({bus_students:,} via the bus; rest by COPY of sealed rows, {load_s:.0f} s)")
    print(f"{'path':<44}{'events/s':>12}")
    print(f"{'raw aiokafka consume (same events)':<44}{result['raw_aiokafka_consume_events_per_s']:>12,}")
    print(f"{'records applied (kernel consumers + DB)':<44}{result['records_applied_events_per_s']:>12,}")
    print(f"{'marks counted by the absence reviewer':<44}{result['absence_reviewed_marks_per_s']:>12,}")
    print(f"ratio records/raw: {result['records_to_raw_ratio']}")
    print(
        f"CPU µs per event: records {result['cpu_us_per_event_records']}, PostgreSQL "
        f"{result['cpu_us_per_event_postgres']} (records window: first event applied to last)"
    )
    if "statements_per_event" in result:
        print(f"statements per event over the records window (records' database): {result['statements_per_event']}")
    for s in statements:
        print(
            f"  {s['exec_us_per_event']:>7} µs/event {s['calls_per_event']:>7} calls/event "
            f"{s['rows_per_call']:>7} rows/call  {s['query']}"
        )
    print(f"{'read':<44}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'one record (district staff)':<44}{result['record_read_p50_ms']:>10}{result['record_read_p99_ms']:>10}")
    print(
        f"{'vendor OneRoster page of 1,000':<44}{result['vendor_page_1000_p50_ms']:>10}"
        f"{result['vendor_page_1000_p99_ms']:>10}"
    )
    if statements:
        result["statements"] = statements
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
