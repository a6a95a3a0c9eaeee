"""Ingest through the whole pipeline (parse, validate, pseudonymise, seal, outbox, relay to Kafka) against
parse only and raw aiokafka publishing of the same number of events, in the same run.

    .venv/bin/python bench/ingest_pipeline.py [--students 5000] [--attendance 50000]
                                              [--or-students 10000] [--or-per-student 10] [--chunk 1000]
                                              [--attendance-only] [--py-spy FILE] [--kernel-only]

Runs the real ingest service in process (tests/harness.py) on embedded PostgreSQL and Tansu:

1. a JSON batch registering and enrolling ``--students`` students (sealing their PII);
2. a JSON batch of ``--attendance`` daily-attendance records for them (the district batch API);
3. a OneRoster 1.1 zip of ``--or-students`` users and ``--or-per-student`` class enrollments each
   (the issue's full figure is --or-students 100000 --or-per-student 10; that takes a while);
4. raw aiokafka: the same number of attendance-sized events as step 2, built and produced (run
   first, before any service starts in the process);
5. parse only (and parse + validate) of the same two files, no database.

CPU µs per event is this process's user + system time (every thread: the parser thread, the
service, the relay) from the upload to the last event published, per event; the raw aiokafka
step prints its own (building and producing the same number of events). ``--attendance-only``
skips step 3 (and its parse); ``--py-spy FILE`` records the attendance upload with py-spy
(installed separately: ``.homeroom/tools/bin/uv pip install --python .venv/bin/python py-spy``)
as collapsed stacks, every thread, to FILE. ``--kernel-only`` prints only ``kernel_event_path``
(also in the full run): the kernel's CPU per event with no I/O (the derived id and `build_event`,
`pack_headers`, the relay's `unpack_headers`), against serialising the payload alone; no database
or broker is started.

"pipeline" seconds are the server's processing time (started -> completed, everything in the outbox);
"to_kafka" adds the time until the relay has published the outbox. Peak RSS is the benchmark process
(service included; PostgreSQL and the broker are separate processes). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

import homeroom.service as kernel  # noqa: E402
from homeroom.bus.envelope import OutgoingEvent, build_event, derived_id  # noqa: E402
from homeroom.bus.topics import ATTENDANCE, ensure_topics, with_suffix  # noqa: E402
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_ABSENT, AttendanceRecorded  # noqa: E402
from homeroom.outbox import pack_headers, unpack_headers  # noqa: E402
from homeroom_dev.infra.broker import EmbeddedBroker  # noqa: E402
from homeroom_dev.infra.postgres import EmbeddedPostgres  # noqa: E402
from services.ingest.formats.batch import parse_batch  # noqa: E402
from services.ingest.formats.oneroster_csv import parse_oneroster  # noqa: E402
from services.ingest.service import SERVICE  # noqa: E402
from services.ingest.validation import Validator  # noqa: E402
from tests.harness import ServiceEnv, ServiceUnderTest, new_database, service_under_test  # noqa: E402
from tests.services.ingest.ingest_data import big_oneroster_zip  # noqa: E402

SCHOOLS = 20
FIRST_DAY = date(2024, 9, 4)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_py_spy(path: Path) -> subprocess.Popen[bytes]:
    spy_bin = str(Path(sys.executable).parent / "py-spy")
    options = ["--format", "raw", "--threads", "--gil", "--rate", "200"]
    spy = subprocess.Popen(
        [spy_bin, "record", *options, "--pid", str(os.getpid()), "--output", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach before the upload starts
    return spy


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_batch(path: Path, records: Iterator[dict[str, Any]]) -> int:
    n = 0
    with path.open("w") as f:
        f.write('{"format": "homeroom.batch", "version": 1, "records": [\n')
        for i, r in enumerate(records):
            f.write((",\n" if i else "") + json.dumps(r))
            n += 1
        f.write("\n]}\n")
    return n


def roster(students: int) -> Iterator[dict[str, Any]]:
    for i in range(students):
        yield {
            "type": "enroll",
            "student_id": f"B{i}",
            "school_id": f"sch-{i % SCHOOLS}",
            "entry_date": "2024-09-03",
            "grade_level": "09",
            "student": {
                "student.state_id": f"NYS-B{i}",
                "student.first_name": "Given",
                "student.last_name": "Family",
                "student.birth_date": "2011-05-17",
            },
        }


def attendance(students: int, n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        s = i % students
        yield {
            "type": "attendance",
            "student_id": f"B{s}",
            "school_id": f"sch-{s % SCHOOLS}",
            "date": (FIRST_DAY + timedelta(days=i // students)).isoformat(),
            "category": "absent",
            "excused": bool(i % 3),
        }


async def file_body(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


async def run_upload(svc: ServiceUnderTest, env: ServiceEnv, district: str, route: str, path: Path) -> dict[str, Any]:
    headers = env.auth("district_staff", subject="bench", district=district)
    cpu = cpu_s()
    wall = time.perf_counter()
    r = await svc.client.post(f"/v1/districts/{district}/submissions/{route}", content=file_body(path), headers=headers)
    r.raise_for_status()
    sid = r.json()["id"]
    while True:
        report = (await svc.client.get(f"/v1/submissions/{sid}", headers=headers)).json()
        if report["status"] in ("completed", "failed", "held"):
            break
        await asyncio.sleep(0.2)
    in_outbox = time.perf_counter() - wall
    await svc.runtime.drain_outbox(3600)
    to_kafka = time.perf_counter() - wall
    cpu = cpu_s() - cpu
    from datetime import datetime

    processing = (
        datetime.fromisoformat(report["finished_at"]) - datetime.fromisoformat(report["started_at"])
    ).total_seconds()
    counts = report["counts"]
    records = counts["records_read"]
    return {
        "status": report["status"],
        "bytes": report["bytes"],
        "records": records,
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "events": counts["events"],
        "pipeline_s": round(processing, 2),
        "pipeline_records_per_s": round(records / processing) if processing else None,
        "upload_to_outbox_s": round(in_outbox, 2),
        "upload_to_kafka_s": round(to_kafka, 2),
        "to_kafka_records_per_s": round(records / to_kafka),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu / counts["events"] * 1e6, 1) if counts["events"] else None,
        "peak_rss_mb": rss_mb(),
    }


def absence_mark(i: int, student: int) -> AttendanceRecorded:
    """The i-th attendance-sized event's payload, for `student`."""
    return AttendanceRecorded(
        student_key=f"stu_{student:032d}",
        district_id="d-bench",
        school_id=f"sch-{i % SCHOOLS}",
        date="2024-09-04",
        category=ATTENDANCE_CATEGORY_ABSENT,
        source_record_id=f"rec_{i:032d}",
    )


