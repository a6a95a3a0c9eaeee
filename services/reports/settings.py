"""Settings of the reports service (environment prefix HOMEROOM_REPORTS_)."""

from __future__ import annotations

from pydantic import Field

from homeroom.config import ServiceSettings
from homeroom.gc_tuning import YOUNG_GC_THRESHOLD


class ReportsSettings(ServiceSettings):
    service_name: str = "reports"

    # Publication rules: each state sets its own (docs/services/reports.md).
    state_name: str = "New York"
    min_cell: int = Field(default=10, ge=1)  # N: fewer students than this are never published
    extreme_rate_min_group: int = Field(default=30, ge=1)  # 0% / 100% of a smaller group is withheld
    # The chronic-absence line, as records draws it (seed 000: early support).
    chronic_absence_threshold: float = Field(default=0.10, gt=0, le=1)
    chronic_absence_min_days: int = Field(default=10, ge=1)

    # The streaming tally (a consumer group loop, homeroom/bus/batch_loop.py) over enrollment,
    # attendance, discipline and groups.
    tally_batch: int = Field(default=1000, ge=1)  # events folded per batch: one value write per student
    tally_batch_window_s: float = Field(default=0.25, gt=0)
    calendar_poll_s: float = Field(default=1.0, gt=0)  # how often a process looks for new calendars
    tally_retry_s: float = Field(default=1.0, gt=0)  # wait before a batch the database refused is tried again
    # The garbage collector's young-generation threshold while the tally runs (CPython's is 700),
    # the kernel consumers' by default. A batch's events live for the whole batch; at 700 they
    # were promoted, and the full collections that brought took a quarter of the tally's CPU per
    # event (docs/services/reports.md, "The garbage collector, and the tally's own objects"). 0: leave it.
    gc_young_threshold: int = Field(default=YOUNG_GC_THRESHOLD, ge=0)
