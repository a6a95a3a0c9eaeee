"""The audit API: proofs that check out with merkle.py's verifiers, search, export, and who may see what."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from homeroom.bus.topics import CONSENT, DISCLOSURE, KEYS
from homeroom.catalogue import CATALOGUE
from homeroom.events.v1.consent_pb2 import DataDestroyed, DestructionCertification
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.tlog.canonical import canonical_json
from homeroom.tlog.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from services.audit.entries import STUDENT_KEY
from tests.services.audit.conftest import STUDENT_A, STUDENT_B, Audit, disclosure, seed


async def _seqs_of(audit: Audit, student_key: str) -> list[int]:
    rows = await audit.svc.pool.fetch("SELECT seq FROM entries WHERE student_key = $1 ORDER BY seq", student_key)
    return [r["seq"] for r in rows]


def _hex(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


async def test_inclusion_and_consistency_proofs_verify_against_signed_heads(audit: Audit) -> None:
    head5, head12 = await seed(audit, (5, 12))
    compliance = audit.auth("compliance")
    root5, root12 = bytes.fromhex(head5["root"]), bytes.fromhex(head12["root"])

    # An independent tree over the exported entries' bytes gives the signed roots.
    export = (await audit.svc.client.get("/v1/export", headers=compliance)).text.splitlines()
    entries = [json.loads(line) for line in export if json.loads(line)["type"] == "entry"]
    tree = MerkleLog()
    tree.extend(leaf_hash(canonical_json(e["entry"])) for e in entries)
    assert (tree.root(5), tree.root(12)) == (root5, root12)

    for index in range(12):
        r = await audit.svc.client.get(f"/v1/proofs/inclusion?index={index}&tree_size=12", headers=compliance)
        assert r.status_code == 200, r.text
        body = r.json()
        leaf = bytes.fromhex(body["leaf_hash"])
        assert leaf == leaf_hash(canonical_json(entries[index]["entry"]))
        assert verify_inclusion(leaf, index, 12, _hex(body["proof"]), root12)
        assert not verify_inclusion(leaf, (index + 1) % 12, 12, _hex(body["proof"]), root12)

    r = await audit.svc.client.get("/v1/proofs/consistency?first=5&second=12", headers=compliance)
    assert r.status_code == 200, r.text
    proof = _hex(r.json()["proof"])
    assert verify_consistency(5, 12, root5, root12, proof)
    forged = [bytes(32), *proof[1:]]
    assert not verify_consistency(5, 12, root5, root12, forged)

    # One entry with its proof against the latest signed head, checkable from the response alone.
    r = await audit.svc.client.get("/v1/entries/7", headers=compliance)
    assert r.status_code == 200
    body = r.json()
    entry = {k: v for k, v in body["entry"].items() if k not in ("leaf_hash", "receipt")}
    head = body["tree_head"]
    assert body["included"] and head["size"] == 12
    assert verify_inclusion(
        leaf_hash(canonical_json(entry)), 7, 12, _hex(body["inclusion_proof"]), bytes.fromhex(head["root"])
    )


async def test_an_entry_newer_than_the_latest_head_says_so(audit: Audit) -> None:
    await seed(audit, (2,))
    await audit.publish(audit.event(DISCLOSURE, "disclosure_recorded", disclosure()))
    await audit.wait_for_entries(3)
    body = (await audit.svc.client.get("/v1/entries/2", headers=audit.auth("compliance"))).json()
    assert (body["included"], body["inclusion_proof"]) == (False, None)
    r = await audit.svc.client.get("/v1/entries/99", headers=audit.auth("compliance"))
    assert r.status_code == 404


BAD_QUERIES = [
    ("/v1/proofs/inclusion?index=5&tree_size=5", "query.index", "proof.index_out_of_range"),
    ("/v1/proofs/inclusion?index=0&tree_size=50", "query.tree_size", "proof.tree_size_too_large"),
    ("/v1/proofs/consistency?first=1&second=40", "query.second", "proof.tree_size_too_large"),
    ("/v1/entries?from=2026-11-02T00:00:00", "query.from", "time.timezone_missing"),
    ("/v1/entries?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "query.to", "time.range_empty"),
    ("/v1/entries?element=Ana", "query.element", "element.unknown"),
    ("/v1/students/NY-1234/disclosures", "path.student_key", "student_key.format"),
]


async def test_bad_queries_name_the_field_and_rule(audit: Audit) -> None:
    await seed(audit, (5,))
    for url, field, rule in BAD_QUERIES:
        r = await audit.svc.client.get(url, headers=audit.auth("compliance"))
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        errors = [{"field": e["field"], "rule": e["rule"]} for e in r.json()["errors"]]
        assert {"field": field, "rule": rule} in errors, url
    for url in ("/v1/entries?limit=0", "/v1/entries?limit=1001", "/v1/proofs/inclusion?index=-1&tree_size=1"):
        r = await audit.svc.client.get(url, headers=audit.auth("compliance"))
        assert r.status_code == 422, url
    # A smaller second tree is not a malformed request but a failed verification (issue 17).
    r = await audit.svc.client.get("/v1/proofs/consistency?first=3&second=2", headers=audit.auth("compliance"))
    assert r.status_code == 409 and r.json()["type"].endswith("log-truncated"), r.text


async def test_search_filters_and_stable_pages(audit: Audit) -> None:
    await seed(audit, (9,))
    other = disclosure(
        STUDENT_B,
        recipient={"organization": "Bus Co", "role": "vendor"},
        agreement_id="agr-77",
        elements=["student.address"],
        purpose="transportation",
    )
    await audit.publish(audit.event(DISCLOSURE, "disclosure_recorded", other))
    await audit.wait_for_entries(10)
    compliance = audit.auth("compliance")

    async def seqs(query: str) -> list[int]:
        r = await audit.svc.client.get(f"/v1/entries?{query}", headers=compliance)
        assert r.status_code == 200, r.text
        return [e["seq"] for e in r.json()["entries"]]

    of_a = await _seqs_of(audit, STUDENT_A)
    assert len(of_a) == 5
    assert await seqs(f"student_key={STUDENT_A}") == of_a
    assert await seqs("recipient=Bus%20Co") == [9]  # published after the first nine were in
    assert await seqs("agreement_id=agr-77") == [9]
    assert await seqs("element=student.address") == [9]
    assert await seqs("purpose=transportation&student_key=" + STUDENT_B) == [9]
    assert await seqs("legal_basis=FERPA%2099.31(a)(1)%20school%20official&limit=1000") == list(range(10))
    assert await seqs("kind=consent_given") == []
    assert await seqs("from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z") == list(range(10))
    assert await seqs("to=2000-01-01T00:00:00Z") == []

    pages, after = [], None
    while True:
        query = "limit=3" + (f"&after={after}" if after is not None else "")
        r = (await audit.svc.client.get(f"/v1/entries?{query}", headers=compliance)).json()
        pages.append([e["seq"] for e in r["entries"]])
        after = r["next_after"]
        if after is None:
            break
    assert pages == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


async def test_a_parent_sees_only_their_own_child_in_plain_language(audit: Audit) -> None:
    await seed(audit, (4,))
    parent_a = audit.auth("parent", students=[STUDENT_A])
    r = await audit.svc.client.get(f"/v1/students/{STUDENT_A}/disclosures", headers=parent_a)
    assert r.status_code == 200, r.text
    disclosures = r.json()["disclosures"]
    assert [d["seq"] for d in disclosures] == await _seqs_of(audit, STUDENT_A)
    assert len(disclosures) == 2
    first = disclosures[0]
    assert first["recipient"]["organization"] == "Acme Learning"
    assert [e["name"] for e in first["elements"]] == ["First name", "Daily attendance"]
    assert first["agreement_id"] == "agr-12" and first["purpose"] == "instruction"
    assert "Acme Learning" in first["summary"] and "instruction" in first["summary"]
    assert "agreement agr-12" in first["summary"]
    # A school-official disclosure needs no 99.32 record: marked as such.
    assert first["record_required"] is False and "99.32(d)" in first["summary"]

    for headers in (parent_a, audit.auth("parent", students=[STUDENT_A, "stu_" + "c" * 32])):
        r = await audit.svc.client.get(f"/v1/students/{STUDENT_B}/disclosures", headers=headers)
        assert r.status_code == 403
    r = await audit.svc.client.get(f"/v1/students/{STUDENT_B}/disclosures", headers=audit.auth("compliance"))
    assert [d["seq"] for d in r.json()["disclosures"]] == await _seqs_of(audit, STUDENT_B)
    # A parent may not use the compliance search to reach other children.
    r = await audit.svc.client.get(f"/v1/entries?student_key={STUDENT_A}", headers=parent_a)
    assert r.status_code == 403

    # Issue 24: a token from consent's guardianship issuer names each child's districts (the parent's
    # active links); disclosures by a district where the link is not active (carried by a transfer
    # and not yet accepted, or revoked) are not shown. A token without the claim reaches every district.
    await audit.publish(audit.event(DISCLOSURE, "disclosure_recorded", disclosure(STUDENT_A, district_id="d-200")))
    await audit.wait_for_entries(5)
    seen = {}
    for districts in (["d-100"], ["d-200"], ["d-100", "d-200"], None):
        scope = {"guardianships": [(STUDENT_A, d) for d in districts]} if districts else {}
        headers = audit.auth("parent", students=[STUDENT_A], **scope)
        r = await audit.svc.client.get(f"/v1/students/{STUDENT_A}/disclosures", headers=headers)
        assert r.status_code == 200, r.text
        seen[str(districts)] = len(r.json()["disclosures"])
    assert seen == {"['d-100']": 2, "['d-200']": 1, "['d-100', 'd-200']": 3, "None": 3}


async def test_parents_own_views_are_shown_apart_one_line_per_day_never_as_disclosures_99_10(audit: Audit) -> None:
    await seed(audit, (2,))  # a vendor read of A (and one of B)
    own = {
        "requester": Party(person="parent-1", role="parent"),
        "recipient": Party(person="parent-1", role="parent"),
        "legal_basis": "FERPA 99.10 parent inspection",
        "agreement_id": "",
        "purpose": "",
        "record_required": False,
    }
    views = [audit.event(DISCLOSURE, "disclosure_recorded", disclosure(STUDENT_A, **own)) for _ in range(3)]
    await audit.publish(*views)
    await audit.wait_for_entries(5)
    r = await audit.svc.client.get(
        f"/v1/students/{STUDENT_A}/disclosures", headers=audit.auth("parent", students=[STUDENT_A])
    )
    body = r.json()
    assert [d["recipient"]["organization"] for d in body["disclosures"]] == ["Acme Learning"]
    assert "an unnamed recipient" not in json.dumps(body)
    (today,) = body["own_views"]
    assert today["views"] == 3 and today["districts"] == ["d-100"]


OUTSIDERS: dict[str, dict[str, Any]] = {
    "vendor": {"agreement": "agr-12", "organization": "Acme Learning"},
    "district_staff": {"district": "d-100"},
    "school_staff": {"district": "d-100", "schools": ["s-1"]},
    "service": {},
}


async def test_vendors_staff_and_operators_do_not_see_entries(audit: Audit) -> None:
    await seed(audit, (2,))
    student_routes = ["/v1/entries", "/v1/entries/0", "/v1/export", f"/v1/students/{STUDENT_A}/disclosures"]
    for role, scope in OUTSIDERS.items():
        headers = audit.auth(role, **scope)
        for url in [
            *student_routes,
            "/v1/tree-heads/latest",
            "/v1/verification",
            "/v1/proofs/inclusion?index=0&tree_size=1",
        ]:
            r = await audit.svc.client.get(url, headers=headers)
            assert r.status_code == 403, (role, url)
    operator = audit.auth("operator")
    for url in student_routes:
        assert (await audit.svc.client.get(url, headers=operator)).status_code == 403, url
    assert (await audit.svc.client.get("/v1/tree-heads/latest", headers=operator)).status_code == 200
    verification = await audit.svc.client.get("/v1/verification", headers=operator)
    assert verification.status_code == 200 and verification.json()["ok"] is True
    assert (await audit.svc.client.post("/v1/tree-heads", headers=operator)).status_code == 403
    assert (await audit.svc.client.get("/v1/entries")).status_code == 401


async def test_entries_hold_names_never_values(audit: Audit) -> None:
    await seed(audit, (3,))
    smuggled = disclosure(elements=["student.first_name", "Ana"], purpose="instruction")
    raw_id = disclosure(student_key="NY-123456789")
    formula = disclosure(recipient={"organization": '=HYPERLINK("http://evil")', "role": "vendor"})
    await audit.publish(*(audit.event(DISCLOSURE, "disclosure_recorded", p) for p in (smuggled, raw_id, formula)))
    await audit.wait_for_processed(6)
    # Disclosures are never dead-lettered (FERPA 99.32): the two that broke rules are recorded
    # with the rules named, but the value smuggled as an element and the raw id only as digests.
    await audit.wait_for_entries(6)
    export = (await audit.svc.client.get("/v1/export", headers=audit.auth("compliance"))).text
    assert "Ana" not in export and "123456789" not in export
    for line in export.splitlines():
        obj = json.loads(line)
        if obj["type"] == "entry":
            assert all(e in CATALOGUE for e in obj["entry"]["elements"])
            key = obj["entry"]["student_key"]
            assert STUDENT_KEY.match(key) or (key == "" and "entry.student_key" in obj["entry"]["details"]["problems"])

    r = await audit.svc.client.get("/v1/export?format=csv", headers=audit.auth("compliance"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["seq"]) for row in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[0]["elements"] == "student.first_name;attendance.daily"
    # A spreadsheet would run a cell starting with '=' as a formula: exported with a leading apostrophe.
    assert '\'=HYPERLINK("http://evil")' in [row["recipient_organization"] for row in rows]


async def test_cursors_past_the_bigint_range_are_422_not_500(audit: Audit) -> None:
    # Found by tests/e2e/test_schema_fuzz.py: these reached PostgreSQL and overflowed the driver.
    await seed(audit, (1,))
    for url in (
        f"/v1/entries?after={2**63}",
        f"/v1/entries/{2**63}",
        f"/v1/students/{STUDENT_A}/disclosures?after={2**64}",
    ):
        r = await audit.svc.client.get(url, headers=audit.auth("compliance"))
        assert r.status_code == 422, (url, r.text)
    r = await audit.svc.client.get(f"/v1/entries?after={2**63 - 1}", headers=audit.auth("compliance"))
    assert r.status_code == 200 and r.json()["entries"] == []


async def test_destruction_and_its_certification_are_in_the_log_121(audit: Audit) -> None:
    """What shredding destroyed (keys.v1 data_destroyed) and the recipient's certification of
    its own destruction (consent.v1 destruction_certified) become entries compliance can search."""
    destroyed = DataDestroyed(
        district_id="d-100",
        scope="agreement",
        subject="agr-12",
        reason="agreement agr-12 ended",
        items_destroyed=3,
        bytes_destroyed=4096,
        verified_unreadable=True,
        what=["3 release copies (40 students' releases)"],
        requested_by=Party(organization="homeroom-records", role="service"),
    )
    certified = DestructionCertification(
        agreement_id="agr-12",
        organization="Acme Learning",
        disposition="destroy",
        due_on="2027-01-05",
        method="destroyed",
        certified_by="Dana Reyes, security officer",
        completed_on="2026-12-01",
        what="database rows and backups",
        recorded_by=Party(organization="Acme Learning", person="acme-app", role="vendor"),
    )
    await audit.publish(
        audit.event(KEYS, "data_destroyed", destroyed, subject="agr-12"),
        audit.event(CONSENT, "destruction_certified", certified, subject="agr-12"),
    )
    await audit.wait_for_entries(2)
    r = await audit.svc.client.get("/v1/entries?agreement_id=agr-12", headers=audit.auth("compliance"))
    entries = {e["kind"]: e for e in r.json()["entries"]}
    assert entries["data_destroyed"]["details"]["items_destroyed"] == 3
    assert entries["data_destroyed"]["details"]["verified_unreadable"] is True
    assert entries["destruction_certified"]["details"]["certified_by"] == "Dana Reyes, security officer"
    assert entries["destruction_certified"]["recipient"]["organization"] == "Acme Learning"