def kernel_event_path(n: int) -> dict[str, Any]:
    """The kernel's CPU per attendance event, no I/O, best of three: the derived id and
    `build_event` (as ingest calls them), the outbox's `pack_headers`, and the relay's
    `unpack_headers` and the record it publishes; against the floor of serialising the same payload."""
    namespace = uuid.UUID("6f1c1c36-8a52-4a51-9a7b-5d5a0d7e9c11")
    stamp = datetime(2024, 9, 4, 12, 0, 0, 123000, tzinfo=UTC)
    marks = [absence_mark(i, i % 5000) for i in range(n)]

    def best(step: Any) -> float:
        times = []
        for _ in range(3):
            cpu = time.process_time()
            step()
            times.append(time.process_time() - cpu)
        return round(min(times) / n * 1e6, 2)

    def build() -> list[OutgoingEvent]:
        return [
            build_event(
                ATTENDANCE,
                "attendance_recorded",
                mark,
                source="/homeroom/ingest/d-bench",
                subject=mark.student_key,
                district_id="d-bench",
                correlation_id="upload-1",
                causation_id="upload-1",
                event_id=derived_id(namespace, f"d-bench|{mark.source_record_id}|content"),
                time=stamp,
            )
            for mark in marks
        ]

    events = build()
    blocks = [pack_headers(e.headers) for e in events]
    figures = {
        "payload_serialise_us": best(lambda: [m.SerializeToString() for m in marks]),
        "build_us": best(build),
        "pack_headers_us": best(lambda: [pack_headers(e.headers) for e in events]),
        "relay_rows_us": best(  # as the relay hands rows to the publisher: key, value, headers
            lambda: [(e.key, e.value, unpack_headers(b)) for e, b in zip(events, blocks, strict=True)]
        ),
    }
    kernel = figures["build_us"] + figures["pack_headers_us"] + figures["relay_rows_us"]
    return {
        "events": n,
        **figures,
        "kernel_us": round(kernel, 2),
        "kernel_vs_payload_serialise": round(kernel / figures["payload_serialise_us"], 2),
    }


