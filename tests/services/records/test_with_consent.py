"""Records against the REAL consent service (services/consent, in process over its ASGI
app): the decision and scope contract of docs/contracts.md as both sides implement it."""

from __future__ import annotations

import uuid

from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.consent.service import SERVICE as CONSENT
from tests.harness import ServiceEnv, service_under_test
from tests.services.records.helpers import apply, attendance, enrolled, records_service, registered, withdrawn


async def test_vendor_reads_through_the_real_consent_service_until_the_agreement_ends(
    service_env: ServiceEnv,
) -> None:
    district = f"d-{uuid.uuid4().hex[:6]}"
    async with service_under_test(CONSENT, service_env, start_consumers=False) as consent:
        staff = service_env.auth("district_staff", district=district)
        organization = "Acme Learning"
        r = await consent.client.post(
            "/v1/agreements",
            json={
                "organization": organization,
                "category": "vendor",
                "supplemental": SUPPLEMENTAL_ANSWERS,
                "terms": {
                    "elements": ["student.first_name", "attendance.daily"],
                    "purposes": ["instruction"],
                    "districts": [district],
                    "schools": [],
                    "start_date": "2020-01-01",
                    "end_date": "2099-06-30",
                    "storage_region": "US",
                    "disposition": "destroy",
                },
            },
            headers=staff,
        )
        assert r.status_code == 201, r.text
        agreement = r.json()["id"]
        r = await consent.client.post(f"/v1/agreements/{agreement}/activate", headers=staff)
        assert r.status_code == 200, r.text

        transport = consent.transport
        async with records_service(service_env, consent=transport) as rec:
            key = f"stu_{uuid.uuid4().hex[:10]}"
            await apply(
                rec.runtime,
                await registered(
                    rec.runtime, district, key, {"student.first_name": "Ana", "student.last_name": "Secretsurname"}
                ),
                enrolled(district, key, "s-1", "2026-09-01"),
                attendance(district, key, "2026-09-02"),
            )
            vendor = {"agreement": agreement, "organization": organization}
            r = await rec.get(f"/v1/students/{key}", "vendor", **vendor)
            assert r.status_code == 200, r.text
            (record,) = r.json()["records"]
            assert record["elements"] == {"student.first_name": "Ana"}
            assert [d["date"] for d in record["attendance"]["days"]] == ["2026-09-02"]
            assert "Secretsurname" not in r.text

            # Issue 17, item 10: consent's 422 for the caller's over-long purpose reached the
            # vendor as "503 consent-unavailable" with Retry-After. It is the caller's error.
            r = await rec.client.get(
                f"/v1/students/{key}",
                params={"purpose": "instruction" * 500},
                headers=service_env.auth("vendor", **vendor),
            )
            assert r.status_code == 422, r.text
            assert "retry-after" not in r.headers and r.json()["errors"]

            # Issue 17, item 5: the student transfers away (withdrawn here). The roster omits
            # them, and the student route must too: the same 404 as a key that never existed.
            await apply(rec.runtime, withdrawn(district, key, "s-1", "2026-09-03"))
            gone = await rec.get(f"/v1/students/{key}", "vendor", **vendor)
            never = await rec.get(f"/v1/students/stu_{uuid.uuid4().hex[:10]}", "vendor", **vendor)
            assert gone.status_code == never.status_code == 404, gone.text
            assert {k: v for k, v in gone.json().items() if k != "instance"} == {
                k: v for k, v in never.json().items() if k != "instance"
            }
            (d,) = await rec.disclosures()
            assert d.agreement_id == agreement and d.decision_id and d.legal_basis
            assert list(d.elements) == ["attendance.daily", "student.first_name"]
            # The parent, through the same decision point.
            r = await rec.get(f"/v1/students/{key}", "parent", students=[key])
            assert r.status_code == 200, r.text
            mine = r.json()["records"][0]
            assert mine["elements"]["student.last_name"] == "Secretsurname"
            assert "amendments" in mine and "directory_opt_out" in mine  # the full record (99.10)
            assert (await rec.disclosures())[-1].legal_basis == "FERPA 99.10 parent inspection"

            r = await consent.client.post(
                f"/v1/agreements/{agreement}/end", json={"reason": "terminated"}, headers=staff
            )
            assert r.status_code == 200, r.text
            for path in (f"/v1/students/{key}", "/ims/oneroster/rostering/v1p2/students"):
                r = await rec.get(path, "vendor", **vendor)
                assert r.status_code == 403, (path, r.text)
                assert "Ana" not in r.text
            assert len(await rec.disclosures()) == 2
