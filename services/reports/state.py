"""What a running reports service holds, typed: one object, reached by routes and consumers alike.

`ReportsState` is built by the service's lifecycle (`service.py`) and is `runtime.state`;
`ReportsRuntime` is the kernel's runtime typed with this service's settings and state, and
`StateDep` hands the state to a route."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends

from homeroom.bus.topics import (
    ATTENDANCE,
    CALENDAR,
    DISCIPLINE,
    DISCLOSURE,
    ENROLLMENT,
    GROUPS,
    ORGANIZATION,
    REJECTED,
    Topic,
    with_suffix,
)
from homeroom.clock import Clock, system_clock
from homeroom.contracts.reports import Freshness, Snapshot
from homeroom.service import Runtime, get_state
from services.reports.application.tally import Tally
from services.reports.freshness import FreshnessTracker
from services.reports.settings import ReportsSettings
from services.reports.suppression import Rules
from services.reports.tallies import AbsenceRule


@dataclass(frozen=True, slots=True)
class ReportTopics:
    """The topics the service reads and writes (tests give each test its own copies)."""

    suffix: str = ""

    def _named(self, topic: Topic) -> Topic:
        return with_suffix(topic, self.suffix) if self.suffix else topic

    @property
    def sources(self) -> tuple[Topic, ...]:
        """What the streaming tally reads: one student's events, one partition, in each."""
        return tuple(self._named(t) for t in (ENROLLMENT, ATTENDANCE, DISCIPLINE, GROUPS))

    @property
    def reference(self) -> tuple[Topic, ...]:
        return tuple(self._named(t) for t in (CALENDAR, ORGANIZATION))

    @property
    def disclosure(self) -> Topic:
        return self._named(DISCLOSURE)

    @property
    def dead_letters(self) -> Topic:
        return self._named(REJECTED)


@dataclass(slots=True)
class ReportsState:
    settings: ReportsSettings
    topics: ReportTopics
    clock: Clock
    tally: Tally | None = None  # with its freshness, where this process runs the tally (service.py)
    freshness: FreshnessTracker | None = None  # how far the tally this process runs is behind the bus
    documents: OrderedDict[str, Snapshot] = field(default_factory=OrderedDict)  # published, decoded, a few
    # A statewide suppression takes minutes of CPU at a state's size: one at a time, and the
    # last preview kept until a school row of its year changes (docs/benchmarks.md).
    computing: asyncio.Lock = field(default_factory=asyncio.Lock)
    previews: dict[int, tuple[tuple[int, datetime | None], Snapshot]] = field(default_factory=dict)

    @property
    def rules(self) -> Rules:
        return Rules(self.settings.min_cell, max(self.settings.extreme_rate_min_group, self.settings.min_cell))

    @property
    def absence(self) -> AbsenceRule:
        return AbsenceRule(self.settings.chronic_absence_threshold, self.settings.chronic_absence_min_days)

    def freshness_now(self) -> Freshness | None:
        """How far behind the events the numbers of an answer made now are (None: no tally here)."""
        return self.freshness.report(system_clock()) if self.freshness is not None else None

    def remember(self, key: str, snapshot: Snapshot) -> Snapshot:
        self.documents[key] = snapshot
        self.documents.move_to_end(key)
        while len(self.documents) > 4:
            self.documents.popitem(last=False)
        return snapshot


ReportsRuntime = Runtime[ReportsSettings, ReportsState]


StateDep = Annotated[ReportsState, Depends(get_state)]
