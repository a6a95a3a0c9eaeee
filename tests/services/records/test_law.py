"""The law's promises in records, against the REAL consent service (in process, its own
database, the keys database shared as in production): statements travel (FERPA 99.21),
every disclosure names its purpose and refusals go to a security log (99.32), ending an
agreement destroys what was kept for its recipient and the recipient must certify its own
destruction (Ed Law 2-d, 8 NYCRR 121), a district's erasure order and retention periods
destroy a student's data with proof, staff see their own students by name, and the
chronic-absence worklist. Notices go through a real SMTP server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from homeroom.bus.envelope import OutgoingEvent
from homeroom.bus.topics import ensure_topics
from homeroom.clock import Clock, fixed, system_clock
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_PRESENT
from homeroom.events.v1.consent_pb2 import ConsentEvent, KeyEvent
from homeroom.outbox import EVENTS_OF_TOPIC, outbox_event
from homeroom_dev.infra.smtp import EmbeddedSMTP
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.consent.application import ending as consent_app
from services.consent.service import SERVICE as CONSENT
from services.records import destruction, store
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.mail import mail_arrives, smtp_overrides, to
from tests.services.records.helpers import (
    Records,
    apply,
    attendance,
    calendar,
    enrolled,
    keys_destroyed,
    records_service,
    registered,
    renamed,
    withdrawn,
)

ORG = "Brightpath Learning"


@dataclass
class Law:
    consent: ServiceUnderTest
    rec: Records
    env: ServiceEnv
    smtp: EmbeddedSMTP
    district: str
    agreement: str

    def vendor(self, agreement: str | None = None) -> dict[str, str]:
        return {"agreement": agreement or self.agreement, "organization": ORG}

    async def student(self, first: str, last: str, school: str = "s-1", entry: str = "2026-09-01") -> str:
        key = f"stu_{uuid.uuid4().hex[:12]}"
        await apply(
            self.rec.runtime,
            await registered(
                self.rec.runtime, self.district, key, {"student.first_name": first, "student.last_name": last}
            ),
            enrolled(self.district, key, school, entry),
            attendance(self.district, key, "2026-09-02"),
        )
        return key

    async def outbox(self, svc: ServiceUnderTest, topic: str) -> list[bytes]:
        rows = await svc.pool.fetch("SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", topic)
        return [bytes(r["payload"]) for r in rows]


async def new_agreement(consent: ServiceUnderTest, env: ServiceEnv, district: str, **terms: object) -> str:
    staff = env.auth("district_staff", district=district)
    body = {
        "organization": ORG,
        "category": "vendor",
        "supplemental": SUPPLEMENTAL_ANSWERS,
        "terms": {
            "elements": ["student.first_name", "student.last_name", "attendance.daily", "enrollment.school_id"],
            "purposes": ["rostering", "instruction"],
            "districts": [district],
            "start_date": "2026-01-01",
            "end_date": "2099-06-30",
            "disposition": "destroy",
            **terms,
        },
    }
    r = await consent.client.post("/v1/agreements", json=body, headers=staff)
    assert r.status_code == 201, r.text
    agreement: str = r.json()["id"]
    r = await consent.client.post(f"/v1/agreements/{agreement}/activate", headers=staff)
    assert r.status_code == 200, r.text
    return agreement


@pytest.fixture
async def law(service_env: ServiceEnv, smtp: EmbeddedSMTP) -> AsyncIterator[Law]:
    district = f"d-{uuid.uuid4().hex[:6]}"
    async with service_under_test(CONSENT, service_env, start_consumers=False, **smtp_overrides(smtp)) as consent:
        await consent.runtime.relay.stop()  # its events stay in the outbox, where the tests read them
        agreement = await new_agreement(consent, service_env, district)
        transport = consent.transport
        async with records_service(
            service_env, consent=transport, retention_interval_s=0, **smtp_overrides(smtp)
        ) as rec:
            yield Law(consent, rec, service_env, smtp, district, agreement)


async def test_statement_travels_with_vendor_disclosure_99_21(law: Law) -> None:
    rec = law.rec
    key = await law.student("Mia", "Lund")
    r = await rec.post(
        f"/v1/students/{key}/amendments",
        {"element": "student.first_name", "requested_value": "Maria", "reason": "her name is Maria"},
        "parent",
        students=[key],
    )
    amendment = r.json()["id"]
    decision = {"outcome": "refused", "reason": "the birth certificate says Mia"}
    r = await rec.post(f"/v1/amendments/{amendment}/decision", decision, "district_staff", district=law.district)
    assert r.status_code == 200, r.text
    # The parent is told the decision, by e-mail and in the notices list (99.21: a hearing, a statement).
    (mail,) = await mail_arrives(law.smtp.messages, to(f"parent.{key}"))
    assert "refused" in str(mail["Subject"]) and "add a statement to the record" in mail.get_content()
    r = await rec.post(
        f"/v1/students/{key}/amendments/{amendment}/statement",
        {"statement": "We disagree: she is Maria at home."},
        "parent",
        students=[key],
    )
    assert r.status_code == 201
    before = len(await rec.disclosures())

    # The vendor's read of the contested element (records API) carries the statement and the decision.
    r = await rec.get(f"/v1/students/{key}", "vendor", **law.vendor())
    assert r.status_code == 200, r.text
    (view,) = r.json()["records"]
    (statement,) = view["parent_statements"]
    assert (
        statement["statement"] == "We disagree: she is Maria at home." and statement["element"] == "student.first_name"
    )
    assert statement["district_decision"]["outcome"] == "refused"
    assert statement["district_decision"]["reason"] == "the birth certificate says Mia"
    # The OneRoster roster too, and each disclosure record says so.
    r = await rec.get("/ims/oneroster/rostering/v1p2/students", "vendor", **law.vendor())
    (user,) = [u for u in r.json()["users"] if u["sourcedId"] == key]
    assert user["metadata"]["homeroom.parentStatements"][0]["statement"] == "We disagree: she is Maria at home."
    api_read, roster_read = (await rec.disclosures())[before:]
    assert "record.parent_statement" in api_read.elements and "record.parent_statement" in roster_read.elements
    # A student without a statement: nothing extra travels.
    other = await law.student("Ola", "Berg")
    r = await rec.get(f"/v1/students/{other}", "vendor", **law.vendor())
    assert r.json()["records"][0].get("parent_statements", []) == []


async def test_every_disclosure_names_its_purpose_and_refusals_go_to_the_security_log_99_32(law: Law) -> None:
    rec = law.rec
    key = await law.student("Ana", "Lopez")
    before = len(await rec.disclosures())
    r = await rec.get("/ims/oneroster/rostering/v1p2/students", "vendor", **law.vendor())
    assert r.status_code == 200
    r = await rec.client.get(f"/v1/students/{key}", headers=law.env.auth("vendor", **law.vendor()))
    assert r.status_code == 200
    roster, read = (await rec.disclosures())[before:]
    assert roster.purpose == "rostering" and roster.channel == "oneroster"
    assert read.purpose == "rostering, instruction"  # no purpose asked: the agreement's own
    assert all(d.purpose for d in await rec.disclosures())

    # Refused attempts: another district's staff, an outside agreement; nothing released, all logged.
    other_agreement = f"nope-{uuid.uuid4().hex[:6]}"
    assert (
        await rec.get(f"/v1/districts/{law.district}/students/{key}", "district_staff", district="d-x")
    ).status_code == 404
    assert (
        await rec.get(f"/v1/students/{key}", "vendor", agreement=other_agreement, organization="Mallory")
    ).status_code == 403
    assert len(await rec.disclosures()) == before + 2
    r = await rec.get("/v1/security-log", "compliance")
    refusals = r.json()["refusals"]
    mine = [x for x in refusals if x["student_key"] == key]
    assert {(x["requester"]["role"], x["status"]) for x in mine} == {("district_staff", 404), ("vendor", 403)}
    assert any(x["requester"]["agreement_id"] == other_agreement for x in mine)
    assert (await rec.get("/v1/security-log", "district_staff", district=law.district)).status_code == 403


async def test_ending_an_agreement_destroys_what_was_kept_for_its_recipient_and_asks_it_to_certify_121(
    law: Law,
) -> None:
    rec, consent, env = law.rec, law.consent, law.env
    await law.student("Ana", "Lopez")
    await law.student("Bo", "Kim")
    r = await rec.get("/ims/oneroster/rostering/v1p2/students", "vendor", **law.vendor())
    assert len(r.json()["users"]) == 2
    async with store.district_tx(rec.runtime.pool, law.district) as conn:
        kept = await store.release_copies(conn, law.agreement)
    assert len(kept) == 1 and kept[0]["students"] == 2  # one sealed copy of the page

    staff = env.auth("district_staff", district=law.district)
    r = await consent.client.post(f"/v1/agreements/{law.agreement}/end", json={"reason": "terminated"}, headers=staff)
    assert r.status_code == 200, r.text
    assert r.json()["keys_destroyed"] == 1  # the agreement's key in the district: something real

    # keys.v1 reaches records: the copy is proved unreadable, removed, and reported.
    await apply(rec.runtime, keys_destroyed(law.district, "agreement", law.agreement))
    async with store.district_tx(rec.runtime.pool, law.district) as conn:
        assert await store.release_copies(conn, law.agreement) == []
    (row,) = await rec.runtime.pool.fetch(EVENTS_OF_TOPIC, "keys.v1", None)
    emitted = outbox_event(row)
    event = KeyEvent()
    event.ParseFromString(emitted.value)
    report = event.data_destroyed
    assert report.scope == "agreement" and report.items_destroyed == 1 and report.bytes_destroyed > 0
    assert report.verified_unreadable is True
    # consent's keys.v1 consumer keeps it with the end record
    assert await apply(consent.runtime, emitted, consumers=CONSENT.consumers) == 1
    ended = (await consent.client.get(f"/v1/agreements/{law.agreement}", headers=staff)).json()["end"]
    assert ended["copies_destroyed"][law.district]["verified_unreadable"] is True

    # The recipient's own obligation: asked by API and e-mail, certified once, in the audit log.
    (mail,) = await mail_arrives(law.smtp.messages, to(f"recipient.{law.agreement}"))
    assert "certify" in str(mail["Subject"]) and f"/v1/agreements/{law.agreement}/certification" in mail.get_content()
    vendor = env.auth("vendor", **law.vendor())
    asked = (await consent.client.get(f"/v1/agreements/{law.agreement}/certification", headers=vendor)).json()
    assert asked["certified"] is False and asked["disposition"] == "destroy"
    stranger = env.auth("vendor", agreement="other-1", organization="Mallory")
    body = {
        "method": "destroyed",
        "certified_by": "Dana Reyes, security officer",
        "completed_on": date.today().isoformat(),
        "what": "production database rows, backups rotated out, the subcontractor's analytics copy",
    }
    assert (
        await consent.client.post(f"/v1/agreements/{law.agreement}/certification", json=body, headers=stranger)
    ).status_code == 403
    wrong = {**body, "method": "returned"}
    assert (
        await consent.client.post(f"/v1/agreements/{law.agreement}/certification", json=wrong, headers=vendor)
    ).status_code == 422
    r = await consent.client.post(f"/v1/agreements/{law.agreement}/certification", json=body, headers=vendor)
    assert r.status_code == 200 and r.json()["certified"] is True and r.json()["certified_by"] == body["certified_by"]
    again = await consent.client.post(f"/v1/agreements/{law.agreement}/certification", json=body, headers=vendor)
    assert again.status_code == 409
    changes = []
    for raw in await law.outbox(consent, "consent.v1"):
        message = ConsentEvent()
        message.ParseFromString(raw)
        changes.append(message.WhichOneof("change"))
    assert {"destruction_requested", "destruction_certified"} <= set(changes)


async def test_missing_certification_escalates_to_compliance_and_shows_on_the_public_page_121(law: Law) -> None:
    consent, env = law.consent, law.env
    staff = env.auth("district_staff", district=law.district)
    late = await new_agreement(consent, env, law.district)
    r = await consent.client.post(f"/v1/agreements/{late}/end", json={"reason": "terminated"}, headers=staff)
    assert r.status_code == 200
    public = (await consent.client.get("/v1/public/agreements")).json()["awaiting_certification"]
    assert [(w["agreement_id"], w["overdue"]) for w in public if w["agreement_id"] == late] == [(late, False)]
    assert await consent_app.escalate_overdue(consent.runtime) == []  # not due yet
    consent.runtime.clock = lambda: datetime.now(UTC) + timedelta(days=31)
    try:
        assert await consent_app.escalate_overdue(consent.runtime) == [late]
        assert await consent_app.escalate_overdue(consent.runtime) == []  # once
        public = (await consent.client.get("/v1/public/agreements")).json()["awaiting_certification"]
        assert [w["overdue"] for w in public if w["agreement_id"] == late] == [True]
        page = (await consent.client.get("/v1/public/agreements.html")).text
        assert "awaiting certification" in page and "(overdue)" in page
    finally:
        consent.runtime.clock = system_clock
    (mail,) = await mail_arrives(
        law.smtp.messages, lambda m: late in str(m["Subject"]) and "compliance" in str(m["To"])
    )
    assert "has not certified" in str(mail["Subject"])
    listed = (await consent.client.get("/v1/notices", headers=env.auth("compliance"))).json()["notices"]
    assert any(n["kind"] == "destruction_overdue" and n["cause"] == f"agreement:{late}" for n in listed)


async def test_erasure_order_shreds_the_student_and_leaves_a_tombstone_121_9(law: Law) -> None:
    rec, district = law.rec, law.district
    key = await law.student("Eve", "Stone")
    path = f"/v1/districts/{district}/students/{key}"
    for role, scope, status in (
        ("school_staff", {"district": district, "schools": ["s-1"]}, 403),
        ("vendor", law.vendor(), 403),
        ("parent", {"students": [key]}, 403),
        ("district_staff", {"district": "d-other"}, 404),
    ):
        r = await rec.client.delete(path, headers=law.env.auth(role, **scope))
        assert r.status_code == status, (role, r.text)
    r = await rec.client.delete(path, headers=law.env.auth("district_staff", district=district))
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["verified_unreadable"] is True and done["items_destroyed"] >= 4  # 2 names, enrollment, a day
    assert (await rec.get(path, "district_staff", district=district)).status_code == 410
    assert (await rec.client.delete(path, headers=law.env.auth("district_staff", district=district))).status_code == 410
    async with store.district_tx(rec.runtime.pool, district) as conn:
        left = await store.count_student_rows(conn, district, key)
        logged = await conn.fetch(
            "SELECT scope, items, verified_unreadable FROM destructions WHERE student_key = $1", key
        )
    assert left == (0, 0)
    assert [(r["scope"], r["verified_unreadable"]) for r in logged] == [("record", True)]
    changes = []
    for raw in await law.outbox(rec.svc, "keys.v1"):
        message = KeyEvent()
        message.ParseFromString(raw)
        changes.append(message.WhichOneof("change"))
    assert changes == ["data_keys_destroyed", "data_destroyed"]


def noon(day: date) -> Clock:
    return fixed(datetime.combine(day, time(12), tzinfo=UTC))


async def test_retention_destroys_each_element_group_after_its_period_from_exit(law: Law) -> None:
    rec, district = law.rec, law.district
    key = await law.student("Ida", "Moss", entry="2026-09-01")
    await apply(rec.runtime, withdrawn(district, key, "s-1", "2026-10-01"))
    staff = {"district": district}
    r = await rec.client.put(
        f"/v1/districts/{district}/retention",
        json={"groups": {"attendance": 30, "record": 365}},
        headers=law.env.auth("district_staff", **staff),
    )
    assert r.status_code == 200 and r.json()["groups"] == {"attendance": 30, "record": 365}
    bad = await rec.client.put(
        f"/v1/districts/{district}/retention",
        json={"groups": {"grades": 1}},
        headers=law.env.auth("district_staff", **staff),
    )
    assert bad.status_code == 422
    rec.runtime.clock = noon(date(2026, 10, 20))  # the job reads the day from the service's clock
    assert await destruction.apply_retention(rec.runtime) == []
    rec.runtime.clock = noon(date(2026, 11, 5))
    groups = await destruction.apply_retention(rec.runtime)
    assert [(g["student_key"], g.get("group")) for g in groups] == [(key, "attendance")]
    record = (await rec.get(f"/v1/districts/{district}/students/{key}", "district_staff", **staff)).json()
    assert record["attendance"]["days"] == [] and record["elements"]["student.first_name"] == "Ida"
    rec.runtime.clock = noon(date(2027, 10, 2))
    erased = await destruction.apply_retention(rec.runtime)
    assert [(e["student_key"], e["verified_unreadable"]) for e in erased] == [(key, True)]
    assert (await rec.get(f"/v1/districts/{district}/students/{key}", "district_staff", **staff)).status_code == 410


async def test_staff_see_their_own_students_by_name_and_the_chronic_absence_worklist(law: Law) -> None:
    rec, district = law.rec, law.district
    ana = await law.student("Ana", "Lopez", school="s-1")
    bo = await law.student("Bo", "Kim", school="s-2")
    async with store.district_tx(rec.runtime.pool, district) as conn:
        await store.save_standings(
            conn,
            district,
            [
                (key, True, 20, int(rate * 20), rate, date(2026, 10, 1), 2026, True, [])
                for key, rate in ((ana, 0.25), (bo, 0.15))
            ],
        )
    staff = {"district": district}
    r = await rec.client.get(
        f"/v1/districts/{district}/student-names",
        params=[("student_key", ana), ("student_key", bo)],
        headers=law.env.auth("district_staff", **staff),
    )
    assert r.json()["names"] == {ana: "Ana Lopez", bo: "Bo Kim"}
    school = law.env.auth("school_staff", district=district, schools=["s-2"])
    r = await rec.client.get(
        f"/v1/districts/{district}/student-names", params=[("student_key", ana), ("student_key", bo)], headers=school
    )
    assert r.json()["names"] == {bo: "Bo Kim"}
    other = law.env.auth("district_staff", district="d-other")
    assert (
        await rec.client.get(f"/v1/districts/{district}/student-names", params={"student_key": ana}, headers=other)
    ).status_code == 404

    work = (await rec.get(f"/v1/districts/{district}/chronic-absence", "district_staff", **staff)).json()
    assert [(s["name"], s["over_by"], s["school_id"]) for s in work["students"]] == [
        ("Ana Lopez", 0.15, "s-1"),
        ("Bo Kim", 0.05, "s-2"),
    ]
    assert all(s["flagged_at"] for s in work["students"]) and work["threshold"] == 0.10
    work = (await rec.client.get(f"/v1/districts/{district}/chronic-absence", headers=school)).json()
    assert [s["name"] for s in work["students"]] == ["Bo Kim"]
    assert (await rec.client.get(f"/v1/districts/{district}/chronic-absence", headers=other)).status_code == 404


async def test_chronic_absence_flag_reaches_the_worklist_within_seconds_of_the_crossing_mark(
    service_env: ServiceEnv,
) -> None:
    """The absence reviewer flags the student when the mark that crosses the line arrives on
    the bus (days enrolled from the school's calendar); the worklist shows it (polled for at
    most 30 s: "within seconds")."""
    suffix = uuid.uuid4().hex[:8]
    spec, topics = renamed(suffix)
    await ensure_topics(service_env.kafka.client_kwargs(), list(topics.values()))
    key, district = f"stu_{uuid.uuid4().hex[:10]}", "d-a"
    days = [(date(2026, 9, 1) + timedelta(days=i)).isoformat() for i in range(5)]
    options = {"spec": spec, "start_consumers": True, "chronic_absence_min_days": 5, "chronic_absence_threshold": 0.2}
    async with records_service(service_env, **options) as rec:  # type: ignore[arg-type]
        producer = AIOKafkaProducer(**service_env.kafka.client_kwargs())
        await producer.start()

        async def send(*events: OutgoingEvent) -> None:
            for e in events:
                await producer.send_and_wait(topics[e.topic].name, e.value, key=e.key, headers=e.headers)

        async def listed() -> list[dict[str, object]]:
            r = await rec.get(f"/v1/districts/{district}/chronic-absence", "district_staff", district=district)
            students: list[dict[str, object]] = r.json()["students"]
            return students

        async def recorded(n: int) -> bool:
            r = await rec.get(f"/v1/districts/{district}/students/{key}", "district_staff", district=district)
            return r.status_code == 200 and len(r.json()["attendance"]["days"]) >= n

        try:
            await send(
                await registered(
                    rec.runtime, district, key, {"student.first_name": "Ana", "student.last_name": "Lopez"}
                ),
                enrolled(district, key, "s", days[0]),  # the school the attendance helper names
                calendar(district, "s", 2026, days),  # five school days
                *[attendance(district, key, day, ATTENDANCE_CATEGORY_PRESENT) for day in days[:4]],
            )
            async with asyncio.timeout(60):
                while not await recorded(4):  # noqa: ASYNC110 (polling the API)
                    await asyncio.sleep(0.2)
            assert await listed() == []
            await send(attendance(district, key, days[4]))  # the fifth day, absent: 1 in 5 = 20%, the line
            async with asyncio.timeout(30):
                while not (found := await listed()):  # noqa: ASYNC110 (polling the API)
                    await asyncio.sleep(0.2)
        finally:
            await producer.stop()
    (student,) = found
    assert student["name"] == "Ana Lopez" and student["absence_rate"] == 0.2 and student["as_of_date"] == days[4]
