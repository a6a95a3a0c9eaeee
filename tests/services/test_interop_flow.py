"""The Ed-Fi DS 5.2 sample district through the real services: uploaded to ingest in district
order, published on the real broker, applied by records on real PostgreSQL. Then the
catalogue's promise is checked where it matters: the values of elements that were dropped
(preferred names, title prefixes, attendance reasons) are in no table of any database, on no
topic and in no log line; and chronic-absence flags follow the school calendar.

Runs on the whole sample district when ../shared/interop exists, else on the excerpts in
tests/services/ingest/edfi_corpus/ds5.2 (so CI always runs it).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import defusedxml.ElementTree as ET
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from homeroom import calendar as school_calendar
from homeroom.bus.envelope import decode
from homeroom.bus.topics import ALL_TOPICS, Topic, ensure_topics
from services.ingest.service import SERVICE as INGEST
from tests.harness import ServiceEnv, service_under_test
from tests.services.ingest.test_api import staff
from tests.services.ingest.test_edfi_conformance import CORPUS, SAMPLES, _district
from tests.services.records.helpers import records_service, renamed

DISTRICT = "d-grand-bend"
NS = "{http://ed-fi.org/5.2.0}"


def _dropped_values(folder: Path) -> tuple[set[str], set[str]]:
    """Values of dropped elements, long enough to grep anywhere (preferred names, attendance
    reasons), and title prefixes (greped as whole words in the databases' text)."""
    long: set[str] = set()
    prefixes: set[str] = set()
    kept: set[str] = set()
    for _ev, elem in ET.iterparse(folder / "Student.xml"):
        if elem.tag == f"{NS}Student":
            for tag in ("FirstName", "MiddleName", "LastSurname"):
                kept.update(t.text or "" for t in elem.iter(f"{NS}{tag}"))
            long.update(t.text or "" for t in elem.iter(f"{NS}PreferredFirstName"))
            long.update(t.text or "" for t in elem.iter(f"{NS}PreferredLastSurname"))
            prefixes.update(t.text or "" for t in elem.iter(f"{NS}PersonalTitlePrefix"))
            elem.clear()
    for _ev, elem in ET.iterparse(folder / "StudentSchoolAttendance.xml"):
        if elem.tag == f"{NS}AttendanceEventReason":
            long.add(elem.text or "")
    # a preferred name that is also someone's kept name would be found for the wrong reason
    return {v for v in long if len(v) >= 6 and not any(v in k for k in kept)}, prefixes - {""}


def _distinct_marks(folder: Path) -> int:
    """Attendance rows records keeps: one per student, day and period (the last mark wins)."""
    keys = set()
    for name in ("StudentSchoolAttendance.xml", "StudentSectionAttendance-Tardy.xml"):
        for _ev, elem in ET.iterparse(folder / name):
            if elem.tag in (f"{NS}StudentSchoolAttendanceEvent", f"{NS}StudentSectionAttendanceEvent"):
                section = elem.findtext(f".//{NS}SectionIdentifier") or ""
                keys.add((elem.findtext(f".//{NS}StudentUniqueId"), elem.findtext(f".//{NS}EventDate"), section))
                elem.clear()
    return len(keys)


def _expected_chronic(folder: Path, today: date) -> set[str]:
    """Chronic-absence flags the sample district should raise: absences over the instructional
    days of each school's sessions (every student enrolled from the first day)."""
    terms: dict[str, list[school_calendar.Term]] = {}
    for _ev, elem in ET.iterparse(folder / "EducationOrgCalendar.xml"):
        if elem.tag == f"{NS}Session":
            school = elem.findtext(f".//{NS}SchoolId") or ""
            begin = date.fromisoformat(elem.findtext(f"{NS}BeginDate") or "")
            end = date.fromisoformat(elem.findtext(f"{NS}EndDate") or "")
            terms.setdefault(school, []).append(school_calendar.Term("", begin, end))
    last: dict[tuple[str, date], tuple[str, bool]] = {}  # the last mark of a day is the one kept, any school
    for _ev, elem in ET.iterparse(folder / "StudentSchoolAttendance.xml"):
        if elem.tag == f"{NS}StudentSchoolAttendanceEvent":
            student = elem.findtext(f".//{NS}StudentUniqueId") or ""
            school = elem.findtext(f".//{NS}SchoolId") or ""
            day = date.fromisoformat(elem.findtext(f".//{NS}EventDate") or "")
            last[(student, day)] = (school, "Absence" in (elem.findtext(f".//{NS}AttendanceEventCategory") or ""))
            elem.clear()
    absences: dict[str, dict[str, list[date]]] = {}
    for (student, day), (school, absent) in last.items():
        if absent:
            absences.setdefault(student, {}).setdefault(school, []).append(day)
    flagged: set[str] = set()
    for student, by_school in absences.items():
        attended = school_calendar.SchoolYearAttendance(
            calendars={s: school_calendar.instructional_days(terms[s], {}) for s in by_school if s in terms},
            windows={s: [(date(2021, 8, 23), None)] for s in by_school},
            absences=by_school,
        )
        if school_calendar.standing(2021, attended, today, threshold=0.1, min_days=10).chronic:
            flagged.add(student)
    return flagged


async def _forward(env: ServiceEnv, submissions: set[str], topics: dict[str, Topic], only: set[str]) -> int:
    """Copy the submissions' events, bytes unchanged, from the real topics to this test's own."""
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(**env.kafka.client_kwargs())
    await consumer.start()
    await producer.start()
    n = 0
    try:
        tps = [TopicPartition(t.name, p) for t in ALL_TOPICS if t.name in only for p in range(t.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        quiet = 0
        # until every partition is read to its high-water mark (a loaded machine can pause
        # longer than any fixed quiet time), and then a little longer
        while quiet < 3 or await _behind(consumer, tps):
            batch = await consumer.getmany(timeout_ms=300)
            quiet = 0 if any(batch.values()) else quiet + 1
            for tp, msgs in batch.items():
                for m in msgs:
                    event = decode(tp.topic, tp.partition, m.offset, m.key, m.value, list(m.headers))
                    if event.meta.correlation_id in submissions:
                        await producer.send(topics[tp.topic].name, m.value, key=m.key, headers=list(m.headers))
                        n += 1
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return n


async def _behind(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    for tp in tps:
        if (consumer.highwater(tp) or 0) > await consumer.position(tp):
            return True
    return False


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


async def _grep_database(url: str, long: set[str], words: set[str]) -> dict[str, int]:
    """Every row of every table, as text: how many hold a dropped value."""
    found: dict[str, int] = {}
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            """SELECT table_name FROM information_schema.tables
               WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"""
        )
        pattern = "|".join([re.escape(v) for v in long] + [rf"\m{re.escape(w)}\M" for w in words])
        for t in tables:
            name = t["table_name"]
            # table names come from the catalog, not from input
            n = await conn.fetchval(f'SELECT count(*) FROM "{name}" AS r WHERE r::text ~ $1', pattern)  # noqa: S608
            if n:
                found[name] = n
    finally:
        await conn.close()
    return found


async def _grep_topics(env: ServiceEnv, topics: list[Topic], values: set[str]) -> int:
    """Every message on every topic, key, headers and value bytes: how many hold a dropped value."""
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    await consumer.start()
    hits = 0
    needles = [v.encode() for v in values]
    try:
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        quiet = 0
        while quiet < 3:
            batch = await consumer.getmany(timeout_ms=300)
            quiet = 0 if any(batch.values()) else quiet + 1
            for msgs in batch.values():
                for m in msgs:
                    blob = (m.value or b"") + (m.key or b"") + b"".join(v for _k, v in m.headers)
                    hits += sum(1 for n in needles if n in blob)
    finally:
        await consumer.stop()
    return hits


async def test_ds52_district_flows_through_and_dropped_values_are_nowhere(
    service_env: ServiceEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = service_env
    folder = SAMPLES if SAMPLES.is_dir() else CORPUS / "ds5.2"
    files = _district(folder, tmp_path)
    long, prefixes = _dropped_values(folder)
    assert len(long) >= 2 and prefixes  # there is something to look for
    caplog.set_level(logging.DEBUG)
    suffix = uuid.uuid4().hex[:8]
    spec, topics = renamed(suffix)
    await ensure_topics(env.kafka.client_kwargs(), list(topics.values()))
    options = {"spec": spec, "start_consumers": True}
    async with (
        service_under_test(INGEST, env, upload_dir=tmp_path / "uploads") as ingest,
        records_service(env, **options) as rec,  # type: ignore[arg-type]
    ):
        submissions: set[str] = set()
        for path in files:
            r = await ingest.client.post(
                f"/v1/districts/{DISTRICT}/submissions/edfi-xml",
                params={"file": path.name},
                content=path.read_bytes(),
                headers=staff(env, DISTRICT),
            )
            assert r.status_code == 202, r.text
            sid = r.json()["id"]
            await ingest.runtime.state.ingestor.wait(uuid.UUID(sid), 300)
            report = (await ingest.client.get(f"/v1/submissions/{sid}", headers=staff(env, DISTRICT))).json()
            assert report["status"] == "completed", report
            if path.name != "StudentDiscipline.xml":  # incidents are refused there, as they must be
                assert report["counts"]["rejected"] == 0, (path.name, report["problems_by_rule"])
            submissions.add(sid)
        await ingest.runtime.drain_outbox(120)
        # roster first, so the attendance finds its students; then the rest
        await _forward(env, submissions, topics, {"organization.v1", "enrollment.v1", "calendar.v1"})
        students = sum(1 for _ in ET.iterparse(folder / "Student.xml") if _[1].tag == f"{NS}Student")
        await _until(lambda: _count(rec.admin, "SELECT count(*) FROM students", students, at_least=True), "students")
        await _forward(env, submissions, topics, {"attendance.v1", "discipline.v1"})
        marks, expected_marks = "SELECT count(*) FROM attendance", _distinct_marks(folder)
        await _until(lambda: _count(rec.admin, marks, expected_marks), f"{expected_marks} attendance marks")
        expected = {
            ingest.runtime.pseudonymizer.student_key(student): student
            for student in _expected_chronic(folder, datetime.now(UTC).date())
        }
        # every queued review done, and still done a moment later
        quiet = "SELECT count(*) FROM absence_reviews"
        for _ in range(3):
            await _until(lambda: _count(rec.admin, quiet, 0), "the absence reviews")
            await asyncio.sleep(0.5)
        rows = await rec.admin.fetch(
            "SELECT student_key, days_enrolled, days_absent FROM chronic_absence WHERE chronic"
        )
        flagged = {r["student_key"]: (r["days_enrolled"], r["days_absent"]) for r in rows}
        missing = {expected[k] for k in expected.keys() - flagged.keys()}
        extra = {k: flagged[k] for k in flagged.keys() - expected.keys()}
        seen = await rec.admin.fetch(
            "SELECT * FROM chronic_absence WHERE student_key = ANY($1)",
            [k for k in expected if k not in flagged],
        )
        marks_of = await rec.admin.fetch(
            "SELECT day, category, school_id, period FROM attendance WHERE student_key = ANY($1) ORDER BY day",
            [k for k in expected if k not in flagged],
        )
        assert (missing, extra) == (set(), {}), ([dict(r) for r in seen], [tuple(r) for r in marks_of])
        assert expected or folder != SAMPLES
        # an absences-only export (Ed-Fi's) counted against the calendar: no student is at 100%
        assert await rec.admin.fetchval("SELECT count(*) FROM chronic_absence WHERE absence_rate >= 0.5") == 0
        # as the superuser: row-level security hides nothing from the search
        databases = [
            env.superuser_url(str(ingest.runtime.settings.database_url)),
            env.superuser_url(str(rec.runtime.settings.database_url)),
            env.superuser_url(env.keys_database_url),
        ]
        for url in databases:
            assert await _grep_database(url, long, prefixes) == {}, url
        assert await _grep_topics(env, [*ALL_TOPICS, *topics.values()], long) == 0
    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    assert not [v for v in long if v in logged]


async def _count(pool: asyncpg.Pool, sql: str, want: int, *, at_least: bool = False) -> bool:
    got = await pool.fetchval(sql)  # the records fixture's superuser pool: no row-level confinement
    return bool(got >= want if at_least else got == want)
