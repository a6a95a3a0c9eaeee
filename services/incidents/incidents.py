"""What an incident is, how it moves, and the legal clocks it starts (pure: no I/O).

An incident is a breach or unauthorized release of student data: discovered at a time, by
someone (the third-party contractor that was breached, an educational agency, the state's
compliance staff), at a recipient (one or more agreements, or a named system), over a
period of exposure. It moves open → scoped → notified → closed and never back.

New York Education Law 2-d's regulation, 8 NYCRR Part 121, section 121.10, sets the clocks
(checked against the section's text):

* (a) the third-party contractor notifies each educational agency it has a contract with
  "no more than seven calendar days after the discovery of such breach";
* (b) each educational agency notifies the Chief Privacy Officer "no more than 10 calendar
  days after it receives the third-party contractor's notification";
* (d) an educational agency reports every discovery or report of a breach to the Chief
  Privacy Officer "no more than 10 calendar days after such discovery";
* (e) the educational agency notifies affected parents and eligible students "no more than
  60 calendar days after the discovery of a breach or unauthorized release by an
  educational agency or the receipt of a notification ... from a third-party contractor",
  unless that would interfere with a law-enforcement investigation or disclose an unfixed
  vulnerability: then "within seven calendar days after the security vulnerability has
  been remedied or the risk of interference with the law enforcement investigation ends".

Each obligation is owed per educational agency (district) and starts from its own event;
a district may set a shorter deadline of its own (a contract's 24 hours, say), which is
another obligation closed by the same act. Days are counted as 24-hour periods from the
start event's time, which is never later than the end of the calendar day the rule allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Status(StrEnum):
    OPEN = "open"  # recorded; scope not yet frozen
    SCOPED = "scoped"  # a scope version is frozen
    NOTIFIED = "notified"  # the state and every affected family have been notified
    CLOSED = "closed"  # every obligation met or settled; the record is final


ORDER = (Status.OPEN, Status.SCOPED, Status.NOTIFIED, Status.CLOSED)


def may_move(current: Status, target: Status) -> bool:
    """Forward only (open → scoped → notified → closed); re-scoping keeps the status."""
    return ORDER.index(target) > ORDER.index(current)


class Discoverer(StrEnum):
    """Who discovered the breach: decides which start event the agency's clocks run from."""

    RECIPIENT = "recipient"  # the third-party contractor itself (121.10(a))
    DISTRICT = "district"  # the educational agency (121.10(d))
    COMPLIANCE = "compliance"  # the state's compliance staff, acting for the agencies (121.10(d))


class Kind(StrEnum):
    CONTRACTOR_TO_AGENCY = "contractor_to_agency"
    AGENCY_TO_CPO = "agency_to_cpo"
    AGENCY_TO_PARENTS = "agency_to_parents"


LAW_DAYS: dict[Kind, int] = {
    Kind.CONTRACTOR_TO_AGENCY: 7,
    Kind.AGENCY_TO_CPO: 10,
    Kind.AGENCY_TO_PARENTS: 60,
}
DELAY_DAYS = 7  # 121.10(e): after the vulnerability is remedied or the interference ends

CITATIONS: dict[str, str] = {
    "121.10(a)": "8 NYCRR 121.10(a): the third-party contractor notifies each educational agency it contracts with "
    "no more than seven calendar days after the discovery of the breach",
    "121.10(b)": "8 NYCRR 121.10(b): the educational agency notifies the Chief Privacy Officer no more than 10 "
    "calendar days after it receives the third-party contractor's notification",
    "121.10(d)": "8 NYCRR 121.10(d): the educational agency reports every discovery of a breach to the Chief Privacy "
    "Officer no more than 10 calendar days after the discovery",
    "121.10(e)": "8 NYCRR 121.10(e): the educational agency notifies affected parents and eligible students no more "
    "than 60 calendar days after its discovery or its receipt of the contractor's notification",
    "121.10(e) delayed": "8 NYCRR 121.10(e): notification delayed for law enforcement or an unfixed vulnerability is "
    "made within seven calendar days after the vulnerability is remedied or the risk of interference ends",
}

