"""A transfer end to end: enrollment events on the real broker → a case → consent decision →
records package → delivery into the receiving district → disclosure → acknowledgement."""

from __future__ import annotations

import asyncio

from homeroom.catalogue import LegalBasis
from tests.services.transfer.conftest import (
    A,
    B,
    World,
    cases_of,
    new_key,
    processed,
    sample_record,
    wait_state,
    wait_until,
)


async def test_enrollment_in_b_delivers_once_with_only_allowed_elements(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    enrolled_a = world.enrolled(key, A, "a-1", "2025-08-20")
    enrolled_b = world.enrolled(key, B, "b-7", "2026-11-02")
    resubmitted_b = world.enrolled(key, B, "b-7", "2026-11-02")  # same enrollment, new event id
    async with world.service() as svc:
        await world.publish(enrolled_a, enrolled_b, enrolled_b, resubmitted_b)
        case = await wait_state(svc, key, "delivered")
        await wait_until(lambda: _at_least(processed(svc), 3), what="all enrollment events")
        await asyncio.sleep(0.3)  # let any stray second case show itself
        assert len(await cases_of(svc, key)) == 1

        assert (case.from_district_id, case.to_district_id, case.to_school_id) == (A, B, "b-7")
        assert case.legal_basis == LegalBasis.TRANSFER.value
        assert "health.immunizations" not in case.elements_released
        assert "discipline.incident_details" not in case.elements_released
        withheld = {w["element"]: w["reason"] for w in case.elements_withheld}
        assert "marked not transferable by d-a" in withheld["health.immunizations"]
        assert "not transferable" in withheld["discipline.incident_details"]

        delivered = world.records.deliveries[case.case_id]
        assert delivered["to_district_id"] == B and delivered["to_school_id"] == "b-7"
        package = delivered["package"]
        assert package["elements"]["student.first_name"] == "Ana"
        assert "health.immunizations" not in package["elements"]
        assert package["program_flags"] == ["iep", "section_504"]  # services continue on day one
        assert package["parent_statements"] and package["suspension_dates"] == ["2026-09-15"]
        assert package["attendance"]["summary"]["days_absent"] == 1
        assert set(package["elements_included"]) <= set(case.elements_released)
        # records was asked only for what consent allowed
        assert set(world.records.package_calls[0]["elements"]) == set(case.elements_released)

        r = await svc.client.get(f"/v1/transfers/{case.case_id}", headers=world.auth("district_staff", district=B))
        assert r.status_code == 200, r.text
        steps = [h["step"] for h in r.json()["history"]]
        assert steps == [
            "requested",
            "decided",
            "packaged",
            "delivered",
            "notified:sending_district",
            "notified:parent",
        ]
        # the disclosure is on the bus, once, with the legal basis and element names
        await svc.runtime.drain_outbox()
        event_ids = await svc.pool.fetch(
            "SELECT event_id FROM transfer_history WHERE case_id = $1 AND event_id <> ''", case.case_id
        )
        assert len({r["event_id"] for r in event_ids}) == 4

        ack = await svc.client.post(
            f"/v1/transfers/{case.case_id}/acknowledge", headers=world.auth("district_staff", district=B), json={}
        )
        assert ack.status_code == 200, ack.text
        assert ack.json()["state"] == "acknowledged"
        again = await svc.client.post(
            f"/v1/transfers/{case.case_id}/acknowledge", headers=world.auth("district_staff", district=B), json={}
        )
        assert again.status_code == 200 and again.json()["state"] == "acknowledged"
        sealed = await svc.pool.fetchval("SELECT package_sealed FROM transfer_cases WHERE case_id = $1", case.case_id)
        assert sealed is None  # the package in transit is dropped once the case closes
    assert world.records.delivery_calls.count(case.case_id) == 1


async def _at_least(count: object, n: int) -> bool:
    assert asyncio.iscoroutine(count)
    return bool(await count >= n)
