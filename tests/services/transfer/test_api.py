"""Who may see and answer a transfer case. A district sees only the cases into or out of
itself; only the receiving district answers; bad answers get specific errors."""

from __future__ import annotations

from typing import Any

from tests.services.transfer.conftest import A, B, C, World, new_key, sample_record, wait_state


async def test_only_the_two_districts_see_a_case_and_only_the_receiver_answers(world: World) -> None:
    key = new_key()
    world.records.students[key] = sample_record()
    async with world.service() as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "delivered")
        path = f"/v1/transfers/{case.case_id}"

        async def get(url: str, headers: dict[str, str], **params: Any) -> Any:
            return await svc.client.get(url, headers=headers, params=params)

        staff_a = world.auth("district_staff", district=A)
        staff_b = world.auth("district_staff", district=B)
        staff_c = world.auth("district_staff", district=C)
        school_b7 = world.auth("school_staff", district=B, schools=["b-7"])
        school_b8 = world.auth("school_staff", district=B, schools=["b-8"])
        parent = world.auth("parent", students=[key])
        other_parent = world.auth("parent", students=[new_key()])

        # A parent's token from consent names the districts of each active link: one linked in
        # either district of the case sees it; one whose link is in a third district only does not.
        linked_in = {d: world.auth("parent", students=[key], guardianships=[(key, d)]) for d in (A, B, C)}
        for district, status in ((A, 200), (B, 200), (C, 404)):
            assert (await get(path, linked_in[district])).status_code == status, district
        assert (await get("/v1/transfers", linked_in[C])).json()["transfers"] == []
        assert (await get("/v1/transfers", linked_in[A])).json()["count"] == 1

        # district C: not the case, not in lists, no hint that it exists
        r = await get(path, staff_c)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
        assert (await get("/v1/transfers", staff_c)).json()["transfers"] == []
        assert (await get(path, school_b8)).status_code == 404
        assert (await get(path, other_parent)).status_code == 404
        for role, scope in (("vendor", {"agreement": "agr-1", "organization": "Acme"}), ("operator", {})):
            assert (await get(path, world.auth(role, **scope))).status_code == 403
        assert (await svc.client.get(path)).status_code == 401

        for headers in (staff_a, staff_b, school_b7, parent, world.auth("compliance")):
            r = await get(path, headers)
            assert r.status_code == 200, r.text
            assert r.json()["case_id"] == case.case_id and r.json()["history"]

        inbound_b = (await get("/v1/transfers", staff_b, direction="inbound")).json()["transfers"]
        outbound_b = (await get("/v1/transfers", staff_b, direction="outbound")).json()["transfers"]
        outbound_a = (await get("/v1/transfers", staff_a, direction="outbound", state="delivered")).json()
        assert [c["case_id"] for c in inbound_b] == [case.case_id] and outbound_b == []
        assert [c["case_id"] for c in outbound_a["transfers"]] == [case.case_id]
        assert (await get("/v1/transfers", staff_a, state="acknowledged")).json()["transfers"] == []
        assert (await get("/v1/transfers", school_b7)).json()["count"] == 1
        assert (await get("/v1/transfers", school_b8)).json()["transfers"] == []
        assert (await get("/v1/transfers", parent)).json()["count"] == 1
        assert (await get("/v1/transfers", other_parent)).json()["transfers"] == []
        assert (await get("/v1/transfers", school_b7, direction="outbound")).status_code == 403
        bad_state = await get("/v1/transfers", staff_a, state="lost")
        assert bad_state.status_code == 422 and bad_state.json()["errors"][0]["field"] == "query.state"
        assert "package" not in (await get(path, staff_b)).json()  # values never leave through this API
        # A delivered case works to the receiving district's answer, counted from delivery.
        shown = (await get(path, staff_b)).json()
        assert shown["deadline_at"] is not None and shown["deadline_at"] > shown["delivered_at"]
        assert inbound_b[0]["deadline_at"] == shown["deadline_at"]

        # answering: the sender, another district and other schools may not
        ack = f"{path}/acknowledge"
        reject = f"{path}/reject"
        assert (await svc.client.post(ack, headers=staff_a, json={})).status_code == 403
        assert (await svc.client.post(ack, headers=staff_c, json={})).status_code == 404
        assert (await svc.client.post(ack, headers=school_b8, json={})).status_code == 404
        assert (await svc.client.post(ack, headers=parent, json={})).status_code == 403

        r = await svc.client.post(reject, headers=staff_b, json={"reason_code": "dunno"})
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "reason_code.unknown"
        r = await svc.client.post(reject, headers=staff_b, json={"reason_code": "other", "note": " "})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "/note"
        r = await svc.client.post(reject, headers=staff_b, json={})
        assert r.status_code == 422

        r = await svc.client.post(reject, headers=school_b7, json={"reason_code": "not_our_student", "note": "moved"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "rejected" and body["reason"] == "not_our_student"
        assert body["history"][-1]["step"] == "rejected" and body["history"][-1]["detail"]["note"] == "moved"
        # a rejected case cannot be acknowledged afterwards
        r = await svc.client.post(ack, headers=staff_b, json={})
        assert r.status_code == 409 and r.json()["state"] == "rejected"
        assert (await get(path, staff_b)).json()["deadline_at"] is None  # closed: nothing is due
        assert (await get("/v1/transfers/no-such-case", staff_b)).status_code == 404


async def test_a_case_not_yet_delivered_cannot_be_answered(world: World) -> None:
    key = new_key()
    world.records.refuse.add(key)  # records refuses the package for good
    async with world.service() as svc:
        await world.publish(world.enrolled(key, A, "a-1", "2025-08-20"), world.enrolled(key, B, "b-7", "2026-11-02"))
        case = await wait_state(svc, key, "failed")
        assert case.reason == "package_refused_by_peer"
        r = await svc.client.post(
            f"/v1/transfers/{case.case_id}/acknowledge", headers=world.auth("district_staff", district=B), json={}
        )
        assert r.status_code == 409
