"""Breach response end to end on real services in process (issue 21): a vendor reports its own
breach; the scope is computed from the disclosure log and proven; the Part 121.10 clocks start
from the right events and close only by their acts; the CPO report, the families' letters (in
their languages) and the district summary go out through a real SMTP server; containment is
checked with consent; re-scoping keeps the old version; every change reaches the audit log."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from typing import Any

from homeroom.bus.envelope import decode
from homeroom.checkpoint import ED25519, Verifier, public_key_from_pem
from homeroom.outbox import EVENTS_OF_TOPIC, outbox_event
from homeroom.tlog.signing import Keyring
from services.incidents import metrics
from services.incidents.scope import TrustAnchors, read_lines, verify_bundle
from tests.mail import mail_arrives, to
from tests.services.incidents.conftest import World, days, student


async def _json(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _bundle(world: World, incident_id: str, version: int) -> bytes:
    r = await world.incidents.client.get(
        f"/v1/incidents/{incident_id}/scope/{version}/bundle", headers=world.auth("compliance")
    )
    assert r.status_code == 200, r.text
    return r.content


async def _anchors(world: World) -> TrustAnchors:
    keys = await _json(await world.audit.client.get("/v1/keys", headers=world.auth("compliance")))
    mine = await _json(await world.incidents.client.get("/v1/keys", headers=world.auth("compliance")))
    return TrustAnchors(
        log_keys=Keyring.from_pems(p.encode() for p in keys["keys"].values()),
        incidents=Verifier(mine["name"], ED25519, public_key_from_pem(mine["public_key"].encode())),
    )


def _obligations(view: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["basis"]): o for o in view["obligations"]}


async def test_a_vendor_reports_its_breach_and_the_whole_response_follows_from_the_log(world: World) -> None:
    now = world.now
    spanish, chinese, no_language, bengali, shredded, elsewhere, late = (student() for _ in range(7))
    for key, language in ((spanish, "spa"), (chinese, "Chinese"), (no_language, None), (bengali, "ben")):
        await world.register(key, language)
    exposure_start, exposure_end = now - days(10), now - days(1)
    await world.log(
        world.disclosure(spanish, now - days(20)),
        world.disclosure(spanish, now - days(19), elements=["attendance.daily"]),
        world.disclosure(chinese, now - days(20)),
        world.disclosure(no_language, now - days(5), elements=["student.first_name"]),
        world.disclosure(bengali, now - days(20)),
        # Shredded before the exposure began: disclosed, but not readable by the recipient.
        world.disclosure(shredded, now - days(30)),
        world.student_key_destroyed(shredded, now - days(15)),
        # Another recipient's disclosure, and one after the exposure: outside the scope.
        world.disclosure(elsewhere, now - days(20), agreement="other-agreement", organization="Other Org"),
        world.disclosure(late, now - days(0.5)),
    )
    world.at(now)

    # The vendor reports its own breach: its report is its notice to every agency (121.10(a)).
    opened = await _json(
        await world.incidents.client.post(
            "/v1/incidents",
            json={
                "discovered_at": (now - days(1)).isoformat(),
                "description": "A misconfigured storage bucket was readable from the internet.",
                "exposure_start": exposure_start.isoformat(),
                "exposure_end": exposure_end.isoformat(),
            },
            headers=world.vendor(),
        ),
        201,
    )
    incident_id = opened["incident_id"]
    assert opened["status"] == "open" and opened["districts"] == [world.district]
    view = await _json(
        await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=world.auth("compliance"))
    )
    clocks = _obligations(view)
    contractor = clocks[("contractor_to_agency", "law")]
    assert contractor["standing"] == "met" and "121.10(a)" in contractor["citation"]
    cpo = clocks[("agency_to_cpo", "law")]
    assert "121.10(b)" in cpo["citation"] and datetime.fromisoformat(cpo["due_at"]) == now + days(10)
    parents = clocks[("agency_to_parents", "law")]
    assert "121.10(e)" in parents["citation"] and datetime.fromisoformat(parents["due_at"]) == now + days(60)
    assert parents["standing"] == "open" and parents["remaining"] == "60 days 0 hours left"
    district_notices = await _json(await world.incidents.client.get("/v1/notices", headers=world.staff()))
    assert [n["kind"] for n in district_notices["notices"]] == ["breach_reported"]

    # The scope, computed from the log and frozen as version 1.
    frozen = await _json(
        await world.incidents.client.post(
            f"/v1/incidents/{incident_id}/scope", json={}, headers=world.auth("compliance")
        ),
        201,
    )
    totals = frozen["totals"]
    assert frozen["version"] == 1
    assert totals["disclosures"] == 6 and totals["students"] == 4 and totals["students_unreadable_only"] == 1
    assert totals["destruction_records"] == 1
    assert totals["students_by_element"]["attendance.daily"] == 3  # not the one only sent a first name
    assert frozen["entries"] == 7 and frozen["proof_hashes"] > 0
    page = await _json(
        await world.incidents.client.get(
            f"/v1/incidents/{incident_id}/scope/1/students", headers=world.auth("compliance")
        )
    )
    by_key = {s["student_key"]: s for s in page["students"]}
    assert set(by_key) == {spanish, chinese, no_language, bengali, shredded}
    assert by_key[no_language]["elements"] == ["student.first_name"]
    assert by_key[shredded]["elements"] == [] and by_key[shredded]["unreadable_elements"] == sorted(
        ["student.first_name", "student.last_name", "enrollment.grade_level", "attendance.daily"]
    )
    assert len(by_key[shredded]["destruction_records"]) == 1

    # The state checks it without trusting Homeroom: pinned keys, every leaf, the multiproof, the
    # counts recomputed, the bundle's signature; and with the whole log, that nothing is missing.
    bundle = await _bundle(world, incident_id, 1)
    anchors = await _anchors(world)
    export = await world.audit.client.get("/v1/export", headers=world.auth("compliance"))
    report = verify_bundle(read_lines([bundle]), anchors, export_lines=export.content.splitlines())
    assert report.ok, report.findings
    assert report.complete is True and report.totals["students"] == 4

    # The same check as the state runs it: `homeroom incidents verify-scope` with pinned keys.
    from typer.testing import CliRunner

    from services.incidents.cli import app as incidents_cli

    folder = world.env.secrets_dir / incident_id
    folder.mkdir()
    (folder / "scope.jsonl.gz").write_bytes(bundle)
    keys = await _json(await world.audit.client.get("/v1/keys", headers=world.auth("compliance")))
    (folder / "keys.json").write_text(json.dumps(keys))
    mine = await _json(await world.incidents.client.get("/v1/keys", headers=world.auth("compliance")))
    (folder / "incidents.pem").write_text(mine["public_key"])
    (folder / "log.jsonl").write_bytes(export.content)
    args = ["verify-scope", str(folder / "scope.jsonl.gz"), "--log-keys", str(folder / "keys.json")]
    args += ["--incidents-key", str(folder / "incidents.pem"), "--export", str(folder / "log.jsonl")]
    ran = CliRunner().invoke(incidents_cli, args)
    assert ran.exit_code == 0 and "complete against the whole log: yes" in ran.output, ran.output
    forged_bytes = gzip.decompress(bundle).replace(b'"students":4', b'"students":3')
    (folder / "forged.jsonl.gz").write_bytes(gzip.compress(forged_bytes))
    forged = CliRunner().invoke(incidents_cli, [*args[:1], str(folder / "forged.jsonl.gz"), *args[2:]])
    assert forged.exit_code == 1 and "totals are not the ones" in forged.output, forged.output

    # Tampering shows: a student swapped in an entry, a student dropped from the list.
    lines = gzip.decompress(bundle).splitlines(keepends=True)
    swapped = [
        line.replace(spanish.encode(), elsewhere.encode()) if line.startswith(b'{"type": "entry"') else line
        for line in lines
    ]
    assert any("does not hash to its leaf" in f for f in verify_bundle(swapped, anchors).findings)
    dropped = [line for line in lines if not (line.startswith(b'{"type":"student"') and chinese.encode() in line)]
    findings = verify_bundle(dropped, anchors).findings
    assert any("students listed" in f for f in findings) and any("changed after it was signed" in f for f in findings)

    # The report to the CPO: a document and a machine-readable file, delivered and recorded.
    reports = await _json(
        await world.incidents.client.post(f"/v1/incidents/{incident_id}/cpo-report", json={}, headers=world.staff())
    )
    report_id = reports["reports"][0]["report_id"]
    machine = await _json(
        await world.incidents.client.get(f"/v1/incidents/{incident_id}/reports/{report_id}", headers=world.staff())
    )
    assert machine["students_affected"] == 4 and machine["students_whose_data_was_unreadable"] == 1
    assert machine["regulation"] == "8 NYCRR 121.10(b), (d)" and machine["records_affected"] == 6
    document = await world.incidents.client.get(
        f"/v1/incidents/{incident_id}/reports/{report_id}", params={"format": "text"}, headers=world.staff()
    )
    assert "Chief Privacy Officer" in document.text and f"Students affected in {world.district}: 4" in document.text
    await mail_arrives(world.smtp.messages, to("cpo.nysed-cpo@"))

    # Letters to the four families whose child's data the recipient could read, in their languages.
    sent = await _json(
        await world.incidents.client.post(f"/v1/incidents/{incident_id}/letters", json={}, headers=world.staff())
    )
    assert sent["districts"][0]["letters"] == 4 and sent["districts"][0]["languages"] == {"es": 1, "zh": 1, "en": 2}
    parent = world.auth("parent", students=[spanish])
    letters = await _json(await world.incidents.client.get(f"/v1/students/{spanish}/breach-letters", headers=parent))
    body = letters["letters"][0]["body"]
    assert letters["letters"][0]["language"] == "es" and "asistencia diaria" in body and "Brightpath" in body
    other_parent = await world.incidents.client.get(
        f"/v1/students/{spanish}/breach-letters", headers=world.auth("parent", students=[chinese])
    )
    assert other_parent.status_code == 403
    # A link active in another district only (consent's token names districts) reads no letter of this one.
    linked_elsewhere = world.auth("parent", students=[spanish], guardianships=[(spanish, "d-elsewhere")])
    unlinked = await _json(
        await world.incidents.client.get(f"/v1/students/{spanish}/breach-letters", headers=linked_elsewhere)
    )
    assert unlinked["letters"] == []
    linked_here = world.auth("parent", students=[spanish], guardianships=[(spanish, world.district)])
    linked = await _json(
        await world.incidents.client.get(f"/v1/students/{spanish}/breach-letters", headers=linked_here)
    )
    assert [x["language"] for x in linked["letters"]] == ["es"]
    printable = await _json(
        await world.incidents.client.get(f"/v1/incidents/{incident_id}/letters", headers=world.staff())
    )
    bengali_letter = next(x for x in printable["letters"] if x["student_key"] == bengali)
    assert bengali_letter["language"] == "en" and "(ben)" in bengali_letter["body"]
    await mail_arrives(world.smtp.messages, lambda m: "parent.stu_" in str(m["To"]), count=4)
    await mail_arrives(world.smtp.messages, to(f"district.{world.district}@"), count=2)  # the report, the summary

    view = await _json(
        await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=world.auth("compliance"))
    )
    assert view["status"] == "notified"
    assert {(o["kind"], o["standing"]) for o in view["obligations"]} == {
        ("contractor_to_agency", "met"),
        ("agency_to_cpo", "met"),
        ("agency_to_parents", "met"),
    }

    # Re-scoping with a longer period makes version 2 and keeps version 1; only the new family hears again.
    world.at(now + days(1))
    second = await _json(
        await world.incidents.client.post(
            f"/v1/incidents/{incident_id}/scope",
            json={"exposure_end": now.isoformat()},
            headers=world.auth("compliance"),
        ),
        201,
    )
    assert second["version"] == 2 and second["totals"]["students"] == 5
    first = await _json(await world.incidents.client.get(f"/v1/incidents/{incident_id}/scope/1", headers=world.staff()))
    assert first["totals"]["districts"][world.district]["students"] == 4
    again = await _json(
        await world.incidents.client.post(f"/v1/incidents/{incident_id}/letters", json={}, headers=world.staff())
    )
    assert again["districts"][0]["letters"] == 1
    assert verify_bundle(read_lines([await _bundle(world, incident_id, 2)]), anchors).ok

    # Every change is an incident.v1 event, and the audit log records them.
    rows = await world.incidents.pool.fetch(EVENTS_OF_TOPIC, "incident.v1", None)
    changes = [decode(r["topic"], 0, i, r["key"], bytes(r["payload"]), []).change for i, r in enumerate(rows)]
    assert changes[0] == "incident_opened" and changes.count("incident_scoped") == 2
    assert {"contractor_notice_received", "cpo_report_delivered", "families_notified", "obligation_closed"} <= set(
        changes
    )
    suffixed = [outbox_event(r) for r in rows]
    await world.publisher.publish_many(
        [e.__class__(e.event_id, f"incident.v1.{world.suffix}", e.key, e.headers, e.value) for e in suffixed]
    )
    entries = await world.audit.client.get(
        "/v1/entries", params={"kind": "incident_scoped", "limit": 10}, headers=world.auth("compliance")
    )
    for _ in range(200):
        if len(entries.json()["entries"]) == 2:
            break
        import asyncio

        await asyncio.sleep(0.05)
        entries = await world.audit.client.get(
            "/v1/entries", params={"kind": "incident_scoped", "limit": 10}, headers=world.auth("compliance")
        )
    logged = entries.json()["entries"]
    assert [e["details"]["scope_version"] for e in logged] == [1, 2]
    assert logged[0]["details"]["scope_sha256"] == frozen["bundle_sha256"] and logged[0]["details"]["students"] == 4
    assert "misconfigured" not in json.dumps(logged)  # codes and counts, never what a person typed


async def test_clocks_start_from_the_right_event_alert_before_they_pass_and_close_only_by_their_act(
    world: World,
) -> None:
    now = world.now
    # The district finds the breach itself (121.10(d)) and has its own 24-hour contract deadline
    # for the contractor's notice (shorter than the law's seven days).
    r = await world.incidents.client.put(
        f"/v1/districts/{world.district}/breach-deadlines",
        json={"contractor_to_agency_hours": 24},
        headers=world.staff(),
    )
    assert r.status_code == 200, r.text
    longer = await world.incidents.client.put(
        f"/v1/districts/{world.district}/breach-deadlines", json={"agency_to_cpo_hours": 300}, headers=world.staff()
    )
    assert longer.status_code == 422 and longer.json()["errors"][0]["rule"] == "deadline.not_shorter"
    other = await world.incidents.client.put(
        f"/v1/districts/{world.district}/breach-deadlines",
        json={"contractor_to_agency_hours": 5},
        headers=world.staff("d-other"),
    )
    assert other.status_code == 403
    world.at(now)
    discovered = now - days(2)
    opened = await _json(
        await world.incidents.client.post(
            "/v1/incidents",
            json={
                "discovered_at": discovered.isoformat(),
                "description": "Rosters seen on a public forum.",
                "agreement_ids": [world.agreement],
                "exposure_start": (now - days(9)).isoformat(),
            },
            headers=world.staff(),
        ),
        201,
    )
    incident_id = opened["incident_id"]
    clocks = _obligations(opened)
    assert "121.10(d)" in clocks[("agency_to_cpo", "law")]["citation"]
    assert datetime.fromisoformat(clocks[("agency_to_cpo", "law")]["due_at"]) == discovered + days(10)
    assert datetime.fromisoformat(clocks[("contractor_to_agency", "law")]["due_at"]) == discovered + days(7)
    ours = clocks[("contractor_to_agency", "district")]
    assert datetime.fromisoformat(ours["due_at"]) == discovered + days(1) and "24 hours" not in ours["citation"]
    assert ours["standing"] == "overdue"  # a day past the district's own deadline already

    # The metrics the alert rules read: every running deadline, with its due time.
    from services.incidents.application import clocks as keeper

    await keeper.refresh(world.incidents.pool)
    due = {
        (s.labels["obligation"], s.labels["basis"]): s.value
        for m in metrics.OBLIGATION_DUE.collect()
        for s in m.samples
        if s.labels["incident_id"] == incident_id
    }
    assert due[("agency_to_parents", "law")] == (discovered + days(60)).timestamp()
    assert due[("contractor_to_agency", "district")] == (discovered + days(1)).timestamp()

    # Moving time, not data: nine days later the CPO report is due within a day.
    world.at(discovered + days(9))
    view = await _json(await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=world.staff()))
    assert _obligations(view)[("agency_to_cpo", "law")]["remaining"] == "1 day 0 hours left"

    # Closed only by its act: freezing a scope or sending letters does not close the CPO clock.
    await _json(
        await world.incidents.client.post(f"/v1/incidents/{incident_id}/scope", json={}, headers=world.staff()), 201
    )
    await _json(
        await world.incidents.client.post(f"/v1/incidents/{incident_id}/letters", json={}, headers=world.staff())
    )
    view = await _json(await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=world.staff()))
    clocks = _obligations(view)
    assert clocks[("agency_to_cpo", "law")]["standing"] == "open"
    assert clocks[("agency_to_parents", "law")]["standing"] == "not_required"  # nobody's data was disclosed
    assert view["status"] == "scoped"
    closing = await world.incidents.client.post(f"/v1/incidents/{incident_id}/close", headers=world.auth("compliance"))
    assert closing.status_code == 409 and closing.json()["rule"] == "close.open_obligations"

    # The contractor's notice arrives late (a day after the district's own deadline: met late) ...
    world.at(
        discovered
        + days(
            9,
        )
        + days(0.5)
    )
    noticed = await _json(
        await world.incidents.client.post(
            f"/v1/incidents/{incident_id}/contractor-notice", json={}, headers=world.vendor()
        )
    )
    assert {o["kind"] for o in noticed["obligations"]} == {"contractor_to_agency"}  # the vendor's own only
    clocks = _obligations(
        await _json(await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=world.staff()))
    )
    assert clocks[("contractor_to_agency", "district")]["standing"] == "met_late"
    assert clocks[("contractor_to_agency", "law")]["standing"] == "met_late"
    # ... and it does not move the CPO clock: the district's own discovery came first (121.10(d)).
    assert datetime.fromisoformat(clocks[("agency_to_cpo", "law")]["due_at"]) == discovered + days(10)

    world.at(discovered + days(11))
    late = await _json(await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=world.staff()))
    assert _obligations(late)[("agency_to_cpo", "law")]["standing"] == "overdue"
    await _json(
        await world.incidents.client.post(f"/v1/incidents/{incident_id}/cpo-report", json={}, headers=world.staff())
    )
    done = await _json(await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=world.staff()))
    assert _obligations(done)[("agency_to_cpo", "law")]["standing"] == "met_late"
    assert done["status"] == "notified"
    await keeper.refresh(world.incidents.pool)
    running = [s for m in metrics.OBLIGATION_DUE.collect() for s in m.samples if s.labels["incident_id"] == incident_id]
    assert running == []  # nothing left to alert on
    closed = await _json(
        await world.incidents.client.post(f"/v1/incidents/{incident_id}/close", headers=world.auth("compliance"))
    )
    assert closed["status"] == "closed"
    again = await world.incidents.client.post(
        f"/v1/incidents/{incident_id}/scope", json={}, headers=world.auth("compliance")
    )
    assert again.status_code == 409


async def test_containment_is_recorded_only_once_consent_took_it_and_access_stops(world: World) -> None:
    key = student()
    await world.register(key, "spa")
    world.at(world.now)
    opened = await _json(
        await world.incidents.client.post(
            "/v1/incidents",
            json={"discovered_at": (world.now - days(1)).isoformat(), "description": "Credentials leaked."},
            headers=world.vendor(),
        ),
        201,
    )
    incident_id = opened["incident_id"]
    compliance = world.auth("compliance")
    early = await world.incidents.client.post(
        f"/v1/incidents/{incident_id}/containment",
        json={"action": "agreement_suspended", "agreement_id": world.agreement},
        headers=compliance,
    )
    assert early.status_code == 409 and early.json()["rule"] == "containment.not_suspended"
    before = await world.records.client.get(f"/v1/students/{key}", headers=world.vendor())
    assert before.status_code == 200 and before.json()["records"]

    r = await world.consent.client.post(
        f"/v1/agreements/{world.agreement}/suspend", json={"reason": f"breach {incident_id}"}, headers=compliance
    )
    assert r.status_code == 200, r.text
    step = await _json(
        await world.incidents.client.post(
            f"/v1/incidents/{incident_id}/containment",
            json={"action": "agreement_suspended", "agreement_id": world.agreement},
            headers=compliance,
        )
    )
    assert step["consent_status"] == "suspended"
    after = await world.records.client.get(f"/v1/students/{key}", headers=world.vendor())
    assert after.status_code == 403  # access stops at once

    # Keys: a rotation consent never did is refused; the one it did is recorded.
    sealed_before = await world.env.superuser(world.records.runtime.settings.keys_database_url)
    try:
        wrapped = await sealed_before.fetchrow(
            "SELECT kek_version FROM data_keys WHERE scope = 'agreement' AND subject = $1", world.agreement
        )
    finally:
        await sealed_before.close()
    assert wrapped is not None  # the read above sealed a release copy under the agreement's key
    forged = await world.incidents.client.post(
        f"/v1/incidents/{incident_id}/containment",
        json={"action": "keys_rotated", "agreement_id": world.agreement, "rotation_id": "made-up"},
        headers=compliance,
    )
    assert forged.status_code == 409 and forged.json()["rule"] == "containment.not_rotated"
    rotated = await _json(
        await world.consent.client.post(f"/v1/agreements/{world.agreement}/keys/rotate", headers=compliance)
    )
    assert rotated["districts"][0]["agreement_key_rewrapped"] is True
    assert rotated["districts"][0]["kek_version"] > wrapped["kek_version"]
    conn = await world.env.superuser(world.records.runtime.settings.keys_database_url)
    try:
        now_wrapped = await conn.fetchval(
            "SELECT kek_version FROM data_keys WHERE scope = 'agreement' AND subject = $1", world.agreement
        )
    finally:
        await conn.close()
    assert now_wrapped == rotated["districts"][0]["kek_version"]
    await _json(
        await world.incidents.client.post(
            f"/v1/incidents/{incident_id}/containment",
            json={"action": "keys_rotated", "agreement_id": world.agreement, "rotation_id": rotated["rotation_id"]},
            headers=compliance,
        )
    )
    view = await _json(await world.incidents.client.get(f"/v1/incidents/{incident_id}", headers=compliance))
    assert [s["action"] for s in view["containment"]] == ["agreement_suspended", "keys_rotated"]
    other = await world.consent.client.post(
        f"/v1/agreements/{world.agreement}/keys/rotate", headers=world.staff("d-other")
    )
    assert other.status_code == 404


async def test_each_role_sees_only_its_part_of_an_incident(world: World) -> None:
    world.at(world.now)
    opened = await _json(
        await world.incidents.client.post(
            "/v1/incidents",
            json={"discovered_at": world.now.isoformat(), "description": "A lost laptop."},
            headers=world.vendor(),
        ),
        201,
    )
    incident_id = opened["incident_id"]
    client = world.incidents.client
    assert opened["obligations"] and {o["kind"] for o in opened["obligations"]} == {"contractor_to_agency"}
    assert "scope_versions" not in opened  # the contractor never sees the scope
    assert (await client.get(f"/v1/incidents/{incident_id}/scope/1", headers=world.vendor())).status_code == 403
    missing = await client.get("/v1/incidents/inc-000000000000", headers=world.staff("d-other"))
    hidden = await client.get(f"/v1/incidents/{incident_id}", headers=world.staff("d-other"))
    assert missing.status_code == hidden.status_code == 404 and missing.json()["type"] == hidden.json()["type"]
    assert (
        await client.get(f"/v1/incidents/{incident_id}", headers=world.vendor("another-agreement"))
    ).status_code == 404
    assert (await client.get("/v1/incidents", headers=world.auth("parent", students=[student()]))).status_code == 403
    assert (await client.get("/v1/incidents", headers=world.staff("d-other"))).json()["incidents"] == []
    someone_elses = await client.post(
        "/v1/incidents",
        json={"discovered_at": world.now.isoformat(), "description": "x", "agreement_ids": ["another-agreement"]},
        headers=world.vendor(),
    )
    assert someone_elses.status_code == 403
    future = await client.post(
        "/v1/incidents",
        json={"discovered_at": (world.now + days(1)).isoformat(), "description": "x"},
        headers=world.vendor(),
    )
    assert future.status_code == 422 and future.json()["errors"][0]["rule"] == "time.future"
    naive = await client.post(
        "/v1/incidents", json={"discovered_at": "2026-01-01T00:00:00", "description": "x"}, headers=world.vendor()
    )
    assert naive.status_code == 422 and "discovered_at" in naive.text

    # Records gives a family's letter language to services only, and only for students the district holds.
    key = student()
    await world.register(key, "spa")
    asked = {"district_id": world.district, "student_keys": [key, student()]}
    refused = await world.records.client.post("/v1/internal/notice-preferences", json=asked, headers=world.staff())
    assert refused.status_code == 403
    answered = await _json(
        await world.records.client.post("/v1/internal/notice-preferences", json=asked, headers=world.auth("service"))
    )
    assert answered["preferences"] == {key: {"home_language": "spa"}}

    # A district publishes a notice; the public sees it, and nothing else of the incident.
    await _json(
        await client.post(
            f"/v1/incidents/{incident_id}/publication",
            json={"text": "Brightpath Learning reported a breach; letters are on their way."},
            headers=world.staff(),
        )
    )
    public = await _json(await client.get("/v1/public/breach-notices"))
    mine = [n for n in public["notices"] if n["incident_id"] == incident_id]
    assert mine and mine[0]["district_id"] == world.district and "description" not in mine[0]
