"""The decision point decides from facts held in memory: never stale past an agreement's
end or a parent's withdrawal, whichever instance (or whichever writer) made the change.

Two consent instances share one database, as two processes of the service would. A
decision on instance A is made, the change is written through instance B, and A's very
next answer already reflects it: A's group commit finds the facts' version moved under the
answer, refreshes what changed and decides again before the answer leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.consent.service import SERVICE
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.services.consent.conftest import active_agreement, decision_request, uid
from tests.services.consent.test_decisions import ask


@pytest.fixture
async def pair(module_env: ServiceEnv) -> AsyncIterator[tuple[ServiceUnderTest, ServiceUnderTest]]:
    async with service_under_test(SERVICE, module_env) as a:
        database = str(a.runtime.settings.database_url)
        async with service_under_test(SERVICE, module_env, database_url=database) as b:
            yield a, b


async def test_an_agreement_ended_elsewhere_is_never_answered_from_memory(
    pair: tuple[ServiceUnderTest, ServiceUnderTest], module_env: ServiceEnv
) -> None:
    a, b = pair
    district = uid("d")
    agreement = await active_agreement(b.client, module_env, district)
    request = decision_request(agreement, district)
    assert (await ask(a, module_env, request))["allow"] is True  # A now holds the agreement in memory
    redecided = a.runtime.state.decisions.redecided

    staff = module_env.auth("district_staff", district=district)
    r = await b.client.post(f"/v1/agreements/{agreement}/end", json={"reason": "terminated"}, headers=staff)
    assert r.status_code == 200, r.text
    answer = await ask(a, module_env, request)  # at once: no waiting for anything to propagate
    assert answer["allow"] is False, answer
    assert a.runtime.state.decisions.redecided == redecided + 1  # decided on stale facts, caught, decided again
    # The logged decision is the one given.
    r = await a.client.get(f"/v1/decisions/{answer['decision_id']}", headers=module_env.auth("compliance"))
    assert r.status_code == 200 and r.json()["answer"]["allow"] is False


async def test_a_consent_withdrawn_elsewhere_is_never_answered_from_memory(
    pair: tuple[ServiceUnderTest, ServiceUnderTest], module_env: ServiceEnv
) -> None:
    a, b = pair
    district, student = uid("d"), uid("stu")
    lab = await active_agreement(
        b.client,
        module_env,
        district,
        category="public-health service",
        elements=("student.first_name", "health.immunizations"),
        purposes=("health_services",),
    )
    request = decision_request(lab, district, student=student, elements=("student.first_name",))
    assert (await ask(a, module_env, request))["allow"] is False  # no FERPA exception: consent needed
    parent = module_env.auth("parent", subject="dad", students=[student])
    r = await b.client.post(
        f"/v1/students/{student}/consents",
        json={"district_id": district, "recipient": lab, "elements": ["student.first_name"], "method": "portal"},
        headers=parent,
    )
    assert r.status_code == 201, r.text
    assert (await ask(a, module_env, request))["allow"] is True  # given on B, seen by A at once

    r = await b.client.post(
        f"/v1/students/{student}/consents/{r.json()['consent_id']}/withdraw", json={"method": "email"}, headers=parent
    )
    assert r.status_code == 200, r.text
    assert (await ask(a, module_env, request))["allow"] is False  # withdrawn on B, refused by A at once
    # A change written straight to the database (as an operator's script would) reaches a
    # batch on A just the same: consent given again, then withdrawn in SQL.
    r = await b.client.post(
        f"/v1/students/{student}/consents",
        json={"district_id": district, "recipient": lab, "elements": ["student.first_name"], "method": "portal"},
        headers=parent,
    )
    assert r.status_code == 201, r.text
    batch = {"requests": [request] * 3}
    r = await a.client.post("/v1/decisions/batch", json=batch, headers=module_env.auth("service"))
    assert [d["allow"] for d in r.json()["decisions"]] == [True] * 3
    async with b.runtime.pool.acquire() as conn:
        await conn.execute("UPDATE written_consents SET withdrawn_at = now() WHERE student_key = $1", student)
    r = await a.client.post("/v1/decisions/batch", json=batch, headers=module_env.auth("service"))
    assert [d["allow"] for d in r.json()["decisions"]] == [False] * 3
