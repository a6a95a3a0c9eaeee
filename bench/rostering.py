"""Rostering for vendors (issue 23): a vendor paging through a district's roster over the
OneRoster 1.2 API, against a raw indexed PostgreSQL read of the same rows in the same run.

    .venv/bin/python bench/rostering.py [--students N] [--classes N] [--per-class N] [--json PATH]

The issue's figure is 50,000 students, 2,500 classes and 250,000 class enrollments
(`--students 50000 --classes 2500 --per-class 100`). The defaults are a fifth of that
(10,000 / 500 / 50,000): the machine is two cores shared with three other engineers.

On an embedded PostgreSQL, the real records runtime (`running`) and its ASGI app (no network).
One district, 20 schools: students COPYed as real sealed rows (names sealed by the real
EnvelopeCipher, wrapped data keys COPYed into the keys database) with a current school
enrollment; classes and class enrollments (each student in `per-class * classes / students`
classes of their school) COPYed into the roster tables. Then, timed page by page:

1. `GET .../enrollments?limit=1000&offset=...` through every page: each page is SQL-paged,
   decided by the real consent service in one batch (in process on its own database,
   `records.consent_service`), and every student released written as a disclosure (read log,
   outbox, the sealed release copy) before the page returns.
2. `GET .../students?limit=1000&offset=...` through every page (names opened, decided,
   disclosed).
3. Baselines, same rows, same run: `SELECT ... FROM class_enrollments ... ORDER BY class_id,
   role, user_key LIMIT 1000 OFFSET k` (the index the API uses) and the students' key page.

Prints requests/s and p50/p99 per page of 1,000 for each, and one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/records.py's bulk-load helpers

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from records import CollectingKeyStore, consent_service, p  # noqa: E402

from homeroom import crypto  # noqa: E402
from homeroom.auth import AuthSettings  # noqa: E402
from homeroom.config import KafkaSettings  # noqa: E402
from homeroom.service import attach, create_app, running  # noqa: E402
from homeroom.storage import database_url  # noqa: E402
from homeroom_dev.infra.broker import EmbeddedBroker  # noqa: E402
from homeroom_dev.infra.postgres import EmbeddedPostgres  # noqa: E402
from services.records.service import SERVICE  # noqa: E402
from services.records.settings import RecordsSettings  # noqa: E402

DISTRICT = "d-bench"
SCHOOLS = [f"{DISTRICT}-s{i:02d}" for i in range(20)]
ENTRY = date(2026, 8, 24)
OR = "/ims/oneroster/rostering/v1p2"
ELEMENTS = ["student.first_name", "student.last_name", "enrollment.school_id", "enrollment.class"]


def key(i: int) -> str:
    return f"stu_{i:032d}"[:36]


async def load(settings: RecordsSettings, students: int, classes: int, per_class: int) -> float:
    started = time.perf_counter()
    keyring = crypto.FileKeyring(settings.keyring_path)
    records = await asyncpg.connect(settings.database_url)
    keys = await asyncpg.connect(settings.keys_database_url or settings.database_url)
    now = datetime.now(UTC)
    try:
        store = CollectingKeyStore()
        cipher = crypto.EnvelopeCipher(keyring, store, cache_size=students + 10)
        rows: dict[str, list[tuple[object, ...]]] = {t: [] for t in ("students", "elements", "enrollments", "index")}
        for i in range(students):
            k = key(i)
            sealed = await cipher.seal_many(DISTRICT, k, {ELEMENTS[0]: f"First{i}", ELEMENTS[1]: f"Family{i}"})
            rows["students"].append((DISTRICT, k, f"h{i}", '{"enrollment.grade_level": "05"}', True, now, now))
            rows["elements"].extend((DISTRICT, k, e, v, "ingest", now) for e, v in sealed.items())
            rows["enrollments"].append((DISTRICT, k, SCHOOLS[i % len(SCHOOLS)], ENTRY, "05", now))
            rows["index"].append((k, DISTRICT))
        # classes: spread over the schools; each class takes per_class students of its school
        class_rows = [
            (DISTRICT, f"cls-{c:05d}", f"Class {c}", SCHOOLS[c % len(SCHOOLS)], ["term-1"], now) for c in range(classes)
        ]
        by_school: dict[str, list[int]] = {}
        for i in range(students):
            by_school.setdefault(SCHOOLS[i % len(SCHOOLS)], []).append(i)
        members: list[tuple[object, ...]] = []
        cursor = dict.fromkeys(SCHOOLS, 0)
        for c in range(classes):
            school = SCHOOLS[c % len(SCHOOLS)]
            pool = by_school[school]
            for _ in range(per_class):
                i = pool[cursor[school] % len(pool)]
                cursor[school] += 1
                members.append((DISTRICT, f"cls-{c:05d}", "student", key(i), school, ENTRY, now))
        members = list({(m[1], m[3]): m for m in members}.values())
        await keys.copy_records_to_table(
            "data_keys", records=store.rows, columns=["district_id", "scope", "subject", "kek_version", "wrapped"]
        )
        async with records.transaction():
            await records.copy_records_to_table(
                "students",
                records=rows["students"],
                columns=["district_id", "student_key", "local_id_hash", "plain_elements", "registered", "created_at",
                         "updated_at"],
            )  # fmt: skip
            await records.copy_records_to_table(
                "student_elements",
                records=rows["elements"],
                columns=["district_id", "student_key", "element", "sealed", "source", "updated_at"],
            )
            await records.copy_records_to_table(
                "enrollments",
                records=rows["enrollments"],
                columns=["district_id", "student_key", "school_id", "entry_date", "grade_level", "updated_at"],
            )
            await records.copy_records_to_table(
                "student_index", records=rows["index"], columns=["student_key", "district_id"]
            )
            await records.executemany(
                "INSERT INTO schools (district_id, school_id, name) VALUES ($1, $2, $2)",
                [(DISTRICT, s) for s in SCHOOLS],
            )
            await records.copy_records_to_table(
                "classes",
                records=class_rows,
                columns=["district_id", "class_id", "title", "school_id", "term_ids", "updated_at"],
            )
            await records.copy_records_to_table(
                "class_enrollments",
                records=members,
                columns=["district_id", "class_id", "role", "user_key", "school_id", "begin_date", "updated_at"],
            )
        await records.execute("ANALYZE")
        return time.perf_counter() - started
    finally:
        await records.close()
        await keys.close()


async def pages(client: httpx.AsyncClient, path: str, name: str, total: int, headers: dict[str, str]) -> list[float]:
    took: list[float] = []
    seen = 0
    for offset in range(0, total, 1000):
        t = time.perf_counter()
        r = await client.get(f"{OR}/{path}", params={"limit": 1000, "offset": offset}, headers=headers)
        took.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        assert int(r.headers["x-total-count"]) == total, r.headers
        seen += len(r.json()[name])
    assert seen == total, (path, seen, total)
    return took


async def raw(url: str, sql: str, total: int) -> list[float]:
    conn = await asyncpg.connect(url)
    try:
        took: list[float] = []
        for offset in range(0, total, 1000):
            t = time.perf_counter()
            rows = await conn.fetch(sql, DISTRICT, offset)
            took.append(time.perf_counter() - t)
            assert rows
        return took
    finally:
        await conn.close()


def figures(took: list[float]) -> dict[str, float]:
    return {
        "requests_per_s": round(len(took) / sum(took), 2),
        "p50_ms": round(p(took, 0.5) * 1000, 1),
        "p99_ms": round(p(took, 0.99) * 1000, 1),
        "pages": len(took),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=500)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="homeroom-bench-rostering-"))
    pg = EmbeddedPostgres().start()
    broker = EmbeddedBroker().start()
    result: dict[str, Any] = {"benchmark": "rostering"}
    try:
        settings = RecordsSettings(
            database_url=database_url(pg.server_url, "homeroom_records"),
            keys_database_url=database_url(pg.server_url, "homeroom_keys"),
            secrets_dir=tmp,
            start_consumers=False,
        )
        auth = AuthSettings(dev_key_file=tmp / "dev-issuer.pem")
        kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
        async with (
            consent_service(pg, tmp, kafka, auth, "agr-bench", districts=[DISTRICT], elements=ELEMENTS) as consent,
            running(SERVICE, settings, kafka=kafka, auth=auth, peers={"consent": consent}) as runtime,
        ):
            await runtime.relay.stop()  # disclosures stay in the outbox: the bus is not what is measured
            load_s = await load(settings, args.students, args.classes, args.per_class)
            enrollments = await runtime.pool.fetchval("SELECT count(*) FROM class_enrollments")
            app = create_app(SERVICE, settings, lifespan=False)
            attach(app, runtime)
            vendor = auth.dev_issuer().issue("vendor", subject="v", agreement="agr-bench", organization="Rosterly")
            headers = {"Authorization": f"Bearer {vendor}"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://records") as client:
                api_enrollments = await pages(client, "enrollments", "enrollments", enrollments, headers)
                api_students = await pages(client, "students", "users", args.students, headers)
            raw_enrollments = await raw(
                settings.database_url,
                """SELECT ce.* FROM class_enrollments ce WHERE ce.district_id = $1 AND NOT ce.deleted
                   ORDER BY ce.class_id, ce.role, ce.user_key LIMIT 1000 OFFSET $2""",
                enrollments,
            )
            raw_students = await raw(
                settings.database_url,
                """SELECT student_key, updated_at FROM students WHERE district_id = $1
                   ORDER BY student_key LIMIT 1000 OFFSET $2""",
                args.students,
            )
            disclosures = await runtime.pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'disclosure.v1'")
    finally:
        broker.stop()
        pg.cleanup()
    result.update(
        {
            "students": args.students,
            "classes": args.classes,
            "class_enrollments": enrollments,
            "load_s": round(load_s, 1),
            "api_enrollments": figures(api_enrollments),
            "raw_enrollments": figures(raw_enrollments),
            "api_students": figures(api_students),
            "raw_students": figures(raw_students),
            "enrollments_api_to_raw_p99": round(p(api_enrollments, 0.99) / p(raw_enrollments, 0.99), 1),
            "students_api_to_raw_p99": round(p(api_students, 0.99) / p(raw_students, 0.99), 1),
            "disclosures_written": disclosures,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 1),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    )
    print(
        f"{args.students:,} students, {args.classes:,} classes, {enrollments:,} class enrollments (load {load_s:.0f} s)"
    )
    print(f"{'page of 1,000':<46}{'req/s':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for label, name in (
        ("API enrollments (decided, disclosed)", "api_enrollments"),
        ("raw PostgreSQL, same enrollment rows", "raw_enrollments"),
        ("API students (opened, decided, disclosed)", "api_students"),
        ("raw PostgreSQL, same student keys", "raw_students"),
    ):
        f = result[name]
        print(f"{label:<46}{f['requests_per_s']:>8}{f['p50_ms']:>10}{f['p99_ms']:>10}")
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
