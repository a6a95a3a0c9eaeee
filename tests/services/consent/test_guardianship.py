"""Guardianship links from linking codes (issue 24), on the real consent service with the real
records service in process (which students a district holds, and their names), on the
embedded PostgreSQL: the attacks (guessing, replay, an expired code, a withdrawn code, a code
for another district's student, a revoked link) are each refused with their rule and kept in
`linking_attempts` or the audit events; the good path links, and the token then names the child."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from homeroom.bus.envelope import build_event
from homeroom.bus.topics import TRANSFER
from homeroom.contracts.clients import ConsentClient
from homeroom.events.v1.consent_pb2 import ConsentEvent
from homeroom.events.v1.transfer_pb2 import TransferStep
from services.consent.consumers import GUARDIANSHIPS
from services.consent.guardianship import CodeHasher, normalise
from services.consent.service import SERVICE as CONSENT
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.services.records.helpers import Records, apply, enrolled, records_service, registered


def student_key() -> str:
    return "stu_" + base64.b32encode(os.urandom(20)).decode().lower()


@dataclass
class Linking:
    consent: ServiceUnderTest
    records: Records
    env: ServiceEnv
    district: str
    other_district: str
    child: str  # a student of `district`
    outsider: str  # a student of `other_district` only
    now: list[datetime]

    def staff(self, district: str | None = None) -> dict[str, str]:
        return self.env.auth("district_staff", "registrar", district=district or self.district)

    def person(self, subject: str) -> dict[str, str]:
        return self.env.auth("parent", subject)

    async def issue(
        self, *students: dict[str, Any], valid_days: int = 30, district: str | None = None
    ) -> httpx.Response:
        return await self.consent.client.post(
            f"/v1/districts/{district or self.district}/linking-codes",
            json={"students": list(students), "valid_days": valid_days},
            headers=self.staff(district),
        )

    async def redeem(self, subject: str, code: str) -> httpx.Response:
        return await self.consent.client.post(
            "/v1/guardianship/redemptions",
            json={"code": code, "client": f"addr-{subject}"},
            headers=self.person(subject),
        )

    async def token_students(self, subject: str) -> list[str]:
        r = await self.consent.client.post(
            "/v1/internal/guardian-tokens",
            json={"subject": subject},
            headers=self.env.auth("service", "homeroom-portal"),
        )
        assert r.status_code == 200, r.text
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["role"] == "parent" and claims["sub"] == subject
        students: list[str] = claims.get("students", [])
        assert students == r.json()["students"]
        return students

    async def attempts(self, subject: str) -> list[str]:
        rows = await self.consent.pool.fetch(
            "SELECT outcome FROM linking_attempts WHERE subject = $1 ORDER BY attempt_id", subject
        )
        return [r["outcome"] for r in rows]

    async def events(self, change: str) -> list[Any]:
        rows = await self.consent.pool.fetch("SELECT payload FROM outbox WHERE topic = 'consent.v1' ORDER BY id")
        out = []
        for row in rows:
            message = ConsentEvent()
            message.ParseFromString(bytes(row["payload"]))
            if message.WhichOneof("change") == change:
                out.append(getattr(message, change))
        return out


@pytest.fixture(scope="module")
async def world(module_env: ServiceEnv) -> AsyncIterator[Linking]:
    district, other = f"d-{uuid.uuid4().hex[:6]}", f"d-{uuid.uuid4().hex[:6]}"
    child, outsider = student_key(), student_key()
    now = [datetime(2026, 9, 1, 12, tzinfo=UTC)]
    async with records_service(module_env) as records:
        rt = records.runtime
        await apply(
            rt,
            await registered(rt, district, child, {"student.first_name": "Rosa", "student.last_name": "Diaz"}),
            enrolled(district, child, "s-1", "2026-09-01"),
            await registered(rt, other, outsider, {"student.first_name": "Ode", "student.last_name": "Park"}),
            enrolled(other, outsider, "s-9", "2026-09-01"),
        )
        clock: Callable[[], datetime] = lambda: now[0]  # noqa: E731
        async with service_under_test(
            CONSENT,
            module_env,
            peers={"records": records.svc.transport},
            clock=clock,
            start_consumers=False,
            linking_rate_limit="6/hour",
        ) as consent:
            await consent.runtime.relay.stop()  # events stay in the outbox, where the tests read them
            yield Linking(consent, records, module_env, district, other, child, outsider, now)


async def test_a_code_links_once_and_the_token_then_names_the_child(world: Linking) -> None:
    r = await world.issue({"student_key": world.child})
    assert r.status_code == 201, r.text
    [issued] = r.json()["codes"]
    assert issued["student_name"] == "Rosa Diaz" and normalise(issued["code"]) is not None
    # Homeroom keeps only the code's hash: the code itself is nowhere in the database.
    raw = normalise(issued["code"])
    assert raw is not None
    dump = await world.consent.pool.fetch("SELECT * FROM linking_codes")
    assert all(raw not in str(dict(row)) and issued["code"] not in str(dict(row)) for row in dump)
    # ... nor any unkeyed hash of it (which a copy of the table could test guesses against
    # offline): the row holds the HMAC under the service's secret, and nothing else of the code.
    unkeyed = {
        hashlib.new(algorithm, prefix + text.encode()).digest()
        for algorithm in ("md5", "sha1", "sha256", "sha512", "sha3_256", "blake2b")
        for text in (raw, issued["code"], raw.lower())
        for prefix in (b"", b"homeroom-linking-code:", b"homeroom/linking-code/v1:")
    }
    columns = [v for row in dump for v in dict(row).values() if isinstance(v, bytes | str)]
    stored = [bytes(v) if isinstance(v, bytes) else v.encode() for v in columns]
    assert not [d for d in unkeyed for v in stored if d in v or d.hex().encode() in v]
    [row] = [r for r in dump if r["code_id"] == issued["code_id"]]
    hasher: CodeHasher = world.consent.runtime.state.hasher
    assert bytes(row["code_hash"]) == hasher.digest(raw) != CodeHasher(os.urandom(32)).digest(raw)

    parent = f"oidc:mother-{uuid.uuid4().hex[:6]}"
    assert await world.token_students(parent) == []  # signed in, linked to nobody yet
    # Case, spaces and a misread O for 0 are forgiven.
    typed = issued["code"].lower().replace("-", " ").replace("0", "o")
    linked = await world.redeem(parent, typed)
    assert linked.status_code == 201, linked.text
    assert linked.json()["student_key"] == world.child and linked.json()["status"] == "active"
    assert await world.token_students(parent) == [world.child]
    mine = await world.consent.client.get("/v1/guardianship/links", headers=world.person(parent))
    assert [link["student_key"] for link in mine.json()["links"]] == [world.child]

    # Every issue and link is an audit event (never the code).
    [linked_event] = [e for e in await world.events("guardianship_linked") if e.subject == parent]
    assert linked_event.student_key == world.child and linked_event.code_id == issued["code_id"]
    assert issued["code_id"] in {e.code_id for e in await world.events("guardian_code_issued")}

    # Replay: the same code again, by the same person or another, links nothing.
    again = await world.redeem(parent, issued["code"])
    assert again.status_code == 409 and again.json()["outcome"] == "already_used"
    thief = f"oidc:thief-{uuid.uuid4().hex[:6]}"
    stolen = await world.redeem(thief, issued["code"])
    assert stolen.status_code == 409 and stolen.json()["outcome"] == "already_used"
    assert await world.token_students(thief) == []
    assert await world.attempts(parent) == ["linked", "already_used"]
    assert await world.attempts(thief) == ["already_used"]

    # Revocation (custody change): the next token no longer names the child; audited.
    link_id = linked.json()["link_id"]
    ended = await world.consent.client.post(
        f"/v1/districts/{world.district}/guardianships/{link_id}/revoke",
        json={"reason": "custody_change"},
        headers=world.staff(),
    )
    assert ended.status_code == 200 and ended.json()["status"] == "revoked", ended.text
    assert await world.token_students(parent) == []
    assert [e.reason for e in await world.events("guardianship_revoked") if e.link_id == link_id] == ["custody_change"]
    # Another district's staff can neither see nor revoke this district's links.
    foreign = await world.consent.client.get(
        f"/v1/districts/{world.district}/guardianships", headers=world.staff(world.other_district)
    )
    assert foreign.status_code == 403


async def test_guessing_is_refused_recorded_and_then_rate_limited(world: Linking) -> None:
    guesser = f"oidc:guesser-{uuid.uuid4().hex[:6]}"
    outcomes = []
    for i in range(8):
        guess = f"ABCD-EFGH-{i:04d}" if i != 3 else "not a code"
        r = await world.redeem(guesser, guess)
        outcomes.append((r.status_code, r.json()["outcome"]))
    assert outcomes[:6] == [(404, "unknown_code")] * 3 + [(422, "malformed")] + [(404, "unknown_code")] * 2
    assert outcomes[6:] == [(429, "rate_limited")] * 2
    assert await world.attempts(guesser) == [o for _, o in outcomes]
    listed = await world.consent.client.get(
        "/v1/guardianship/attempts", params={"subject": guesser}, headers=world.env.auth("compliance")
    )
    assert listed.status_code == 200 and all(a["guessing"] for a in listed.json()["attempts"])
    assert len(listed.json()["attempts"]) == 8
    assert await world.token_students(guesser) == []


async def test_expired_and_withdrawn_codes_and_another_districts_student_are_refused_and_recorded(
    world: Linking,
) -> None:
    r = await world.issue({"student_key": world.child}, {"student_key": world.child}, valid_days=1)
    first, second = r.json()["codes"]
    world.now[0] += timedelta(days=2)
    try:
        late = f"oidc:late-{uuid.uuid4().hex[:6]}"
        expired = await world.redeem(late, first["code"])
        assert expired.status_code == 409 and expired.json()["outcome"] == "expired"
    finally:
        world.now[0] -= timedelta(days=2)
    withdrawn = await world.consent.client.delete(
        f"/v1/districts/{world.district}/linking-codes/{second['code_id']}", headers=world.staff()
    )
    assert withdrawn.status_code == 200, withdrawn.text
    refused = await world.redeem(late, second["code"])
    assert refused.status_code == 409 and refused.json()["outcome"] == "revoked"
    assert await world.attempts(late) == ["expired", "revoked"]
    assert second["code_id"] in {e.code_id for e in await world.events("guardian_code_revoked")}

    # Staff of this district ask for a code for another district's student: refused by name, kept.
    outside = await world.issue({"student_key": world.child}, {"student_key": world.outsider})
    assert outside.status_code == 422
    assert [e["field"] for e in outside.json()["errors"]] == ["/students/1/student_key"]
    assert outside.json()["errors"][0]["rule"] == "linking.student_not_in_district"
    kept = await world.consent.pool.fetch(
        "SELECT subject, district_id FROM linking_attempts"
        " WHERE student_key = $1 AND outcome = 'student_not_in_district'",
        world.outsider,
    )
    assert [(r["subject"], r["district_id"]) for r in kept] == [("district_staff:registrar", world.district)]
    # Nothing was issued for either student of that request.
    count = await world.consent.pool.fetchval(
        "SELECT count(*) FROM linking_codes WHERE student_key = $1", world.outsider
    )
    assert count == 0


async def test_an_eligible_student_takes_the_rights_and_links_follow_a_transfer_only_when_accepted(
    world: Linking,
) -> None:
    codes = (await world.issue({"student_key": world.child}, {"student_key": world.child})).json()["codes"]
    father, second_parent_code = f"oidc:father-{uuid.uuid4().hex[:6]}", codes[1]["code"]
    assert (await world.redeem(father, codes[0]["code"])).status_code == 201
    assert await world.token_students(father) == [world.child]

    # The transfer to another district proposes the link there; it authorises nothing new until accepted.
    step = TransferStep(
        case_id=f"case-{uuid.uuid4().hex[:6]}",
        student_key=world.child,
        from_district_id=world.district,
        to_district_id=world.other_district,
        state="delivered",
    )
    event = build_event(TRANSFER, "transfer_delivered", step, source="/homeroom/transfer", subject=step.case_id)
    assert await apply(world.consent.runtime, event, consumers=(GUARDIANSHIPS,)) == 1
    listed = await world.consent.client.get(
        f"/v1/districts/{world.other_district}/guardianships", headers=world.staff(world.other_district)
    )
    [proposed] = [link for link in listed.json()["links"] if link["subject"] == father]
    assert proposed["status"] == "proposed" and proposed["from_district_id"] == world.district
    accepted = await world.consent.client.post(
        f"/v1/districts/{world.other_district}/guardianships/{proposed['link_id']}/accept",
        headers=world.staff(world.other_district),
    )
    assert accepted.status_code == 200 and accepted.json()["status"] == "active", accepted.text
    assert "accepted_on_transfer" in {e.reason for e in await world.events("guardianship_linked")}

    # FERPA 99.5: the student, now eligible, links themselves; every parent link here ends.
    student_code = (await world.issue({"student_key": world.child, "relationship": "eligible_student"})).json()[
        "codes"
    ][0]["code"]
    student = f"oidc:student-{uuid.uuid4().hex[:6]}"
    taken = await world.redeem(student, student_code)
    assert taken.status_code == 201 and taken.json()["relationship"] == "eligible_student"
    assert await world.token_students(student) == [world.child]
    # The father's links in both districts end: the rights are the student's everywhere.
    ended = [e for e in await world.events("guardianship_revoked") if e.subject == father]
    assert sorted((e.district_id, e.reason) for e in ended) == sorted(
        [(world.district, "rights_moved_to_student"), (world.other_district, "rights_moved_to_student")]
    )
    assert await world.token_students(father) == []
    # A parent's code no longer links in this district.
    late_parent = f"oidc:late-parent-{uuid.uuid4().hex[:6]}"
    refused = await world.redeem(late_parent, second_parent_code)
    assert refused.status_code == 409 and refused.json()["outcome"] == "rights_with_student"


async def test_a_carried_link_opens_the_receiving_districts_record_only_once_accepted_and_not_after_revocation(
    world: Linking,
) -> None:
    """Issue 24's privacy gap: parent tokens name students, not districts. A parent linked in A
    whose link a transfer carried to B reads nothing of B (record, amendments, choices, the
    token's district claim) until B accepts the link, and nothing again once B revokes it; the
    link in A keeps working throughout. Before the fix B's record was released before acceptance."""
    rt, a, b = world.records.runtime, world.district, world.other_district
    mover = student_key()
    await apply(
        rt,
        await registered(rt, a, mover, {"student.first_name": "Mo", "student.last_name": "Vere"}),
        enrolled(a, mover, "s-1", "2026-09-01"),
        await registered(rt, b, mover, {"student.first_name": "Mo", "student.last_name": "Vere"}),
        enrolled(b, mover, "s-9", "2026-10-01"),
    )
    # B's staff record a directory opt-out for the child in B: a choice B's parents see, not A's.
    staff_choice = await world.consent.client.post(
        f"/v1/students/{mover}/directory-opt-out",
        json={"district_id": b, "method": "paper_form"},
        headers=world.staff(b),
    )
    assert staff_choice.status_code == 201, staff_choice.text
    code = (await world.issue({"student_key": mover})).json()["codes"][0]["code"]
    parent = f"oidc:carried-{uuid.uuid4().hex[:6]}"
    assert (await world.redeem(parent, code)).status_code == 201
    step = TransferStep(case_id=f"case-{uuid.uuid4().hex[:6]}", student_key=mover, from_district_id=a, to_district_id=b)
    event = build_event(TRANSFER, "transfer_delivered", step, source="/homeroom/transfer", subject=step.case_id)
    assert await apply(world.consent.runtime, event, consumers=(GUARDIANSHIPS,)) == 1
    listed = await world.consent.client.get(f"/v1/districts/{b}/guardianships", headers=world.staff(b))
    [carried] = [link for link in listed.json()["links"] if link["subject"] == parent]
    assert carried["status"] == "proposed"

    # Records asks this world's consent service (where the link was carried) for this test.
    old_client = rt.state.consent
    rt.state.consent = ConsentClient("http://consent.test", rt.service_token, transport=world.consent.transport)

    async def token() -> tuple[str, dict[str, Any]]:
        r = await world.consent.client.post(
            "/v1/internal/guardian-tokens", json={"subject": parent}, headers=world.env.auth("service", "portal")
        )
        assert r.status_code == 200, r.text
        issued = r.json()["token"]
        return issued, jwt.decode(issued, options={"verify_signature": False})

    async def reach(bearer: str) -> dict[str, Any]:
        """Every parent read path of the records and consent APIs, as this token reaches them."""
        headers = {"Authorization": f"Bearer {bearer}"}
        record = await world.records.client.get(f"/v1/students/{mover}", headers=headers)
        assert record.status_code == 200, record.text
        choices = await world.consent.client.get(f"/v1/students/{mover}/choices", headers=headers)
        assert choices.status_code == 200, choices.text
        amendment = await world.records.client.post(
            f"/v1/students/{mover}/amendments",
            json={"district_id": b, "element": "student.first_name", "reason": "misspelt"},
            headers=headers,
        )
        opt_out = await world.consent.client.post(
            f"/v1/students/{mover}/directory-opt-out", json={"district_id": b, "method": "portal"}, headers=headers
        )
        return {
            "records": sorted(v["district_id"] for v in record.json()["records"]),
            "choices": sorted({c["district_id"] for c in choices.json()["history"]}),
            "amend_in_b": amendment.status_code,
            "choose_in_b": opt_out.status_code,
        }

    try:
        # Before B accepts: A only, by every path; the token names A only.
        before, claims = await token()
        assert await reach(before) == {"records": [a], "choices": [], "amend_in_b": 404, "choose_in_b": 403}
        assert claims["guardianships"] == {mover: [a]}
        decision = await world.consent.pool.fetchrow(
            """SELECT answer FROM decisions WHERE request->>'student_key' = $1 AND request->>'district_id' = $2
               AND request->'requester'->>'subject' = $3 ORDER BY decided_at DESC LIMIT 1""",
            mover,
            b,
            parent,
        )
        assert decision is not None and '"guardianship_pending"' in decision["answer"]

        accepted = await world.consent.client.post(
            f"/v1/districts/{b}/guardianships/{carried['link_id']}/accept", headers=world.staff(b)
        )
        assert accepted.status_code == 200, accepted.text
        # After acceptance: both districts; the earlier token's record reads follow the registry at once.
        after, claims = await token()
        assert claims["guardianships"] == {mover: sorted([a, b])}
        reached = await reach(after)
        assert reached["records"] == sorted([a, b]) and reached["choices"] == [b]
        assert reached["amend_in_b"] == 201 and reached["choose_in_b"] == 201
        assert (await reach(before))["records"] == sorted([a, b])

        revoked = await world.consent.client.post(
            f"/v1/districts/{b}/guardianships/{carried['link_id']}/revoke",
            json={"reason": "custody_change"},
            headers=world.staff(b),
        )
        assert revoked.status_code == 200, revoked.text
        # After revocation: A only again, at once, even for the token that still names B.
        _, claims = await token()
        assert claims["guardianships"] == {mover: [a]}
        assert await reach(after) == {"records": [a], "choices": [], "amend_in_b": 404, "choose_in_b": 403}

        # Never forward, but backward: a parent the receiving district B linked also reaches the
        # record A sent there (A's record and choices), since B verified them and holds what A sent.
        other_code = (await world.issue({"student_key": mover}, district=b)).json()["codes"][0]["code"]
        mother = f"oidc:b-linked-{uuid.uuid4().hex[:6]}"
        assert (await world.redeem(mother, other_code)).status_code == 201
        r = await world.consent.client.post(
            "/v1/internal/guardian-tokens", json={"subject": mother}, headers=world.env.auth("service", "portal")
        )
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["guardianships"] == {mover: sorted([a, b])}
        reached = await reach(r.json()["token"])
        assert reached["records"] == sorted([a, b]) and reached["choices"] == [b]

        # A development token (a subject the registry does not know) keeps the claim's meaning.
        dev = world.env.auth("parent", f"dev-parent-{uuid.uuid4().hex[:6]}", students=[mover])
        record = await world.records.client.get(f"/v1/students/{mover}", headers=dev)
        assert sorted(v["district_id"] for v in record.json()["records"]) == sorted([a, b])
    finally:
        await rt.state.consent.aclose()
        rt.state.consent = old_client


async def test_eligibility_is_computed_by_records_across_the_18th_birthday_and_attested_where_no_data(
    world: Linking,
) -> None:
    """FERPA 99.5 from the data Homeroom holds (issue 24): records computes eligibility from the
    birth date it keeps sealed (consent sees only the answer) and a postsecondary enrollment; the
    consent clock moves across the 18th birthday; with no data the district's attestation stands."""
    rt = world.records.runtime
    teen, college, unknown = student_key(), student_key(), student_key()
    born = (world.now[0] + timedelta(days=2)).date().replace(year=world.now[0].year - 18)  # 18 in two days
    await apply(
        rt,
        await registered(rt, world.district, teen, {"student.first_name": "Tia", "student.birth_date": str(born)}),
        enrolled(world.district, teen, "s-1", "2026-09-01", grade="12"),
        await registered(
            rt, world.district, college, {"student.first_name": "Cal", "student.birth_date": "2010-05-05"}
        ),
        enrolled(world.district, college, "s-1", "2026-09-01", grade="Postsecondary"),
        await registered(rt, world.district, unknown, {"student.first_name": "Una"}),
        enrolled(world.district, unknown, "s-1", "2026-09-01"),
    )

    def rules(r: httpx.Response) -> list[tuple[str, str]]:
        assert r.status_code == 422, r.text
        return [(e["field"], e["rule"]) for e in r.json()["errors"]]

    as_student = {"student_key": teen, "relationship": "eligible_student"}
    # Before the birthday: 17, in grade 12: the student's own code is refused, a parent's issued.
    assert rules(await world.issue(as_student)) == [("/students/0/relationship", "linking.student_not_eligible")]
    assert (await world.issue({"student_key": teen})).status_code == 201
    world.now[0] += timedelta(days=3)  # past the 18th birthday
    try:
        refused = await world.issue({"student_key": teen})
        assert rules(refused) == [("/students/0/relationship", "linking.rights_with_student")]
        assert "age 18" in refused.json()["errors"][0]["message"] and str(born) not in refused.text
        issued = await world.issue(
            as_student,
            {"student_key": college, "relationship": "eligible_student"},
            {"student_key": unknown, "relationship": "eligible_student"},
        )
        assert issued.status_code == 201, issued.text
    finally:
        world.now[0] -= timedelta(days=3)
    # 16 but at a postsecondary institution: eligible now too; a parent code for them is refused.
    assert rules(await world.issue({"student_key": college})) == [
        ("/students/0/relationship", "linking.rights_with_student")
    ]
    listed = await world.consent.client.get(f"/v1/districts/{world.district}/guardianships", headers=world.staff())
    basis = {
        c["student_key"]: c["eligibility_basis"]
        for c in listed.json()["codes"]
        if c["relationship"] == "eligible_student" and c["student_key"] in (teen, college, unknown)
    }
    assert basis == {teen: "age_18", college: "postsecondary", unknown: "district_attestation"}
    kept = await world.consent.pool.fetch(
        "SELECT student_key, outcome FROM linking_attempts WHERE student_key = ANY($1::text[]) ORDER BY attempt_id",
        [teen, college],
    )
    assert [(r["student_key"], r["outcome"]) for r in kept] == [
        (teen, "student_not_eligible"),
        (teen, "rights_with_student"),
        (college, "rights_with_student"),
    ]
