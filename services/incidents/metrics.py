"""The incidents service's metrics: the legal clocks, for Prometheus to alert on before they pass.

`homeroom_incidents_obligation_due_timestamp_seconds` holds, for every obligation still
running, the Unix time it is due (labels: incident, district, obligation, basis); a
deadline closed by its act disappears. Alert rules compare it with `time()`
(deploy/prometheus/alerts.yml: `HomeroomBreachDeadlineNear`, `HomeroomBreachDeadlinePassed`).
The keeper refreshes it from the database every `clock_refresh_s`, so every instance
exports the same clocks.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OBLIGATION_DUE = Gauge(
    "homeroom_incidents_obligation_due_timestamp_seconds",
    "When each running 8 NYCRR 121.10 obligation of an incident is due (Unix time); gone once met",
    ["incident_id", "district_id", "obligation", "basis"],
)
OBLIGATIONS_RUNNING = Gauge(
    "homeroom_incidents_obligations_running", "Obligations of open incidents not yet met, by kind", ["obligation"]
)
INCIDENTS_OPEN = Gauge("homeroom_incidents_open", "Incidents not closed, by status", ["status"])
SCOPES_FROZEN = Counter("homeroom_incidents_scopes_frozen_total", "Scope versions frozen")
SCOPE_BYTES = Histogram(
    "homeroom_incidents_scope_bundle_bytes",
    "Size of frozen scope bundles (compressed)",
    buckets=(1e4, 1e5, 1e6, 1e7, 1e8, 1e9),
)
LETTERS = Counter("homeroom_incidents_letters_total", "Letters to families issued, by language", ["language"])
REPORTS = Counter("homeroom_incidents_reports_total", "Reports issued, by kind", ["kind"])

KINDS = ("contractor_to_agency", "agency_to_cpo", "agency_to_parents")
STATUSES = ("open", "scoped", "notified")


def initialise() -> None:
    """Every labelled series an alert or panel reads exists from the start, at zero."""
    for kind in KINDS:
        OBLIGATIONS_RUNNING.labels(kind).set(0)
    for status in STATUSES:
        INCIDENTS_OPEN.labels(status).set(0)
    for language in ("en", "es", "zh"):
        LETTERS.labels(language)
    for kind in ("cpo_report", "district_summary"):
        REPORTS.labels(kind)
