"""The consent service through its HTTP API, on real PostgreSQL and the real broker:
the agreement lifecycle, bad input, and who may do what."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx

from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from tests.harness import ServiceEnv, ServiceUnderTest
from tests.services.consent.conftest import active_agreement, bus_events, decision_request, terms, uid


def errors_of(r: httpx.Response) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [(e["field"], e["rule"]) for e in r.json()["errors"]]


async def test_agreement_cannot_go_public_with_blank_2d_answers_121_3(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    """Activation names every missing answer; a misnamed answer is a 422, never silently dropped
    (the demo once sent `term_and_disposition` and `challenge_accuracy`); the public page of
    active agreements never shows an empty answer."""
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    misnamed = {**SUPPLEMENTAL_ANSWERS, "term_and_disposition": "x", "challenge_accuracy": "y"}
    del misnamed["term_and_expiry"], misnamed["accuracy_challenge"]
    body = {"organization": uid("Acme"), "category": "vendor", "supplemental": misnamed, "terms": terms(district)}
    r = await svc.client.post("/v1/agreements", json=body, headers=staff)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {
        "/supplemental/term_and_disposition",
        "/supplemental/challenge_accuracy",
    }
    r = await svc.client.post("/v1/agreements", json={**body, "nickname": "x", "supplemental": {}}, headers=staff)
    assert r.status_code == 422 and "/nickname" in {e["field"] for e in r.json()["errors"]}

    partial = {k: v for k, v in SUPPLEMENTAL_ANSWERS.items() if k != "encryption"} | {"subcontractor_oversight": " "}
    r = await svc.client.post("/v1/agreements", json={**body, "supplemental": partial}, headers=staff)
    assert r.status_code == 201, r.text
    agreement_id = r.json()["id"]
    r = await svc.client.post(f"/v1/agreements/{agreement_id}/activate", headers=staff)
    assert r.status_code == 422
    assert errors_of(r) == [
        ("/supplemental/subcontractor_oversight", "activation.supplemental_missing"),
        ("/supplemental/encryption", "activation.supplemental_missing"),
    ]
    # An amendment recorded as active is held to the same rule.
    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/versions", json={"terms": terms(district), "status": "active"}, headers=staff
    )
    assert r.status_code in (404, 409, 422)
    public = (await svc.client.get("/v1/public/agreements")).json()["agreements"]
    assert agreement_id not in {a["agreement_id"] for a in public}
    for item in public:
        assert all(answer.strip() for answer in item["supplemental"].values()), item["agreement_id"]
    page = (await svc.client.get("/v1/public/agreements.html")).text
    assert "Not yet answered" not in page


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
    assert created["agreement_id"] == agreement_id
    assert created["status"] == "draft" and created["version"] == 1 and created["recorded_by"].startswith("district")

    # A draft without elements cannot be activated; the error names the field and rule.
    r = await svc.client.post(f"/v1/agreements/{agreement_id}/activate", headers=staff)
    assert ("/terms/elements", "activation.no_elements") in errors_of(r)
    assert ("/supplemental/encryption", "activation.supplemental_missing") in errors_of(r)

    r = await svc.client.put(
        f"/v1/agreements/{agreement_id}/terms",
        json={"terms": terms(district), "supplemental": SUPPLEMENTAL_ANSWERS},
        headers=staff,
    )
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


async def test_denials_are_counted_by_reason_for_compliance_only(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    """The compliance portal's "denials by reason": decisions that released nothing, grouped."""
    compliance = module_env.auth("compliance")
    before = (await svc.client.get("/v1/decisions/denials", headers=compliance)).json()["total"]
    district = uid("d")
    service = module_env.auth("service", subject="homeroom-records")
    unknown = decision_request(uid("agr-none"), district)
    for _ in range(2):
        r = await svc.client.post("/v1/decisions", json=unknown, headers=service)
        assert r.status_code == 200 and r.json()["allow"] is False, r.text
    code = r.json()["denial"]
    assert code == "agreement_unknown", r.text
    r = await svc.client.get("/v1/decisions/denials", params={"days": 1}, headers=compliance)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == before + 2 and body["days"] == 1
    group = next(g for g in body["by_reason"] if g["code"] == code)
    assert group["count"] >= 2 and group["action"] == "read"
    assert group["meaning"] == "the requester's agreement is not on record" and group["example"]
    for role, scope in (("district_staff", {"district": district}), ("parent", {"students": ["stu_abc"]})):
        refused = await svc.client.get("/v1/decisions/denials", headers=module_env.auth(role, **scope))
        assert refused.status_code == 403, refused.text
    r = await svc.client.get("/v1/decisions/denials", params={"days": 0}, headers=compliance)
    assert r.status_code == 422


# --------------------------------------------------------------------- bad input


