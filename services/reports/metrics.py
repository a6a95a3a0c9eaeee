"""Metrics of the reports service (named homeroom_reports_...). The tally's consumer lag is in
the kernel's homeroom_consumer_lag{service="reports", consumer="tally"} like every consumer's."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from homeroom.telemetry import start_at_zero

TALLY_EVENTS = Counter(
    "homeroom_reports_tally_events_total",
    "Events the statewide tally read, by topic and outcome (applied, duplicate, refused)",
    ["topic", "outcome"],
)
TALLY_REFUSED = Counter(
    "homeroom_reports_tally_refused_total",
    "Events the tally could not use, by rule (records dead-letters them)",
    ["rule"],
)
TALLY_WRITES = Counter(
    "homeroom_reports_tally_student_writes_total",
    "Students' values written to the database (one per student per batch)",
)
TALLY_BATCH_SECONDS = Histogram(
    "homeroom_reports_tally_batch_seconds",
    "Time to fold one batch of events into the tally and write its school rows",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENT_TO_TALLY_SECONDS = Histogram(
    "homeroom_reports_event_to_tally_seconds",
    "Freshness: from an event's time to its school's row written in the tally's database",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
TALLY_NEWEST_EVENT = Gauge(
    "homeroom_reports_tally_newest_event_timestamp_seconds", "Time of the newest event counted in the written rows"
)
SECONDS_BEHIND = Gauge(
    "homeroom_reports_seconds_behind",
    "Freshness: seconds the tally trails the events on the bus (0 when every event is counted; "
    "services/reports/freshness.py)",
)
TALLY_RETRIES = Counter(
    "homeroom_reports_tally_retries_total",
    "Batches the database refused (it was away) and the tally tried again",
)
TALLY_STUDENTS = Gauge("homeroom_reports_tally_students", "Students whose values this process holds")
TALLY_REBUILDS = Counter(
    "homeroom_reports_tally_rebuilds_total",
    "School rows rebuilt from the students in the database after partitions were assigned",
)
SNAPSHOTS = Counter("homeroom_reports_snapshots_published_total", "Statewide snapshots published (each a release)")
SNAPSHOT_SECONDS = Histogram(
    "homeroom_reports_snapshot_seconds",
    "Time to compute and suppress a statewide snapshot",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
SNAPSHOT_CELLS = Gauge("homeroom_reports_snapshot_cells", "Cells of the latest snapshot by status", ["status"])
for _status in ("published", "fewer_than", "withheld"):
    SNAPSHOT_CELLS.labels(_status).set(0)
SOURCE_TOPICS = ("enrollment.v1", "attendance.v1", "discipline.v1", "groups.v1")
for _outcome in ("applied", "duplicate", "refused"):
    for _topic in SOURCE_TOPICS:
        TALLY_EVENTS.labels(_topic, _outcome).inc(0)
# The rules the tally itself refuses by (a poison message's rule is known only when it comes).
start_at_zero(
    TALLY_REFUSED,
    "date.invalid",
    "payload.missing_field",
    "enrollment.exit_without_entry",
    "attendance.category_unknown",
)
