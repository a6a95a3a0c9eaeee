"""Reconciliation of records' read log with the audit log, on both real services.

A release whose disclosure never reached the audit log shows up in
`homeroom_records_disclosures_unaudited` (alert HomeroomReleaseWithoutAuditEntry) and
disappears from it once audit holds the entry. And the attack of issue 17, at the
source: a vendor whose token names a 300-character organisation, or whose subject holds a
control character, is refused before anything is read, by the same rules audit applies
(homeroom.entry_text); a purpose with control characters is recorded normalised.
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from homeroom.auth import AuthenticationError, Principal, Role, principal_from_claims
from homeroom.bus.topics import DISCLOSURE
from homeroom.contracts.clients import AuditClient
from homeroom.contracts.consent import Decision
from homeroom.entry_text import MAX_TEXT, escape, normalise, text_problem
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from services.records.application.disclosures import Release, record_releases
from services.records.reconcile import reconcile_once
from services.records.store import district_tx, ensure_student
from tests.harness import ServiceEnv
from tests.services.audit.conftest import Audit
from tests.services.audit.conftest import audit as audit
from tests.services.records.helpers import records_service

KEYS = ["stu_" + c * 32 for c in "abc"]


def _decision(purpose: str) -> Decision:
    return Decision(
        decision_id="dec-1",
        allow=True,
        legal_basis="FERPA 99.31(a)(1) school official",
        elements_allowed=["student.first_name"],
        elements_withheld=[],
        reason="",
        agreement_id="agr-1",
        agreement_version=1,
        purpose=purpose,
    )


async def test_a_release_missing_from_the_audit_log_is_counted_until_audit_holds_it(
    service_env: ServiceEnv, audit: Audit
) -> None:
    vendor = Principal(
        subject="app\x07user", role=Role.VENDOR, token_id="t-1", agreement_id="agr-1", organization="Acme"
    )
    async with records_service(service_env, reconcile_interval_s=0) as rec:
        async with district_tx(rec.runtime.pool, "d-a") as conn:
            for key in KEYS:
                await ensure_student(conn, "d-a", key)
            releases = [
                Release("d-a", key, ["student.first_name"], _decision("instruction\n" + "x" * 300)) for key in KEYS
            ]
            await record_releases(conn, vendor, releases, channel="records-api")
        rows = await rec.runtime.pool.fetch("SELECT payload FROM outbox WHERE topic = 'disclosure.v1' ORDER BY id")
        disclosures: list[DisclosureRecorded] = []
        for row in rows:
            message = DISCLOSURE.message()
            message.ParseFromString(bytes(row["payload"]))
            disclosures.append(getattr(message, message.WhichOneof("change") or ""))
        assert len(disclosures) == 3
        # Normalised at the source with audit's own rules: audit has nothing to refuse.
        for d in disclosures:
            assert text_problem(d.purpose) is None and text_problem(d.requester.person) is None
            assert d.requester.person == escape("app\x07user") and len(d.purpose) <= MAX_TEXT
        # Only two of the three reach audit (the third is "lost" on the way).
        await audit.publish(
            *(audit.event(DISCLOSURE, "disclosure_recorded", d, event_id=d.disclosure_id) for d in disclosures[:2])
        )
        await audit.wait_for_entries(2)
        transport = audit.svc.transport
        client = AuditClient("http://audit.test", rec.runtime.service_token, transport=transport)
        try:
            assert await reconcile_once(rec.runtime, client.present, grace_s=0) == 1
            assert REGISTRY.get_sample_value("homeroom_records_disclosures_unaudited") == 1
            escaped = await audit.svc.pool.fetchval("SELECT count(*) FROM entries WHERE details ? 'problems'")
            assert escaped == 0  # nothing arrived that audit had to escape
            last = disclosures[2]
            await audit.publish(audit.event(DISCLOSURE, "disclosure_recorded", last, event_id=last.disclosure_id))
            await audit.wait_for_entries(3)
            assert await reconcile_once(rec.runtime, client.present, grace_s=0) == 0
            assert REGISTRY.get_sample_value("homeroom_records_disclosures_unaudited") == 0
            async with district_tx(rec.runtime.pool, "d-a") as conn:
                assert await conn.fetchval("SELECT count(*) FROM read_log_audited") == 3
            # Only services may ask.
            refused = await audit.svc.client.post(
                "/v1/internal/disclosures/present",
                json={"disclosure_ids": [last.disclosure_id]},
                headers=service_env.auth("compliance"),
            )
            assert refused.status_code == 403
        finally:
            await client.aclose()


def _claims(**extra: object) -> dict[str, object]:
    return {"role": "vendor", "sub": "app-user", "jti": "j", "agreement": "agr-1", "org": "Acme", **extra}


def test_a_token_the_log_could_not_record_is_refused_before_anything_is_read() -> None:
    assert principal_from_claims(_claims()).organization == "Acme"
    for claims in (
        _claims(org="Acme " + "x" * 295),
        _claims(sub="vendor\x1b[2Jforged"),
        _claims(sub="x" * 300),
        _claims(agreement="agr-1\n"),
    ):
        try:
            principal_from_claims(claims)
        except AuthenticationError as refused:
            assert refused.reason == "malformed_claim"
        else:
            raise AssertionError(f"accepted {claims}")


def test_normalise_keeps_good_text_and_escapes_the_rest_deterministically() -> None:
    assert normalise("Acme Learning") == "Acme Learning"
    long = "y" * 1000
    assert normalise(long) == normalise(long) != normalise(long + "z")
    assert len(normalise(long)) == MAX_TEXT and text_problem(normalise(long)) is None
    assert normalise("a\x00b\x9bc") == "a\\u0000b\\u009bc"
