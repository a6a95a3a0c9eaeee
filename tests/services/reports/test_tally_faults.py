"""The statewide tally under faults, on the real broker and PostgreSQL: a process killed with
SIGKILL right after a batch's commit (before the loop commits the offsets) and started again
counts every event once; a batch the database refuses is tried again until it commits; an
event the tally cannot use is dead-lettered with its rule while the others count."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from homeroom.bus.topics import ENROLLMENT, REJECTED, with_suffix
from homeroom.storage import login_role
from services.reports import metrics
from services.reports.consumers import APP_ID
from services.reports.state import ReportsState, ReportTopics
from tests.harness import ServiceEnv
from tests.kernel.test_bus import read_dead_letters
from tests.services.reports.helpers import Bus, enrolled, reports_service, until
from tests.services.reports.test_tally import BIG, D, cell, counted_as, own, student, world

ROOT = Path(__file__).resolve().parents[3]


def duplicates_counted() -> float:
    return float(sum(metrics.TALLY_EVENTS.labels(t, "duplicate")._value.get() for t in metrics.SOURCE_TOPICS))


async def test_the_tally_killed_after_a_commit_counts_every_event_once(service_env: ServiceEnv, tmp_path: Path) -> None:
    """Three processes on one database and consumer group. The first counts half the students
    and stops (its offsets are committed: those events never come again, so the next holder
    must reload them from the database). The second, in its own process, kills itself with
    SIGKILL right after the first batch of the rest commits, before the loop commits that batch's
    offsets. The third gets that batch again and the rest: every count is exact."""
    suffix = uuid.uuid4().hex[:8]
    events, expected = world()
    half = next(i for i, e in enumerate(events) if e.key == student(14).encode())
    first, second = events[:half] + events[-2:], events[half:-2]  # the last two: students 1 and 2
    options: dict[str, Any] = {"tally_batch": 5, "tally_batch_window_s": 0.1, "calendar_poll_s": 0.3}
    async with Bus(service_env, suffix) as bus:
        async with reports_service(service_env, suffix, **options) as svc:
            settings = svc.runtime.settings
            await bus.send(*first)
            await until(lambda: _written(svc.pool, 14), what="the first half of the students")
        assert await _committed(service_env, suffix) > 0  # the first half's offsets are committed

        values = {**settings.model_dump(mode="json"), "kafka_bootstrap_servers": service_env.bootstrap}
        (tmp_path / "settings.json").write_text(json.dumps(values))
        failpoint = "consumer.after_state_commit:reports-tally"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOMEROOM_FAILPOINTS": failpoint}
        child = subprocess.Popen(  # noqa: ASYNC220 - the child kills itself at the failpoint
            [sys.executable, "-m", "tests.services.reports.tally_process", str(tmp_path / "settings.json"), suffix],
            cwd=ROOT,
            env=env,
        )
        try:
            await bus.send(*second)
            assert await asyncio.to_thread(child.wait, 90) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        conn = await service_env.superuser(settings.database_url)
        try:
            written = await conn.fetchval("SELECT count(*) FROM student_tallies")
        finally:
            await conn.close()
        assert 14 < written < 28, "the kill must land after the first batch of the rest, before the last"

        duplicates_before = duplicates_counted()
        async with reports_service(service_env, suffix, database_url=settings.database_url, **options) as svc:
            await until(lambda: counted_as(svc, service_env, expected), what="every student after the kill")
            numbers = await own(svc, service_env)
            assert numbers is not None
            row = next(r for r in numbers["rows"] if r["unit"] == f"{D}/{BIG}" and r["column"] == "all")
            assert row["days_enrolled"] == 23 * 20 and row["days_absent"] == 8 * 3
            assert cell(numbers, D, "grade:KG", "enrolled") == 10
            assert await _written(svc.pool, 28)
        assert duplicates_counted() > duplicates_before, "the batch the dead process committed must come again"


async def _written(pool: asyncpg.Pool, students: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM student_tallies") == students)


async def _committed(env: ServiceEnv, suffix: str) -> int:
    """Offsets the tally's consumer group has committed to Kafka, summed over its source partitions."""
    probe = AIOKafkaConsumer(**env.kafka.client_kwargs(), group_id=f"{APP_ID}-{suffix}")
    await probe.start()
    try:
        total = 0
        for topic in ReportTopics(suffix).sources:
            for p in range(topic.partitions):
                total += await probe.committed(TopicPartition(topic.name, p)) or 0
        return total
    finally:
        await probe.stop()


async def test_a_refused_batch_is_retried_and_unusable_events_are_dead_lettered(service_env: ServiceEnv) -> None:
    suffix = uuid.uuid4().hex[:8]
    events, expected = world()
    places, rest = events[:4], events[4:]  # the schools and calendars first
    retries_before = metrics.TALLY_RETRIES._value.get()
    bad_date = enrolled(D, student(99), BIG, "2026-13-45")
    async with Bus(service_env, suffix) as bus, reports_service(service_env, suffix, tally_retry_s=0.2) as svc:
        state: ReportsState = svc.runtime.state
        await bus.send(*places)
        await until(lambda: _held(state), what="the tally's partitions")
        # The database refuses the next batch: its tables are locked and its connection is
        # terminated while it waits, as a failover would.
        locker = await service_env.superuser(str(svc.runtime.settings.database_url))
        try:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE school_tallies, student_tallies IN ACCESS EXCLUSIVE MODE")
            producer = AIOKafkaProducer(**service_env.kafka.client_kwargs())
            await producer.start()
            try:
                await producer.send_and_wait(
                    with_suffix(ENROLLMENT, suffix).name,
                    b"\xff\xfenot protobuf",
                    key=student(98).encode(),
                    headers=[("ce_id", b"poison-1")],
                )
            finally:
                await producer.stop()
            await bus.send(*rest, bad_date)
            waiting = await until(
                lambda: locker.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'",
                    login_role("reports"),
                ),
                what="the tally's batch waiting on the lock",
            )
            assert await locker.fetchval("SELECT pg_terminate_backend($1)", waiting)
            await asyncio.sleep(0.5)  # the batch fails and waits to be tried again
            await transaction.rollback()
        finally:
            await locker.close()
        await until(lambda: counted_as(svc, service_env, expected), what="every student after the retry")
        assert metrics.TALLY_RETRIES._value.get() > retries_before
        dead = await read_dead_letters(service_env.bootstrap, with_suffix(REJECTED, suffix).name, 2)
    rules = {d.record_rejected.rule: d.record_rejected for d in dead}
    assert sorted(rules) == ["date.invalid", "payload.malformed"], rules
    assert rules["payload.malformed"].original_event_id == "poison-1"
    assert rules["payload.malformed"].original_topic == with_suffix(ENROLLMENT, suffix).name
    assert rules["date.invalid"].original_event_id == bad_date.event_id
    assert rules["date.invalid"].stage == "reports.tally" and "entry_date" in rules["date.invalid"].message


async def _held(state: ReportsState) -> bool:
    return bool(state.tally is not None and state.tally.parts)
