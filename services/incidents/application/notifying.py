"""The notices a breach owes, from the latest frozen scope, each delivered and recorded.

* `report_to_cpo`: each educational agency's report to the Chief Privacy Officer
  (121.10(b), (d)), as a document and a machine-readable object, delivered as a notice to
  the CPO's address; closes that district's CPO obligations.
* `notify_families`: a letter to every family whose child's data the recipient could read,
  in the family's language where the record names one, on the family's notification list
  and by e-mail; then a summary to the district data office; closes the district's
  families obligations (a district with no affected student: not required, and why).
  Letters go out again only to families whose letter a new scope version changes.

Delivery is the kernel's notices mechanism (`homeroom/notices.py`): each notice is written
in the transaction that records the act, listed at `GET /v1/notices` for its recipient,
and e-mailed by the relay, which records the address and time it was accepted.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from typing import Any

import asyncpg

from homeroom import notices
from homeroom.auth import Principal
from homeroom.contracts.clients import PeerUnavailable
from homeroom.contracts.notice_preferences import MAX_KEYS, NoticePreferencesRequest
from homeroom.rows import columns
from homeroom.storage import Connection
from services.incidents import metrics, store
from services.incidents.application.common import (
    actor,
    advance_if_notified,
    close_obligations,
    conflict,
    districts_acted_for,
    incident_notice,
    load_visible,
    record,
    require_not_closed,
    unavailable,
)
from services.incidents.application.reporting import obligation_view
from services.incidents.incidents import ACTS, Kind
from services.incidents.letters import IncidentFacts, cpo_report, district_summary, family_letter, letter_language
from services.incidents.state import IncidentsState

_NAMESPACE = uuid.UUID("5a0f8c51-1f0e-4f63-9a55-7d2b9f0c3e21")


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(str(p) for p in parts)))


async def _latest(conn: Connection, row: asyncpg.Record) -> tuple[asyncpg.Record, IncidentFacts, dict[str, Any]]:
    number = row["latest_version"]
    if number < 1:
        raise conflict(
            f"incident {row['incident_id']} has no frozen scope yet: notices are written from one", "scope.none"
        )
    version = await store.version(conn, row["incident_id"], number)
    assert version is not None
    totals = json.loads(version["totals"]) if isinstance(version["totals"], str) else dict(version["totals"])
    facts = IncidentFacts(
        **columns(
            row,
            (
                "incident_id",
                "description",
                "discovered_at",
                "exposure_start",
                "exposure_end",
                "contact",
                "investigation",
            ),
        ),
        recipient=row["recipient_org"] or row["system"],
        agreements=list(row["agreement_ids"]),
        scope_version=number,
        bundle_sha256=bytes(version["bundle_sha256"]).hex(),
        tree_size=version["tree_size"],
        tree_root=bytes(version["tree_root"]).hex(),
        witnessed=version["witnessed"],
    )
    return version, facts, totals


async def report_to_cpo(
    state: IncidentsState, pool: asyncpg.Pool, principal: Principal, incident_id: str, district: str | None
) -> list[dict[str, Any]]:
    now = state.now()
    made = []
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        districts = districts_acted_for(principal, row, district)
        _, facts, totals = await _latest(conn, row)
        notified = await store.contractor_notices(conn, incident_id)
        steps = await store.steps(conn, incident_id)
        containment = [{"action": s["action"], "summary": _step_summary(s), "at": s["at"]} for s in steps]
        for d in districts:
            machine, document = cpo_report(
                facts,
                district_id=d,
                reported_by=actor(principal),
                contractor_notified_at=notified.get(d),
                totals=totals,
                containment=containment,
                now=now,
            )
            report_id = _id(incident_id, facts.scope_version, "cpo", d)
            notice = incident_notice(
                incident_id,
                notices.Recipient("cpo", state.settings.cpo_recipient),
                "breach_report_cpo",
                f"Breach report from {d}: incident {incident_id} ({facts.recipient})",
                document + "\nThe same report, machine-readable (JSON):\n" + json.dumps(machine, indent=2) + "\n",
                district_id=d,
                notice_id=report_id,
            )
            await notices.add(conn, notice)
            await store.add_report(
                conn,
                {
                    "report_id": report_id,
                    "incident_id": incident_id,
                    "version": facts.scope_version,
                    "kind": "cpo_report",
                    "district_id": d,
                    "created_at": now,
                    "created_by": actor(principal),
                    "document": document,
                    "machine": machine,
                    "notice_id": report_id,
                },
            )
            await record(
                conn,
                row,
                principal,
                "cpo_report_delivered",
                now,
                history={"district_id": d, "report_id": report_id, "version": facts.scope_version},
                district_id=d,
                scope_version=facts.scope_version,
                students=int(machine["students_affected"]),
                act="cpo_report",
            )
            await close_obligations(
                conn, row, principal, Kind.AGENCY_TO_CPO, [d], now, f"{ACTS[Kind.AGENCY_TO_CPO]}: report {report_id}"
            )
            metrics.REPORTS.labels("cpo_report").inc()
            made.append({"report_id": report_id, "district_id": d, "students_affected": machine["students_affected"]})
        await advance_if_notified(conn, row, now)
    return made


def _step_summary(step: dict[str, Any]) -> str:
    details = step.get("details") or {}
    if step["action"] == "agreement_suspended":
        return f"agreement {step['agreement_id']} suspended: nothing is released under it"
    if step["action"] == "keys_rotated":
        rotated = details.get("districts") or []
        return f"keys of agreement {step['agreement_id']} rotated in {len(rotated)} district(s)"
    return str(step["action"])


async def _preferences(state: IncidentsState, district: str, keys: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for start in range(0, len(keys), MAX_KEYS):
        request = NoticePreferencesRequest(district_id=district, student_keys=keys[start : start + MAX_KEYS])
        try:
            answer = await state.peers.records.notice_preferences(request)
        except PeerUnavailable as exc:
            raise unavailable(exc) from None
        found.update({k: p.home_language for k, p in answer.preferences.items()})
    return found


async def notify_families(
    state: IncidentsState, pool: asyncpg.Pool, principal: Principal, incident_id: str, district: str | None
) -> list[dict[str, Any]]:
    row = await load_visible(pool, principal, incident_id)
    require_not_closed(row)
    districts = districts_acted_for(principal, row, district)
    # The families' languages first (a peer call), then everything in one transaction.
    wanted: dict[str, dict[str, str | None]] = {}
    async with pool.acquire() as conn:
        number = row["latest_version"]
        for d in districts:
            keys = [s["student_key"] for s in await store.students_of(conn, incident_id, number, d) if s["elements"]]
            wanted[d] = await _preferences(state, d, keys) if keys else {}
    now = state.now()
    made = []
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        _, facts, totals = await _latest(conn, row)
        if facts.scope_version != number:
            raise conflict("the scope was re-frozen meanwhile: send the letters again", "scope.changed")
        for d in districts:
            made.append(await _district_letters(state, conn, row, principal, facts, totals, d, wanted[d], now))
        await advance_if_notified(conn, row, now)
    return made


async def _district_letters(
    state: IncidentsState,
    conn: Connection,
    row: asyncpg.Record,
    principal: Principal,
    facts: IncidentFacts,
    totals: dict[str, Any],
    district: str,
    languages: dict[str, str | None],
    now: Any,
) -> dict[str, Any]:
    incident_id = row["incident_id"]
    students = await store.students_of(conn, incident_id, facts.scope_version, district)
    affected = [s for s in students if s["elements"]]
    told = await store.letter_digests(conn, incident_id, district)
    district_students = int((totals.get("districts") or {}).get(district, {}).get("students", 0))
    batch: list[notices.Notice] = []
    rows: list[tuple[Any, ...]] = []
    used: Counter[str] = Counter()
    for s in affected:
        digest = hashlib.sha256(
            json.dumps(
                [list(s["elements"]), list(s["unreadable_elements"]), s["first_shared"], s["last_shared"]]
            ).encode()
        ).hexdigest()
        if told.get(s["student_key"]) == digest:
            continue  # this family was already told exactly this
        requested = languages.get(s["student_key"])
        language, subject, body = family_letter(
            facts,
            district_id=district,
            elements=list(s["elements"]),
            unreadable_elements=list(s["unreadable_elements"]),
            first_shared=s["first_shared"],
            last_shared=s["last_shared"],
            district_students=district_students,
            language=letter_language(requested),
            requested_language=requested,
        )
        notice_id = _id(incident_id, facts.scope_version, district, s["student_key"])
        batch.append(
            incident_notice(
                incident_id,
                notices.Recipient("parent", s["student_key"]),
                "breach_letter",
                subject,
                body,
                district_id=district,
                student_key=s["student_key"],
                notice_id=notice_id,
            )
        )
        rows.append(
            (
                incident_id,
                facts.scope_version,
                district,
                s["student_key"],
                notice_id,
                language,
                requested or "",
                digest,
                now,
            )
        )
        used[language] += 1
    for start in range(0, len(batch), 5000):
        await notices.add(conn, batch[start : start + 5000])
    if rows:
        await store.insert_letters(conn, rows)
    for language, n in used.items():
        metrics.LETTERS.labels(language).inc(n)
    if affected:
        act = f"{ACTS[Kind.AGENCY_TO_PARENTS]}: {len(affected)} families (scope version {facts.scope_version})"
        await close_obligations(conn, row, principal, Kind.AGENCY_TO_PARENTS, [district], now, act)
    else:
        act = f"scope version {facts.scope_version}: no student of {district} whose data the recipient could read"
        await close_obligations(
            conn, row, principal, Kind.AGENCY_TO_PARENTS, [district], now, act, state="not_required"
        )
    obligations = [
        obligation_view(o, now) for o in await store.obligations(conn, incident_id) if o["district_id"] == district
    ]
    subject, body = district_summary(
        facts, district_id=district, totals=totals, letters=len(rows), languages=dict(used), obligations=obligations
    )
    summary_id = _id(incident_id, facts.scope_version, "summary", district)
    await notices.add(
        conn,
        incident_notice(
            incident_id,
            notices.Recipient("district", district),
            "breach_summary",
            subject,
            body,
            district_id=district,
            notice_id=summary_id,
        ),
    )
    await store.add_report(
        conn,
        {
            "report_id": summary_id,
            "incident_id": incident_id,
            "version": facts.scope_version,
            "kind": "district_summary",
            "district_id": district,
            "created_at": now,
            "created_by": actor(principal),
            "document": body,
            "machine": {"letters": len(rows), "languages": dict(used), "families": len(affected)},
            "notice_id": summary_id,
        },
    )
    metrics.REPORTS.labels("district_summary").inc()
    await record(
        conn,
        row,
        principal,
        "families_notified",
        now,
        history={
            "district_id": district,
            "letters": len(rows),
            "languages": dict(used),
            "version": facts.scope_version,
        },
        district_id=district,
        scope_version=facts.scope_version,
        count=len(rows),
        act="letters",
    )
    return {"district_id": district, "letters": len(rows), "families": len(affected), "languages": dict(used)}


async def letters(
    pool: asyncpg.Pool, principal: Principal, incident_id: str, district: str | None, after: str | None, limit: int
) -> dict[str, Any]:
    row = await load_visible(pool, principal, incident_id)
    districts = districts_acted_for(principal, row, district)
    chosen = districts[0] if len(districts) == 1 else None
    found = await store.letters(pool, incident_id, district=chosen, after=after, limit=limit + 1)
    page = found[:limit]
    return {
        "letters": [
            {
                "notice_id": r["notice_id"],
                "district_id": r["district_id"],
                "student_key": r["student_key"],
                "version": r["version"],
                "language": r["language"],
                "requested_language": r["requested_language"] or None,
                "subject": r["subject"],
                "body": r["body"],
                "issued_at": r["issued_at"].isoformat(),
                "delivery": "e-mailed" if r["sent_at"] else (r["last_error"] or "waiting to be e-mailed"),
            }
            for r in page
        ],
        "next_after": page[-1]["notice_id"] if len(found) > limit else None,
    }
