"""The consent service through its HTTP API, on real PostgreSQL and the real broker:
the agreement lifecycle, bad input, and who may do what."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx

from tests.harness import ServiceEnv, ServiceUnderTest
from tests.services.consent.conftest import active_agreement, bus_events, decision_request, terms, uid


def errors_of(r: httpx.Response) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [(e["field"], e["rule"]) for e in r.json()["errors"]]


async def test_draft_lifecycle_keeps_history_and_emits_events(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    r = await svc.client.post(
        "/v1/agreements",
        json={
            "organization": "Acme Learning",
            "category": "vendor",
            "supplemental": {"exclusive_purposes": "Reading instruction only."},
            "terms": terms(district, elements=()),
        },
        headers=staff,
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    agreement_id = created["id"]
    assert created["status"] == "draft" and created["version"] == 1 and created["recorded_by"].startswith("district")

    # A draft without elements cannot be activated; the error names the field and rule.
    r = await svc.client.post(f"/v1/agreements/{agreement_id}/activate", headers=staff)
    assert ("/terms/elements", "activation.no_elements") in errors_of(r)

    r = await svc.client.put(f"/v1/agreements/{agreement_id}/terms", json={"terms": terms(district)}, headers=staff)
    assert r.status_code == 200, r.text
    r = await svc.client.post(f"/v1/agreements/{agreement_id}/activate", headers=staff)
    assert r.status_code == 200 and r.json()["status"] == "active"

    # Active terms are fixed: a change is an amendment, a new version; the first is kept.
    r = await svc.client.put(f"/v1/agreements/{agreement_id}/terms", json={"terms": terms(district)}, headers=staff)
    assert r.status_code == 409 and r.json()["rule"] == "terms.fixed"
    later = terms(district, elements=("student.first_name",), start=date(2098, 1, 1))
    r = await svc.client.post(f"/v1/agreements/{agreement_id}/versions", json={"terms": later}, headers=staff)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["status"] == "draft"

    r = await svc.client.get(f"/v1/agreements/{agreement_id}", headers=staff)
    body = r.json()
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert body["versions"][0]["terms"]["elements"] == ["student.first_name", "student.last_name", "attendance.daily"]
    assert body["status"] == "active" and body["governing_version"] == 1
    assert [h["change"] for h in body["history"]] == ["signed", "terms_set", "activated", "amended"]

    await svc.runtime.drain_outbox()
    seen = await bus_events(
        module_env.bootstrap,
        "consent.v1",
        agreement_id,
        {"agreement_signed", "agreement_amended", "agreement_activated"},
    )
    assert {"agreement_signed", "agreement_amended", "agreement_activated"} <= seen


async def test_vendor_decision_permits_only_the_agreements_elements(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    agreement_id = await active_agreement(svc.client, module_env, district)
    service = module_env.auth("service", subject="homeroom-records")
    request = decision_request(
        agreement_id, district, elements=("student.first_name", "program.iep", "student.ssn", "made.up")
    )
    r = await svc.client.post("/v1/decisions", json=request, headers=service)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["allow"] is True
    assert d["elements_allowed"] == ["student.first_name"]
    withheld = {w["element"]: w["reason"] for w in d["elements_withheld"]}
    assert set(withheld) == {"program.iep", "student.ssn", "made.up"}
    assert "not in agreement" in withheld["program.iep"]
    assert d["legal_basis"] == "FERPA 99.31(a)(1) school official"
    assert d["agreement_id"] == agreement_id and d["agreement_version"] == 1
    assert d["policy_version"] == "consent-policy/1" and d["purpose"] == "instruction"
    assert any("99.33" in o for o in d["obligations"])

    # The decision is logged under its id, request and answer as given.
    r = await svc.client.get(f"/v1/decisions/{d['decision_id']}", headers=module_env.auth("compliance"))
    assert r.status_code == 200
    assert r.json()["answer"]["elements_allowed"] == ["student.first_name"]
    assert r.json()["request"]["student_key"] == "stu_abc"
