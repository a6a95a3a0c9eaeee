"""Use case: publish a statewide snapshot, a de-identified release (FERPA 99.31(b)(1)).

The school rows of the year are summed, suppressed (suppression.py) and written out; the
snapshot is stored with the next version of its school year and, in the same transaction,
its `DeidentifiedReleaseRecorded` goes to the outbox for the audit log: who asked, for which
period, under which rules, how many cells were suppressed, and the SHA-256 of what was
published. A snapshot and its audit entry stand or fall together.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid

import asyncpg

from homeroom import outbox
from homeroom.auth import Principal
from homeroom.bus.envelope import build_event
from homeroom.catalogue import LegalBasis
from homeroom.contracts.reports import CellCounts, Requester, SnapshotRequest, SnapshotSummary
from homeroom.events.v1.disclosure_pb2 import DeidentifiedReleaseRecorded
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.problems import Problem, problem_type
from services.reports import metrics, snapshots, store
from services.reports.application.common import period, year_tables
from services.reports.state import ReportsState
from services.reports.suppression import CannotProtect

_RELEASE_NS = uuid.UUID("5f2d8f3e-2c7b-4f1a-9d64-6a1e0b7c9e21")
# The catalogue elements the statistics are computed from (recorded with each release).
ELEMENTS = (
    "enrollment.school_id",
    "enrollment.grade_level",
    "enrollment.entry_date",
    "enrollment.exit_date",
    "attendance.daily",
    "attendance.summary",
    "discipline.suspension_dates",
    "student.sex",
    "program.iep",
    "program.section_504",
    "program.ell",
    "program.free_reduced_lunch",
)
PUBLIC = Party(organization="the public", role="public")


def _requester(principal: Principal) -> Requester:
    return Requester(role=principal.role.value, subject=principal.subject, organization=principal.organization or "")


async def publish(
    pool: asyncpg.Pool, state: ReportsState, principal: Principal, request: SnapshotRequest
) -> SnapshotSummary:
    year = request.school_year
    days = period(state, year)
    async with state.computing:
        freshness = state.freshness_now()
        tables, _ = await year_tables(pool, state, year)
        started = time.perf_counter()
        try:
            built = await asyncio.to_thread(
                snapshots.document, tables, year, days, state.rules, state.absence, state.settings.state_name
            )
        except CannotProtect as exc:
            raise Problem(409, "Cannot publish", str(exc), type=problem_type("reports-unprotectable")) from None
    metrics.SNAPSHOT_SECONDS.observe(time.perf_counter() - started)
    snapshot_id = uuid.uuid4()
    published_at = state.clock()
    requester = _requester(principal)
    cells: CellCounts = built.snapshot.cells
    async with pool.acquire() as conn, conn.transaction():
        version = await store.next_version(conn, year)
        summary = SnapshotSummary(
            snapshot_id=str(snapshot_id),
            version=version,
            school_year=year,
            school_year_label=built.snapshot.school_year_label,
            period_start=days[0],
            period_end=days[1],
            published_at=published_at,
            requested_by=requester,
            purpose=request.purpose,
            cells=cells,
            content_sha256="",
        )
        # How far the tally trailed the bus when the rows were read: part of what is published.
        snapshot = built.snapshot.model_copy(update={"release": summary, "freshness": freshness})
        digest = snapshots.content_sha256(snapshot)
        summary = summary.model_copy(update={"content_sha256": digest})
        snapshot = snapshot.model_copy(update={"release": summary})
        document = gzip.compress(snapshot.model_dump_json().encode(), compresslevel=6)
        await store.insert_snapshot(
            conn,
            store.SnapshotRecord(
                snapshot_id,
                year,
                version,
                days[0],
                days[1],
                published_at,
                requester.model_dump(),
                request.purpose,
                cells.total,
                cells.fewer_than,
                cells.withheld,
                digest,
            ),
            snapshot.rules,
            document,
        )
        release = DeidentifiedReleaseRecorded(
            release_id=str(snapshot_id),
            version=version,
            requester=Party(
                organization=requester.organization,
                client_id=principal.client_id or "",
                person=principal.subject,
                role=principal.role.value,
            ),
            recipient=PUBLIC,
            school_year=year,
            period_start=days[0].isoformat(),
            period_end=days[1].isoformat(),
            elements=list(ELEMENTS),
            rules=snapshots.compact_rules(state.rules, state.absence),
            cells=cells.total,
            cells_suppressed=cells.suppressed,
            content_sha256=digest,
            purpose=request.purpose,
            legal_basis=LegalBasis.DEIDENTIFIED.value,
        )
        await outbox.add(
            conn,
            build_event(
                state.topics.disclosure,
                "deidentified_release_recorded",
                release,
                source="/homeroom/reports",
                subject="",
                key=str(snapshot_id),
                event_id=str(uuid.uuid5(_RELEASE_NS, str(snapshot_id))),
                topic_name=state.topics.disclosure.name,
            ),
        )
    state.remember(str(snapshot_id), snapshot)
    metrics.SNAPSHOTS.inc()
    metrics.SNAPSHOT_CELLS.labels("published").set(cells.published)
    metrics.SNAPSHOT_CELLS.labels("fewer_than").set(cells.fewer_than)
    metrics.SNAPSHOT_CELLS.labels("withheld").set(cells.withheld)
    return summary
