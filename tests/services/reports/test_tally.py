"""The statewide tally on the real broker (its consumer group loop on Tansu) and PostgreSQL: it counts
what the events say, once per student per batch, whatever arrives twice; it comes back from
the database after a restart; a district reads its own numbers and a preview; compliance
publishes a snapshot, recorded as a de-identified release; bad events are counted, never
stop it."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import date
from typing import Any

from homeroom.bus.envelope import OutgoingEvent
from homeroom.calendar import weekdays
from services.audit.consumers import consumer_spec as audit_consumer
from services.audit.service import SERVICE as AUDIT
from services.reports import metrics
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.services.reports.helpers import (
    Bus,
    calendar,
    enrolled,
    groups,
    mark,
    reports_service,
    school,
    suspension,
    until,
    withdrawn,
)

DAYS = [d.isoformat() for d in weekdays(date(2026, 9, 14), date(2026, 10, 30))][:20]  # each school's 20 days
D = "d-700"
BIG, SMALL = "s-big", "s-small"


def fresh_copy(event: OutgoingEvent) -> OutgoingEvent:
    """The same event re-published under a new id (an outbox relay that published twice)."""
    eid = str(uuid.uuid4())
    headers = [(k, eid.encode() if k == "ce_id" else v) for k, v in event.headers]
    return OutgoingEvent(eid, event.topic, event.key, headers, event.value)


def student(i: int) -> str:
    return f"stu_{i:032d}"


def world() -> tuple[list[OutgoingEvent], dict[str, Any]]:
    """24 students at the big school, 4 at the small one; every third absent on 3 of 20 days
    (15%: chronic), one suspended, one withdrawn after 5 days (counted: 5 days < 10)."""
    events: list[OutgoingEvent] = [school(D, BIG, "Big School"), school(D, SMALL, "Small School")]
    events += [calendar(D, s, 2026, DAYS) for s in (BIG, SMALL)]
    expected: dict[str, Any] = {"big": 24, "small": 4, "female_big": 0, "chronic_big": 0, "counted_big": 24}
    for i in range(28):
        key = student(i)
        where = BIG if i < 24 else SMALL
        sex = "female" if i % 2 else "male"
        events.append(enrolled(D, key, where, DAYS[0], grade="05" if i % 3 else "KG"))
        events.append(groups(D, key, sex=sex, iep="yes" if i % 5 == 0 else "no"))
        if where == BIG:
            expected["female_big"] += sex == "female"
        if i % 3 == 0:
            for day in DAYS[2:5]:
                events.append(mark(D, key, where, day))
            if where == BIG:
                expected["chronic_big"] += 1
        events.append(mark(D, key, where, DAYS[6], absent=False))
    events.append(suspension(D, student(1), DAYS[3], DAYS[4]))
    events.append(withdrawn(D, student(2), BIG, DAYS[4]))  # 5 days enrolled: not counted for attendance
    expected["counted_big"] -= 1
    return events, expected


async def own(svc: ServiceUnderTest, env: ServiceEnv, district: str = D) -> dict[str, Any] | None:
    r = await svc.client.get(f"/v1/districts/{district}/numbers", headers=env.auth("district_staff", district=district))
    return r.json() if r.status_code == 200 else None


def cell(numbers: dict[str, Any], unit: str, column: str, measure: str) -> int:
    for row in numbers["rows"]:
        if row["unit"] == unit and row["column"] == column:
            return int(row["counts"][measure])
    return 0


class Seen(dict[str, Any]):
    """What the district's numbers showed: true when they are what the test expects."""

    ok = False

    def __bool__(self) -> bool:
        return self.ok


async def counted_as(svc: ServiceUnderTest, env: ServiceEnv, expected: dict[str, Any]) -> Seen:
    r = await svc.client.get(f"/v1/districts/{D}/numbers", headers=env.auth("district_staff", district=D))
    if r.status_code != 200:
        return Seen(status=r.status_code, body=r.text[:300])
    n = r.json()
    big, small = f"{D}/{BIG}", f"{D}/{SMALL}"
    seen = Seen(
        big=cell(n, big, "all", "enrolled"),
        small=cell(n, small, "all", "enrolled"),
        female_big=cell(n, big, "sex:female", "enrolled"),
        chronic_big=cell(n, big, "all", "chronic"),
        counted_big=cell(n, big, "all", "counted"),
        suspended=cell(n, D, "all", "suspended"),
    )
    seen.ok = all(seen[k] == expected[k] for k in ("big", "small", "female_big", "chronic_big", "counted_big"))
    seen.ok = seen.ok and seen["suspended"] == 1
    return seen


async def caught_up_preview(svc: ServiceUnderTest, env: ServiceEnv) -> dict[str, Any] | None:
    r = await svc.client.get(f"/v1/districts/{D}/preview", headers=env.auth("district_staff", district=D))
    body: dict[str, Any] = r.json()
    return body if r.status_code == 200 and body["freshness"]["seconds_behind"] == 0 else None


