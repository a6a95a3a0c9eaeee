"""The end of an agreement: the end event, the shredding of the keys that sealed the data
released under it, the record of both, and a vendor that can read nothing afterwards."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from homeroom.crypto import KeyDestroyedError
from services.consent.service import SERVICE
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.services.consent.conftest import active_agreement, bus_events, decision_request, uid


async def test_termination_shreds_released_data_and_denies_everything_after(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district, second = uid("d"), uid("d")
    staff = module_env.auth("district_staff", district=district)
    agreement_id = await active_agreement(svc.client, module_env, district)
    # Version 2 also covers a second district: its released data must go too.
    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/versions",
        json={
            "terms": {
                "elements": ["student.first_name"],
                "purposes": ["instruction"],
                "districts": [district, second],
                "start_date": "2098-01-01",
            },
            "status": "active",
        },
        headers=staff,
    )
    # A district signs for itself only: covering a second district takes compliance staff.
    assert r.status_code == 403
    compliance = module_env.auth("compliance", subject="officer")
    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/versions",
        json={
            "terms": {
                "elements": ["student.first_name"],
                "purposes": ["instruction"],
                "districts": [district, second],
                "start_date": "2098-01-01",
            },
            "status": "active",
        },
        headers=compliance,
    )
    assert r.status_code == 201, r.text
    cipher = svc.runtime.require_cipher()
    sealed = {
        d: await cipher.seal(d, agreement_id, "student.first_name", "Ana", scope="agreement")
        for d in (district, second)
    }
    assert (
        await cipher.open(district, agreement_id, "student.first_name", sealed[district], scope="agreement") == b"Ana"
    )
    assert (
        await svc.client.post(
            "/v1/decisions", json=decision_request(agreement_id, district), headers=module_env.auth("service")
        )
    ).json()["allow"] is True

    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/end", json={"reason": "terminated", "disposition": "destroy"}, headers=staff
    )
    assert r.status_code == 403  # it covers another district too
    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/end",
        json={"reason": "terminated", "disposition": "destroy"},
        headers=compliance,
    )
    assert r.status_code == 200, r.text
    ended = r.json()
    assert ended["status"] == "ended" and ended["reason"] == "terminated" and ended["disposition"] == "destroy"
    assert sorted(ended["districts"]) == sorted([district, second])
    assert ended["keys_destroyed"] == 2 and ended["keys_destroyed_at"] is not None

    for d in (district, second):
        with pytest.raises(KeyDestroyedError):
            await cipher.open(d, agreement_id, "student.first_name", sealed[d], scope="agreement")
    answer = (
        await svc.client.post(
            "/v1/decisions", json=decision_request(agreement_id, district), headers=module_env.auth("service")
        )
    ).json()
    assert answer["allow"] is False and "ended" in answer["reason"] and answer["denial"] == "agreement_ended"
    vendor = module_env.auth("vendor", agreement=agreement_id, organization="Acme")
    scope = (await svc.client.get(f"/v1/agreements/{agreement_id}/scope", headers=vendor)).json()
    assert scope["active"] is False and scope["elements"] == [] and scope["status"] == "ended"

    # Final: no second end, no amendment, no reactivation.
    r = await svc.client.post(f"/v1/agreements/{agreement_id}/end", json={}, headers=compliance)
    assert r.status_code == 409
    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/versions",
        json={"terms": {"elements": ["student.first_name"], "purposes": ["instruction"], "districts": [district]}},
        headers=compliance,
    )
    assert r.status_code == 409 and r.json()["rule"] == "amendment.after_end"
    r = await svc.client.post(f"/v1/agreements/{agreement_id}/activate", headers=compliance)
    assert r.status_code == 409

    history = (await svc.client.get(f"/v1/agreements/{agreement_id}", headers=compliance)).json()["history"]
    assert [h["change"] for h in history][-2:] == ["ended", "keys_destroyed"]

    await svc.runtime.drain_outbox()
    assert "agreement_ended" in await bus_events(module_env.bootstrap, "consent.v1", agreement_id, {"agreement_ended"})
    assert "data_keys_destroyed" in await bus_events(
        module_env.bootstrap, "keys.v1", agreement_id, {"data_keys_destroyed"}
    )


async def test_a_draft_cannot_be_ended(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    r = await svc.client.post(
        "/v1/agreements",
        json={"organization": "Acme", "category": "vendor", "terms": {"districts": [district]}},
        headers=staff,
    )
    r = await svc.client.post(f"/v1/agreements/{r.json()['id']}/end", json={}, headers=staff)
    assert r.status_code == 409 and r.json()["rule"] == "end.never_active"
    active = await active_agreement(svc.client, module_env, district)
    r = await svc.client.post(f"/v1/agreements/{active}/end", json={"reason": "expired"}, headers=staff)
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "end.not_expired"
    policy = (await svc.client.get("/v1/policy", headers=staff)).json()
    assert "forbid (principal, action, resource)" in policy["cedar"] and policy["default"] == "deny"
    r = await svc.client.post("/v1/agreements/unknown-agreement/end", json={}, headers=module_env.auth("compliance"))
    assert r.status_code == 404
    r = await svc.client.post(
        "/v1/agreements/unknown-agreement/end", json={"reason": "bored"}, headers=module_env.auth("compliance")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "/reason"


async def wait_until_shredded(svc: ServiceUnderTest, agreement_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """The agreement once its end is recorded with its keys destroyed (the check runs every 0.1 s)."""
    async with asyncio.timeout(20):
        while True:
            body: dict[str, Any] = (await svc.client.get(f"/v1/agreements/{agreement_id}", headers=headers)).json()
            if body["end"] is not None and body["end"]["keys_destroyed_at"] is not None:
                return body
            await asyncio.sleep(0.05)


async def test_the_periodic_check_ends_an_agreement_past_its_end_date(service_env: ServiceEnv) -> None:
    """Runs the clock past the end date and proves that the vendor can no longer read anything."""
    async with service_under_test(SERVICE, service_env, expiry_check_interval_s=0.1) as svc:
        district = uid("d")
        end_date = date.today() + timedelta(days=30)
        agreement_id = await active_agreement(svc.client, service_env, district, end=end_date)
        cipher = svc.runtime.require_cipher()
        sealed = await cipher.seal(district, agreement_id, "attendance.daily", "2026-11-02:P", scope="agreement")
        vendor = service_env.auth("vendor", agreement=agreement_id, organization="Acme")
        assert (await svc.client.get(f"/v1/agreements/{agreement_id}/scope", headers=vendor)).json()["active"]

        svc.runtime.clock = lambda: datetime.combine(end_date + timedelta(days=1), datetime.min.time(), UTC)
        staff = service_env.auth("district_staff", district=district)
        body = await wait_until_shredded(svc, agreement_id, staff)
        assert body["status"] == "ended"
        assert body["end"]["reason"] == "expired" and body["end"]["ended_on"] == end_date.isoformat()
        with pytest.raises(KeyDestroyedError):
            await cipher.open(district, agreement_id, "attendance.daily", sealed, scope="agreement")
        answer = (
            await svc.client.post(
                "/v1/decisions", json=decision_request(agreement_id, district), headers=service_env.auth("service")
            )
        ).json()
        assert answer["allow"] is False and "ended" in answer["reason"]
        scope = (await svc.client.get(f"/v1/agreements/{agreement_id}/scope", headers=vendor)).json()
        assert scope["active"] is False and scope["elements"] == []
        public = (await svc.client.get("/v1/public/agreements")).json()["agreements"]
        assert agreement_id not in {a["agreement_id"] for a in public}


async def test_an_end_whose_shredding_failed_is_finished_by_the_next_check(service_env: ServiceEnv) -> None:
    """The keys database goes away between the end and the shredding: the end stands, the record says
    the keys are not destroyed yet, and the next expiry check destroys them once the keys database is back."""
    from homeroom import crypto
    from homeroom.storage import create_pool
    from services.consent.application.ending import end_expired

    async with service_under_test(SERVICE, service_env) as svc:
        district = uid("d")
        staff = service_env.auth("district_staff", district=district)
        agreement_id = await active_agreement(svc.client, service_env, district)
        cipher = svc.runtime.require_cipher()
        sealed = await cipher.seal(district, agreement_id, "student.first_name", "Ana", scope="agreement")

        assert svc.runtime.keys_pool is not None
        await svc.runtime.keys_pool.close()  # the keys database is unreachable
        r = await svc.client.post(f"/v1/agreements/{agreement_id}/end", json={}, headers=staff)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ended" and r.json()["keys_destroyed_at"] is None
        answer = (
            await svc.client.post(
                "/v1/decisions", json=decision_request(agreement_id, district), headers=service_env.auth("service")
            )
        ).json()
        assert answer["allow"] is False

        # The keys database is back (a new pool, as after a restart); the next check shreds.
        pool = await create_pool(service_env.keys_database_url, max_size=2)
        svc.runtime.keys_pool = pool
        settings = svc.runtime.settings
        svc.runtime.cipher = crypto.EnvelopeCipher(
            crypto.FileKeyring(settings.keyring_path), crypto.PostgresDataKeyStore(pool)
        )
        assert await end_expired(svc.runtime) == []
        body = (await svc.client.get(f"/v1/agreements/{agreement_id}", headers=staff)).json()
        assert body["end"]["keys_destroyed"] == 1 and body["end"]["keys_destroyed_at"] is not None
        with pytest.raises(crypto.KeyDestroyedError):
            await svc.runtime.require_cipher().open(
                district, agreement_id, "student.first_name", sealed, scope="agreement"
            )
