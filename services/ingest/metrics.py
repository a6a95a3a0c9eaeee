"""Metrics of the ingest service (kernel metrics, e.g. the outbox backlog, are in homeroom.telemetry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECORDS = Counter(
    "homeroom_ingest_records_total",
    "Input records by district, format and outcome (received, accepted, rejected, unchanged)",
    ["district", "format", "outcome"],
)
REJECTIONS = Counter(
    "homeroom_ingest_rejections_total", "Refused input records by rule and district", ["district", "rule"]
)
WARNINGS = Counter("homeroom_ingest_warnings_total", "Warnings on accepted records by rule", ["district", "rule"])
SUBMISSIONS = Counter(
    "homeroom_ingest_submissions_total",
    "Submissions reaching a status (received, held, completed, failed), by format",
    ["format", "status"],
)
SUBMISSION_SECONDS = Histogram(
    "homeroom_ingest_submission_seconds",
    "Time from the start of processing to the end of a submission",
    ["format"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
UPLOAD_BYTES = Counter("homeroom_ingest_upload_bytes_total", "Bytes of uploads stored, by format", ["format"])
EVENTS = Counter("homeroom_ingest_events_total", "Events written to the outbox by topic", ["topic"])
