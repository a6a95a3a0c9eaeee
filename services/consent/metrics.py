"""Metrics of the consent service (named homeroom_consent_...)."""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from homeroom.contracts.consent import DecisionRequest
from homeroom.telemetry import start_at_zero
from services.consent.decisions import DENIAL_CODES
from services.consent.guardianship import Outcome

DECISIONS = Counter(
    "homeroom_consent_decisions_total",
    "Decisions given, by action and outcome (permit: something released; deny: nothing)",
    ["action", "outcome"],
)
DECISION_SECONDS = Histogram(
    "homeroom_consent_decision_seconds",
    "Time to decide one request or batch, facts read and decision logged",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
POLICY_DISAGREEMENTS = Counter(
    "homeroom_consent_policy_disagreements_total",
    "Elements the decision rules would release but the Cedar policy does not permit (withheld)",
)
AGREEMENTS_ENDED = Counter("homeroom_consent_agreements_ended_total", "Agreements ended, by reason", ["reason"])
KEYS_DESTROYED = Counter(
    "homeroom_consent_keys_destroyed_total", "Agreement-scoped data keys shredded when agreements ended"
)
CHOICES_RECORDED = Counter("homeroom_consent_parental_choices_total", "Parents' choices recorded, by kind", ["kind"])
DENIALS = Counter(
    "homeroom_consent_denials_total",
    "Decisions that released nothing, by their denial code (decisions.DENIAL_CODES)",
    ["reason"],
)
AGREEMENTS = Gauge("homeroom_consent_agreements", "Agreements in the registry, by current status", ["status"])
AGREEMENTS_ENDING_SOON = Gauge(
    "homeroom_consent_agreements_ending_soon", "Active agreements whose term ends within the next 30 days"
)
LINKING_ATTEMPTS = Counter(
    "homeroom_consent_linking_attempts_total",
    "Linking-code redemption attempts, by outcome (guardianship.Outcome); guessing shows as unknown_code, "
    "malformed and rate_limited",
    ["outcome"],
)
LINKING_CODES = Counter(
    "homeroom_consent_linking_codes_total", "Linking codes issued, revoked, or refused at issue", ["event"]
)
LINKS_ENDED = Counter("homeroom_consent_guardianships_ended_total", "Guardianship links ended, by reason", ["reason"])
# Every labelled series an alert reads starts at zero, so the first event is an increase (issue 20).
start_at_zero(LINKING_ATTEMPTS, *Outcome)
start_at_zero(LINKING_CODES, "issued", "revoked", "refused")
LINKS_CARRIED = Counter(
    "homeroom_consent_guardianships_carried_total",
    "Guardianship links proposed to a receiving district by a delivered transfer",
)

# At 0 from the start, so a panel's first decision and denial show (homeroom.telemetry.start_at_zero).
_ACTIONS = get_args(DecisionRequest.model_fields["action"].annotation)
start_at_zero(DECISIONS, *((action, outcome) for action in _ACTIONS for outcome in ("permit", "deny")))
start_at_zero(DENIALS, *DENIAL_CODES)

# The series the decision point moves on every decision, looked up once: `labels()` takes a
# lock and builds a key on every call, which cost more than the counting.
DECISION_COUNTS = {
    (action, allow): DECISIONS.labels(action, "permit" if allow else "deny")
    for action in _ACTIONS
    for allow in (True, False)
}
DENIAL_COUNTS = {code: DENIALS.labels(code) for code in DENIAL_CODES}
DECISION_TIMES = {route: DECISION_SECONDS.labels(route) for route in ("single", "batch", "screen")}
