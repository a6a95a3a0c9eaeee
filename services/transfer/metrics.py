"""Metrics of the transfer service (named homeroom_transfer_...)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from homeroom.telemetry import start_at_zero
from services.transfer.transfers import (
    ACKNOWLEDGEMENT_DEADLINE_PASSED,
    DELIVERY_DEADLINE_PASSED,
    ESCALATION_REASONS,
    State,
)

CASES_BY_STATE = Gauge("homeroom_transfer_cases", "Transfer cases by current state", ["state"])
CASES_OPENED = Counter("homeroom_transfer_cases_opened_total", "Transfer cases opened from enrollment events")
TRANSITIONS = Counter("homeroom_transfer_transitions_total", "Case steps taken, by the state reached", ["state"])
TIME_TO_DELIVERY = Histogram(
    "homeroom_transfer_enrollment_to_delivery_seconds",
    "Time from the enrollment event to the record delivered into the receiving district",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
)
DEADLINE_BREACHES = Counter(
    "homeroom_transfer_deadline_breaches_total", "Deadlines passed (delivery or acknowledgement)", ["deadline"]
)
REFUSALS = Counter("homeroom_transfer_refusals_total", "Cases refused or rejected, by reason code", ["reason"])
STEP_FAILURES = Counter(
    "homeroom_transfer_step_failures_total", "Failed attempts of a case step (retried later)", ["step"]
)
ESCALATIONS = Counter("homeroom_transfer_escalations_total", "Cases escalated to a person", ["reason"])

# Alerts fire on the first breach and escalation (homeroom.telemetry.start_at_zero): every reason
# transfers.next_action escalates with, and the deadline each passed-deadline reason names (worker).
start_at_zero(ESCALATIONS, *ESCALATION_REASONS)
PASSED_DEADLINES = (ACKNOWLEDGEMENT_DEADLINE_PASSED, DELIVERY_DEADLINE_PASSED)
start_at_zero(DEADLINE_BREACHES, *(reason.split("_", 1)[0] for reason in PASSED_DEADLINES))
start_at_zero(TRANSITIONS, *State)
start_at_zero(STEP_FAILURES, "decide", "package", "deliver", "resend")  # the worker's steps
start_at_zero(REFUSALS, "consent_denied")
