"""Use case: the published snapshots, for anyone (no student is in them: see suppression.py)."""

from __future__ import annotations

import gzip
import uuid

import asyncpg

from homeroom.calendar import school_year_label
from homeroom.contracts.reports import CellCounts, Requester, Snapshot, SnapshotList, SnapshotSummary
from homeroom.problems import Problem, problem_type
from services.reports import snapshots, store
from services.reports.state import ReportsState


def _not_found(what: str) -> Problem:
    return Problem(404, "No such snapshot", what, type=problem_type("reports-snapshot-not-found"))


def summary(r: store.SnapshotRecord) -> SnapshotSummary:
    return SnapshotSummary(
        snapshot_id=str(r.snapshot_id),
        version=r.version,
        school_year=r.school_year,
        school_year_label=school_year_label(r.school_year),
        period_start=r.period_start,
        period_end=r.period_end,
        published_at=r.published_at,
        requested_by=Requester.model_validate(r.requested_by),
        purpose=r.purpose,
        cells=CellCounts(
            total=r.cells, published=r.cells - r.fewer_than - r.withheld, fewer_than=r.fewer_than, withheld=r.withheld
        ),
        content_sha256=r.content_sha256,
    )


async def listing(pool: asyncpg.Pool, year: int | None, limit: int) -> SnapshotList:
    async with pool.acquire() as conn:
        records = await store.list_snapshots(conn, year, limit)
    return SnapshotList(snapshots=[summary(r) for r in records])


async def document(pool: asyncpg.Pool, state: ReportsState, snapshot_id: str) -> Snapshot:
    cached = state.documents.get(snapshot_id)
    if cached is not None:
        return cached
    try:
        key = uuid.UUID(snapshot_id)
    except ValueError:
        raise _not_found(f"{snapshot_id!r} is not a snapshot id") from None
    async with pool.acquire() as conn:
        raw = await store.snapshot_document(conn, key)
    if raw is None:
        raise _not_found(f"no snapshot {snapshot_id}")
    return state.remember(str(key), Snapshot.model_validate_json(gzip.decompress(raw)))


async def latest(pool: asyncpg.Pool, state: ReportsState, year: int | None) -> Snapshot:
    async with pool.acquire() as conn:
        records = await store.list_snapshots(conn, year, 1)
    if not records:
        raise _not_found("nothing has been published" + (f" for school year {year}" if year else ""))
    return await document(pool, state, str(records[0].snapshot_id))


def part(snapshot: Snapshot, selection: snapshots.Selection) -> Snapshot:
    """What the reader asked for of a snapshot: the whole of it, or its filtered rows, a page at a time."""
    try:
        return snapshots.select(snapshot, selection)
    except KeyError as missing:
        raise _not_found(str(missing.args[0])) from None
