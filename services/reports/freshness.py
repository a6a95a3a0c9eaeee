"""How far the tally is behind the events on the bus (issue 22, item 5: published numbers are
at most seconds behind the events).

Per source partition the tally knows the newest record it has applied (the broker's record
time), its lag in records (high-water mark minus the next offset) and when that lag was last
zero. A partition with no lag is current; a lagging partition's numbers are complete at least
up to the later of its newest applied record and the moment it was last caught up (records of
one partition are applied in order). The tally is as far behind as its furthest partition:

    seconds_behind = max over lagging partitions of (now - max(newest applied, last caught up))

So a burst after a quiet night reads as seconds (it was caught up a moment ago), a steady
stream the tally keeps up with reads near zero, and a growing backlog grows. Pure: the caller
passes the times (an injected clock), so the rule is tested by moving time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from homeroom.contracts.reports import Freshness

Partition = tuple[str, int]  # topic, partition


@dataclass(slots=True)
class FreshnessTracker:
    started: datetime  # before anything is applied or measured, a lagging partition is behind since then
    newest: dict[Partition, datetime] = field(default_factory=dict)  # newest record applied
    caught_up: dict[Partition, datetime] = field(default_factory=dict)  # last seen with no lag
    lags: dict[Partition, int] = field(default_factory=dict)
    measured_at: datetime | None = None

    def applied(self, partition: Partition, record_time: datetime) -> None:
        known = self.newest.get(partition)
        if known is None or record_time > known:
            self.newest[partition] = record_time

    def measured(self, lags: Mapping[Partition, int], now: datetime) -> None:
        """The lag of every partition the process holds, as of `now` (others are forgotten)."""
        self.lags = dict(lags)
        for partition, lag in lags.items():
            if lag == 0:
                self.caught_up[partition] = now
        self.measured_at = now

    def seconds_behind(self, now: datetime) -> float:
        behind = 0.0
        for partition, lag in self.lags.items():
            if lag == 0:
                continue
            since = max(
                self.newest.get(partition, self.started), self.caught_up.get(partition, self.started), self.started
            )
            behind = max(behind, (now - since).total_seconds())
        return max(0.0, behind)

    def report(self, now: datetime) -> Freshness:
        return Freshness(
            newest_event=max(self.newest.values()) if self.newest else None,
            seconds_behind=round(self.seconds_behind(now), 3) if self.lags else None,
            events_behind=sum(self.lags.values()) if self.lags else None,
            partitions=len(self.lags),
            measured_at=self.measured_at,
        )
