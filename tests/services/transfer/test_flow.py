"""A transfer end to end: enrollment events on the real broker → a case → consent decision →
records package → delivery into the receiving district → disclosure → acknowledgement."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from homeroom.catalogue import LegalBasis
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from services.transfer.events import disclosure_id
from services.transfer.transfers import step_event_id
from tests.services.transfer.conftest import (
    NOTHING,
    A,
    B,
    C,
    World,
    cases_of,
    new_key,
    processed,
    read_bus,
    read_matching,
    sample_record,
    wait_state,
    wait_until,
)


async def test_enrollment_in_b_delivers_once_with_only_allowed_elements(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    delivered_before = _sample("homeroom_transfer_enrollment_to_delivery_seconds_count")
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
        assert "district d-a does not transfer it" in withheld["health.immunizations"]
        assert "never shared" in withheld["discipline.incident_details"]  # the catalogue forbids it

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
        disclosure_event = step_event_id(case.case_id, "disclosure")
        on_bus = await read_bus(world.env.bootstrap, "disclosure.v1", {disclosure_event})
        assert len(on_bus) == 1
        released = on_bus[0].payload
        assert isinstance(released, DisclosureRecorded)
        assert released.disclosure_id == disclosure_id(case.case_id)
        assert released.channel == "transfer" and released.record_required
        assert released.legal_basis == "FERPA 99.31(a)(2) transfer to enrolling school"
        assert released.district_id == A and released.recipient.organization == B
        assert set(released.elements) == set(package["elements_included"])
        assert "health.immunizations" not in released.elements
        assert on_bus[0].meta.correlation_id == case.case_id
        steps_on_bus = await read_bus(
            world.env.bootstrap,
            "transfer.v1",
            {step_event_id(case.case_id, s) for s in ("requested", "decided", "packaged", "delivered")},
        )
        assert sorted(e.change for e in steps_on_bus) == sorted(
            ["transfer_requested", "transfer_decided", "transfer_packaged", "transfer_delivered"]
        )
        assert {e.meta.correlation_id for e in steps_on_bus} == {case.case_id}

        assert _sample("homeroom_transfer_enrollment_to_delivery_seconds_count") == delivered_before + 1
        exposed = (await svc.client.get("/metrics")).text
        for name in ("homeroom_transfer_cases_opened_total", "homeroom_transfer_enrollment_to_delivery_seconds_bucket"):
            assert name in exposed

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


async def test_reordered_and_repeated_events_open_exactly_one_case(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record("Bo")
    enrolled_a = world.enrolled(key, A, "a-1", "2025-08-20")
    enrolled_b = world.enrolled(key, B, "b-7", "2026-11-02")
    async with world.service() as svc:
        # B's enrollment arrives first, then A's older one, then both again
        await world.publish(enrolled_b, enrolled_a, enrolled_b, enrolled_a, world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "delivered")
        await wait_until(lambda: _at_least(processed(svc), 3), what="all enrollment events")
        await asyncio.sleep(0.3)
        cases = await cases_of(svc, key)
        assert len(cases) == 1
        assert (case.from_district_id, case.to_district_id) == (A, B)  # never B → A
        assert list(world.records.deliveries) == [case.case_id]
        # a late event shows a stay in C between A and B: B's enrollment keeps its one case
        await world.publish(world.enrolled(key, C, "c-1", "2026-01-05"))
        await wait_until(lambda: _at_least(processed(svc), 4), what="C's enrollment")
        assert [c.case_id for c in await cases_of(svc, key)] == [case.case_id]


async def test_moves_inside_one_district_and_old_history_open_no_case(world: World) -> None:
    same_school, other_school, new_student, history = new_key(), new_key(), new_key(), new_key()
    async with world.service() as svc:
        await world.publish(
            world.enrolled(history, A, "a-1", "2019-08-20"),
            world.enrolled(history, B, "b-1", "2021-08-20"),  # a move years ago, loaded as history
            world.enrolled(same_school, A, "a-1", "2025-08-20"),
            world.enrolled(same_school, A, "a-1", "2026-01-05"),  # re-enrollment in the same school
            world.enrolled(other_school, A, "a-1", "2025-08-20"),
            world.enrolled(other_school, A, "a-2", "2026-02-01"),  # another school of the same district
            world.enrolled(new_student, B, "b-1", "2026-03-01"),  # first enrollment anywhere
        )
        await wait_until(lambda: _at_least(processed(svc), 7), what="all enrollment events")
        await asyncio.sleep(0.3)
        assert await svc.pool.fetchval("SELECT count(*) FROM transfer_cases") == 0
        latest = await svc.pool.fetchrow(
            "SELECT school_id, entry_date::text AS d FROM student_enrollments WHERE student_key = $1", other_school
        )
        assert latest is not None and (latest["school_id"], latest["d"]) == ("a-2", "2026-02-01")


async def test_refused_decision_closes_the_case_without_release(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    async with world.service() as svc:
        await world.publish(
            world.enrolled(key, NOTHING, "n-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02")
        )
        case = await wait_state(svc, key, "refused")  # NOTHING transfers no element: consent releases none
        assert case.elements_released == [] and case.reason.startswith("nothing requested may be released")
        assert world.records.package_calls == [] and world.records.deliveries == {}


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _at_least(count: object, n: int) -> bool:
    assert asyncio.iscoroutine(count)
    return bool(await count >= n)


async def test_a_malformed_enrollment_is_dead_lettered_and_the_rest_flows(world: World) -> None:
    key, other = new_key(), new_key()
    world.records.students[other] = sample_record()
    bad_date = world.enrolled(key, B, "b-7", "02/11/2026")
    no_school = world.enrolled(key, B, "", "2026-11-02")
    async with world.service() as svc:
        await world.publish(
            world.enrolled(key, A, "a-1", "2025-08-20"),
            bad_date,
            no_school,
            world.enrolled(other, A, "a-1", "2025-08-20"),
            world.enrolled(other, B, "b-7", "2026-11-02"),
        )
        await wait_state(svc, other, "delivered")
        await wait_until(lambda: _at_least(processed(svc), 5), what="all enrollment events")
        outcomes = {
            r["event_id"]: r["outcome"] for r in await svc.pool.fetch("SELECT event_id, outcome FROM processed_events")
        }
        assert outcomes[bad_date.event_id] == "dead_lettered"
        assert outcomes[no_school.event_id] == "dead_lettered"
        assert await cases_of(svc, key) == []
        await svc.runtime.drain_outbox()
    wanted = {bad_date.event_id: "date.invalid", no_school.event_id: "field.required"}
    rejected = await read_matching(
        world.env.bootstrap,
        "ingest.rejected.v1",
        lambda e: getattr(e.payload, "original_event_id", "") in wanted,
        len(wanted),
    )
    assert {e.payload.original_event_id: e.payload.rule for e in rejected} == wanted  # type: ignore[attr-defined]
    fields = {e.payload.field for e in rejected}  # type: ignore[attr-defined]
    assert fields == {"entry_date", "school_id"}
