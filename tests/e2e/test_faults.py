"""The system held under faults, on the real stack (the service processes, embedded
PostgreSQL and Tansu). Every test ends by counting exactly: events in = rows applied =
disclosures audited, so a lost or doubly applied event fails it.

The tests share one stack (a stack start is most of a minute on two cores; six of them were
the critical path of `./run test`). Each test has districts of its own (`scenario_for`) and
counts only their rows, and starts on a stack repaired from whatever the test before did to it
(`Stack.repair`). They run in file order: the duplicates test first, while the topics hold
only its own events, the PostgreSQL restart last. The broker restart has a stack of its own
(`own_stack`) and runs before them all.

These are the slow tests (about a minute each on two cores); `-m "not slow"` skips them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from homeroom.auth import Role
from homeroom.storage import database_url
from homeroom_dev.generate import batch_records, daily_marks, generate_world, json_batch
from homeroom_dev.scenario import Scenario, StepFailed
from homeroom_dev.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.whole_stack]


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[Stack]:
    with Stack(fixed_ports=False) as s:
        yield s


@pytest.fixture
def stack(shared_stack: Stack) -> Stack:
    """The module's stack, whole: a test that failed halfway may have left a service killed, a
    second instance running or a server stopped."""
    shared_stack.repair()
    return shared_stack


@pytest.fixture
def own_stack() -> Iterator[Stack]:
    """A stack of its own for the broker restart. The broker comes back with empty topics whose
    offsets start again at 0, while records keeps with its state the offsets it had applied up
    to: on the shared stack, after the other tests, those were 1,300 to 2,100 per attendance
    partition, and records applied none of the 900 marks sent after the restart in 180 s. The
    test runs first, so this stack is gone before the shared one starts."""
    with Stack(fixed_ports=False) as s:
        yield s


def scenario_for(stack: Stack, first_district: int, students: int = 60, days: int = 15) -> Scenario:
    """The same generated districts for every test, numbered apart (d-200 and d-201, d-300 and
    d-301, ...) so tests sharing the stack share no district and no student."""
    # Dated well in the past, so no record is refused as a future date whatever day the tests run.
    world = generate_world(
        seed=21, students_per_district=students, days=days, start=date(2026, 9, 14), first_district=first_district
    )
    return Scenario({n: stack.url(n) for n in stack.services}, stack.secrets_dir, say=lambda *a, **k: None, world=world)


def scoped(scn: Scenario, sql: str, column: str = "district_id") -> str:
    """`sql` counting only the rows of this test's districts, not what other tests on the stack applied."""
    ids = ", ".join(repr(d.id) for d in scn.world.districts)  # generated ids, never input
    return f"{sql} {'AND' if ' WHERE ' in sql else 'WHERE'} {column} IN ({ids})"


def count(stack: Stack, service: str, sql: str) -> int:
    assert stack.postgres is not None

    async def run() -> int:
        conn = await asyncpg.connect(database_url(stack.postgres.server_url, f"homeroom_{service}"))  # type: ignore[union-attr]
        try:
            value: int = await conn.fetchval(sql)
            return value
        finally:
            await conn.close()

    return asyncio.run(run())


def expected_attendance_rows(scn: Scenario) -> int:
    return sum(len(daily_marks(s)) for s in scn.district_a.students)


