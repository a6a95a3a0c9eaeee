"""Use case: import a published Ed Law 2-d page (`import_page`; `import_for` when a member of
staff uploads one over the API, `homeroom consent import-2d` from the command line). Every entry
becomes a draft agreement; a re-import leaves unchanged entries alone and records a changed one
as a new draft version; problems are listed by entry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import Field

from homeroom import outbox
from homeroom.auth import Forbidden, Principal, Role
from services.consent import events, store
from services.consent.agreements import Agreement, AgreementStatus, validate_amendment
from services.consent.application.common import Command, actor
from services.consent.import_2d import parse_2d
from services.consent.state import ConsentRuntime


class Import2d(Command):
    text: str = Field(min_length=1, max_length=5_000_000)
    source_name: str = Field(default="upload.txt", min_length=1, max_length=200)
    districts: list[str] = Field(default_factory=list, max_length=100)  # compliance only; staff: their own


async def import_for(runtime: ConsentRuntime, principal: Principal, body: Import2d) -> ImportSummary:
    """An upload by a member of staff: district staff import for their own district only (the
    default), compliance for the districts it names."""
    if principal.role is Role.DISTRICT_STAFF:
        assert principal.district_id is not None
        if body.districts and body.districts != [principal.district_id]:
            raise Forbidden("district staff import for their own district only")
        covered: tuple[str, ...] = (principal.district_id,)
    else:
        covered = tuple(body.districts)
    return await import_page(
        runtime.pool,
        body.text,
        source_name=body.source_name,
        districts=covered,
        recorded_by=actor(principal),
        now=runtime.clock(),
    )


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    new_versions: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    agreements: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": len(self.created),
            "new_versions": len(self.new_versions),
            "unchanged": len(self.unchanged),
            "agreements": self.agreements,
            "problems": self.problems,
        }


async def import_page(
    pool: asyncpg.Pool,
    text: str,
    *,
    source_name: str,
    districts: tuple[str, ...],
    recorded_by: str,
    now: datetime,
) -> ImportSummary:
    """Record every entry of an Ed Law 2-d page as a draft. A re-import leaves unchanged
    entries alone and records a changed one as a new draft version."""
    result = parse_2d(text, source_name=source_name, recorded_by=recorded_by, recorded_at=now, districts=districts)
    summary = ImportSummary()
    by_entry: dict[int, str] = {}
    for agreement in result.agreements:
        entry = int(agreement.source.rsplit("#", 1)[1])
        by_entry[entry] = agreement.id
        digest = result.digests.get(agreement.id) or hashlib.sha256(agreement.model_dump_json().encode()).hexdigest()
        outcome = "created"
        async with pool.acquire() as conn, conn.transaction():
            head = await store.lock_agreement(conn, agreement.id)
            if head is None:
                await store.insert_agreement(conn, agreement, digest=digest)
                await store.add_history(conn, agreement.id, 1, "signed", recorded_by, {"source": agreement.source})
                await outbox.add(conn, events.agreement_changed("agreement_signed", agreement))
                summary.created.append(agreement.id)
            elif head.source_digest == digest:
                outcome = "unchanged"
                summary.unchanged.append(agreement.id)
            elif head.status == AgreementStatus.ENDED.value:
                outcome = "unchanged"
                summary.unchanged.append(agreement.id)
                summary.problems.append(
                    _problem(
                        entry, agreement, "/status", "The agreement has ended; its changed entry was not recorded."
                    )
                )
            else:
                versions = await store.history(conn, agreement.id)
                candidate = agreement.model_copy(update={"version": versions[-1].version + 1})
                errors = validate_amendment(versions, candidate)
                if errors:
                    outcome = "unchanged"
                    summary.unchanged.append(agreement.id)
                    for e in errors:
                        summary.problems.append(_problem(entry, agreement, e.field, f"{e.message} [{e.rule}]"))
                else:
                    outcome = "new_version"
                    await store.insert_version(conn, candidate, digest=digest)
                    await store.add_history(
                        conn, agreement.id, candidate.version, "amended", recorded_by, {"source": agreement.source}
                    )
                    await outbox.add(conn, events.agreement_changed("agreement_amended", candidate))
                    summary.new_versions.append(agreement.id)
        summary.agreements.append(
            {
                "entry": entry,
                "agreement_id": agreement.id,
                "organization": agreement.organization,
                "category": agreement.category.value,
                "start_date": agreement.terms.start_date.isoformat() if agreement.terms.start_date else None,
                "end_date": agreement.terms.end_date.isoformat() if agreement.terms.end_date else None,
                "outcome": outcome,
            }
        )
    for problem in result.problems:
        summary.problems.append(
            {
                "entry": problem.entry_index,
                "organization": problem.organization,
                "agreement_id": by_entry.get(problem.entry_index) if problem.entry_index is not None else None,
                "field": problem.field,
                "message": problem.message,
            }
        )
    summary.problems.sort(key=lambda p: (p["entry"] is not None, p["entry"] or 0))
    by_agreement: dict[str, list[dict[str, Any]]] = {a: [] for a in by_entry.values()}
    for listed in summary.problems:
        if listed.get("agreement_id") in by_agreement:
            by_agreement[listed["agreement_id"]].append({"field": listed["field"], "message": listed["message"]})
    async with pool.acquire() as conn, conn.transaction():
        for agreement_id, found in by_agreement.items():
            await store.set_import_problems(conn, agreement_id, found)
    return summary


def _problem(entry: int, agreement: Agreement, where: str, message: str) -> dict[str, Any]:
    return {
        "entry": entry,
        "organization": agreement.organization,
        "agreement_id": agreement.id,
        "field": where,
        "message": message,
    }
