"""POST /v1/selections/disclosures: a recipient's disclosures in a period, the key destructions
before the exposure, and one multiproof against a signed head; read-only, compliance and
services only, bad requests named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from homeroom.bus.topics import DISCLOSURE, KEYS
from homeroom.contracts import disclosure_selection as sel
from homeroom.events.v1.consent_pb2 import DataKeysDestroyed
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.tlog.canonical import canonical_json
from homeroom.tlog.merkle import leaf_hash, verify_multiproof
from tests.services.audit.conftest import STUDENT_A, STUDENT_B, Audit, disclosure

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines()]


async def _select(audit: Audit, body: dict[str, Any], role: str = "compliance") -> Any:
    return await audit.svc.client.post("/v1/selections/disclosures", json=body, headers=audit.auth(role))


async def test_a_recipients_disclosures_come_with_their_destructions_and_one_proof(audit: Audit) -> None:
    destroyed = DataKeysDestroyed(
        district_id="d-100",
        scope="student",
        subject=STUDENT_B,
        reason="erasure",
        keys_destroyed=1,
        requested_by=Party(organization="d-100", role="district_staff"),
    )
    events = [
        audit.event(DISCLOSURE, "disclosure_recorded", disclosure(STUDENT_A)),
        audit.event(DISCLOSURE, "disclosure_recorded", disclosure(STUDENT_B)),
        audit.event(
            DISCLOSURE,
            "disclosure_recorded",
            disclosure(STUDENT_A, agreement_id="agr-99", recipient=Party(organization="Other Org", role="vendor")),
        ),
        audit.event(
            DISCLOSURE,
            "disclosure_recorded",
            disclosure(STUDENT_A, agreement_id="", recipient=Party(organization="Acme Learning", role="vendor")),
        ),
        audit.event(KEYS, "data_keys_destroyed", destroyed, subject=STUDENT_B),
    ]
    await audit.publish(*events)
    await audit.wait_for_entries(len(events))
    now = datetime.now(UTC)
    # Only what a signed head covers is selected: the head signed at start holds nothing yet.
    r = await _select(audit, {"agreement_ids": ["agr-12"], "until": now.isoformat()})
    assert r.status_code == 200 and [x["type"] for x in _lines(r.content)] == ["log", "end"]
    assert _lines(r.content)[0]["tree_size"] == 0
    head = (await audit.svc.client.post("/v1/tree-heads", headers=audit.auth("compliance"))).json()

    later = (now + timedelta(minutes=1)).isoformat()
    answer = await _select(
        audit,
        {"agreement_ids": ["agr-12"], "organizations": ["Acme Learning"], "until": later, "destroyed_before": later},
        role="service",
    )
    assert answer.status_code == 200, answer.text
    lines = _lines(answer.content)
    header = sel.parse_header(lines[0], "line 1")
    assert header.tree_size == head["size"] == 5 and header.root.hex() == head["root"]
    entries = [sel.parse_entry(x, "entry") for x in lines if x["type"] == "entry"]
    # agr-12's two disclosures and the one to Acme without an agreement, in log order, once each;
    # agr-99's (to another organisation) is not selected.
    chosen = [e for e in entries if e.role == "disclosure"]
    assert sorted((e.entry["agreement_id"], e.entry["student_key"]) for e in chosen) == [
        ("", STUDENT_A),
        ("agr-12", STUDENT_A),
        ("agr-12", STUDENT_B),
    ]
    assert [e.index for e in chosen] == sorted(e.index for e in chosen)
    assert [e.entry["kind"] for e in entries if e.role == "destruction"] == ["data_keys_destroyed"]
    for e in entries:
        assert leaf_hash(canonical_json(e.entry)) == e.leaf_hash
    proof = [h for x in lines if x["type"] == "proof" for h in sel.parse_proof(x, "proof")]
    leaves = sorted((e.index, e.leaf_hash) for e in entries)
    assert verify_multiproof(leaves, header.tree_size, proof, header.root)
    assert lines[-1] == {"type": "end", "entries": 4, "proof_hashes": len(proof)}

    # Only agr-12, and a period that ends before everything: nothing selected, still a valid answer.
    empty = _lines((await _select(audit, {"agreement_ids": ["agr-12"], "until": T0.isoformat()})).content)
    assert [x["type"] for x in empty] == ["log", "end"]
    only = _lines((await _select(audit, {"agreement_ids": ["agr-12"], "until": later})).content)
    assert [x["entry"]["agreement_id"] for x in only if x["type"] == "entry"] == ["agr-12", "agr-12"]  # no destructions


async def test_bad_requests_are_named_and_other_roles_refused(audit: Audit) -> None:
    await audit.svc.client.post("/v1/tree-heads", headers=audit.auth("compliance"))
    until = datetime.now(UTC).isoformat()
    for body, where in (
        ({"until": until}, "name at least one agreement id"),
        ({"agreement_ids": ["a"], "until": "2026-10-01T00:00:00"}, "time zone"),
        ({"agreement_ids": ["a"], "until": until, "since": until}, "after since"),
        ({"agreement_ids": ["a"], "until": until, "tree_size": 999}, "no signed tree head has size 999"),
        ({"agreement_ids": ["a"] * 51, "until": until}, "agreement_ids"),
        ({"agreement_ids": ["a"], "until": until, "extra": 1}, "extra"),
    ):
        r = await _select(audit, body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json") and where in r.text, r.text
    for role, scope in (
        ("vendor", {"agreement": "a", "organization": "Acme"}),
        ("district_staff", {"district": "d-100"}),
        ("parent", {"students": [STUDENT_A]}),
        ("operator", {}),
    ):
        r = await audit.svc.client.post(
            "/v1/selections/disclosures",
            json={"agreement_ids": ["a"], "until": until},
            headers=audit.auth(role, **scope),
        )
        assert r.status_code == 403, role
