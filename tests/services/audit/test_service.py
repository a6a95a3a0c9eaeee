"""The audit service end to end: events on the real broker become entries exactly once.

Every event kind it consumes maps to one entry; an event that cannot be an entry (a
value where an element name belongs, a raw id where a pseudonymous key belongs, no
recipient) is dead-lettered with its rule and never reaches the log.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from homeroom.bus.topics import CONSENT, DISCLOSURE, KEYS, TRANSFER, ensure_topics, with_suffix
from homeroom.clock import fixed
from homeroom.events.v1.consent_pb2 import AgreementChanged, ConsentGiven, DataKeysDestroyed, GuardianshipChanged
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.events.v1.transfer_pb2 import TransferStep
from services.audit.consumers import SOURCE_TOPICS, consumer_spec
from services.audit.service import SERVICE
from tests.harness import ServiceEnv, service_under_test
from tests.services.audit.conftest import STUDENT_A, STUDENT_B, Audit, disclosure, until


async def test_published_disclosure_becomes_one_entry_even_when_redelivered(audit: Audit) -> None:
    event_id = str(uuid.uuid4())
    event = audit.event(DISCLOSURE, "disclosure_recorded", disclosure(), event_id=event_id)
    await audit.publish(event)
    await audit.publish(event)  # redelivered: the same id again
    await audit.wait_for_processed(1)
    await audit.wait_for_entries(1)
    other = audit.event(DISCLOSURE, "disclosure_recorded", disclosure())
    await audit.publish(other, event)  # and once more behind a new one
    await audit.wait_for_entries(2)
    await asyncio.sleep(0.5)  # give a wrongly applied repeat the chance to show up
    rows = await audit.svc.pool.fetch("SELECT seq, event_id FROM entries ORDER BY seq")
    assert [(r["seq"], r["event_id"]) for r in rows] == [(0, event_id), (1, other.event_id)]
    nodes = await audit.svc.pool.fetchval("SELECT count(*) FROM tree_nodes WHERE level = 0")
    assert nodes == 2  # one leaf per entry


async def test_every_consumed_kind_maps_to_one_entry(audit: Audit) -> None:
    events = [
        audit.event(DISCLOSURE, "disclosure_recorded", disclosure(redisclosure_parties=["Acme Subprocessor"])),
        audit.event(
            CONSENT,
            "consent_given",
            ConsentGiven(
                consent_id="c-1",
                student_key=STUDENT_A,
                district_id="d-100",
                recipient="Museum Trips Inc",
                elements=["student.first_name"],
                purpose="instruction",
                recorded_by="parent-7",
                method="portal",
            ),
        ),
        audit.event(
            CONSENT,
            "agreement_signed",
            AgreementChanged(
                agreement_id="agr-12",
                version=2,
                organization="Acme Learning",
                districts=["d-100"],
                elements=["attendance.daily"],
                purposes=["instruction"],
                status="active",
            ),
            subject="agr-12",
        ),
        audit.event(
            TRANSFER,
            "transfer_delivered",
            TransferStep(
                case_id="case-1",
                student_key=STUDENT_B,
                from_district_id="d-100",
                to_district_id="d-200",
                to_school_id="s-9",
                state="delivered",
                elements_released=["enrollment.grade_level", "attendance.summary"],
                legal_basis="FERPA 99.31(a)(2) transfer to enrolling school",
                decision_id="dec-1",
                attempt=1,
            ),
        ),
        audit.event(
            KEYS,
            "data_keys_destroyed",
            DataKeysDestroyed(
                district_id="d-100",
                scope="agreement",
                subject="agr-12",
                reason="agreement ended",
                keys_destroyed=3,
                requested_by=Party(organization="homeroom", role="service"),
            ),
            subject="d-100",
        ),
        # Issue 24: a parent linked to a student by a linking code.
        audit.event(
            CONSENT,
            "guardianship_linked",
            GuardianshipChanged(
                link_id="gl-0123456789abcdef",
                code_id="lc-0123456789abcdef",
                student_key=STUDENT_B,
                district_id="d-200",
                subject="oidc|parent-9",
                relationship="parent",
                acted_by=Party(person="oidc|parent-9", role="parent"),
            ),
        ),
    ]
    await audit.publish(*events)
    await audit.wait_for_entries(len(events))
    rows = await audit.svc.pool.fetch("SELECT * FROM entries ORDER BY seq")
    by_kind = {r["kind"]: r for r in rows}
    assert sorted(by_kind) == sorted(
        [
            "disclosure_recorded",
            "consent_given",
            "agreement_signed",
            "transfer_delivered",
            "data_keys_destroyed",
            "guardianship_linked",
        ]
    )
    g = by_kind["guardianship_linked"]
    assert (g["student_key"], g["district_id"], g["recipient_person"]) == (STUDENT_B, "d-200", "oidc|parent-9")
    assert sorted(r["seq"] for r in rows) == list(range(len(events)))  # gapless
    d = by_kind["disclosure_recorded"]
    assert (d["recipient_org"], d["purpose"], d["agreement_id"], d["student_key"]) == (
        "Acme Learning",
        "instruction",
        "agr-12",
        STUDENT_A,
    )
    assert d["elements"] == ["student.first_name", "attendance.daily"]
    assert d["redisclosure_parties"] == ["Acme Subprocessor"]
    assert d["topic"] == "disclosure.v1"  # the base topic, whatever copy it was read from
    t = by_kind["transfer_delivered"]
    assert (t["student_key"], t["district_id"], t["recipient_org"], t["legal_basis"]) == (
        STUDENT_B,
        "d-100",
        "d-200",
        "FERPA 99.31(a)(2) transfer to enrolling school",
    )
    assert by_kind["consent_given"]["legal_basis"] == "FERPA 99.30 written consent"
    assert by_kind["data_keys_destroyed"]["agreement_id"] == "agr-12"


def _dead_lettered(rule: str) -> float:
    value = REGISTRY.get_sample_value(
        "homeroom_events_dead_lettered_total", {"service": "audit", "consumer": "log", "reason": rule}
    )
    return value or 0.0


async def test_a_disclosure_breaking_a_rule_is_recorded_escaped_never_dead_lettered(audit: Audit) -> None:
    """The attack of issue 17: a vendor token whose organisation was 300 characters long (or
    whose subject held a control character) read students, and audit dead-lettered every
    disclosure (`entry.text_too_long`, `entry.control_character`): the 99.32 record vanished.
    Now each is recorded, escaped, naming the rules it broke; other events still dead-letter."""
    long_org = "Acme " + "x" * 295
    bad = {
        "entry.text_too_long": disclosure(requester=Party(organization=long_org, person="v", role="vendor")),
        "entry.control_character": disclosure(
            requester=Party(organization="Acme", person="vendor\x1b[2J\nforged line", role="vendor"),
            purpose="instruction\x00",
        ),
        "entry.element_unknown": disclosure(elements=["student.first_name", "Ana Lopez"]),
        "entry.student_key": disclosure(student_key="123-45-6789"),
        "entry.recipient_missing": disclosure(recipient=Party()),
        "entry.legal_basis_missing": disclosure(legal_basis=""),
        "entry.elements_missing": disclosure(elements=[]),
    }
    escaped_before = REGISTRY.get_sample_value("homeroom_audit_disclosures_escaped_total") or 0.0
    consent_rule = "entry.control_character"
    dead_before = _dead_lettered(consent_rule)
    events = {rule: audit.event(DISCLOSURE, "disclosure_recorded", p) for rule, p in bad.items()}
    not_a_disclosure = audit.event(
        CONSENT,
        "consent_given",
        ConsentGiven(
            consent_id="c-1", student_key=STUDENT_A, district_id="d-100", recipient="Acme\x07", recorded_by="p-1"
        ),
    )
    await audit.publish(*events.values(), not_a_disclosure)
    await audit.wait_for_processed(len(bad) + 1)
    await audit.wait_for_entries(len(bad))
    rows = {
        r["event_id"]: r
        for r in await audit.svc.pool.fetch(
            "SELECT event_id, requester_org, requester_person, purpose, student_key, elements, details FROM entries"
        )
    }
    for rule, event in events.items():
        row = rows[event.event_id]
        assert rule in json.loads(row["details"])["problems"], rule
    long_row = rows[events["entry.text_too_long"].event_id]
    assert len(long_row["requester_org"]) <= 256 and "300 chars, sha256:" in long_row["requester_org"]
    control_row = rows[events["entry.control_character"].event_id]
    assert control_row["requester_person"] == "vendor\\u001b[2J\\u000aforged line"
    assert control_row["purpose"] == "instruction\\u0000"
    raw_id = rows[events["entry.student_key"].event_id]
    assert raw_id["student_key"] == "" and "123-45-6789" not in raw_id["details"]
    assert list(rows[events["entry.element_unknown"].event_id]["elements"]) == ["student.first_name"]
    assert REGISTRY.get_sample_value("homeroom_audit_disclosures_escaped_total") == escaped_before + len(bad)

    async def dead_lettered() -> bool:
        return _dead_lettered(consent_rule) >= dead_before + 1

    await until(dead_lettered, 10)
    outcome = await audit.svc.pool.fetchval(
        "SELECT outcome FROM processed_events WHERE event_id = $1", not_a_disclosure.event_id
    )
    assert outcome == "dead_lettered"


async def test_a_parents_own_read_is_logged_though_a_parent_has_no_organization(audit: Audit) -> None:
    # Found by tests/e2e/test_privacy_attacks.py: records names a parent by person and role
    # only, and these disclosures were dead-lettered as `entry.recipient_missing`.
    parent = Party(person="parent-of-a", role="parent")
    read = disclosure(
        requester=parent, recipient=parent, legal_basis="FERPA 99.10 parent inspection", record_required=False
    )
    await audit.publish(audit.event(DISCLOSURE, "disclosure_recorded", read))
    await audit.wait_for_entries(1)
    row = await audit.svc.pool.fetchrow("SELECT recipient_role, recipient_person, record_required FROM entries")
    assert row is not None and (row["recipient_role"], row["recipient_person"]) == ("parent", "parent-of-a")
    assert row["record_required"] is False


async def test_heads_are_signed_periodically(service_env: ServiceEnv, topic_suffix: str) -> None:
    await ensure_topics(service_env.kafka.client_kwargs(), [with_suffix(t, topic_suffix) for t in SOURCE_TOPICS])
    spec = replace(SERVICE, consumers=(consumer_spec(topic_suffix),))
    async with service_under_test(spec, service_env, head_interval_s=0.1) as svc:
        audit = Audit(svc, service_env, topic_suffix, svc.runtime.publisher)
        await audit.publish(*(audit.event(DISCLOSURE, "disclosure_recorded", disclosure()) for _ in range(3)))
        await audit.wait_for_entries(3)

        async def signed() -> bool:
            return bool(await svc.pool.fetchval("SELECT 1 FROM tree_heads WHERE size = 3"))

        await until(signed, 20)
        latest = await svc.client.get("/v1/tree-heads/latest", headers=service_env.auth("compliance"))
        assert latest.status_code == 200
        assert latest.json()["size"] == 3
        metrics = (await svc.client.get("/metrics")).text
        assert "homeroom_audit_tree_size 3.0" in metrics
        assert "homeroom_audit_seconds_since_last_signed_head" in metrics


async def _verified(audit: Audit) -> dict[str, object]:
    signed = await audit.svc.client.post("/v1/tree-heads", headers=audit.auth("compliance"))
    assert signed.status_code == 201
    report = await audit.svc.client.get("/v1/verification", headers=audit.auth("compliance"))
    assert report.status_code == 200
    body: dict[str, object] = report.json()
    return body


async def test_concurrent_partitions_append_gaplessly(audit: Audit) -> None:
    # Sixty students spread over the topic's six partitions, which the kernel applies concurrently.
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    students = ["stu_" + alphabet[i % 32] + alphabet[i // 32] + "a" * 30 for i in range(60)]
    await audit.publish(*(audit.event(DISCLOSURE, "disclosure_recorded", disclosure(s)) for s in students))
    await audit.wait_for_entries(60)
    seqs = [r["seq"] for r in await audit.svc.pool.fetch("SELECT seq FROM entries ORDER BY seq")]
    assert seqs == list(range(60))
    levels = {
        r["level"]: r["n"]
        for r in await audit.svc.pool.fetch("SELECT level, count(*) AS n FROM tree_nodes GROUP BY level")
    }
    assert levels == {0: 60, 1: 30, 2: 15, 3: 7, 4: 3, 5: 1}  # every perfect subtree of 60 leaves, once
    body = await _verified(audit)
    assert body["ok"] is True and body["entries_read"] == 60


async def test_a_rolled_back_batch_leaves_the_tree_consistent(audit: Audit) -> None:
    # One partition (one student): good, bad, good in one batch. The kernel rolls the batch back and
    # replays one event at a time; the appends of the first attempt must leave no trace.
    good = [audit.event(DISCLOSURE, "disclosure_recorded", disclosure()) for _ in range(3)]
    # A disclosure is never refused (it is recorded escaped); a consent event that breaks a rule is.
    refused = ConsentGiven(
        consent_id="c-9", student_key=STUDENT_A, district_id="d-100", recipient="Acme\x07", recorded_by="p-1"
    )
    bad = audit.event(CONSENT, "consent_given", refused)
    await audit.publish(good[0], good[1], bad, good[2])
    await audit.wait_for_processed(4)
    await audit.wait_for_entries(3)
    rows = await audit.svc.pool.fetch("SELECT seq, event_id FROM entries ORDER BY seq")
    assert [r["event_id"] for r in rows] == [e.event_id for e in good]
    await audit.publish(audit.event(DISCLOSURE, "disclosure_recorded", disclosure()))
    await audit.wait_for_entries(4)
    body = await _verified(audit)
    assert body["ok"] is True and body["entries_read"] == 4


async def test_a_districts_yearly_disclosure_counts_are_public_with_small_cells_withheld(audit: Audit) -> None:
    """Issue 24: the transparency page's counts by recipient and purpose; under 10 never exact,
    a parent's own views (record_required false) and other districts not counted."""
    events = [audit.event(DISCLOSURE, "disclosure_recorded", disclosure()) for _ in range(11)]
    events += [audit.event(DISCLOSURE, "disclosure_recorded", disclosure(purpose="assessment")) for _ in range(2)]
    events.append(audit.event(DISCLOSURE, "disclosure_recorded", disclosure(district_id="d-200")))
    events.append(audit.event(DISCLOSURE, "disclosure_recorded", disclosure(record_required=False)))
    await audit.publish(*events)
    await audit.wait_for_entries(len(events))
    r = await audit.svc.client.get("/v1/public/disclosure-counts/d-100")
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == [
        {"recipient": "Acme Learning", "purpose": "instruction", "count": 11},
        {"recipient": "Acme Learning", "purpose": "assessment", "count": "fewer than 10"},
    ]


