"""Metrics of the records service. The kernel's consumer metrics cover events applied
(`homeroom_events_applied_total{service="records"}`) and consumer lag
(`homeroom_consumer_lag{service="records"}`); records adds reads, denials, disclosures
and the absence reviewer's counts."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from homeroom.auth import Role
from homeroom.telemetry import start_at_zero

READS = Counter("homeroom_records_reads_total", "Student records read, by caller role and channel", ["role", "channel"])
DENIALS = Counter("homeroom_records_denials_total", "Reads refused, by reason", ["reason"])
DISCLOSURES = Counter("homeroom_records_disclosures_total", "disclosure.v1 events written, by channel", ["channel"])
ABSENCE_REVIEWS = Counter(
    "homeroom_records_absence_reviews_total",
    "Students whose days enrolled, absences and chronic-absence flag the absence reviewer counted again",
)
CHRONIC_CHANGES = Counter(
    "homeroom_records_chronic_absence_changes_total",
    "Chronic-absence crossings (chronic=true) and returns under the line shown in records",
    ["chronic"],
)
UNAUDITED = Gauge(
    "homeroom_records_disclosures_unaudited",
    "Releases in records' read log older than the grace period whose disclosure is not in the audit log"
    " (reconciliation; anything above 0 is a release without its FERPA 99.32 record)",
)
RECONCILIATIONS = Counter(
    "homeroom_records_reconciliations_total",
    "Runs of the read-log / audit-log reconciliation, by outcome (ok, audit_unavailable)",
    ["outcome"],
)
# At 0 from the start, so "no successful run for 30 minutes" has a series to be 0 on (and a first
# failure an increase): homeroom.telemetry.start_at_zero, the outcomes services/records/reconcile.py counts.
start_at_zero(RECONCILIATIONS, "ok", "audit_unavailable", "failed")
# The channels of services/records/application/disclosures.py (CHANNEL_API, CHANNEL_ONEROSTER) and its refusals.
CHANNELS = ("records-api", "oneroster")
start_at_zero(READS, *((role, channel) for role in Role for channel in CHANNELS))
start_at_zero(DISCLOSURES, *CHANNELS)
start_at_zero(DENIALS, "not_found", "consent_unavailable", "destroyed")
