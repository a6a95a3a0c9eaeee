"""Opening an incident and keeping its record: details, the contractor's notice, the 121.10(e)
delay, closing, a district's own deadlines, and what each caller sees of it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from homeroom import notices
from homeroom.auth import Forbidden, Principal, Role
from homeroom.rows import columns
from services.incidents import store
from services.incidents.application.common import (
    actor,
    agreement_scope,
    close_obligations,
    conflict,
    districts_acted_for,
    incident_notice,
    invalid,
    load_visible,
    record,
    replan,
    require_not_closed,
    require_whole_incident,
)
from services.incidents.incidents import (
    ACTS,
    DeadlineError,
    Discoverer,
    Kind,
    Status,
    check_district_deadlines,
    remaining,
    standing,
)
from services.incidents.state import IncidentsState


@dataclass(frozen=True, slots=True)
class Opening:
    """What a person reports (api.py validates the shape; the rules are here)."""

    discovered_at: datetime
    description: str
    discovered_by: Discoverer | None = None
    agreement_ids: Sequence[str] = ()
    recipient_organization: str = ""
    system: str = ""
    districts: Sequence[str] = ()
    exposure_start: datetime | None = None
    exposure_end: datetime | None = None
    contractor_notified_at: datetime | None = None
    contractor_notice_method: str = "email"
    contact: str = ""
    investigation: str = ""


async def _agreements(state: IncidentsState, agreement_ids: Sequence[str]) -> tuple[str, list[str]]:
    """The organisation the agreements are with and every district they cover (consent)."""
    organizations: set[str] = set()
    districts: set[str] = set()
    for agreement_id in agreement_ids:
        unknown = f"no agreement {agreement_id!r} is on record"
        scope = await agreement_scope(state, agreement_id, "agreement_ids", unknown)
        organizations.add(scope.organization)
        districts.update(scope.covered_districts or scope.districts)
    if len(organizations) > 1:
        raise invalid(
            "agreement_ids",
            "agreement.several_recipients",
            f"these agreements are with {len(organizations)} organisations; open one incident per recipient",
        )
    return (organizations.pop() if organizations else ""), sorted(districts)


async def open_incident(state: IncidentsState, pool: asyncpg.Pool, principal: Principal, opening: Opening) -> str:
    now = state.now()
    if opening.discovered_at > now:
        raise invalid("discovered_at", "time.future", "a discovery is reported once it happened")
    if opening.exposure_start and opening.exposure_end and opening.exposure_end <= opening.exposure_start:
        raise invalid("exposure_end", "time.range_empty", "the exposure ends after it starts")
    agreement_ids = sorted(set(opening.agreement_ids))
    discovered_by = opening.discovered_by
    if principal.role is Role.VENDOR:
        # A contractor reports its own breach: of its own agreement, discovered by itself; the
        # report reaches every agency the agreement covers at once (121.10(a)).
        if agreement_ids not in ([], [principal.agreement_id]):
            raise Forbidden("a recipient reports a breach of its own agreement only")
        agreement_ids = [principal.agreement_id or ""]
        discovered_by = Discoverer.RECIPIENT
        reporter_role, reporter = "recipient", principal.organization or ""
    elif principal.role is Role.DISTRICT_STAFF:
        reporter_role, reporter = "district", principal.district_id or ""
        discovered_by = discovered_by or Discoverer.DISTRICT
    elif principal.role is Role.COMPLIANCE:
        reporter_role, reporter = "compliance", "compliance"
        discovered_by = discovered_by or Discoverer.COMPLIANCE
    else:
        raise Forbidden("a recipient, a district data office or compliance staff open incidents")
    if not agreement_ids and not (opening.recipient_organization or opening.system):
        raise invalid(
            "agreement_ids",
            "incident.recipient_missing",
            "name the agreements, the recipient organisation or the system",
        )
    organization, covered = await _agreements(state, agreement_ids) if agreement_ids else ("", [])
    districts = sorted(set(covered) | set(opening.districts))
    if principal.role is Role.DISTRICT_STAFF:
        own = principal.district_id or ""
        if set(opening.districts) - {own} or (agreement_ids and own not in covered):
            raise Forbidden(f"district staff open incidents for their own district ({own}) and its agreements only")
        districts = [own]
    if not districts:
        raise invalid("districts", "incident.districts_missing", "name the districts (educational agencies) concerned")
    incident_id = f"inc-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await store.insert_incident(
            conn,
            {
                "incident_id": incident_id,
                "status": Status.OPEN.value,
                "opened_at": now,
                "opened_by": actor(principal),
                "reporter_role": reporter_role,
                "reporter": reporter,
                "discovered_at": opening.discovered_at,
                "discovered_by": discovered_by.value,
                "recipient_org": organization or opening.recipient_organization,
                "system": opening.system,
                "agreement_ids": agreement_ids,
                "districts": districts,
                "exposure_start": opening.exposure_start,
                "exposure_end": opening.exposure_end,
                "description": opening.description,
                "investigation": opening.investigation,
                "contact": opening.contact or state.settings.default_contact,
            },
        )
        row = await store.get_incident(conn, incident_id)
        assert row is not None
        await record(
            conn,
            row,
            principal,
            "incident_opened",
            now,
            history={"reporter": reporter, "discovered_by": discovered_by.value, "districts": districts},
        )
        notified: list[str] = []
        if principal.role is Role.VENDOR:
            notified = districts
            method = "homeroom"
            received = now
        elif opening.contractor_notified_at is not None and agreement_ids:
            notified = districts
            method = opening.contractor_notice_method
            received = opening.contractor_notified_at
        for district in notified:
            await store.record_contractor_notice(conn, incident_id, district, received, actor(principal), method)
        await replan(state, conn, incident_id)
        if notified:
            await _contractor_noticed(conn, row, principal, notified, received, method)
            if principal.role is Role.VENDOR:
                await notices.add(conn, [_breach_reported(row, d) for d in notified])
    return incident_id


def _breach_reported(row: asyncpg.Record, district: str) -> notices.Notice:
    return incident_notice(
        row["incident_id"],
        notices.Recipient("district", district),
        "breach_reported",
        f"{row['recipient_org']} reports a data breach (incident {row['incident_id']})",
        (
            f"{row['recipient_org']}, a third-party contractor under agreement(s) {', '.join(row['agreement_ids'])}, "
            f"reported a breach it discovered on {row['discovered_at'].date().isoformat()}.\n\n"
            f"What it says happened: {row['description']}\n\n"
            "Your clocks under 8 NYCRR 121.10 started with this notice: 10 calendar days to report to the Chief "
            "Privacy Officer, 60 to notify affected families. The incident page shows the scope computed from the "
            "disclosure log, the deadlines and the letters."
        ),
        district_id=district,
    )


async def _contractor_noticed(
    conn: Any, row: asyncpg.Record, principal: Principal, districts: Sequence[str], at: datetime, method: str
) -> None:
    await record(
        conn,
        row,
        principal,
        "contractor_notice_received",
        at,
        history={"districts": list(districts), "method": method},
        act=method,
        count=len(districts),
    )
    await close_obligations(
        conn, row, principal, Kind.CONTRACTOR_TO_AGENCY, districts, at, f"{ACTS[Kind.CONTRACTOR_TO_AGENCY]} ({method})"
    )


async def contractor_notice(
    state: IncidentsState,
    pool: asyncpg.Pool,
    principal: Principal,
    incident_id: str,
    *,
    district_id: str | None,
    received_at: datetime | None,
    method: str,
) -> None:
    """The contractor's notice reached an agency: sent by the contractor through Homeroom, or
    received another way and recorded by the agency (or compliance)."""
    now = state.now()
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        if not row["agreement_ids"]:
            raise conflict("no third-party contractor is named in this incident", "incident.no_contractor")
        if principal.role is Role.VENDOR:
            districts = list(row["districts"]) if district_id is None else [district_id]
            if set(districts) - set(row["districts"]):
                raise invalid("district_id", "incident.district_not_concerned", "not a district of this incident")
            at, method = now, "homeroom"
        else:
            districts = districts_acted_for(principal, row, district_id)
            at = received_at or now
        if at > now:
            raise invalid("received_at", "time.future", "a notice is recorded once it was received")
        new = [
            d
            for d in districts
            if await store.record_contractor_notice(conn, incident_id, d, at, actor(principal), method)
        ]
        if not new:
            raise conflict("the contractor's notice was already recorded for these districts", "notice.recorded")
        await replan(state, conn, incident_id)
        await _contractor_noticed(conn, row, principal, new, at, method)
        if principal.role is Role.VENDOR:
            await notices.add(conn, [_breach_reported(row, d) for d in new])


async def change_details(
    state: IncidentsState, pool: asyncpg.Pool, principal: Principal, incident_id: str, changes: dict[str, Any]
) -> None:
    """Exposure period, description, investigation, contact (what the notices will say)."""
    now = state.now()
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        require_whole_incident(principal, row)
        start = changes.get("exposure_start", row["exposure_start"])
        end = changes.get("exposure_end", row["exposure_end"])
        if start is not None and end is not None and end <= start:
            raise invalid("exposure_end", "time.range_empty", "the exposure ends after it starts")
        if not changes:
            return
        await store.update_incident(conn, incident_id, **changes)
        await record(
            conn, row, principal, "incident_details_changed", now, history={"changed": sorted(changes)}, act="details"
        )


async def delay_parents_notice(
    state: IncidentsState,
    pool: asyncpg.Pool,
    principal: Principal,
    incident_id: str,
    *,
    reason: str | None,
    ended_at: datetime | None,
) -> None:
    """121.10(e): families' notice delayed for law enforcement or an unfixed vulnerability (reason),
    then due seven days after the delay ends (ended_at)."""
    now = state.now()
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        require_whole_incident(principal, row)
        if reason is not None:
            await store.update_incident(conn, incident_id, parents_delay_reason=reason, parents_delay_ended_at=None)
            act = f"delayed: {reason}"
        else:
            if not row["parents_delay_reason"]:
                raise conflict("the families' notice is not delayed", "delay.none")
            when = ended_at or now
            if when > now:
                raise invalid("ended_at", "time.future", "record the end of the delay once it ended")
            await store.update_incident(conn, incident_id, parents_delay_ended_at=when)
            act = "delay ended"
        await replan(state, conn, incident_id)
        await record(
            conn,
            row,
            principal,
            "parents_notice_delayed",
            now,
            history={"reason": reason, "ended_at": ended_at},
            obligation=Kind.AGENCY_TO_PARENTS.value,
            act=act[:60],
        )


async def close_incident(state: IncidentsState, pool: asyncpg.Pool, principal: Principal, incident_id: str) -> None:
    now = state.now()
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        if principal.role is not Role.COMPLIANCE:
            raise Forbidden("compliance staff close incidents")
        running = [o for o in await store.obligations(conn, incident_id) if o["state"] in ("open", "delayed")]
        if running:
            names = ", ".join(f"{o['kind']} ({o['district_id']}, {o['basis']})" for o in running)
            raise conflict(
                f"obligations still running: {names}; each closes only by the act it requires", "close.open_obligations"
            )
        if row["status"] != Status.NOTIFIED.value:
            raise conflict(f"incident {incident_id} is {row['status']}: it closes once notified", "close.not_notified")
        await store.update_incident(conn, incident_id, status=Status.CLOSED.value, closed_at=now)
        await record(conn, row, principal, "incident_closed", now, status=Status.CLOSED.value, act="closed")


async def set_deadlines(
    state: IncidentsState, pool: asyncpg.Pool, principal: Principal, district: str, hours: dict[Kind, int]
) -> None:
    if principal.role is Role.DISTRICT_STAFF and principal.district_id != district:
        raise Forbidden(f"only staff of district {district!r} (or compliance) set its deadlines")
    try:
        check_district_deadlines(hours)
    except DeadlineError as exc:
        raise invalid(exc.field, exc.rule, str(exc)) from None
    now = state.now()
    async with pool.acquire() as conn, conn.transaction():
        await store.set_district_deadlines(conn, district, hours, actor(principal), now)
        for incident_id in await store.incidents_of_districts(conn, district):
            await replan(state, conn, incident_id)


# --- what each caller sees ---------------------------------------------------------------------


def obligation_view(o: asyncpg.Record, now: datetime) -> dict[str, Any]:
    state = standing(o["due_at"], o["closed_at"], o["state"], now)
    return {
        **columns(o, ("kind", "district_id", "basis", "citation", "start_event")),
        **_times(o, "starts_at", "due_at"),
        "standing": state,
        "remaining": remaining(o["due_at"], now) if state in ("open", "overdue") else "",
        **_times(o, "closed_at"),
        "act": o["act"],
        "required_act": ACTS[Kind(o["kind"])],
    }


def _times(row: asyncpg.Record, *names: str) -> dict[str, str | None]:
    """Optional times of `row` in ISO 8601, None where unset."""
    return {name: row[name].isoformat() if row[name] else None for name in names}


def incident_summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "incident_id": row["incident_id"],
        "status": row["status"],
        "recipient": row["recipient_org"] or row["system"],
        "agreement_ids": list(row["agreement_ids"]),
        "districts": list(row["districts"]),
        "discovered_at": row["discovered_at"].isoformat(),
        "opened_at": row["opened_at"].isoformat(),
        "reporter": row["reporter"],
        "reporter_role": row["reporter_role"],
        "latest_version": row["latest_version"],
    }


def version_view(v: asyncpg.Record, district: str | None) -> dict[str, Any]:
    import json

    totals = json.loads(v["totals"]) if isinstance(v["totals"], str) else dict(v["totals"])
    if district is not None:  # a district sees its own counts, never another district's
        own = (totals.get("districts") or {}).get(district, {})
        totals = {"districts": {district: own}}
    return {
        "version": v["version"],
        "computed_at": v["computed_at"].isoformat(),
        "computed_by": v["computed_by"],
        "tree_size": v["tree_size"],
        "tree_root": bytes(v["tree_root"]).hex(),
        "witnessed": v["witnessed"],
        "entries": v["entries"],
        "proof_hashes": v["proof_hashes"],
        "bundle_sha256": bytes(v["bundle_sha256"]).hex(),
        "bundle_bytes": v["bundle_bytes"],
        "raw_bytes": v["raw_bytes"],
        "totals": totals,
        "selection": json.loads(v["selection"]) if isinstance(v["selection"], str) else v["selection"],
    }


async def view(state: IncidentsState, pool: asyncpg.Pool, principal: Principal, incident_id: str) -> dict[str, Any]:
    now = state.now()
    row = await load_visible(pool, principal, incident_id)
    own = principal.district_id if principal.role is Role.DISTRICT_STAFF else None
    obligations = [obligation_view(o, now) for o in await store.obligations(pool, incident_id)]
    if own is not None:
        obligations = [o for o in obligations if o["district_id"] == own]
    out = incident_summary(row)
    if principal.role is Role.VENDOR:
        # The contractor sees its own report and its own obligation, nothing of the scope.
        out["obligations"] = [o for o in obligations if o["kind"] == Kind.CONTRACTOR_TO_AGENCY.value]
        return out
    versions = [version_view(v, own) for v in await store.versions(pool, incident_id)]
    reports = [
        {
            "report_id": r["report_id"],
            "kind": r["kind"],
            "district_id": r["district_id"],
            "version": r["version"],
            "created_at": r["created_at"].isoformat(),
            "delivery": "e-mailed" if r["sent_at"] else (r["last_error"] or "waiting to be e-mailed"),
        }
        for r in await store.reports(pool, incident_id)
        if own is None or r["district_id"] == own
    ]
    letters = [
        {"district_id": r["district_id"], "language": r["language"], "letters": r["letters"], "emailed": r["emailed"]}
        for r in await store.letter_counts(pool, incident_id)
        if own is None or r["district_id"] == own
    ]
    out.update(
        {
            **columns(row, ("description", "investigation", "contact", "discovered_by")),
            **_times(row, "exposure_start", "exposure_end"),
            "parents_delay_reason": row["parents_delay_reason"] or None,
            "contractor_notices": {
                d: at.isoformat()
                for d, at in (await store.contractor_notices(pool, incident_id)).items()
                if own is None or d == own
            },
            "obligations": obligations,
            "scope_versions": versions,
            "containment": await store.steps(pool, incident_id),
            "reports": reports,
            "letters": letters,
            "history": await store.history(pool, incident_id),
            "publications": [
                {"district_id": p["district_id"], "text": p["text"], "published_at": p["published_at"].isoformat()}
                for p in await store.publications(pool, incident_id=incident_id)
                if own is None or p["district_id"] == own
            ],
        }
    )
    return out


async def listing(state: IncidentsState, pool: asyncpg.Pool, principal: Principal) -> list[dict[str, Any]]:
    now = state.now()
    if principal.role is Role.COMPLIANCE:
        rows = await store.list_incidents(pool)
    elif principal.role is Role.DISTRICT_STAFF:
        rows = await store.list_incidents(pool, district=principal.district_id)
    elif principal.role is Role.VENDOR:
        rows = await store.list_incidents(pool, agreement=principal.agreement_id)
    else:
        raise Forbidden("incidents are for compliance staff, district data offices and the recipients concerned")
    own = principal.district_id if principal.role is Role.DISTRICT_STAFF else None
    out = []
    for row in rows:
        item = incident_summary(row)
        obligations = [obligation_view(o, now) for o in await store.obligations(pool, row["incident_id"])]
        running = [
            o for o in obligations if o["standing"] in ("open", "overdue") and (own is None or o["district_id"] == own)
        ]
        if principal.role is Role.VENDOR:
            running = [o for o in running if o["kind"] == Kind.CONTRACTOR_TO_AGENCY.value]
        running.sort(key=lambda o: o["due_at"] or "")
        item["next_deadline"] = running[0] if running else None
        item["overdue"] = sum(1 for o in running if o["standing"] == "overdue")
        out.append(item)
    return out
