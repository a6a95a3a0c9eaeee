"""Failures, deadlines and restarts: nothing sits silently, nothing happens twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prometheus_client import REGISTRY

from homeroom.clock import fixed
from services.transfer.store import Case
from tests.services.transfer.conftest import A, B, C, World, cases_of, new_key, sample_record, wait_state, wait_until


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_failing_records_is_retried_then_escalated(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    world.records.fail_deliveries = 1000
    escalations = metric("homeroom_transfer_escalations_total", reason="retries_exhausted")
    async with world.service(retry_max_attempts=3) as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "escalated")
        assert case.reason == "retries_exhausted" and case.attempt == 3
        assert world.records.delivery_calls.count(case.case_id) == 3
        history = await svc.pool.fetch(
            "SELECT step, reason FROM transfer_history WHERE case_id = $1 ORDER BY seq", case.case_id
        )
        steps = [h["step"] for h in history]
        assert steps == [
            "requested",
            "decided",
            "packaged",
            "attempt_failed:deliver:packaged:1",
            "attempt_failed:deliver:packaged:2",
            "attempt_failed:deliver:packaged:3",
            "escalated",
        ]
        assert world.records.deliveries == {}
        assert metric("homeroom_transfer_escalations_total", reason="retries_exhausted") == escalations + 1
        # nothing was released, so nothing was recorded as disclosed
        assert await svc.pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'disclosure.v1'") == 0
        r = await svc.client.get(f"/v1/transfers/{case.case_id}", headers=world.auth("district_staff", district=A))
        assert r.json()["state"] == "escalated"


async def test_a_transient_failure_is_retried_and_delivered_once(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    world.records.fail_deliveries = 2
    async with world.service(retry_max_attempts=5) as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "delivered")
        assert world.records.delivery_calls.count(case.case_id) == 3 and case.attempt == 0


async def test_unacknowledged_delivery_is_resent_then_escalated(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    breaches = metric("homeroom_transfer_deadline_breaches_total", deadline="acknowledgement")
    async with world.service(acknowledge_deadline_s=0.5, acknowledge_resends=1) as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "escalated")
        assert case.reason == "acknowledgement_deadline_passed" and case.resends == 1
        assert world.records.delivery_calls.count(case.case_id) == 2
        steps = [
            h["step"]
            for h in await svc.pool.fetch(
                "SELECT step FROM transfer_history WHERE case_id = $1 ORDER BY seq", case.case_id
            )
        ]
        assert steps[-2:] == ["resent:1", "escalated"]
        assert metric("homeroom_transfer_deadline_breaches_total", deadline="acknowledgement") == breaches + 2
        # still answerable by the receiving district after escalation
        r = await svc.client.post(
            f"/v1/transfers/{case.case_id}/acknowledge", headers=world.auth("district_staff", district=B), json={}
        )
        assert r.status_code == 200 and r.json()["state"] == "acknowledged"


async def test_a_restart_in_the_middle_of_a_delivery_resumes_without_repeating(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    world.records.deliver_delay_s = 30.0  # the first delivery hangs: the service stops in the middle of it
    settings = await world.settings(worker_lease_s=0.5, consumer_session_timeout_ms=3000)
    async with world.service(settings) as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"))
        await wait_until(
            lambda: svc.pool.fetchval("SELECT count(*) FROM student_enrollments WHERE student_key = $1", key),
            what="A's enrollment",
        )
    # while the service is down, the student enrolls in B
    await world.publish(world.enrolled(key, B, "b-7", "2026-11-02"))
    async with world.service(settings) as svc:
        await asyncio.wait_for(world.records.delivery_started.wait(), 30)
        case = (await cases_of(svc, key))[0]
        assert case.state.value == "packaged"
    # crashed mid-call: records has the package, the case does not know yet
    world.records.deliver_delay_s = 0.0
    async with world.service(settings) as svc:
        case = await wait_state(svc, key, "delivered")
        steps = [
            h["step"]
            for h in await svc.pool.fetch(
                "SELECT step FROM transfer_history WHERE case_id = $1 ORDER BY seq", case.case_id
            )
        ]
        assert steps.count("delivered") == 1 and steps.count("requested") == 1
        assert world.records.delivery_calls.count(case.case_id) == 2  # repeated once, idempotent on the case id
        assert len(world.records.deliveries) == 1
        worker = svc.runtime.state.worker
        assert worker is not None
        assert await worker.work_once() == 0  # nothing left to do: delivered waits for the answer
        await svc.runtime.drain_outbox()
        assert len(await cases_of(svc, key)) == 1


async def test_staff_send_an_escalated_case_round_again_once_records_is_back(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    world.records.fail_deliveries = 1000
    async with world.service(retry_max_attempts=2) as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "escalated")
        path = f"/v1/transfers/{case.case_id}/retry"
        assert (await svc.client.post(path, headers=world.auth("district_staff", district=C))).status_code == 404
        school = world.auth("school_staff", district=B, schools=["b-7"])
        assert (await svc.client.post(path, headers=school)).status_code == 403

        world.records.fail_deliveries = 0
        r = await svc.client.post(path, headers=world.auth("district_staff", district=A), json={"note": "records back"})
        assert r.status_code == 200, r.text
        assert r.json()["retries"] == 1
        case = await wait_state(svc, key, "delivered")
        steps = [
            h["step"]
            for h in (
                await svc.client.get(f"/v1/transfers/{case.case_id}", headers=world.auth("district_staff", district=B))
            ).json()["history"]
        ]
        assert steps[:7] == [
            "requested",
            "decided",
            "packaged",
            "attempt_failed:deliver:packaged:1",
            "attempt_failed:deliver:packaged:2",
            "escalated",
            "retried:1",
        ]
        assert steps[7:10] == ["decided:r1", "packaged:r1", "delivered:r1"]
        # a delivered case is not retried: it waits for B's answer
        r = await svc.client.post(path, headers=world.auth("district_staff", district=A))
        assert r.status_code == 409 and r.json()["state"] == "delivered"
        await svc.runtime.drain_outbox()
        step_ids = await svc.pool.fetch(
            "SELECT event_id FROM transfer_history WHERE case_id = $1 AND event_id <> ''", case.case_id
        )
        assert len({r["event_id"] for r in step_ids}) == len(step_ids)  # every round's steps are new events


async def test_the_acknowledgement_deadline_runs_on_the_service_clock(world: World) -> None:
    """Deadlines read the service's clock (`runtime.clock`), so a day is tested by moving it:
    a day after delivery with no answer the record is re-sent, a day after that the case is
    escalated; nothing happens while the clock stands."""
    key = new_key()
    world.records.students[key] = sample_record()
    async with world.service(acknowledge_deadline_s=24 * 3600.0, acknowledge_resends=1) as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "delivered")
        assert case.delivered_at is not None
        worker = svc.runtime.state.worker
        assert worker is not None
        assert await worker.work_once() == 0  # parked until the answer is due: a real day away

        svc.runtime.clock = fixed(case.delivered_at + timedelta(hours=25))

        async def resent() -> Case | None:
            found = await cases_of(svc, key)
            return found[0] if found and found[0].resends == 1 else None

        again = await wait_until(resent, what="the unanswered record to be re-sent")
        assert again.state.value == "delivered" and again.delivered_at == case.delivered_at + timedelta(hours=25)
        assert world.records.delivery_calls.count(case.case_id) == 2

        svc.runtime.clock = fixed(case.delivered_at + timedelta(hours=50))
        escalated = await wait_state(svc, key, "escalated")
        assert escalated.reason == "acknowledgement_deadline_passed"
        assert world.records.delivery_calls.count(case.case_id) == 2