def wait_count(stack: Stack, service: str, sql: str, expected: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    value = -1
    while time.monotonic() < deadline:
        value = count(stack, service, sql)
        if value >= expected:
            break
        time.sleep(0.25)
    return value


def settled_count(stack: Stack, service: str, sql: str, quiet_s: float = 3.0, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    value, since = count(stack, service, sql), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = count(stack, service, sql)
        if now != value:
            value, since = now, time.monotonic()
    return value


def submit_attendance(scn: Scenario, http: httpx.Client, wait: bool = True) -> dict[str, Any]:
    # the schools' calendar travels with the attendance: days enrolled are the generated school days
    body = json_batch(batch_records(scn.district_a, scn.world.start, enrollments=False, world=scn.world))
    if wait:
        return scn.submit(http, scn.district_a.id, "batch", body, "attendance.json")
    response = http.post(
        f"{scn.urls['ingest']}/v1/districts/{scn.district_a.id}/submissions/batch",
        content=body,
        headers=scn.staff(scn.district_a.id),
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def roster_applied(scn: Scenario, http: httpx.Client, stack: Stack) -> None:
    scn.publish_oneroster(http)
    n = len(scn.district_a.students)
    assert wait_count(stack, "records", scoped(scn, "SELECT count(*) FROM students"), n) == n


def attendance_rows(scn: Scenario) -> str:
    return scoped(scn, "SELECT count(*) FROM attendance")


def disclosures(scn: Scenario) -> str:
    return scoped(scn, "SELECT count(*) FROM entries WHERE kind = 'disclosure_recorded'")


def chronic_flags(scn: Scenario) -> str:
    return scoped(scn, "SELECT count(*) FROM chronic_absence WHERE chronic")


def test_a_broker_restart_while_a_district_publishes_loses_nothing(own_stack: Stack) -> None:
    stack = own_stack
    scn = scenario_for(stack, 700)
    assert stack.broker is not None
    with httpx.Client(timeout=60) as http:
        roster_applied(scn, http, stack)
        stack.broker.stop()
        report = submit_attendance(scn, http)  # ingest keeps working: the events wait in its outbox
        assert report["counts"]["rejected"] == 0
        assert count(stack, "ingest", "SELECT count(*) FROM outbox") >= report["counts"]["events"]
        stack.broker.start()  # same port; memory storage starts empty and topics are created again
        expected = expected_attendance_rows(scn)
        applied = wait_count(stack, "records", attendance_rows(scn), expected, timeout_s=180)
        assert applied == expected, _where_the_marks_are(stack, applied, expected)
        assert wait_count(stack, "ingest", "SELECT 0 - count(*) FROM outbox", 0) == 0  # drained
        time.sleep(2)
        assert count(stack, "records", attendance_rows(scn)) == expected


def _where_the_marks_are(stack: Stack, applied: int, expected: int) -> str:
    """What a reader needs when the marks do not arrive (seen under load only, 0 of 900 in
    180 s): whether ingest relayed them, where records' stored offsets stand, and both logs' last
    warnings."""
    waiting = count(stack, "ingest", "SELECT count(*) FROM outbox")
    offsets = count(
        stack, "records", "SELECT coalesce(sum(next_offset), -1) FROM consumer_offsets WHERE topic LIKE 'attendance%'"
    )
    tails = []
    for service in ("ingest", "records"):
        lines = [
            x for x in stack.log(service).read_text(errors="replace").splitlines() if '"WARNING"' in x or "ERROR" in x
        ]
        tails.append(f"{service} log, last warnings:\n" + "\n".join(lines[-8:]))
    return (
        f"records applied {applied} of {expected} marks; ingest's outbox still holds {waiting} events; "
        f"records' stored attendance offsets sum to {offsets}\n" + "\n".join(tails)
    )


async def _redeliver_reversed(bootstrap: str, topics: list[str]) -> int:
    """Read every message on the topics and publish each again, in reverse order."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id="redeliver", auto_offset_reset="earliest"
    )
    await consumer.start()
    messages = []
    try:
        idle = 0
        while idle < 4:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                messages.extend(records)
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for m in reversed(messages):
            await producer.send_and_wait(m.topic, m.value, key=m.key, headers=list(m.headers))
    finally:
        await producer.stop()
    return len(messages)


def test_every_event_delivered_twice_and_out_of_order_changes_nothing(stack: Stack) -> None:
    scn = scenario_for(stack, 200)
    assert stack.broker is not None
    with httpx.Client(timeout=60) as http:
        roster_applied(scn, http, stack)
        submit_attendance(scn, http)
        expected = expected_attendance_rows(scn)
        assert wait_count(stack, "records", attendance_rows(scn), expected) == expected
        fingerprint = scoped(
            scn,
            "SELECT md5(string_agg(student_key || day::text || period || category || excused::text, ','"
            " ORDER BY 1)) FROM attendance",
        )
        before = count(stack, "records", fingerprint)
        applied = "SELECT count(*) FROM processed_events WHERE outcome = 'applied'"
        # Suspensions and other topics may still be arriving after the attendance: wait until
        # records has applied everything sent so far (the count holds still for 3 s).
        applied_before = settled_count(stack, "records", applied)
        # Wait until records has read every repeat: its duplicate counter grows by what was sent.
        metrics_url = f"{stack.url('records')}/metrics"

        def duplicates() -> float:
            text = httpx.get(metrics_url).text
            return sum(float(v) for v in re.findall(r"homeroom_events_duplicate_total\{[^}]*\} ([0-9.e+]+)", text))

        duplicates_before = duplicates()
        sent = asyncio.run(_redeliver_reversed(stack.broker.bootstrap_servers, ["enrollment.v1", "attendance.v1"]))
        assert sent >= expected
        deadline = time.monotonic() + 120
        while duplicates() - duplicates_before < sent and time.monotonic() < deadline:
            time.sleep(0.5)
        assert duplicates() - duplicates_before >= sent
        assert count(stack, "records", attendance_rows(scn)) == expected
        assert count(stack, "records", fingerprint) == before
        assert count(stack, "records", applied) == applied_before


def test_consumer_services_killed_mid_stream_lose_and_repeat_nothing(stack: Stack) -> None:
    scn = scenario_for(stack, 300)
    with httpx.Client(timeout=60) as http:
        roster_applied(scn, http, stack)
        # records: killed while it applies a week of attendance.
        submit_attendance(scn, http, wait=False)
        stack.kill("records")
        time.sleep(1)
        stack.restart("records")
        expected = expected_attendance_rows(scn)
        assert wait_count(stack, "records", attendance_rows(scn), expected) == expected
        time.sleep(2)  # nothing further may arrive: exactly the expected rows
        assert count(stack, "records", attendance_rows(scn)) == expected
        # The absence reviewer flags exactly the students absent on 10% or more of the school
        # calendar's 15 days, counted from committed state whatever the kill -9 interrupted.
        chronic = sum(1 for s in scn.district_a.students if len(s.absences) >= 0.10 * len(daily_marks(s)))
        assert chronic > 0
        flagged = chronic_flags(scn)
        assert wait_count(stack, "records", flagged, chronic, timeout_s=120) == chronic
        time.sleep(2)
        assert count(stack, "records", flagged) == chronic

        # audit: killed while a vendor's reads are being logged.
        scn.sign_agreement(http)
        url = f"{stack.url('records')}/ims/oneroster/rostering/v1p2/students"
        users = http.get(url, params={"limit": 1000}, headers=scn.vendor_headers()).json()["users"]
        stack.kill("audit")
        stack.restart("audit")
        read = len(users)
        assert read == len(scn.district_a.students)
        assert wait_count(stack, "audit", disclosures(scn), read) == read
        time.sleep(2)
        assert count(stack, "audit", disclosures(scn)) == read
        assert count(stack, "audit", "SELECT count(DISTINCT event_id) FROM entries") == count(
            stack, "audit", "SELECT count(*) FROM entries"
        )

        # transfer: killed right after the enrollment that opens a case.
        from homeroom_dev.generate import transfer_batch

        withdraw, enroll = transfer_batch(scn.world, scn.move)
        scn.register_schools(http, scn.district_b)
        scn.submit(http, scn.move.from_district, "batch", withdraw, "w.json")
        scn.submit(http, scn.move.to_district, "batch", enroll, "e.json")
        stack.kill("transfer")
        stack.restart("transfer")
        cases = scoped(scn, "SELECT count(*) FROM transfer_cases", "from_district_id")
        delivered = f"{cases} AND state IN ('delivered', 'acknowledged')"
        assert wait_count(stack, "transfer", delivered, 1) == 1
        time.sleep(2)
        assert count(stack, "transfer", cases) == 1
        transfer_disclosures = f"{disclosures(scn)} AND channel = 'transfer'"
        assert wait_count(stack, "audit", transfer_disclosures, 1) == 1


def _assigned(stack: Stack, key: str, consumer: str) -> int:
    text = httpx.get(f"{stack.url(key)}/metrics").text
    match = re.search(
        rf'homeroom_consumer_assigned_partitions\{{consumer="{consumer}",service="[a-z]+"\}} ([0-9.]+)', text
    )
    return int(float(match.group(1))) if match else 0


def _shared(stack: Stack, service: str, second: str, consumer: str, total: int) -> tuple[int, int]:
    """The partitions of `consumer` each of two instances holds, once both hold some and none is left."""
    deadline = time.monotonic() + 90
    shares = (0, 0)
    while time.monotonic() < deadline:
        shares = (_assigned(stack, service, consumer), _assigned(stack, second, consumer))
        if all(shares) and sum(shares) == total:
            break
        time.sleep(0.5)
    return shares


def _held_by_one(stack: Stack, service: str, consumer: str, total: int) -> int:
    deadline = time.monotonic() + 90
    while _assigned(stack, service, consumer) != total and time.monotonic() < deadline:
        time.sleep(0.5)
    return _assigned(stack, service, consumer)


def test_two_instances_share_the_partitions_and_one_takes_over(stack: Stack) -> None:
    scn = scenario_for(stack, 400)
    consumers = {"records": "attendance", "audit": "log"}
    totals = {}
    for service, consumer in consumers.items():
        deadline = time.monotonic() + 60
        while not (held := _assigned(stack, service, consumer)) and time.monotonic() < deadline:
            time.sleep(0.5)
        totals[service] = held  # all of them, while it is the only instance
        assert totals[service] > 1, (service, totals[service])
    seconds = {service: stack.add_instance(service) for service in consumers}
    for service, consumer in consumers.items():
        shares = _shared(stack, service, seconds[service], consumer, totals[service])
        assert all(shares) and sum(shares) == totals[service], f"{service} {consumer} partitions: {shares}"

    with httpx.Client(timeout=60) as http:
        roster_applied(scn, http, stack)
        scn.sign_agreement(http)
        # Both second instances are killed while attendance is applied and reads are logged.
        submit_attendance(scn, http, wait=False)
        url = f"{stack.url('records')}/ims/oneroster/rostering/v1p2/students"
        users = http.get(url, params={"limit": 1000}, headers=scn.vendor_headers()).json()["users"]
        for second in seconds.values():
            stack.kill(second)
        for service, consumer in consumers.items():
            assert _held_by_one(stack, service, consumer, totals[service]) == totals[service], service

        expected = expected_attendance_rows(scn)
        assert wait_count(stack, "records", attendance_rows(scn), expected, timeout_s=180) == expected
        read = len(users)
        assert read == len(scn.district_a.students)
        assert wait_count(stack, "audit", disclosures(scn), read, timeout_s=180) == read
        time.sleep(2)  # nothing more may arrive: exactly once each
        assert count(stack, "records", attendance_rows(scn)) == expected
        assert count(stack, "audit", disclosures(scn)) == read
        assert count(stack, "audit", "SELECT count(DISTINCT event_id) FROM entries") == count(
            stack, "audit", "SELECT count(*) FROM entries"
        )
    assert scn.auth(Role.OPERATOR)  # tokens still mint after the churn


def test_records_killed_between_its_state_commit_and_its_offset_commit_replays_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of records right after the attendance consumer commits its first batch to
    PostgreSQL and before it commits the Kafka offsets (the failpoint HOMEROOM_FAILPOINTS
    makes the process SIGKILL itself there). The restarted process seeks to the offsets
    stored with the state: every mark applied once, not one re-read, the chronic flags exact."""
    scn = scenario_for(stack, 500)
    with httpx.Client(timeout=60) as http:
        roster_applied(scn, http, stack)
        monkeypatch.setenv("HOMEROOM_FAILPOINTS", "consumer.after_state_commit:attendance")
        stack.restart("records")
        monkeypatch.delenv("HOMEROOM_FAILPOINTS")
        submit_attendance(scn, http, wait=False)
        records = stack._children["records"]
        deadline = time.monotonic() + 120
        while records.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert records.returncode == -9  # died at the failpoint, between the two commits
        applied_before = count(stack, "records", attendance_rows(scn))
        assert applied_before > 0
        stack.restart("records")
        expected = expected_attendance_rows(scn)
        assert wait_count(stack, "records", attendance_rows(scn), expected) == expected
        time.sleep(2)
        assert count(stack, "records", attendance_rows(scn)) == expected
        chronic = sum(1 for s in scn.district_a.students if len(s.absences) >= 0.10 * len(daily_marks(s)))
        # The absence reviewer flags from committed state on its own schedule (issue 16): wait for it.
        flagged = chronic_flags(scn)
        assert wait_count(stack, "records", flagged, chronic, timeout_s=120) == chronic
        text = httpx.get(f"{stack.url('records')}/metrics").text
        repeats = re.findall(r'homeroom_events_duplicate_total\{consumer="attendance"[^}]*\} ([0-9.e+]+)', text)
        assert sum(float(v) for v in repeats) == 0  # nothing the dead process applied was read again


def test_a_postgres_restart_under_the_services_loses_nothing(stack: Stack) -> None:
    # A larger week than the other tests, so the restart lands while ingest is still taking
    # the upload, the relays are publishing and records is applying.
    scn = scenario_for(stack, 600, students=150, days=40)
    assert stack.postgres is not None
    with httpx.Client(timeout=60) as http:
        roster_applied(scn, http, stack)
        submitted = submit_attendance(scn, http, wait=False)
        processing = scoped(scn, "SELECT count(*) FROM submissions WHERE status IN ('received', 'processing')")
        assert wait_count(stack, "ingest", processing, 1, timeout_s=30) == 1
        stack.postgres.stop()
        time.sleep(3)
        stack.postgres.start()
        stack.wait_ready(120)
        # The submission runs again from its kept upload; records taken before are "unchanged".
        report_url = f"{scn.urls['ingest']}{submitted['links']['self']}"

        def finished() -> dict[str, Any] | None:
            r: dict[str, Any] = http.get(report_url, headers=scn.staff(scn.district_a.id)).json()
            return r if r["status"] in ("completed", "failed", "held") else None

        try:
            report = scn.wait("the submission after the restart", finished, timeout_s=180)
        except StepFailed as exc:  # the ingest log says where the retry stopped
            raise AssertionError(f"{exc}\n--- ingest log ---\n{stack.log('ingest').read_text()[-12000:]}") from exc
        assert report["status"] == "completed", report
        expected = expected_attendance_rows(scn)
        counts = report["counts"]
        assert counts["rejected"] == 0
        assert counts["accepted"] + counts["unchanged"] == counts["records_read"]
        assert wait_count(stack, "records", attendance_rows(scn), expected, timeout_s=180) == expected
        time.sleep(2)
        assert count(stack, "records", attendance_rows(scn)) == expected
        dead = "SELECT count(*) FROM processed_events WHERE outcome = 'dead_lettered'"
        assert count(stack, "records", dead) == 0
