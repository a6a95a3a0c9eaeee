"""Read the log by what entries say: compliance search, a child's disclosures for a parent,
a district's public counts, and records' reconciliation.

Use cases:
- `search`: entries matching compliance's filters, in stable keyset pages by sequence number.
- `student_disclosures`: every disclosure of one child's data in plain language (a parent's
  own inspections shown apart, one line a day; districts where the parent's link is not
  active left out).
- `disclosure_counts`: a district's recorded disclosures of a period by recipient and purpose,
  a count below `SMALL_CELL` shown as "fewer than 10" (the transparency page, issue 24).
- `present`: which of these disclosure ids the log holds (records' reconciliation; ids only).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from homeroom.auth import Forbidden, Principal, Role
from homeroom.catalogue import CATALOGUE, PURPOSES
from homeroom.tlog.canonical import format_time
from services.audit import store
from services.audit.application.proofs import entry_json, invalid
from services.audit.entries import EXEMPT_BASES, STUDENT_KEY, describe_disclosure
from services.audit.state import AuditRuntime

SMALL_CELL = 10  # counts below this are published as "fewer than 10" (FERPA 99.31(b)(1) practice)


def _page(found: list[store.StoredEntry], limit: int) -> tuple[list[store.StoredEntry], int | None]:
    """A page of `limit` from `limit + 1` found, and the cursor of the next page (None: the last)."""
    page = found[:limit]
    return page, page[-1].seq if len(found) > limit else None


async def search(runtime: AuditRuntime, filters: store.EntryFilter, limit: int) -> dict[str, Any]:
    for name, moment in (("query.from", filters.since), ("query.to", filters.until)):
        if moment is not None and moment.tzinfo is None:
            raise invalid(name, "time.timezone_missing", "give a time zone (e.g. 2026-11-02T00:00:00Z)")
    if filters.since is not None and filters.until is not None and filters.until <= filters.since:
        raise invalid("query.to", "time.range_empty", "'to' must be after 'from'")
    if filters.element is not None and filters.element not in CATALOGUE:
        raise invalid("query.element", "element.unknown", f"{filters.element!r} is not a catalogue element")
    page, next_after = _page(await store.search(runtime.pool, filters, limit + 1), limit)
    return {"entries": [entry_json(e) for e in page], "next_after": next_after}


async def student_disclosures(
    runtime: AuditRuntime, principal: Principal, student_key: str, after: int | None, limit: int
) -> dict[str, Any]:
    if principal.role is Role.PARENT and not principal.is_parent_of(student_key):
        raise Forbidden("a parent sees only their own child's disclosures")
    if not STUDENT_KEY.match(student_key):
        raise invalid("path.student_key", "student_key.format", "not a pseudonymous student key (stu_...)")
    filters = store.EntryFilter(student_key=student_key, kind="disclosure_recorded", after=after)
    page, next_after = _page(await store.search(runtime.pool, filters, limit + 1), limit)
    out = []
    own_views: dict[str, dict[str, Any]] = {}
    for e in page:
        d = e.draft
        if principal.role is Role.PARENT and not principal.is_parent_in(student_key, d.district_id):
            # A district where the parent's link is not active (a transfer carried it and the
            # district has not accepted it, or it was revoked): none of its disclosures (issue 24).
            continue
        when = format_time(d.occurred_at)
        if d.recipient.role == "parent":
            # A parent's (or an eligible student's) own inspection (99.10) is no disclosure to anyone
            # else: shown apart, one line per day, never as "who received your child's data".
            day = when[:10]
            seen = own_views.setdefault(day, {"date": day, "views": 0, "districts": []})
            seen["views"] += 1
            if d.district_id not in seen["districts"]:
                seen["districts"].append(d.district_id)
            continue
        out.append(
            {
                "seq": e.seq,
                "when": when,
                "recipient": d.recipient.to_dict(),
                "elements": [{"id": x, "name": CATALOGUE[x].name if x in CATALOGUE else x} for x in d.elements],
                "purpose": d.purpose,
                "purpose_description": PURPOSES.get(d.purpose, ""),
                "legal_basis": d.legal_basis,
                "agreement_id": d.agreement_id or None,
                "redisclosure_parties": list(d.redisclosure_parties),
                "record_required": d.record_required and d.legal_basis not in EXEMPT_BASES,
                "summary": describe_disclosure(d),
            }
        )
    return {
        "student_key": student_key,
        "disclosures": out,
        "own_views": sorted(own_views.values(), key=lambda v: str(v["date"]), reverse=True),
        "next_after": next_after,
    }


async def disclosure_counts(runtime: AuditRuntime, district: str, days: int) -> dict[str, Any]:
    since = runtime.clock() - timedelta(days=days)
    rows = await store.disclosure_counts(runtime.pool, district, since)
    return {
        "district_id": district,
        "since": since.isoformat(),
        "counts": [
            {
                "recipient": r["recipient"],
                "purpose": r["purpose"],
                "count": r["count"] if r["count"] >= SMALL_CELL else f"fewer than {SMALL_CELL}",
            }
            for r in rows
        ],
    }


async def present(runtime: AuditRuntime, disclosure_ids: Sequence[str]) -> dict[str, Any]:
    return {"present": await store.events_present(runtime.pool, disclosure_ids)}
