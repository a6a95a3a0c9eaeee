"""The decision point under attack: every way a request should be denied or trimmed is tried
against the running service, next to the request that is permitted."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from services.consent.decisions import DENIAL_CODES
from tests.harness import ServiceEnv, ServiceUnderTest, exported
from tests.services.consent.conftest import active_agreement, bus_events, decision_request, uid


async def ask(svc: ServiceUnderTest, env: ServiceEnv, request: dict[str, Any]) -> dict[str, Any]:
    r = await svc.client.post("/v1/decisions", json=request, headers=env.auth("service"))
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    if answer["allow"]:
        assert answer["denial"] is None
    else:
        assert answer["elements_allowed"] == [] and answer["legal_basis"] is None
        assert answer["denial"] in DENIAL_CODES, answer
    return answer


async def test_out_of_scope_requests_are_denied(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    agreement_id = await active_agreement(
        svc.client, module_env, district, schools=("s-1",), start=date(2024, 1, 1), end=date(2099, 1, 1)
    )
    good = decision_request(agreement_id, district, school_id="s-1", purpose="instruction", data_date="2024-03-01")
    assert (await ask(svc, module_env, good))["allow"] is True

    cases: dict[str, tuple[dict[str, Any], str, str]] = {
        "district not covered": ({"district_id": uid("d")}, "does not cover district", "district_not_covered"),
        "school not covered": ({"school_id": "s-2"}, "does not cover school", "school_not_covered"),
        "school unknown": ({"school_id": None}, "school is not known", "school_not_covered"),
        "date before the term": ({"data_date": "2023-12-31"}, "outside the term", "outside_term"),
        "purpose not permitted": ({"purpose": "research"}, "does not permit the purpose", "purpose_not_permitted"),
        "another agreement": (
            {"requester": {**good["requester"], "agreement_id": uid("agr")}},
            "no agreement",
            "agreement_unknown",
        ),
        "nobody's role": ({"requester": {"role": "operator", "subject": "ops"}}, "no rule permits", "no_rule_permits"),
        "staff of another district": (
            {"requester": {"role": "district_staff", "subject": "s", "district_id": uid("d")}},
            "no rule permits",
            "no_rule_permits",
        ),
        "parent of another child": (
            {"requester": {"role": "parent", "subject": "p", "student_keys": ["stu_other"]}},
            "no rule permits",
            "no_rule_permits",
        ),
    }
    for name, (change, reason, code) in cases.items():
        answer = await ask(svc, module_env, {**good, **change})
        assert answer["allow"] is False, name
        assert reason in answer["reason"], (name, answer["reason"])
        assert answer["denial"] == code, (name, answer["denial"])
        assert {w["element"] for w in answer["elements_withheld"]} == set(good["elements"]), name

    # The dashboard counts denials by the same codes.
    exposition = (await svc.client.get("/metrics")).text
    for code in {code for _change, _reason, code in cases.values()}:
        assert exported(exposition, f'homeroom_consent_denials_total{{reason="{code}"}}') > 0, code


async def test_not_yet_started_suspended_and_draft_agreements_release_nothing(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    future = await active_agreement(svc.client, module_env, district, start=date(2098, 1, 1))
    answer = await ask(svc, module_env, decision_request(future, district))
    assert answer["allow"] is False and "outside the term" in answer["reason"]
    assert answer["denial"] == "outside_term"

    current = await active_agreement(svc.client, module_env, district)
    r = await svc.client.post(f"/v1/agreements/{current}/suspend", json={"reason": "breach"}, headers=staff)
    assert r.status_code == 200
    answer = await ask(svc, module_env, decision_request(current, district))
    assert answer["allow"] is False and answer["denial"] == "agreement_suspended"
    r = await svc.client.post(f"/v1/agreements/{current}/activate", headers=staff)
    assert r.status_code == 200
    assert (await ask(svc, module_env, decision_request(current, district)))["allow"] is True

    r = await svc.client.post(
        "/v1/agreements",
        json={
            "organization": "Draft Co",
            "category": "vendor",
            "terms": {
                "elements": ["student.first_name"],
                "purposes": ["instruction"],
                "districts": [district],
                "start_date": "2020-01-01",
            },
        },
        headers=staff,
    )
    draft = r.json()["id"]
    answer = await ask(svc, module_env, decision_request(draft, district))
    assert answer["allow"] is False and answer["denial"] == "agreement_draft"


async def test_directory_opt_out_withholds_directory_elements_until_rescinded(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    student = uid("stu")
    agreement_id = await active_agreement(svc.client, module_env, district)
    request = decision_request(
        agreement_id,
        district,
        student=student,
        elements=("student.first_name", "student.last_name", "attendance.daily"),
    )
    assert (await ask(svc, module_env, request))["elements_allowed"] == [
        "student.first_name",
        "student.last_name",
        "attendance.daily",
    ]

    # Only the student's parent or the district's staff may record it.
    body = {"district_id": district, "method": "paper_form"}
    for headers in (
        module_env.auth("parent", students=["stu_other"]),
        module_env.auth("district_staff", district=uid("d")),
        module_env.auth("vendor", agreement=agreement_id, organization="Acme"),
    ):
        r = await svc.client.post(f"/v1/students/{student}/directory-opt-out", json=body, headers=headers)
        assert r.status_code == 403
    parent = module_env.auth("parent", subject="parent-9", students=[student])
    r = await svc.client.post(f"/v1/students/{student}/directory-opt-out", json=body, headers=parent)
    assert r.status_code == 201 and r.json()["recorded_by"] == "parent:parent-9"

    answer = await ask(svc, module_env, request)
    assert answer["allow"] is True and answer["elements_allowed"] == ["attendance.daily"]
    withheld = {w["element"]: w["reason"] for w in answer["elements_withheld"]}
    assert withheld == {
        "student.first_name": "the parent opted out of directory information",
        "student.last_name": "the parent opted out of directory information",
    }
    assert "directory-opt-out" in answer["rules"]
    # Not over a transfer to the enrolling school (99.31(a)(2) is no directory disclosure): the
    # record travels whole and the opt-out with it (the obligation), binding the receiving district.
    transfer = {**request, "action": "transfer", "to_district_id": uid("d"), "requester": {"role": "service"}}
    moved = await ask(svc, module_env, transfer)
    assert "student.first_name" in moved["elements_allowed"] and "directory-opt-out" not in moved["rules"]
    assert any("carry the parent's directory-information opt-out" in o for o in moved["obligations"])
    # The parent and the owning district still see everything.
    own = {**request, "requester": {"role": "parent", "subject": "p", "student_keys": [student]}}
    assert (await ask(svc, module_env, own))["legal_basis"] == "FERPA 99.10 parent inspection"
    assert len((await ask(svc, module_env, own))["elements_allowed"]) == 3
    staff = {**request, "requester": {"role": "district_staff", "subject": "s", "district_id": district}}
    assert len((await ask(svc, module_env, staff))["elements_allowed"]) == 3

    # Another district's record of the same child is not affected.
    other = uid("d")
    other_agreement = await active_agreement(svc.client, module_env, other)
    answer = await ask(svc, module_env, decision_request(other_agreement, other, student=student))
    assert "student.first_name" in answer["elements_allowed"]

    r = await svc.client.post(
        f"/v1/students/{student}/directory-opt-out/rescind",
        json={"district_id": district, "method": "email"},
        headers=module_env.auth("district_staff", subject="clerk-1", district=district),
    )
    assert r.status_code == 200
    assert len((await ask(svc, module_env, request))["elements_allowed"]) == 3
    r = await svc.client.post(
        f"/v1/students/{student}/directory-opt-out/rescind",
        json={"district_id": district, "method": "email"},
        headers=parent,
    )
    assert r.status_code == 409

    r = await svc.client.get(f"/v1/students/{student}/choices", headers=parent)
    history = r.json()["history"]
    assert [(h["kind"], h["recorded_by"], h["method"]) for h in history] == [
        ("directory_opt_out_recorded", "parent:parent-9", "paper_form"),
        ("directory_opt_out_rescinded", "district_staff:clerk-1", "email"),
    ]
    r = await svc.client.get(f"/v1/students/{student}/choices", headers=module_env.auth("parent", students=["x"]))
    assert r.status_code == 403


async def test_written_consent_adds_elements_until_withdrawn(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    student = uid("stu")
    # A COVID-testing lab: no FERPA exception, so only what a parent consented to is released.
    lab = await active_agreement(
        svc.client,
        module_env,
        district,
        category="public-health service",
        elements=("student.first_name", "student.birth_date", "health.immunizations"),
        purposes=("health_services",),
    )
    request = decision_request(lab, district, student=student, elements=("student.first_name", "student.birth_date"))
    answer = await ask(svc, module_env, request)
    assert answer["allow"] is False
    assert all("written consent" in w["reason"] for w in answer["elements_withheld"])

    parent = module_env.auth("parent", subject="mom", students=[student])
    bad = {
        "district_id": district,
        "recipient": lab,
        "elements": ["student.first_name", "x.y"],
        "purpose": "fun",
        "method": "portal",
    }
    r = await svc.client.post(f"/v1/students/{student}/consents", json=bad, headers=parent)
    assert r.status_code == 422
    assert {(e["field"], e["rule"]) for e in r.json()["errors"]} == {
        ("/elements/1", "element.unknown"),
        ("/purpose", "purpose.unknown"),
    }
    r = await svc.client.post(
        f"/v1/students/{student}/consents",
        json={**bad, "elements": ["student.first_name"], "purpose": None, "recipient": "no-such-agreement"},
        headers=parent,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "agreement.unknown"

    r = await svc.client.post(
        f"/v1/students/{student}/consents",
        json={"district_id": district, "recipient": lab, "elements": ["student.first_name"], "method": "portal"},
        headers=parent,
    )
    assert r.status_code == 201, r.text
    consent_id = r.json()["consent_id"]
    answer = await ask(svc, module_env, request)
    assert answer["allow"] is True and answer["elements_allowed"] == ["student.first_name"]
    assert answer["legal_basis"] == "FERPA 99.30 written consent"
    # The consent is this student's only.
    other = await ask(svc, module_env, {**request, "student_key": uid("stu")})
    assert other["allow"] is False

    r = await svc.client.post(
        f"/v1/students/{student}/consents/{consent_id}/withdraw", json={"method": "email"}, headers=parent
    )
    assert r.status_code == 200
    assert (await ask(svc, module_env, request))["allow"] is False
    r = await svc.client.post(
        f"/v1/students/{student}/consents/{consent_id}/withdraw", json={"method": "email"}, headers=parent
    )
    assert r.status_code == 409
    r = await svc.client.get(f"/v1/students/{student}/choices", headers=parent)
    assert [h["kind"] for h in r.json()["history"]] == ["consent_given", "consent_withdrawn"]
    assert r.json()["consents"][0]["withdrawn_by"] == "parent:mom"


async def test_transfer_releases_transferable_elements_with_notice(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    request = {
        "action": "transfer",
        "requester": {"role": "service", "subject": "homeroom-transfer"},
        "student_key": uid("stu"),
        "district_id": district,
        "elements": ["student.first_name", "discipline.suspension_dates", "discipline.incident_details"],
        "to_district_id": uid("d"),
    }
    answer = await ask(svc, module_env, request)
    assert answer["allow"] is True
    assert answer["elements_allowed"] == ["student.first_name", "discipline.suspension_dates"]
    assert answer["legal_basis"] == "FERPA 99.31(a)(2) transfer to enrolling school"
    assert any("99.34" in o for o in answer["obligations"])
    # The owning district may exclude elements from transfers; only its own staff or compliance set that.
    staff = module_env.auth("district_staff", district=district)
    path = f"/v1/districts/{district}/transfer-exclusions"
    r = await svc.client.put(path, json={"elements": ["student.first_name", "no.such"]}, headers=staff)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "/elements/1"
    r = await svc.client.put(
        path, json={"elements": ["student.first_name"]}, headers=module_env.auth("district_staff", district=uid("d"))
    )
    assert r.status_code == 403
    r = await svc.client.put(path, json={"elements": ["student.first_name"]}, headers=staff)
    assert r.status_code == 200 and r.json()["elements"] == ["student.first_name"]
    excluded = await ask(svc, module_env, request)
    assert excluded["elements_allowed"] == ["discipline.suspension_dates"]
    assert {"element": "student.first_name", "reason": f"district {district} does not transfer it"} in excluded[
        "elements_withheld"
    ]
    await svc.client.put(path, json={"elements": []}, headers=staff)
    same = await ask(svc, module_env, {**request, "to_district_id": district})
    assert same["allow"] is False
    nowhere = await ask(svc, module_env, {**request, "to_district_id": None})
    assert nowhere["allow"] is False
    # Only the transfer service or the receiving district's staff may ask for a transfer.
    vendor = {**request, "requester": {"role": "vendor", "subject": "app", "agreement_id": uid("agr")}}
    assert (await ask(svc, module_env, vendor))["allow"] is False
    stranger = {**request, "requester": {"role": "district_staff", "subject": "s", "district_id": uid("d")}}
    assert (await ask(svc, module_env, stranger))["allow"] is False
    receiving = {
        **request,
        "requester": {"role": "district_staff", "subject": "s", "district_id": request["to_district_id"]},
    }
    assert (await ask(svc, module_env, receiving))["allow"] is True


async def test_batch_answers_in_order_and_is_bounded(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    agreement_id = await active_agreement(svc.client, module_env, district)
    good = decision_request(agreement_id, district)
    bad = decision_request(agreement_id, uid("d"))
    r = await svc.client.post(
        "/v1/decisions/batch", json={"requests": [good, bad, good]}, headers=module_env.auth("service")
    )
    assert r.status_code == 200
    answers = r.json()["decisions"]
    assert [a["allow"] for a in answers] == [True, False, True]
    assert len({a["decision_id"] for a in answers}) == 3
    for answer in answers:  # every decision is logged under its id
        r = await svc.client.get(f"/v1/decisions/{answer['decision_id']}", headers=module_env.auth("compliance"))
        assert r.status_code == 200 and r.json()["answer"]["allow"] == answer["allow"]
    vendor = module_env.auth("vendor", agreement=agreement_id, organization="Acme")
    r = await svc.client.get(f"/v1/decisions/{answers[0]['decision_id']}", headers=vendor)
    assert r.status_code == 403
    metrics = (await svc.client.get("/metrics")).text
    assert exported(metrics, 'homeroom_consent_decisions_total{action="read",outcome="permit"}') > 0
    assert 'homeroom_consent_decision_seconds_count{route="batch"}' in metrics
    r = await svc.client.post(
        "/v1/decisions/batch", json={"requests": [good] * 1001}, headers=module_env.auth("service")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "/requests"


async def test_a_batch_and_asks_alongside_are_each_logged_as_given(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    """A batch and single asks made meanwhile share the log's group commits: every answer
    keeps its request's place, and what the caller is sent is the row logged."""
    district = uid("d")
    agreement_id = await active_agreement(svc.client, module_env, district)
    good = decision_request(agreement_id, district)
    bad = decision_request(agreement_id, uid("d"))
    requests = [good if i % 3 else bad for i in range(450)]
    service = module_env.auth("service")
    batch, *singles = await asyncio.gather(
        svc.client.post("/v1/decisions/batch", json={"requests": requests}, headers=service),
        *(svc.client.post("/v1/decisions", json=good if i % 2 else bad, headers=service) for i in range(8)),
    )
    assert batch.status_code == 200 and all(r.status_code == 200 for r in singles)
    answers = [*batch.json()["decisions"], *(r.json() for r in singles)]
    assert [a["allow"] for a in answers] == [bool(i % 3) for i in range(len(requests))] + [
        bool(i % 2) for i in range(8)
    ]
    async with svc.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT decision_id::text, answer::text FROM decisions WHERE decision_id = ANY($1::uuid[])",
            [a["decision_id"] for a in answers],
        )
    logged = {r["decision_id"]: json.loads(r["answer"]) for r in rows}
    assert logged == {a["decision_id"]: a for a in answers}


