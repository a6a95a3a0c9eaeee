"""The reports service's API as its callers see it (the portal, researchers' scripts).

One model per answer, used by the service's routes (its OpenAPI document) and by the
portal's client (`ReportsClient` in `homeroom/contracts/clients.py`), so both sides read the same shapes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

CountStatus = Literal["published", "fewer_than", "withheld"]
LevelName = Literal["state", "district", "school"]


class Count(BaseModel):
    """A count of students: the number, or why it is not shown (never both)."""

    value: int | None = Field(description="the count; null when not published")
    status: CountStatus
    shown: str = Field(description='as a page shows it: "1,204", "fewer than 10" or "withheld"')


class Rate(BaseModel):
    value: float | None = Field(description="0..1; null when not published")
    shown: str = Field(description='as a page shows it: "12.3%" or "not shown"')


class Row(BaseModel):
    unit: str = Field(description="the unit's key: 'state', a district id, or 'district/school'")
    column: str = Field(description="'all' or 'dimension:group', e.g. 'sex:female', 'grade:05'")
    counts: dict[str, Count] = Field(description="by measure: enrolled, counted, chronic, suspended")
    rates: dict[str, Rate] = Field(description="chronic_absence, suspension, attendance")


class Unit(BaseModel):
    key: str
    level: LevelName
    name: str
    district_id: str = ""
    school_id: str = ""
    parent: str | None = None


class Group(BaseModel):
    code: str
    label: str
    column: str


class Dimension(BaseModel):
    name: str
    label: str
    levels: list[LevelName]
    groups: list[Group]


class Measure(BaseModel):
    name: str
    label: str
    parent: str | None = None


class Requester(BaseModel):
    role: str
    subject: str
    organization: str = ""


class CellCounts(BaseModel):
    total: int
    published: int
    fewer_than: int
    withheld: int

    @property
    def suppressed(self) -> int:
        return self.fewer_than + self.withheld


class SnapshotSummary(BaseModel):
    snapshot_id: str
    version: int
    school_year: int = Field(description="the year the school year starts in: 2026 for 2026-2027")
    school_year_label: str
    period_start: date
    period_end: date
    published_at: datetime
    requested_by: Requester
    purpose: str
    cells: CellCounts
    content_sha256: str = Field(description="SHA-256 of the document as published (canonical JSON)")


class Freshness(BaseModel):
    """How far the statewide tally was behind the events on the bus when the answer was made
    (the answering process's partitions: with several reports processes, the metric
    homeroom_reports_seconds_behind is the statewide figure)."""

    newest_event: datetime | None = Field(description="time of the newest event the tally has counted (as of)")
    seconds_behind: float | None = Field(
        description="seconds the tally trails the bus: 0 when every event on it is counted; null when unknown"
    )
    events_behind: int | None = Field(description="events on the bus not yet counted")
    partitions: int = Field(default=0, description="source partitions the answering process holds")
    measured_at: datetime | None = None


class Page(BaseModel):
    """The part of a snapshot's rows an answer holds (the filters asked for, then offset/limit)."""

    filters: dict[str, str] = Field(description="the filters applied: district, school, level, column")
    offset: int
    limit: int | None
    rows_matching: int = Field(description="rows that match the filters, before offset/limit")
    next_offset: int | None = Field(description="offset of the next page; null on the last")


class Snapshot(BaseModel):
    """A statewide snapshot (or, for a district's preview, what one would publish now)."""

    release: SnapshotSummary | None = Field(description="null for a preview, which is not a release")
    state: str
    school_year: int
    school_year_label: str
    period_start: date
    period_end: date
    rules: dict[str, Any]
    measures: list[Measure]
    dimensions: list[Dimension]
    units: list[Unit]
    rows: list[Row]
    cells: CellCounts
    freshness: Freshness | None = Field(
        default=None, description="how far the tally was behind the events when this was computed"
    )
    page: Page | None = Field(default=None, description="with filters or a limit: which rows this answer holds")


class SnapshotList(BaseModel):
    snapshots: list[SnapshotSummary]


class SnapshotRequest(BaseModel):
    school_year: int = Field(ge=2000, le=2100, description="the year the school year starts in")
    purpose: str = Field(default="statewide comparisons", min_length=1, max_length=200)


class OwnRow(BaseModel):
    unit: str
    column: str
    counts: dict[str, int]
    days_enrolled: int
    days_absent: int


class DistrictNumbers(BaseModel):
    """A district's own numbers, unsuppressed: its staff's view of its own students, not a release."""

    district_id: str
    school_year: int
    as_of: date
    newest_event: datetime | None
    units: list[Unit]
    rows: list[OwnRow]
    note: str
    freshness: Freshness | None = None
