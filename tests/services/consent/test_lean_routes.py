"""The decision routes' short way (homeroom/lean_routes.py): a service whose token was verified
before is answered without FastAPI's dependency solving. Every answer and every refusal must be
the one the usual way gives, which answers the first time a token is seen."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.harness import ServiceEnv, ServiceUnderTest
from tests.services.consent.conftest import active_agreement, decision_request, uid


def comparable(r: httpx.Response) -> tuple[int, str, Any]:
    """Status, content type and body, without what differs on every call (the decision's id)."""
    body: Any = r.json()
    for decision in body.get("decisions", [body]):
        decision.pop("decision_id", None)
    return r.status_code, r.headers["content-type"], body


async def test_a_remembered_service_token_gets_the_same_answers_and_refusals(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    agreement_id = await active_agreement(svc.client, module_env, district)
    good = decision_request(agreement_id, district)
    as_json = {"content-type": "application/json"}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/decisions", {"json": good}),
        ("/v1/decisions", {"json": decision_request(agreement_id, "elsewhere")}),  # denied
        ("/v1/decisions", {"json": {**good, "action": "sell"}}),
        ("/v1/decisions", {"json": {**good, "surplus": 1}}),
        ("/v1/decisions", {"json": [good]}),
        ("/v1/decisions", {"content": b'{"action": "read",', "headers": as_json}),
        ("/v1/decisions", {"content": b"", "headers": as_json}),
        ("/v1/decisions", {"content": json.dumps(good).encode(), "headers": {"content-type": "text/plain"}}),
        ("/v1/decisions", {"content": json.dumps(good).encode(), "headers": {}}),
        ("/v1/decisions", {"content": json.dumps(good).encode(), "headers": {"content-type": "application/x+json"}}),
        ("/v1/decisions/batch", {"json": {"requests": [good, {**good, "elements": []}, good]}}),
        ("/v1/decisions/batch", {"json": {"requests": [good, good]}}),
        ("/v1/decisions/batch", {"json": {"requests": []}}),
    ]
    for path, call in calls:
        headers = call.pop("headers", {})
        for role, scope in (("service", {}), ("vendor", {"agreement": agreement_id, "organization": "Acme"})):
            token = module_env.auth(role, **scope)  # a new token: verified in full the first time
            first = await svc.client.post(path, headers={**headers, **token}, **call)
            again = await svc.client.post(path, headers={**headers, **token}, **call)
            assert comparable(again) == comparable(first), (path, role, call)
            if role == "vendor":  # refused: 403, or 422 first where the body is not JSON at all
                assert first.status_code in (403, 422), (path, call)
    # Each permitted answer is logged and found by its id, whichever way it went.
    service = module_env.auth("service")
    for _ in range(2):
        r = await svc.client.post("/v1/decisions", json=good, headers=service)
        assert r.json()["allow"] is True
        logged = await svc.client.get(f"/v1/decisions/{r.json()['decision_id']}", headers=service)
        assert logged.status_code == 200
        assert logged.json()["answer"] == r.json()


async def test_other_methods_and_paths_near_the_decision_routes_answer_as_before(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    """The decision routes are matched first; what they do not serve still goes where it went."""
    service = module_env.auth("service")
    r = await svc.client.get("/v1/decisions/batch", headers=service)
    assert r.status_code == 422  # GET /v1/decisions/{decision_id}: "batch" is no UUID
    r = await svc.client.get("/v1/decisions", headers=service)
    assert r.status_code == 405
    r = await svc.client.post("/v1/decisions/denials", headers=service, json={})
    assert r.status_code == 405