async def test_bad_terms_are_refused_naming_field_and_rule(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    bad = terms(
        district,
        elements=("student.first_name", "student.shoe_size", "student.ssn"),
        purposes=("instruction", "marketing"),
        start=date(2025, 6, 1),
        end=date(2025, 1, 1),
    )
    r = await svc.client.post(
        "/v1/agreements", json={"organization": "Acme", "category": "vendor", "terms": bad}, headers=staff
    )
    found = errors_of(r)
    assert ("/terms/elements/1", "element.unknown") in found
    assert ("/terms/elements/2", "element.forbidden") in found
    assert ("/terms/purposes/1", "purpose.unknown") in found
    assert ("/terms/end_date", "dates.end_before_start") in found
    assert len(found) == 4
    # Nothing was recorded.
    r = await svc.client.get("/v1/agreements", headers=staff)
    assert r.json()["agreements"] == []

    # The same rules guard a draft's edits.
    r = await svc.client.post(
        "/v1/agreements", json={"organization": "Acme", "category": "vendor", "terms": terms(district)}, headers=staff
    )
    agreement_id = r.json()["id"]
    r = await svc.client.put(
        f"/v1/agreements/{agreement_id}/terms",
        json={"terms": terms(district, elements=("nope",), purposes=("spying",))},
        headers=staff,
    )
    assert errors_of(r) == [("/terms/elements/0", "element.unknown"), ("/terms/purposes/0", "purpose.unknown")]

    # Schema errors: an unknown category, a date that is not a date, a stray field.
    r = await svc.client.post(
        "/v1/agreements",
        json={"organization": "Acme", "category": "advertiser", "terms": {**terms(district), "start_date": "soon"}},
        headers=staff,
    )
    found = errors_of(r)
    assert ("/category", "enum") in found and ("/terms/start_date", "date_from_datetime_parsing") in found
    r = await svc.client.post(
        "/v1/agreements",
        json={"organization": "Acme", "category": "vendor", "terms": {**terms(district), "price": 3}},
        headers=staff,
    )
    assert ("/terms/price", "extra_forbidden") in errors_of(r)


async def test_activation_refuses_expired_and_incomplete_terms(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    for term, rule in (
        (terms(district, start=date(2019, 1, 1), end=date(2020, 1, 1)), ("/terms/end_date", "activation.expired")),
        (terms(district, start=None), ("/terms/start_date", "activation.no_start_date")),
        (terms(district, purposes=()), ("/terms/purposes", "activation.no_purposes")),
    ):
        r = await svc.client.post(
            "/v1/agreements", json={"organization": "Acme", "category": "vendor", "terms": term}, headers=staff
        )
        assert r.status_code == 201, r.text
        r = await svc.client.post(f"/v1/agreements/{r.json()['id']}/activate", headers=staff)
        assert rule in errors_of(r)


async def test_amendment_may_not_rewrite_days_already_governed(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    agreement_id = await active_agreement(svc.client, module_env, district)
    # Different elements from a start date in the past: those days were decided under v1.
    overlapping = terms(district, elements=("program.iep",), start=date(2021, 1, 1))
    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/versions", json={"terms": overlapping, "status": "active"}, headers=staff
    )
    assert ("/terms/start_date", "versions.overlap") in errors_of(r)
    # The same amendment starting in the future is fine.
    future = terms(district, elements=("program.iep",), start=date(2098, 1, 1))
    r = await svc.client.post(
        f"/v1/agreements/{agreement_id}/versions", json={"terms": future, "status": "active"}, headers=staff
    )
    assert r.status_code == 201 and r.json()["status"] == "active"


# ------------------------------------------------------------------ who may act


async def test_only_covered_district_staff_or_compliance_manage_agreements(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district, other = uid("d"), uid("d")
    body = {"organization": "Acme", "category": "vendor", "terms": terms(district)}
    r = await svc.client.post("/v1/agreements", json=body, headers=module_env.auth("district_staff", district=other))
    assert r.status_code == 403
    for role, scope in (
        ("vendor", {"agreement": "a-1", "organization": "Acme"}),
        ("parent", {"students": ["stu_1"]}),
        ("operator", {}),
        ("school_staff", {"district": district, "schools": ["s-1"]}),
    ):
        r = await svc.client.post("/v1/agreements", json=body, headers=module_env.auth(role, **scope))
        assert r.status_code == 403, role
    r = await svc.client.post("/v1/agreements", json=body)
    assert r.status_code == 401

    # A district signs for itself only, never for another district as well.
    both = {**body, "terms": {**terms(district), "districts": [district, other]}}
    r = await svc.client.post("/v1/agreements", json=both, headers=module_env.auth("district_staff", district=district))
    assert r.status_code == 403 and other in r.json()["detail"]
    r = await svc.client.post("/v1/agreements", json=both, headers=module_env.auth("compliance"))
    assert r.status_code == 201
    r = await svc.client.post(
        f"/v1/agreements/{r.json()['id']}/suspend",
        json={"reason": "x"},
        headers=module_env.auth("district_staff", district=district),
    )
    assert r.status_code == 403

    r = await svc.client.post("/v1/agreements", json=body, headers=module_env.auth("compliance"))
    assert r.status_code == 201
    agreement_id = r.json()["id"]
    for path in ("activate", "suspend", "end"):
        r = await svc.client.post(
            f"/v1/agreements/{agreement_id}/{path}",
            json={"reason": "x"} if path == "suspend" else {},
            headers=module_env.auth("district_staff", district=other),
        )
        # As for an agreement that does not exist: staff of a district it does not cover
        # cannot tell it exists (issue 17, item 8).
        assert r.status_code == 404, path
    r = await svc.client.get(
        f"/v1/agreements/{agreement_id}", headers=module_env.auth("district_staff", district=other)
    )
    assert r.status_code == 404
    r = await svc.client.get(
        f"/v1/agreements/{agreement_id}", headers=module_env.auth("vendor", agreement="other", organization="X")
    )
    assert r.status_code == 403
    # Staff may not widen an agreement to their district through an edit of another district's.
    r = await svc.client.put(
        f"/v1/agreements/{agreement_id}/terms",
        json={"terms": terms(other)},
        headers=module_env.auth("district_staff", district=other),
    )
    assert r.status_code == 404


async def test_scope_is_for_services_and_the_agreements_own_vendor(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    agreement_id = await active_agreement(svc.client, module_env, district, schools=("s-1",))
    mine = module_env.auth("vendor", agreement=agreement_id, organization="Acme")
    r = await svc.client.get(f"/v1/agreements/{agreement_id}/scope", headers=mine)
    assert r.status_code == 200
    scope = r.json()
    assert scope["active"] is True and scope["status"] == "active" and scope["version"] == 1
    assert scope["districts"] == [district] and scope["schools"] == ["s-1"]
    assert scope["elements"] == ["student.first_name", "student.last_name", "attendance.daily"]
    r = await svc.client.get(f"/v1/agreements/{agreement_id}/scope", headers=module_env.auth("service"))
    assert r.status_code == 200

    other_vendor = module_env.auth("vendor", agreement=uid("agr"), organization="Acme")
    for headers in (
        other_vendor,
        module_env.auth("district_staff", district=district),
        module_env.auth("parent", students=["stu_1"]),
        module_env.auth("compliance"),
    ):
        r = await svc.client.get(f"/v1/agreements/{agreement_id}/scope", headers=headers)
        assert r.status_code == 403
    # Another vendor cannot learn whether an agreement exists: 403 before 404.
    r = await svc.client.get("/v1/agreements/no-such/scope", headers=other_vendor)
    assert r.status_code == 403


async def test_decisions_are_for_services_only(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    agreement_id = await active_agreement(svc.client, module_env, district)
    request = decision_request(agreement_id, district)
    for headers in (
        module_env.auth("vendor", agreement=agreement_id, organization="Acme"),
        module_env.auth("district_staff", district=district),
        module_env.auth("parent", students=["stu_abc"]),
    ):
        r = await svc.client.post("/v1/decisions", json=request, headers=headers)
        assert r.status_code == 403
    r = await svc.client.post("/v1/decisions", json={**request, "action": "sell"}, headers=module_env.auth("service"))
    assert ("/action", "literal_error") in errors_of(r)
    r = await svc.client.post("/v1/decisions", json={**request, "elements": []}, headers=module_env.auth("service"))
    assert ("/elements", "too_short") in errors_of(r)


async def test_a_vendor_lists_only_its_own_agreement(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    mine = await active_agreement(svc.client, module_env, district)
    other = await active_agreement(svc.client, module_env, district)
    vendor = module_env.auth("vendor", agreement=mine, organization="Acme")
    listed = (await svc.client.get("/v1/agreements", headers=vendor)).json()["agreements"]
    assert [a["agreement_id"] for a in listed] == [mine]
    assert (await svc.client.get(f"/v1/agreements/{other}", headers=vendor)).status_code == 403
    staff = module_env.auth("district_staff", district=district)
    listed = (await svc.client.get("/v1/agreements?status=active", headers=staff)).json()["agreements"]
    assert {a["agreement_id"] for a in listed} == {mine, other}
    elsewhere = module_env.auth("district_staff", district=uid("d"))
    assert (await svc.client.get("/v1/agreements", headers=elsewhere)).json()["agreements"] == []


async def test_an_offset_past_the_bigint_range_is_422_not_500(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    # Found by tests/e2e/test_schema_fuzz.py: it reached PostgreSQL and overflowed the driver.
    compliance = module_env.auth("compliance")
    r = await svc.client.get(f"/v1/agreements?offset={2**63}", headers=compliance)
    assert [field for field, _ in errors_of(r)] == ["query.offset"]
    r = await svc.client.get(f"/v1/agreements?offset={2**63 - 1}", headers=compliance)
    assert r.status_code == 200, r.text
