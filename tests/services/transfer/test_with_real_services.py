"""Transfer against the REAL consent and records services (in process, over their ASGI
apps, with their own databases): the contracts of docs/contracts.md as all three sides
implement them. The student's record is in district A's records; the enrollment in B
goes over the real broker; at the end B's staff read the record from records."""

from __future__ import annotations

import uuid

import httpx

from services.consent.service import SERVICE as CONSENT
from services.transfer.clients import CONSENT_EXTRA, RECORDS_EXTRA, ConsentClient, RecordsClient
from tests.harness import service_under_test
from tests.services.records.helpers import apply, enrolled, records_service, registered
from tests.services.transfer.conftest import World, wait_state


async def test_record_travels_from_a_to_b_through_real_consent_and_records(world: World) -> None:
    a, b = f"d-a{uuid.uuid4().hex[:5]}", f"d-b{uuid.uuid4().hex[:5]}"
    key = f"stu_{uuid.uuid4().hex}"
    env = world.env
    async with service_under_test(CONSENT, env, start_consumers=False) as consent:
        consent_transport = consent.runtime.extras["asgi_transport"]
        async with records_service(env, consent=consent_transport) as rec:
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
            records_transport: httpx.AsyncBaseTransport = rec.runtime.extras["asgi_transport"]
            async with world.service() as svc:
                runtime = svc.runtime
                runtime.extras[CONSENT_EXTRA] = ConsentClient(
                    "http://consent.test", runtime.service_token, transport=consent_transport
                )
                runtime.extras[RECORDS_EXTRA] = RecordsClient(
                    "http://records.test", runtime.service_token, transport=records_transport
                )
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
