"""Transfer against the REAL consent and records services (in process, over their ASGI
apps, with their own databases): the contracts of docs/contracts.md as all three sides
implement them. The student's record is in district A's records; the enrollment in B
goes over the real broker; at the end B's staff read the record from records."""

from __future__ import annotations

import dataclasses
import uuid

import httpx

from homeroom_dev.infra.smtp import EmbeddedSMTP
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.consent.service import SERVICE as CONSENT
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.mail import mail_arrives, smtp_overrides, to
from tests.services.records.helpers import apply, enrolled, opt_out, records_service, registered
from tests.services.transfer.conftest import World, wait_state, wait_until


def real(consent: ServiceUnderTest, records: ServiceUnderTest) -> dict[str, httpx.AsyncBaseTransport]:
    """The transfer service's peers: the real consent and records apps."""
    return {"consent": consent.transport, "records": records.transport}


async def test_record_travels_from_a_to_b_through_real_consent_and_records(world: World) -> None:
    a, b = f"d-a{uuid.uuid4().hex[:5]}", f"d-b{uuid.uuid4().hex[:5]}"
    key = f"stu_{uuid.uuid4().hex}"
    env = world.env
    async with (
        service_under_test(CONSENT, env, start_consumers=False) as consent,
        records_service(env, consent=consent.transport) as rec,
    ):
        await apply(
            rec.runtime,
            await registered(
                rec.runtime,
                a,
                key,
                {"student.first_name": "Ana", "student.last_name": "Lopez"},
                plain={"enrollment.grade_level": "05"},
                flags=["iep"],
            ),
            enrolled(a, key, "a-1", "2025-08-20"),
        )
        async with world.service(peers=real(consent, rec.svc)) as svc:
            await world.publish(
                world.enrolled(key, a, "a-1", "2025-08-20"), world.enrolled(key, b, "b-7", "2026-11-02")
            )
            case = await wait_state(svc, key, "delivered")
            assert case.legal_basis == "FERPA 99.31(a)(2) transfer to enrolling school"
            assert "student.first_name" in case.elements_released
            withheld = {w["element"] for w in case.elements_withheld}
            assert "discipline.incident_details" in withheld
            assert not withheld & set(case.elements_released)

            # B's staff read the record from records at once
            r = await rec.get(f"/v1/students/{key}", "district_staff", district=b)
            assert r.status_code == 200, r.text
            (record,) = r.json()["records"]
            assert record["district_id"] == b and record["elements"]["student.first_name"] == "Ana"
            (prior,) = record["prior_records"]
            assert prior["case_id"] == case.case_id and prior["from_district_id"] == a
            assert prior["package"]["program_flags"] == ["iep"]  # services continue on day one
            assert prior["package"]["enrollments"][0]["school_id"] == "a-1"
            # the parent's copy of what was sent: their own read of the record (FERPA 99.10)
            r = await rec.get(f"/v1/students/{key}", "parent", students=[key])
            assert r.status_code == 200, r.text
            copies = [p for rec_ in r.json()["records"] for p in rec_.get("prior_records", [])]
            assert [c["case_id"] for c in copies] == [case.case_id]
            # and district C's staff still cannot
            r = await rec.get(f"/v1/students/{key}", "district_staff", district="d-elsewhere")
            assert r.status_code in (403, 404)


