"""A district's own transparency answers on the real consent service (issue 24): its staff write
them, anyone reads them; another district's staff and a parent cannot; a question outside 1-32 is named."""

from __future__ import annotations

from tests.harness import ServiceEnv, ServiceUnderTest
from tests.services.consent.conftest import uid


async def test_a_district_answers_its_policy_questions_and_anyone_reads_them(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district, other = uid("d"), uid("d")
    staff = module_env.auth("district_staff", "cfo", district=district)
    r = await svc.client.put(
        f"/v1/districts/{district}/transparency/31",
        json={"text": "Funded by the district's technology budget.", "reviewed_on": "2026-11-30"},
        headers=staff,
    )
    assert r.status_code == 200, r.text
    refused = [
        await svc.client.put(
            f"/v1/districts/{district}/transparency/31",
            json={"text": "forged"},
            headers=module_env.auth("district_staff", "x", district=other),
        ),
        await svc.client.put(
            f"/v1/districts/{district}/transparency/31", json={"text": "forged"}, headers=module_env.auth("parent", "p")
        ),
    ]
    assert [x.status_code for x in refused] == [403, 403]
    beyond = await svc.client.put(f"/v1/districts/{district}/transparency/33", json={"text": "x"}, headers=staff)
    assert beyond.status_code == 404 and "1 to 32" in beyond.json()["detail"]
    read = await svc.client.get(f"/v1/public/transparency/{district}")
    assert read.json()["answers"] == {
        "31": {"text": "Funded by the district's technology budget.", "reviewed_on": "2026-11-30", "reviewed_by": "cfo"}
    }
    assert (await svc.client.get(f"/v1/public/transparency/{other}")).json()["answers"] == {}
