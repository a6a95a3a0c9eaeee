"""How far behind the events the tally says it is (services/reports/freshness.py), by moving time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.reports.freshness import FreshnessTracker

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
A, B = ("attendance.v1", 0), ("attendance.v1", 1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_tally_with_nothing_on_the_bus_is_not_behind_and_unknown_before_it_measures() -> None:
    tracker = FreshnessTracker(started=T0)
    assert tracker.report(at(5)).seconds_behind is None  # no partition measured yet
    tracker.measured({A: 0, B: 0}, at(5))
    assert tracker.report(at(3600)).seconds_behind == 0 and tracker.report(at(3600)).events_behind == 0


def test_a_burst_after_a_quiet_night_reads_as_seconds_not_hours() -> None:
    tracker = FreshnessTracker(started=T0)
    tracker.applied(A, at(0))
    tracker.measured({A: 0, B: 0}, at(10))  # caught up at 10 s; then quiet for a night
    tracker.measured({A: 0, B: 0}, at(36_000))
    tracker.measured({A: 500, B: 0}, at(36_002))  # a burst lands
    assert tracker.seconds_behind(at(36_003)) == 3  # since it was last caught up, not since the last event


def test_a_backlog_grows_from_the_newest_event_counted_of_the_furthest_partition() -> None:
    tracker = FreshnessTracker(started=T0)
    tracker.measured({A: 0, B: 0}, at(0))
    tracker.applied(A, at(50))
    tracker.applied(B, at(20))
    tracker.measured({A: 10, B: 4000}, at(60))
    report = tracker.report(at(60))
    assert report.seconds_behind == 40 and report.events_behind == 4010  # B counted up to 20 s
    assert report.newest_event == at(50) and report.partitions == 2
    tracker.applied(B, at(58))
    tracker.measured({A: 0, B: 0}, at(61))
    assert tracker.seconds_behind(at(61)) == 0


def test_a_partition_never_seen_caught_up_is_behind_since_the_process_started() -> None:
    tracker = FreshnessTracker(started=T0)
    tracker.measured({A: 7}, at(12))
    assert tracker.seconds_behind(at(15)) == 15