async def raw_kafka(bootstrap: str, n: int) -> dict[str, Any]:
    topic = with_suffix(ATTENDANCE, f"raw{os.getpid()}")
    client = {"bootstrap_servers": bootstrap}
    await ensure_topics(client, [topic])
    cpu = cpu_s()  # building the events (as ingest does) and producing them
    events = [
        build_event(
            topic,
            "attendance_recorded",
            absence_mark(i, i),
            source="/homeroom/ingest/d-bench",
            subject=f"stu_{i:032d}",
            district_id="d-bench",
        )
        for i in range(n)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        start = time.perf_counter()
        for e in events:
            await producer.send(e.topic, e.value, key=e.key, headers=e.headers)
        await producer.flush()
        seconds = time.perf_counter() - start
        cpu = cpu_s() - cpu
    finally:
        await producer.stop()
    return {
        "events": n,
        "seconds": round(seconds, 2),
        "events_per_s": round(n / seconds),
        "cpu_us_per_event": round(cpu / n * 1e6, 1),
    }


def parse_only(path: Path, kind: str, validate: bool, schools: set[str]) -> dict[str, Any]:
    start = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        items = parse_batch(f) if kind == "batch" else parse_oneroster(f)
        if validate:
            items = Validator("d", schools, date(2026, 1, 1), district_org_ids=["dist-1"]).run(items)
        for _ in items:
            n += 1
    seconds = time.perf_counter() - start
    return {"items": n, "seconds": round(seconds, 2), "items_per_s": round(n / seconds)}


async def bench(args: argparse.Namespace, pg: EmbeddedPostgres, broker: EmbeddedBroker, work: Path) -> dict[str, Any]:
    keys_url = await new_database(pg, "keys")
    env = ServiceEnv(pg, broker.bootstrap_servers, work / "secrets", keys_url)
    (work / "secrets").mkdir()
    out: dict[str, Any] = {"settings": vars(args), "rss_before_mb": rss_mb(), "load_before": os.getloadavg()[0]}
    roster_file, att_file = work / "roster.json", work / "attendance.json"
    write_batch(roster_file, roster(args.students))
    n_att = write_batch(att_file, attendance(args.students, args.attendance))
    zip_file = work / "oneroster.zip"
    schools = {f"sch-{i}" for i in range(SCHOOLS)}
    out["parse_only"] = {"attendance_batch": parse_only(att_file, "batch", False, schools)}
    if not args.attendance_only:
        big_oneroster_zip(str(zip_file), args.or_students, args.or_per_student, schools=SCHOOLS)
        out["parse_only"]["oneroster"] = parse_only(zip_file, "oneroster", False, schools)
        out["parse_only"]["oneroster_validate"] = parse_only(zip_file, "oneroster", True, schools)
    # first, in the process as it is before any service starts (and before the freeze below), and
    # before the kernel figures, whose garbage would otherwise set off the collector during it
    out["raw_aiokafka"] = await raw_kafka(broker.bootstrap_servers, n_att)
    out["kernel_event_path"] = kernel_event_path(n_att)
    overrides: dict[str, Any] = {
        "upload_dir": work / "uploads",
        "max_upload_bytes": 1 << 40,
        "chunk_records": args.chunk,
        "max_concurrent_submissions": 1,
    }
    async with service_under_test(SERVICE, env, **overrides) as svc:
        # as `homeroom serve` does once the app is built (the code before it had no such step)
        freeze = getattr(kernel, "freeze_startup_objects", None)
        if freeze is not None:
            freeze()
        staff = env.auth("district_staff", subject="bench", district="d-bench")
        for s in sorted(schools):
            await svc.client.post("/v1/districts/d-bench/organizations", json={"org_id": s}, headers=staff)
        out["roster_batch"] = await run_upload(svc, env, "d-bench", "batch", roster_file)
        spy = start_py_spy(args.py_spy) if args.py_spy else None
        out["attendance_batch"] = await run_upload(svc, env, "d-bench", "batch", att_file)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
    if not args.attendance_only:
        # a fresh database: the OneRoster file's schools register themselves to the uploading district
        async with service_under_test(SERVICE, env, **overrides) as svc:
            out["oneroster"] = await run_upload(svc, env, "d-or", "oneroster", zip_file)
    att = out["attendance_batch"]
    raw = out["raw_aiokafka"]["events_per_s"]
    out["ratios"] = {
        "attendance_to_kafka_vs_raw_aiokafka": round(att["to_kafka_records_per_s"] / raw, 3),
        "attendance_pipeline_vs_parse_only": round(
            (att["pipeline_records_per_s"] or 0) / out["parse_only"]["attendance_batch"]["items_per_s"], 3
        ),
        "attendance_cpu_per_event_vs_raw_aiokafka": round(
            att["cpu_us_per_event"] / out["raw_aiokafka"]["cpu_us_per_event"], 2
        ),
    }
    if not args.attendance_only:
        out["ratios"]["oneroster_pipeline_vs_parse_only"] = round(
            (out["oneroster"]["pipeline_records_per_s"] or 0) / out["parse_only"]["oneroster"]["items_per_s"], 3
        )
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--students", type=int, default=5_000)
    ap.add_argument("--attendance", type=int, default=50_000)
    ap.add_argument("--or-students", type=int, default=10_000)
    ap.add_argument("--or-per-student", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--attendance-only", action="store_true", help="skip the OneRoster upload and its parse")
    ap.add_argument("--py-spy", type=Path, help="record the attendance upload with py-spy into FILE (collapsed)")
    ap.add_argument("--kernel-only", action="store_true", help="only the kernel's CPU per event, no database or broker")
    args = ap.parse_args()
    if args.kernel_only:
        print(json.dumps({"kernel_event_path": kernel_event_path(args.attendance), "load_average": os.getloadavg()}))
        return
    with tempfile.TemporaryDirectory(prefix="homeroom-bench-ingest-") as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres().start()
        try:
            with EmbeddedBroker() as broker:
                result = asyncio.run(bench(args, pg, broker, work))
        finally:
            pg.cleanup()
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