async def public_part(svc: ServiceUnderTest, snapshot_id: str, **params: Any) -> dict[str, Any]:
    r = await svc.client.get(f"/v1/public/snapshots/{snapshot_id}", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_the_tally_counts_once_survives_a_restart_and_publishes_a_release(service_env: ServiceEnv) -> None:
    suffix = uuid.uuid4().hex[:8]
    events, expected = world()
    writes_before = metrics.TALLY_WRITES._value.get()
    refused_before = metrics.TALLY_REFUSED.labels("date.invalid")._value.get()
    bad_date = enrolled(D, student(99), BIG, "2026-13-45")
    async with Bus(service_env, suffix) as bus, reports_service(service_env, suffix) as svc:
        database = str(svc.runtime.settings.database_url)
        # Everything once, then everything again (redelivered), then re-published under new ids.
        await bus.send(*events, bad_date)
        await bus.send(*events, *[fresh_copy(e) for e in events if e.topic != "calendar.v1"])
        await until(lambda: counted_as(svc, service_env, expected), what="the district's numbers")
        numbers = await own(svc, service_env)
        assert numbers is not None
        assert cell(numbers, D, "grade:KG", "enrolled") == 10  # i % 3 == 0 for i < 28
        assert cell(numbers, f"{D}/{BIG}", "all", "counted") == 23
        row = next(r for r in numbers["rows"] if r["unit"] == f"{D}/{BIG}" and r["column"] == "all")
        assert row["days_enrolled"] == 23 * 20 and row["days_absent"] == 8 * 3
        # One value write per student per batch, not per event: 28 students, 3 x 150 events.
        writes = metrics.TALLY_WRITES._value.get() - writes_before
        applied = len(events) - 6  # the school and calendar events are not the tally's
        assert 28 <= writes < applied, (writes, applied)
        assert metrics.TALLY_REFUSED.labels("date.invalid")._value.get() == refused_before + 1

        # A district never reads another's numbers or preview.
        r = await svc.client.get(
            f"/v1/districts/{D}/numbers", headers=service_env.auth("district_staff", district="d-other")
        )
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        r = await svc.client.get(f"/v1/districts/{D}/preview", headers=service_env.auth("compliance"))
        assert r.status_code == 403

        # The preview: the small school's four students are "fewer than 10", never a number.
        preview = (
            await svc.client.get(f"/v1/districts/{D}/preview", headers=service_env.auth("district_staff", district=D))
        ).json()
        small = next(r for r in preview["rows"] if r["unit"] == f"{D}/{SMALL}" and r["column"] == "all")
        assert small["counts"]["enrolled"] == {"value": None, "status": "fewer_than", "shown": "fewer than 10"}
        assert preview["release"] is None and "4" not in json.dumps(small["counts"])

    # A new process on the same database and topics: it reloads the students' values from the
    # database and rebuilds the school rows from them, then more events count on top.
    audit_spec = replace(AUDIT, consumers=(audit_consumer(suffix),))
    async with (
        Bus(service_env, suffix) as bus,
        reports_service(service_env, suffix, database_url=database) as svc,
        service_under_test(audit_spec, service_env) as audit,
    ):
        await until(lambda: counted_as(svc, service_env, expected), what="the numbers after a restart")
        late = student(50)
        await bus.send(enrolled(D, late, SMALL, DAYS[10]), groups(D, late, sex="female"))
        expected["small"] += 1
        await until(lambda: counted_as(svc, service_env, expected), what="a late enrollment")

        # Compliance publishes; the snapshot is public; the release goes to the audit log.
        staff = service_env.auth("district_staff", district=D)
        r = await svc.client.post("/v1/snapshots", json={"school_year": 2026}, headers=staff)
        assert r.status_code == 403
        r = await svc.client.post(
            "/v1/snapshots", json={"school_year": 2026}, headers=service_env.auth("compliance", "officer-1")
        )
        assert r.status_code == 201, r.text
        summary = r.json()
        assert summary["version"] == 1 and summary["period_end"] == "2026-11-20"
        assert summary["cells"]["fewer_than"] > 0 and summary["requested_by"]["subject"] == "officer-1"
        snapshot = (await svc.client.get(f"/v1/public/snapshots/{summary['snapshot_id']}")).json()
        assert snapshot["release"]["content_sha256"] == summary["content_sha256"]
        csv_text = (await svc.client.get(f"/v1/public/snapshots/{summary['snapshot_id']}/csv?district={D}")).text
        assert "Small School" in csv_text and "fewer than 10" in csv_text
        # The real audit service logs the release (through reports' outbox and the bus).
        entry = await until(
            lambda: audit.pool.fetchrow("SELECT * FROM entries WHERE kind = 'deidentified_release_recorded'"),
            what="the release in the audit log",
        )
        details = json.loads(entry["details"]) if isinstance(entry["details"], str) else entry["details"]
        assert details["release_id"] == summary["snapshot_id"] and entry["requester_person"] == "officer-1"
        assert entry["legal_basis"] == "FERPA 99.31(b)(1) de-identified data" and entry["recipient_role"] == "public"
        assert details["cells_suppressed"] == summary["cells"]["fewer_than"] + summary["cells"]["withheld"]
        assert details["content_sha256"] == summary["content_sha256"] and entry["student_key"] == ""
        # How far behind the events the numbers were is stated with them.
        assert snapshot["freshness"]["partitions"] == 4 * 6 and snapshot["freshness"]["newest_event"]
        preview = await until(lambda: caught_up_preview(svc, service_env), what="a preview with no event behind")
        assert preview["freshness"]["events_behind"] == 0 and preview["freshness"]["newest_event"]

        # A reader gets what it asks for, not the whole state: filters, pages of rows, gzip.
        sid = summary["snapshot_id"]
        part = await public_part(svc, sid, level="state,district", column="all")
        assert {(r["unit"], r["column"]) for r in part["rows"]} == {("state", "all"), (D, "all")}
        assert {u["level"] for u in part["units"]} == {"state", "district"}
        assert part["page"] == {
            "filters": {"level": "district,state", "column": "all"},
            "offset": 0,
            "limit": None,
            "rows_matching": 2,
            "next_offset": None,
        }
        district_rows = (await public_part(svc, sid, district=D))["rows"]
        first = await public_part(svc, sid, district=D, limit=5)
        assert first["page"]["next_offset"] == 5 and first["page"]["rows_matching"] == len(district_rows)
        rest = await public_part(svc, sid, district=D, offset=5, limit=10_000)
        assert first["rows"] + rest["rows"] == district_rows and rest["page"]["next_offset"] is None
        small = await public_part(svc, sid, school=f"{D}/{SMALL}", level="school")
        assert small["rows"] and {r["unit"] for r in small["rows"]} == {f"{D}/{SMALL}"}
        csv_part = (await svc.client.get(f"/v1/public/snapshots/{sid}/csv", params={"column": "sex:female"})).text
        assert csv_part.count("\n") - 1 == sum(1 for r in snapshot["rows"] if r["column"] == "sex:female")
        r = await svc.client.get(f"/v1/public/snapshots/{sid}", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip" and r.json()["rows"] == snapshot["rows"]
        r = await svc.client.get(f"/v1/public/snapshots/{sid}", params={"school": f"{D}/s-none"})
        assert r.status_code == 404 and "s-none" in r.json()["detail"]
        for bad in ({"level": "county"}, {"column": "all;drop"}, {"offset": -1}, {"limit": 0}, {"school": "x"}):
            r = await svc.client.get(f"/v1/public/snapshots/{sid}", params=bad)
            assert r.status_code == 422, bad

        # The second snapshot of the year is version 2; snapshots are never changed.
        r = await svc.client.post("/v1/snapshots", json={"school_year": 2026}, headers=service_env.auth("compliance"))
        assert r.json()["version"] == 2
        listed = (await svc.client.get("/v1/public/snapshots?school_year=2026")).json()["snapshots"]
        assert [s["version"] for s in listed] == [2, 1]

        metrics_text = (await svc.client.get("/metrics")).text
        for pattern in (
            r'homeroom_consumer_lag{consumer="tally",partition="\d",service="reports",topic="[a-z0-9.]+' + suffix,
            r"homeroom_reports_event_to_tally_seconds_count [1-9]",
            r"homeroom_reports_tally_rebuilds_total [1-9]",
            r"homeroom_reports_seconds_behind 0\.0",
            r'homeroom_reports_tally_events_total{outcome="applied",topic="attendance.v1"} [1-9]',
        ):
            assert re.search(pattern, metrics_text), pattern


async def test_bad_requests_get_problems(service_env: ServiceEnv) -> None:
    suffix = uuid.uuid4().hex[:8]
    async with reports_service(service_env, suffix, start_consumers=False) as svc:
        compliance = service_env.auth("compliance")
        r = await svc.client.post("/v1/snapshots", json={"school_year": 2026}, headers=compliance)
        assert r.status_code == 404 and r.json()["type"].endswith("reports-nothing-counted")
        r = await svc.client.post("/v1/snapshots", json={"school_year": 2031}, headers=compliance)
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "school_year.future"
        r = await svc.client.post("/v1/snapshots", json={"school_year": "x"}, headers=compliance)
        assert r.status_code == 422
        assert (await svc.client.get("/v1/public/snapshots/not-a-uuid")).status_code == 404
        assert (await svc.client.get(f"/v1/public/snapshots/{uuid.uuid4()}/csv")).status_code == 404
        assert (await svc.client.get("/v1/public/snapshots/latest")).status_code == 404
        r = await svc.client.get("/v1/public/snapshots", params={"limit": 1000})
        assert r.status_code == 422
        r = await svc.client.get("/v1/public/snapshots/latest", params={"district": "d'; drop"})
        assert r.status_code == 422
        assert (await svc.client.post("/v1/snapshots", json={"school_year": 2026})).status_code == 401