async def test_the_logs_times_are_read_from_the_services_clock(service_env: ServiceEnv, topic_suffix: str) -> None:
    """Heads, entries' append times, the export's time and the public counts' year all read
    `runtime.clock`: moved to 2031, a head is signed at 2031 and this year's disclosures fall
    out of the counts' window."""
    moment = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    moment_ms = int(moment.timestamp()) * 1000
    await ensure_topics(service_env.kafka.client_kwargs(), [with_suffix(t, topic_suffix) for t in SOURCE_TOPICS])
    spec = replace(SERVICE, consumers=(consumer_spec(topic_suffix),))
    clock = fixed(moment)
    async with service_under_test(
        spec, service_env, clock=clock, head_interval_s=3600.0, head_max_age_s=36000.0
    ) as svc:
        audit = Audit(svc, service_env, topic_suffix, svc.runtime.publisher)
        await audit.publish(audit.event(DISCLOSURE, "disclosure_recorded", disclosure()))
        await audit.wait_for_entries(1)
        assert await svc.pool.fetchval("SELECT recorded_at_ms FROM entries") == moment_ms
        signed = await svc.client.post("/v1/tree-heads", headers=audit.auth("compliance"))
        assert signed.status_code == 201 and signed.json()["timestamp_ms"] == moment_ms
        exported = await svc.client.get("/v1/export", headers=audit.auth("compliance"))
        assert json.loads(exported.text.splitlines()[0])["exported_at_ms"] == moment_ms
        counts = (await svc.client.get("/v1/public/disclosure-counts/d-100")).json()
        assert counts["since"] == (moment - timedelta(days=365)).isoformat() and counts["counts"] == []
