"""Recording releases: every student's data released outside the owning district's own staff
is one disclosure, written before anything is returned.

Use cases:
- `commit_releases`: record a read's releases, one transaction per district (API reads,
  OneRoster pages, the bulk export); a release that cannot be recorded is not returned.
- `record_releases`: in a transaction already scoped to the district, a read-log row and a
  `disclosure.v1` event (outbox) per released student, and for a vendor the sealed copy of
  what was sent (`seal_release_copy`, under the agreement's own key)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from homeroom import outbox
from homeroom.auth import Principal, Role
from homeroom.contracts.clients import checked
from homeroom.contracts.consent import Decision, Requester
from homeroom.crypto import KeyDestroyedError
from homeroom.disclosures import disclosure_recorded
from homeroom.entry_text import normalise
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.service import Runtime
from homeroom.storage import Connection
from services.records import store
from services.records.application.refusals import denied
from services.records.metrics import DISCLOSURES

SOURCE = "/homeroom/records"
CHANNEL_API = "records-api"
CHANNEL_ONEROSTER = "oneroster"
RELEASE_COPY_ELEMENT = "record.release_copy"


def requester_party(principal: Principal) -> Party:
    """Who read, as the disclosure record names them: every text kept to the log's rules
    (homeroom.entry_text) here, before anything is released, so audit never refuses it."""
    return Party(
        organization=normalise(principal.organization or principal.district_id or ""),
        client_id=normalise(principal.client_id or ""),
        person=normalise(principal.subject),
        role=principal.role.value,
    )


def requester_json(principal: Principal) -> Requester:
    """Who asks, as consent's decision request names them (a 422 when the token's claims break
    the contract, as consent would answer)."""
    return checked(
        Requester,
        role=principal.role.value,
        subject=principal.subject,
        organization=principal.organization,
        agreement_id=principal.agreement_id,
        district_id=principal.district_id,
        student_keys=sorted(principal.student_keys),
    )


@dataclass(frozen=True, slots=True)
class Release:
    """One student's data about to be released, and why it may be; `payload` is what the
    recipient receives (kept, sealed under the agreement's key, when released under one)."""

    district_id: str
    student_key: str
    elements: list[str]
    decision: Decision
    payload: Any = None


async def record_releases(
    conn: Connection,
    principal: Principal,
    releases: list[Release],
    *,
    channel: str,
    purpose: str = "",
    copy: bytes | None = None,
) -> None:
    """Write a read-log row and a disclosure.v1 event per released student, in the caller's
    transaction (already scoped to the district of the releases); and, for a release under
    an agreement, the sealed copy of what was sent (`copy`)."""
    events = []
    read_log: list[store.ReadLogRow] = []
    party = requester_party(principal)  # the same reader for every release of the page
    for release in releases:
        disclosure_id = str(uuid.uuid4())
        decision = release.decision
        agreement_id = decision.agreement_id or principal.agreement_id or ""
        events.append(
            disclosure_recorded(
                source=SOURCE,
                disclosure_id=disclosure_id,
                requester=party,
                recipient=party,
                student_key=release.student_key,
                district_id=release.district_id,
                elements=release.elements,
                purpose=normalise(decision.purpose or purpose),
                legal_basis=normalise(decision.legal_basis or ""),
                agreement_id=normalise(agreement_id),
                decision_id=decision.decision_id,
                policy_version=decision.policy_version,
                redisclosure_parties=decision.redisclosure_parties,
                channel=channel,
                record_required=principal.role is not Role.PARENT,
            )
        )
        read_log.append(
            (
                release.district_id,
                release.student_key,
                principal.role.value,
                normalise(principal.subject),
                channel,
                list(release.elements),
                decision.decision_id,
                agreement_id,
                disclosure_id,
            )
        )
    await store.log_reads(conn, read_log)  # one round trip for a page of releases
    await outbox.add(conn, events)
    if copy is not None and releases and principal.agreement_id:
        await store.add_release_copy(
            conn,
            agreement_id=principal.agreement_id,
            district_id=releases[0].district_id,
            channel=channel,
            disclosure_ids=[e.event_id for e in events],
            payload=copy,
        )
    DISCLOSURES.labels(channel).inc(len(events))


async def commit_releases(
    runtime: Runtime, principal: Principal, releases: list[Release], *, channel: str, purpose: str = ""
) -> None:
    """Record every release, one transaction per district; raises (and nothing is
    returned to the caller) if any cannot be recorded."""
    by_district: dict[str, list[Release]] = {}
    for release in releases:
        by_district.setdefault(release.district_id, []).append(release)
    for district, group in by_district.items():
        copy = await seal_release_copy(runtime, principal, district, group)
        async with store.district_tx(runtime.pool, district) as conn:
            await record_releases(conn, principal, group, channel=channel, purpose=purpose, copy=copy)


async def seal_release_copy(
    runtime: Runtime, principal: Principal, district: str, group: list[Release]
) -> bytes | None:
    """What a recipient under an agreement receives is kept sealed under that agreement's own data
    key in the district (scope "agreement"): ending the agreement shreds the key, and the copy with it.
    A key already shredded means the agreement has ended: nothing is released."""
    if principal.role is not Role.VENDOR or not principal.agreement_id:
        return None
    body = json.dumps([{"student_key": r.student_key, "elements": r.elements, "data": r.payload} for r in group])
    try:
        return await runtime.require_cipher().seal(
            district, principal.agreement_id, RELEASE_COPY_ELEMENT, body, scope="agreement"
        )
    except KeyDestroyedError:
        raise denied(
            "agreement_ended", f"agreement {principal.agreement_id} has ended: nothing is released under it"
        ) from None
