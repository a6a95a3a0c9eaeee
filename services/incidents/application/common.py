"""What every use case of the incidents service shares: who may see and act on an incident, and
recording a change (history row and audit-log event in one transaction). The typed state the use
cases take is `services/incidents/state.py`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from homeroom import notices, outbox
from homeroom.auth import Principal, Role
from homeroom.bus.envelope import build_event
from homeroom.bus.topics import INCIDENT
from homeroom.contracts.agreement_scope import AgreementScope
from homeroom.contracts.clients import PeerUnavailable
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.events.v1.incident_pb2 import IncidentChanged
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.storage import Connection
from services.incidents import store
from services.incidents.incidents import Discoverer, Facts, Kind, Status, plan
from services.incidents.state import IncidentsState


def incident_notice(
    incident_id: str, to: notices.Recipient, kind: str, subject: str, body: str, **ids: str
) -> notices.Notice:
    """A notice (report, letter, summary) owed because of an incident: its cause names the
    incident, the one convention every notice of this service follows. `ids`: the notice's
    `district_id`, `student_key`, `notice_id`."""
    return notices.Notice(to, kind, subject, body, f"incident:{incident_id}", **ids)


# --- errors ------------------------------------------------------------------------------------


def not_found(incident_id: str) -> Problem:
    return Problem(
        404, "Not found", f"No incident {incident_id!r} is on record for you.", type=problem_type("not-found")
    )


def conflict(message: str, rule: str) -> Problem:
    return Problem(409, "Conflict", message, type=problem_type("conflict"), extensions={"rule": rule})


def invalid(field: str, rule: str, message: str) -> Problem:
    return Problem.validation([FieldError(field, rule, message)])


def unavailable(exc: PeerUnavailable) -> Problem:
    return exc.as_problem("A service this needs is unavailable", str(exc), retry_after_s=30, peer=True)


async def agreement_scope(state: IncidentsState, agreement_id: str, field: str, unknown: str) -> AgreementScope:
    """The agreement as consent has it: 503 when consent cannot answer, 422 on `field` (saying
    `unknown`) when consent knows no such agreement."""
    try:
        scope = await state.peers.consent.scope(agreement_id)
    except PeerUnavailable as exc:
        raise unavailable(exc) from None
    if scope is None:
        raise invalid(field, "agreement.unknown", unknown)
    return scope


# --- who may see and act -------------------------------------------------------------------------


def actor(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.subject}"


def party(principal: Principal) -> Party:
    organization = principal.district_id or principal.organization or ""
    return Party(organization=organization, person=principal.subject, role=principal.role.value)


def visible(principal: Principal, row: asyncpg.Record) -> bool:
    """Compliance: every incident; district staff: those concerning their district; a vendor:
    those about its own agreement. Nobody else."""
    if principal.role is Role.COMPLIANCE:
        return True
    if principal.role is Role.DISTRICT_STAFF:
        return principal.district_id in row["districts"]
    if principal.role is Role.VENDOR:
        return principal.agreement_id in row["agreement_ids"]
    return False


async def load_visible(
    conn: Connection | asyncpg.Pool, principal: Principal, incident_id: str, *, lock: bool = False
) -> asyncpg.Record:
    """The incident, or 404 whether it is missing or not the caller's (the same answer, so ids
    cannot be probed)."""
    row = await store.get_incident(conn, incident_id, lock=lock)
    if row is None or not visible(principal, row):
        raise not_found(incident_id)
    return row


def districts_acted_for(principal: Principal, row: asyncpg.Record, district: str | None) -> list[str]:
    """The districts this caller acts for on this incident: compliance any (all by default),
    district staff their own only; nobody else acts for an agency."""
    concerned = list(row["districts"])
    if principal.role is Role.COMPLIANCE:
        if district is None:
            return concerned
        if district not in concerned:
            raise invalid("district_id", "incident.district_not_concerned", f"incident does not concern {district}")
        return [district]
    if principal.role is Role.DISTRICT_STAFF:
        own = principal.district_id or ""
        if district not in (None, own):
            raise Problem(
                403, "Forbidden", "district staff act for their own district only", type=problem_type("forbidden")
            )
        return [own]
    raise Problem(
        403, "Forbidden", "only an educational agency (or compliance staff) does this", type=problem_type("forbidden")
    )


def require_whole_incident(principal: Principal, row: asyncpg.Record) -> None:
    """What changes the incident for every district it concerns (its scope, its closing) is done
    by compliance, or by district staff when it concerns their district alone."""
    if principal.role is Role.COMPLIANCE:
        return
    if principal.role is Role.DISTRICT_STAFF and list(row["districts"]) == [principal.district_id]:
        return
    raise Problem(
        403,
        "Forbidden",
        "this incident concerns other districts too: compliance staff change it for all of them",
        type=problem_type("forbidden"),
    )


def require_not_closed(row: asyncpg.Record) -> None:
    if row["status"] == Status.CLOSED.value:
        raise conflict(f"incident {row['incident_id']} is closed: its record is final", "incident.closed")


# --- recording a change ----------------------------------------------------------------------------


async def record(
    conn: Connection,
    row: asyncpg.Record,
    principal: Principal | None,
    change: str,
    at: datetime,
    *,
    history: Mapping[str, Any] | None = None,
    **event: Any,
) -> None:
    """A change of an incident: one incident_history row and one audit-log event (incident.v1)."""
    who = actor(principal) if principal is not None else "service:homeroom-incidents"
    await store.add_history(conn, row["incident_id"], at, who, change, history)
    payload = IncidentChanged(
        incident_id=row["incident_id"],
        status=event.pop("status", row["status"]),
        actor=party(principal) if principal is not None else Party(organization="homeroom-incidents", role="service"),
        recipient_organization=(row["recipient_org"] or row["system"])[:256],
        agreement_ids=list(row["agreement_ids"]),
        districts=list(row["districts"]),
        **event,
    )
    await outbox.add(
        conn,
        build_event(
            INCIDENT,
            change,
            payload,
            source="/homeroom/incidents",
            subject=row["incident_id"],
            key=row["incident_id"],
            event_id=str(uuid.uuid4()),
            time=at,
        ),
    )


async def replan(state: IncidentsState, conn: Connection, incident_id: str) -> None:
    """Recompute the incident's obligations from its facts (new ones appear, open ones move;
    closed ones stay as they were)."""
    row = await store.get_incident(conn, incident_id)
    assert row is not None
    notices = await store.contractor_notices(conn, incident_id)
    facts = Facts(
        discovered_at=row["discovered_at"],
        discovered_by=Discoverer(row["discovered_by"]),
        contractor_involved=bool(row["agreement_ids"]),
        contractor_notified_at=notices,
        districts=list(row["districts"]),
        parents_delay_ended_at=row["parents_delay_ended_at"],
        parents_delayed=bool(row["parents_delay_reason"]),
    )
    shorter = await store.district_deadlines(conn, list(row["districts"]))
    await store.sync_plans(conn, incident_id, plan(facts, shorter), delayed=facts.parents_delayed)


async def close_obligations(
    conn: Connection,
    row: asyncpg.Record,
    principal: Principal | None,
    kind: Kind,
    districts: Sequence[str],
    at: datetime,
    act: str,
    *,
    state: str = "met",
) -> int:
    closed = await store.close_obligations(
        conn,
        row["incident_id"],
        kind,
        districts,
        at=at,
        by=actor(principal) if principal is not None else "service:homeroom-incidents",
        act=act,
        state=state,
    )
    for obligation in closed:
        await record(
            conn,
            row,
            principal,
            "obligation_closed",
            at,
            history={
                "obligation": kind.value,
                "district_id": obligation["district_id"],
                "basis": obligation["basis"],
                "state": state,
                "act": act,
                "late": obligation["due_at"] is not None and at > obligation["due_at"],
            },
            obligation=kind.value,
            district_id=obligation["district_id"],
            act=state,
        )
    return len(closed)


async def advance_if_notified(conn: Connection, row: asyncpg.Record, at: datetime) -> None:
    """Notified once every district's reports to the CPO and to families are done."""
    if row["status"] != Status.SCOPED.value:
        return
    open_ones = [
        o
        for o in await store.obligations(conn, row["incident_id"])
        if o["kind"] in (Kind.AGENCY_TO_CPO.value, Kind.AGENCY_TO_PARENTS.value) and o["state"] in ("open", "delayed")
    ]
    if open_ones:
        return
    await store.update_incident(conn, row["incident_id"], status=Status.NOTIFIED.value)
    fresh = await store.get_incident(conn, row["incident_id"])
    assert fresh is not None
    await record(conn, fresh, None, "incident_details_changed", at, history={"status": "notified"}, act="notified")