async def test_opt_out_never_strips_a_transfer_and_follows_the_student_99_37(world: World, smtp: EmbeddedSMTP) -> None:
    """A parent opted the child out of directory information in A. The transfer to B still
    carries the name and birth date (99.31(a)(2) is not a directory disclosure); the opt-out
    travels with the record, consent records it for B (its transfer.v1 consumer), and from then
    on it binds B's vendors too. The parent and A are notified by e-mail (99.34(a)(1))."""
    a, b = f"d-a{uuid.uuid4().hex[:5]}", f"d-b{uuid.uuid4().hex[:5]}"
    key = f"stu_{uuid.uuid4().hex}"
    env = world.env
    # Consent's consumers in groups of their own: no member of another test's group to wait for.
    spec = dataclasses.replace(
        CONSENT, consumers=tuple(dataclasses.replace(c, name=f"{c.name}-{world.suffix}") for c in CONSENT.consumers)
    )
    async with service_under_test(spec, env) as consent:
        parent = env.auth("parent", students=[key])
        r = await consent.client.post(
            f"/v1/students/{key}/directory-opt-out", json={"district_id": a, "method": "paper_form"}, headers=parent
        )
        assert r.status_code == 201, r.text
        async with records_service(env, consent=consent.transport) as rec:
            await apply(
                rec.runtime,
                await registered(
                    rec.runtime,
                    a,
                    key,
                    {"student.first_name": "Noor", "student.last_name": "Haddad", "student.birth_date": "2014-03-02"},
                    plain={"enrollment.grade_level": "06"},
                ),
                enrolled(a, key, "a-1", "2025-08-20"),
                opt_out(a, key),
            )
            async with world.service(peers=real(consent, rec.svc), **smtp_overrides(smtp)) as svc:
                await world.publish(
                    world.enrolled(key, a, "a-1", "2025-08-20"), world.enrolled(key, b, "b-7", "2026-11-02")
                )
                case = await wait_state(svc, key, "delivered")
                directory = {"student.first_name", "student.last_name", "student.birth_date", "enrollment.grade_level"}
                assert directory <= set(case.elements_released), case.elements_withheld
                assert not [w for w in case.elements_withheld if "opted out" in w["reason"]]

                r = await rec.get(f"/v1/districts/{b}/students/{key}", "district_staff", district=b)
                record = r.json()
                assert record["elements"]["student.first_name"] == "Noor"
                assert record["elements"]["student.birth_date"] == "2014-03-02"
                (prior,) = record["prior_records"]
                assert prior["package"]["directory_opt_out"] is True  # B sees the parent's choice with the record

                # Consent records the opt-out for B once the delivery is on the bus.
                async def carried() -> dict[str, object] | None:
                    choices = (await consent.client.get(f"/v1/students/{key}/choices", headers=parent)).json()
                    found = [o for o in choices["directory_opt_outs"] if o["district_id"] == b]
                    return found[0] if found else None

                opt = await wait_until(carried, 90, "the opt-out to follow the student to B")
                assert opt["method"] == "transfer" and opt["opted_out"] is True
                # It binds B's vendors now: directory elements withheld, the rest released.
                agreement = await _agreement_for(consent, env, b)
                decision = (
                    await consent.client.post(
                        "/v1/decisions",
                        json={
                            "action": "read",
                            "requester": {"role": "vendor", "subject": "app", "agreement_id": agreement},
                            "student_key": key,
                            "district_id": b,
                            "elements": ["student.first_name", "attendance.daily"],
                        },
                        headers=env.auth("service"),
                    )
                ).json()
                assert decision["elements_allowed"] == ["attendance.daily"]
                assert decision["elements_withheld"] == [
                    {"element": "student.first_name", "reason": "the parent opted out of directory information"}
                ]

                # The notices went out by e-mail, and are listed for the parent and A's staff.
                (to_parent,) = await mail_arrives(smtp.messages, to(f"parent.{key}"))
                assert f"sent to district {b}" in str(to_parent["Subject"])
                assert "99.34(a)(1)" in to_parent.get_content() and "First name" in to_parent.get_content()
                (to_a,) = await mail_arrives(smtp.messages, to(f"district.{a}@"))
                assert case.case_id in str(to_a["Subject"])
                listed = (await svc.client.get("/v1/notices", headers=parent)).json()["notices"]
                assert [n["kind"] for n in listed] == ["transfer_delivered"] and listed[0]["sent_at"]
                staff_a = (await svc.client.get("/v1/notices", headers=env.auth("district_staff", district=a))).json()
                assert [n["cause"] for n in staff_a["notices"]] == [f"transfer:{case.case_id}"]
                other = (await svc.client.get("/v1/notices", headers=env.auth("district_staff", district=b))).json()
                assert other["notices"] == []


async def _agreement_for(consent: ServiceUnderTest, env: ServiceEnv, district: str) -> str:
    staff = env.auth("district_staff", district=district)
    body = {
        "organization": "Bright Vendor",
        "category": "vendor",
        "supplemental": SUPPLEMENTAL_ANSWERS,
        "terms": {
            "elements": ["student.first_name", "attendance.daily"],
            "purposes": ["instruction"],
            "districts": [district],
            "start_date": "2026-01-01",
            "end_date": "2099-01-01",
        },
    }
    created = (await consent.client.post("/v1/agreements", json=body, headers=staff)).json()
    r = await consent.client.post(f"/v1/agreements/{created['id']}/activate", headers=staff)
    assert r.status_code == 200, r.text
    return str(created["id"])
