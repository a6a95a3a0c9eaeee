"""Transfer cases: the state machine, retry and deadline policy, and who may see a case.

Pure domain code (no I/O). A case moves

    requested → decided → packaged → delivered → acknowledged
                      ↘ refused      (consent said no)
    any open step     → failed       (a peer answered with a permanent error)
    any open step     → escalated    (retries exhausted, or a deadline passed)
    delivered         → rejected     (the receiving district says "not our student")
    requested         → held         (an identity conflict a person must resolve)

`requested`, `decided` and `packaged` are worked by the case worker; `delivered` waits for
the receiving district, and past the acknowledgement deadline the package is re-sent
(up to `resends` times) and then the case is escalated.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

NAMESPACE = uuid.UUID("6f0c8a52-51d3-4c5e-9a53-2f0b3c7d1e01")


class State(StrEnum):
    REQUESTED = "requested"
    DECIDED = "decided"
    PACKAGED = "packaged"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    REFUSED = "refused"
    FAILED = "failed"
    ESCALATED = "escalated"
    HELD = "held"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.DECIDED, State.REFUSED, State.FAILED, State.ESCALATED, State.HELD}),
    State.DECIDED: frozenset({State.PACKAGED, State.FAILED, State.ESCALATED}),
    State.PACKAGED: frozenset({State.DELIVERED, State.FAILED, State.ESCALATED}),
    # delivered → delivered is a re-send after the acknowledgement deadline
    State.DELIVERED: frozenset({State.DELIVERED, State.ACKNOWLEDGED, State.REJECTED, State.ESCALATED}),
    # a case escalated after delivery can still be answered by the receiving district; one
    # escalated before delivery can be sent round again by a person (→ requested)
    State.ESCALATED: frozenset({State.ACKNOWLEDGED, State.REJECTED, State.REQUESTED}),
    State.HELD: frozenset({State.REQUESTED, State.FAILED}),
    State.ACKNOWLEDGED: frozenset(),
    State.REJECTED: frozenset(),
    State.REFUSED: frozenset(),
    State.FAILED: frozenset(),
}

# States the worker drives forward.
WORKED: frozenset[State] = frozenset({State.REQUESTED, State.DECIDED, State.PACKAGED, State.DELIVERED})
# States that block a second case for the same student and pair of districts (an
# escalated case waits for a person; it is not closed).
OPEN: frozenset[State] = frozenset(
    {State.REQUESTED, State.DECIDED, State.PACKAGED, State.DELIVERED, State.HELD, State.ESCALATED}
)
FINAL: frozenset[State] = frozenset({State.ACKNOWLEDGED, State.REJECTED, State.REFUSED, State.FAILED})

# Reason codes the receiving district may give when it rejects a delivered record.
REJECT_REASONS: dict[str, str] = {
    "not_our_student": "the student is not enrolling in this district",
    "identity_mismatch": "the record does not match the student who enrolled",
    "duplicate_record": "the district already holds this record",
    "enrollment_cancelled": "the enrollment was cancelled",
    "other": "another reason, given in the note",
}


class InvalidTransition(Exception):
    def __init__(self, current: State, target: State) -> None:
        super().__init__(f"a case in state {current.value!r} cannot move to {target.value!r}")
        self.current = current
        self.target = target


def can_move(current: State, target: State) -> bool:
    return target in TRANSITIONS[current]


def check_move(current: State, target: State) -> None:
    if not can_move(current, target):
        raise InvalidTransition(current, target)


def case_id(student_key: str, from_district: str, to_district: str, enrollment: str) -> str:
    """Deterministic: the same enrollment of the same student between the same districts
    always names the same case, however often or in whatever order its events arrive.
    `enrollment` identifies the receiving enrollment (school and entry date)."""
    return str(uuid.uuid5(NAMESPACE, f"case|{student_key}|{from_district}|{to_district}|{enrollment}"))


def enrollment_ref(school_id: str, entry_date: date) -> str:
    return f"{school_id}@{entry_date.isoformat()}"


def step_event_id(case: str, step: str, attempt: int = 0) -> str:
    """Event id of a case step: a replay of the step after a crash writes the same id."""
    return str(uuid.uuid5(NAMESPACE, f"step|{case}|{step}|{attempt}"))


# --- matching an enrollment to the district the student comes from ------------------


@dataclass(frozen=True, slots=True)
class Enrollment:
    district_id: str
    school_id: str
    entry_date: date


@dataclass(frozen=True, slots=True)
class Opening:
    """A case to open: from `from_district` to the enrollment `to`."""

    from_district: str
    to: Enrollment


def _prior(known: list[Enrollment], target: Enrollment) -> Enrollment | None:
    """The enrollment the student had just before `target`: the latest one on or before its
    entry date, not counting `target` itself. On a tie, another district wins (a student who
    leaves A and starts at B on the same day comes from A)."""
    best: Enrollment | None = None
    for e in known:
        if e == target or e.entry_date > target.entry_date:
            continue
        if e.district_id == target.district_id and e.entry_date == target.entry_date:
            continue
        newer = best is None or e.entry_date > best.entry_date
        tie_elsewhere = best is not None and e.entry_date == best.entry_date and best.district_id == target.district_id
        if newer or tie_elsewhere:
            best = e
    return best


def openings(known: list[Enrollment], new: Enrollment) -> list[Opening]:
    """Cases an arriving enrollment opens, given what was known before it (the latest
    enrollment per district). Only the student's current (latest) enrollment is a transfer
    destination: an enrollment the student has already left is history, not a move to
    serve. Handles late arrivals: an older enrollment in A arriving after B's later one
    reveals the A → B transfer. Moves inside one district open nothing."""
    latest = max((e.entry_date for e in known), default=None)
    found: list[Opening] = []
    if latest is None or new.entry_date >= latest:
        prior = _prior(known, new)
        if prior is not None and prior.district_id != new.district_id:
            found.append(Opening(prior.district_id, new))
        return found
    later = [e for e in known if e.entry_date > new.entry_date]
    current = max(later, key=lambda e: e.entry_date)
    if current.district_id == new.district_id:
        return found
    merged = [e for e in known if e.district_id != new.district_id or e.entry_date > new.entry_date] + [new]
    before = _prior(merged, current)
    if before is not None and before.district_id != current.district_id:
        found.append(Opening(before.district_id, current))
    return found


# --- retries and deadlines -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_backoff_s: float = 1.0
    max_backoff_s: float = 300.0

    def backoff(self, attempt: int) -> timedelta:
        """Wait before attempt `attempt + 1`, after `attempt` failures (exponential, capped)."""
        return timedelta(seconds=min(self.max_backoff_s, self.base_backoff_s * 2 ** max(0, attempt - 1)))

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """`delivery_s`: from opening to delivery; `acknowledge_s`: from delivery to the
    receiving district's answer, re-sent `resends` times before escalation. Texas allows
    10 working days for the whole exchange; the demo uses seconds."""

    delivery_s: float = 3600.0
    acknowledge_s: float = 24 * 3600.0
    resends: int = 1

    def delivery_due(self, opened_at: datetime) -> datetime:
        return opened_at + timedelta(seconds=self.delivery_s)

    def acknowledge_due(self, delivered_at: datetime) -> datetime:
        return delivered_at + timedelta(seconds=self.acknowledge_s)


class Action(StrEnum):
    DECIDE = "decide"
    PACKAGE = "package"
    DELIVER = "deliver"
    RESEND = "resend"
    ESCALATE = "escalate"
    WAIT = "wait"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class CaseView:
    """What the worker needs of a case to choose its next action."""

    state: State
    opened_at: datetime  # when the delivery deadline started counting (opening, or a person's retry)
    delivered_at: datetime | None
    attempt: int
    resends: int


def deadline(case: CaseView, deadlines: DeadlinePolicy) -> datetime | None:
    """The deadline the case works to: delivery until it is delivered, then the receiving
    district's answer (from the latest delivery); an escalated case shows the one it
    missed; None once the case is closed otherwise."""
    if case.state in (State.REQUESTED, State.DECIDED, State.PACKAGED):
        return deadlines.delivery_due(case.opened_at)
    if case.state in (State.DELIVERED, State.ESCALATED) and case.delivered_at is not None:
        return deadlines.acknowledge_due(case.delivered_at)
    if case.state is State.ESCALATED:
        return deadlines.delivery_due(case.opened_at)
    return None


# Why next_action escalates a case to a person; each is a value of the label `reason` of
# homeroom_transfer_escalations_total, exported at 0 from the start (services/transfer/metrics.py).
RETRIES_EXHAUSTED = "retries_exhausted"
ACKNOWLEDGEMENT_DEADLINE_PASSED = "acknowledgement_deadline_passed"
DELIVERY_DEADLINE_PASSED = "delivery_deadline_passed"
ESCALATION_REASONS = (RETRIES_EXHAUSTED, ACKNOWLEDGEMENT_DEADLINE_PASSED, DELIVERY_DEADLINE_PASSED)


def next_action(case: CaseView, now: datetime, retry: RetryPolicy, deadlines: DeadlinePolicy) -> tuple[Action, str]:
    """The worker's next move for a case, with the reason when it escalates."""
    if case.state not in WORKED:
        return Action.NONE, ""
    if case.state is State.DELIVERED:
        assert case.delivered_at is not None
        if now < deadlines.acknowledge_due(case.delivered_at):
            return Action.WAIT, ""
        if case.resends < deadlines.resends:
            if retry.exhausted(case.attempt):
                return Action.ESCALATE, RETRIES_EXHAUSTED
            return Action.RESEND, "acknowledgement_overdue"
        return Action.ESCALATE, ACKNOWLEDGEMENT_DEADLINE_PASSED
    if now >= deadlines.delivery_due(case.opened_at):
        return Action.ESCALATE, DELIVERY_DEADLINE_PASSED
    if retry.exhausted(case.attempt):
        return Action.ESCALATE, RETRIES_EXHAUSTED
    step = {State.REQUESTED: Action.DECIDE, State.DECIDED: Action.PACKAGE, State.PACKAGED: Action.DELIVER}
    return step[case.state], ""


def visible_to_district(district_id: str, from_district: str, to_district: str) -> bool:
    """District staff see the cases into and out of their own district, nothing else."""
    return district_id in (from_district, to_district)