async def test_consent_adds_elements_for_a_vendor_but_never_beats_an_opt_out(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    student = uid("stu")
    agreement_id = await active_agreement(svc.client, module_env, district, elements=("attendance.daily",))
    request = decision_request(
        agreement_id, district, student=student, elements=("attendance.daily", "program.ell", "student.first_name")
    )
    assert (await ask(svc, module_env, request))["elements_allowed"] == ["attendance.daily"]

    parent = module_env.auth("parent", subject="dad", students=[student])
    r = await svc.client.post(
        f"/v1/students/{student}/consents",
        json={
            "district_id": district,
            "recipient": agreement_id,
            "elements": ["program.ell", "student.first_name"],
            "purpose": "instruction",
            "method": "in_person",
        },
        headers=parent,
    )
    assert r.status_code == 201, r.text
    answer = await ask(svc, module_env, request)
    assert answer["elements_allowed"] == ["attendance.daily", "program.ell", "student.first_name"]
    assert answer["legal_basis"] == "FERPA 99.31(a)(1) school official"
    assert answer["rules"][:2] == ["agreement", "written-consent"]
    # A consent for one purpose does not cover another the agreement also allows.
    other_purpose = await ask(svc, module_env, {**request, "purpose": "research"})
    assert other_purpose["allow"] is False

    r = await svc.client.post(
        f"/v1/students/{student}/directory-opt-out", json={"district_id": district, "method": "portal"}, headers=parent
    )
    assert r.status_code == 201
    answer = await ask(svc, module_env, request)
    assert answer["elements_allowed"] == ["attendance.daily", "program.ell"]
    assert {w["element"] for w in answer["elements_withheld"]} == {"student.first_name"}

    # A consent cannot expire before it is given.
    r = await svc.client.post(
        f"/v1/students/{student}/consents",
        json={
            "district_id": district,
            "recipient": agreement_id,
            "elements": ["program.ell"],
            "valid_until": "2001-01-01",
            "method": "portal",
        },
        headers=parent,
    )
    assert r.status_code == 422 and r.json()["errors"][0] == {
        "field": "/valid_until",
        "rule": "date.in_past",
        "message": "A consent cannot expire before it is given.",
    }


async def test_parents_choices_are_published_on_the_bus(svc: ServiceUnderTest, module_env: ServiceEnv) -> None:
    district = uid("d")
    student = uid("stu")
    agreement_id = await active_agreement(svc.client, module_env, district)
    staff = module_env.auth("district_staff", subject="clerk", district=district)
    body = {"district_id": district, "method": "phone"}
    assert (await svc.client.post(f"/v1/students/{student}/directory-opt-out", json=body, headers=staff)).is_success
    r = await svc.client.post(
        f"/v1/students/{student}/consents",
        json={**body, "recipient": agreement_id, "elements": ["program.ell"]},
        headers=staff,
    )
    consent_id = r.json()["consent_id"]
    r = await svc.client.post(
        f"/v1/students/{student}/consents/{consent_id}/withdraw", json={"method": "phone"}, headers=staff
    )
    assert r.is_success
    # Staff of another district can neither withdraw it nor read the choices.
    other = module_env.auth("district_staff", district=uid("d"))
    r = await svc.client.post(
        f"/v1/students/{student}/consents/{consent_id}/withdraw", json={"method": "phone"}, headers=other
    )
    assert r.status_code == 404  # as for a consent that does not exist (issue 17, item 8)
    r = await svc.client.get(f"/v1/students/{student}/choices", headers=other)
    assert r.json()["history"] == [] and r.json()["consents"] == []

    await svc.runtime.drain_outbox()
    expected = {"directory_opt_out_recorded", "consent_given", "consent_withdrawn"}
    assert expected <= await bus_events(module_env.bootstrap, "consent.v1", student, expected)
