"""The audit service's own metrics (kernel metrics are in homeroom.telemetry)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from homeroom.auth import Role
from homeroom.catalogue import LegalBasis
from homeroom.telemetry import start_at_zero
from homeroom.tlog.verify import FindingKind

ENTRIES_APPENDED = Counter(
    "homeroom_audit_entries_appended_total", "Entries appended to the log (counted from the database, once committed)"
)
APPEND_SECONDS = Histogram(
    "homeroom_audit_append_seconds",
    "Time to append one entry (lock, tree update, receipt), inside the consumer's transaction",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
DISCLOSURES = Counter(
    "homeroom_audit_disclosures_total",
    "Disclosures logged, by the recipient's role and the legal basis (counted as appended; a replayed batch"
    " that rolls back may count twice)",
    ["recipient_role", "legal_basis"],
)
DISCLOSURES_ESCAPED = Counter(
    "homeroom_audit_disclosures_escaped_total",
    "Disclosures recorded escaped because they broke an entry rule (never dead-lettered: FERPA 99.32)",
)
TREE_SIZE = Gauge("homeroom_audit_tree_size", "Entries in the log (the Merkle tree's size)")
SIGNED_TREE_SIZE = Gauge("homeroom_audit_signed_tree_size", "Size of the latest signed tree head")
LAST_HEAD_TIMESTAMP = Gauge(
    "homeroom_audit_last_signed_head_timestamp_seconds", "Unix time of the latest signed tree head"
)
SECONDS_SINCE_HEAD = Gauge(
    "homeroom_audit_seconds_since_last_signed_head", "Seconds since the latest signed tree head (-1 before any)"
)
VERIFICATION_FAILURES = Counter(
    "homeroom_audit_verification_failures_total", "Findings of log verifications run by the service", ["kind"]
)
WITNESSED_SIZE = Gauge("homeroom_audit_witnessed_tree_size", "Size of the latest checkpoint a witness cosigned")
WITNESS_FAILURES = Counter(
    "homeroom_audit_witness_failures_total",
    "Checkpoints a witness did not cosign, by reason (truncated: the witness cosigned a larger log than"
    " the one stored now)",
    ["reason"],
)
# At 0 from the start, so the first finding and the first truncation alert (homeroom.telemetry.start_at_zero):
# every kind a verification reports, the stored-tree checks of services/audit/application/verification.py, and the
# witness failures of services/audit/application/witnessing.py known before any answer (http_<status> is not).
start_at_zero(VERIFICATION_FAILURES, *FindingKind, "stored_node_invalid", "stored_root_mismatch")
start_at_zero(WITNESS_FAILURES, "truncated", "unreachable", "bad_cosignature")
VERIFICATIONS = Counter("homeroom_audit_verifications_total", "Log verifications run by the service", ["outcome"])
start_at_zero(VERIFICATIONS, "intact", "tampered")
start_at_zero(DISCLOSURES, *((role, basis) for role in Role for basis in LegalBasis))


_last_head_s: list[float] = [0.0]


def record_head(size: int, timestamp_ms: int) -> None:
    """Note a signed head (newest wins)."""
    seconds = timestamp_ms / 1000
    if seconds >= _last_head_s[0]:
        _last_head_s[0] = seconds
        LAST_HEAD_TIMESTAMP.set(seconds)
        SIGNED_TREE_SIZE.set(size)


_counted_size: list[int | None] = [None]


def record_size(size: int) -> None:
    """Note the committed tree size; the appended counter grows by what was added since last seen."""
    TREE_SIZE.set(size)
    previous = _counted_size[0]
    if previous is not None and size > previous:
        ENTRIES_APPENDED.inc(size - previous)
    _counted_size[0] = size if previous is None else max(size, previous)


def _since_last_head() -> float:
    last = _last_head_s[0]
    return -1.0 if last <= 0 else max(0.0, time.time() - last)


SECONDS_SINCE_HEAD.set_function(_since_last_head)