# What closes each obligation: the act it requires, and nothing else.
ACTS: dict[Kind, str] = {
    Kind.CONTRACTOR_TO_AGENCY: "the contractor's notice to the educational agency",
    Kind.AGENCY_TO_CPO: "the report to the Chief Privacy Officer, delivered",
    Kind.AGENCY_TO_PARENTS: "a letter to every affected family, delivered",
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the clocks are computed from."""

    discovered_at: datetime
    discovered_by: Discoverer
    contractor_involved: bool  # the breach is at a third-party contractor (an agreement's recipient)
    contractor_notified_at: Mapping[str, datetime]  # district → when it received the contractor's notice
    districts: Sequence[str]
    parents_delay_ended_at: datetime | None = None
    parents_delayed: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """One obligation as the facts make it: who owes what to whom, from when, by when."""

    kind: Kind
    district_id: str
    basis: str  # "law" or "district"
    citation: str
    start_event: str
    starts_at: datetime | None
    due_at: datetime | None  # None: not yet running (its start event has not happened) or delayed

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind.value, self.district_id, self.basis)


def agency_start(facts: Facts, district: str) -> tuple[str, datetime | None, str]:
    """(start event, its time, citation) of the agency's clocks in one district: its own
    discovery (121.10(d)) or its receipt of the contractor's notice (121.10(b)), whichever
    came first."""
    own = facts.discovered_at if facts.discovered_by is not Discoverer.RECIPIENT else None
    notice = facts.contractor_notified_at.get(district)
    if own is not None and (notice is None or own <= notice):
        return "the educational agency's discovery", own, "121.10(d)"
    if notice is not None:
        return "the educational agency's receipt of the contractor's notice", notice, "121.10(b)"
    return "the educational agency's receipt of the contractor's notice (not yet received)", None, "121.10(b)"


def plan(facts: Facts, shorter: Mapping[str, Mapping[Kind, int]]) -> list[Plan]:
    """Every obligation the facts start, per district: the law's, and a district's shorter
    ones (`shorter`: district → kind → hours)."""
    out: list[Plan] = []
    for district in sorted(set(facts.districts)):
        starts: dict[Kind, tuple[str, datetime | None, str]] = {}
        if facts.contractor_involved:
            starts[Kind.CONTRACTOR_TO_AGENCY] = ("the contractor's discovery", facts.discovered_at, "121.10(a)")
        event, at, section = agency_start(facts, district)
        starts[Kind.AGENCY_TO_CPO] = (event, at, section)
        starts[Kind.AGENCY_TO_PARENTS] = (event, at, "121.10(e)")
        for kind, (event, at, section) in starts.items():
            due = None if at is None else at + timedelta(days=LAW_DAYS[kind])
            citation = CITATIONS[section]
            if kind is Kind.AGENCY_TO_PARENTS and facts.parents_delayed:
                event, citation = (
                    "the end of the delay for law enforcement or an unfixed vulnerability",
                    CITATIONS["121.10(e) delayed"],
                )
                at = facts.parents_delay_ended_at
                due = None if at is None else at + timedelta(days=DELAY_DAYS)
            out.append(Plan(kind, district, "law", citation, event, at, due))
            hours = shorter.get(district, {}).get(kind)
            if hours is not None and at is not None and not (kind is Kind.AGENCY_TO_PARENTS and facts.parents_delayed):
                out.append(
                    Plan(
                        kind,
                        district,
                        "district",
                        f"district {district}'s own deadline: {_hours(hours)} after {event} (shorter than the law's)",
                        event,
                        at,
                        at + timedelta(hours=hours),
                    )
                )
    return out


def _hours(hours: int) -> str:
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} calendar day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


class DeadlineError(ValueError):
    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


def check_district_deadlines(hours: Mapping[Kind, int]) -> None:
    """A district may shorten a deadline, never lengthen it past the law's."""
    for kind, value in hours.items():
        limit = LAW_DAYS[kind] * 24
        if not 1 <= value < limit:
            raise DeadlineError(
                f"/{kind.value}_hours",
                "deadline.not_shorter",
                f"a district's {kind.value.replace('_', ' ')} deadline is 1 to {limit - 1} hours: the law's is "
                f"{LAW_DAYS[kind]} calendar days ({limit} hours) and a district may only set a shorter one",
            )


# --- an obligation as people see it -----------------------------------------------------------


def standing(due_at: datetime | None, closed_at: datetime | None, state: str, now: datetime) -> str:
    """open, overdue, met, met_late, not_required, delayed or waiting (its start event has not happened)."""
    if state == "not_required":
        return "not_required"
    if closed_at is not None:
        return "met_late" if due_at is not None and closed_at > due_at else "met"
    if state == "delayed" and due_at is None:
        return "delayed"
    if due_at is None:
        return "waiting"
    return "overdue" if now > due_at else "open"


def remaining(due_at: datetime | None, now: datetime) -> str:
    """'3 days 4 hours left', '5 hours overdue': what a page and a letter say of a deadline."""
    if due_at is None:
        return ""
    seconds = int((due_at - now).total_seconds())
    late = seconds < 0
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours = rest // 3600
    minutes = (rest % 3600) // 60
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours or days:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if not days and not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts) + (" overdue" if late else " left")
