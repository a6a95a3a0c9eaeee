"""Data-sharing agreements: the registry's domain model and its rules. Pure: no I/O.

An agreement says which organisation may receive which data elements, for which
purposes, from which districts and schools, between which dates, and what happens to the
data at the end. It also carries the six supplemental-information answers New York
Education Law 2-d requires a district to publish for parents (seed 003).

Versions. An amendment is a new version of the same agreement id; earlier versions are
kept unchanged. Each version's *terms* govern from its own start date: on any day the
governing version is the highest-numbered non-draft version that has started by that day,
provided the day is not after that version's end date (an expired later version does not
revive an earlier one). Draft versions are proposals and never govern.

The overlap rule follows from that: a new version may not take over a day that has
already passed (up to and including `today`) while a version with different terms
governed it, because disclosures on those days were decided under the earlier terms and
two versions would then claim the same day. "Different terms" means anything other than
the dates, so a renewal or an extension that releases the same elements for the same
purposes to the same schools may share past days with the version it replaces. An
amendment that changes what is released takes effect tomorrow or later.

Status belongs to the agreement as a whole. The agreement's current status is that of its
latest non-draft version; `ended` is final (the data released under it is destroyed, so a
new agreement is needed, not an amendment).

Every business rule returns `AgreementError`s instead of raising, so the API can report
all of them at once, each with a JSON pointer to the field, a rule id and a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from homeroom.catalogue import CATALOGUE, FORBIDDEN, PURPOSES

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class AgreementCategory(StrEnum):
    VENDOR = "vendor"  # a school official under FERPA 99.31(a)(1): an app or a contractor
    RESEARCH = "research"  # a study for the district, FERPA 99.31(a)(6)
    PUBLIC_HEALTH_SERVICE = "public-health service"  # e.g. the COVID testing labs in seed 003
    AUDIT_EVALUATION = "audit-evaluation"  # FERPA 99.31(a)(3)
    OTHER = "other"


class AgreementStatus(StrEnum):
    DRAFT = "draft"  # recorded, releases nothing
    ACTIVE = "active"  # releases what its terms allow, between its dates
    SUSPENDED = "suspended"  # releases nothing until reactivated
    ENDED = "ended"  # final: the data released under it must be destroyed or returned


class Disposition(StrEnum):
    DESTROY = "destroy"
    RETURN = "return"


class Standing(StrEnum):
    """How one agreement version stands on a given day, for the decision engine."""

    DRAFT = "draft"
    NOT_YET_IN_FORCE = "not_yet_in_force"  # active, but the day is before its start date
    IN_FORCE = "in_force"
    SUSPENDED = "suspended"
    EXPIRED = "expired"  # active, but the day is after its end date: due to be ended
    ENDED = "ended"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SupplementalInformation(_Frozen):
    """The six Ed Law 2-d supplemental-information answers, as the recipient wrote them.

    An empty string means the answer has not been given yet.
    """

    exclusive_purposes: str = ""
    subcontractor_oversight: str = ""  # how subcontractors are bound to the same protections
    term_and_expiry: str = ""  # when the agreement starts and ends; what happens to the data then
    accuracy_challenge: str = ""  # how a parent, student, teacher or principal challenges accuracy
    storage_and_protections: str = ""  # where the data is stored and how it is protected
    encryption: str = ""


# Part 121.3(c)'s six questions, as the public page asks them (the answers above, in order).
SUPPLEMENTAL_QUESTIONS: dict[str, str] = {
    "exclusive_purposes": "The exclusive purposes for which the data will be used",
    "subcontractor_oversight": "How subcontractors are bound to the same data protection and security requirements",
    "term_and_expiry": "When the agreement starts and expires, and what happens to the data at expiry",
    "accuracy_challenge": "If and how a parent, student, teacher or principal may challenge the data's accuracy",
    "storage_and_protections": "Where the data is stored and how it is protected",
    "encryption": "How the data is encrypted",
}


def missing_answers(supplemental: SupplementalInformation) -> list[str]:
    """The Ed Law 2-d answers not given yet (empty or only blanks), in the page's order."""
    return [name for name in SUPPLEMENTAL_QUESTIONS if not getattr(supplemental, name).strip()]


class AgreementTerms(_Frozen):
    """What the agreement allows, in a form the decision engine can apply.

    `elements` are catalogue ids, `purposes` are catalogue purpose ids. An empty `schools`
    means every school of the listed districts (an empty `classes`, every class); an empty `districts` covers nobody.
    An open `end_date` means the agreement runs until it is ended.
    """

    elements: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    districts: tuple[str, ...] = ()
    schools: tuple[str, ...] = ()
    # Class sourcedIds (rostering, issue 23): an agreement for certain classes only releases
    # students and teachers of those classes; empty means every class of the schools.
    classes: tuple[str, ...] = ()
    start_date: date | None = None
    end_date: date | None = None
    storage_region: str | None = None
    disposition: Disposition = Disposition.DESTROY


class Agreement(_Frozen):
    """One version of a data-sharing agreement."""

    id: NonEmpty
    version: int = Field(ge=1)
    organization: NonEmpty
    category: AgreementCategory
    supplemental: SupplementalInformation = SupplementalInformation()
    terms: AgreementTerms = AgreementTerms()
    status: AgreementStatus = AgreementStatus.DRAFT
    source: NonEmpty  # "api", or "import-2d:<file>#<entry n>"
    recorded_by: NonEmpty
    recorded_at: AwareDatetime


class AgreementError(_Frozen):
    """One broken rule: `field` is a JSON pointer into the agreement document."""

    field: str
    rule: str
    message: str


class AgreementRejected(ValueError):
    """Raised by callers that must refuse an agreement; carries every broken rule."""

    def __init__(self, errors: Sequence[AgreementError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.field}: {e.message} [{e.rule}]" for e in self.errors))


# --------------------------------------------------------------------------- terms


def validate_terms(terms: AgreementTerms) -> list[AgreementError]:
    """Rules on the terms alone: catalogue elements and purposes, and date order."""
    errors: list[AgreementError] = []
    for i, element_id in enumerate(terms.elements):
        # Forbidden comes first: some forbidden ids are also catalogue entries (ingest has
        # to recognise them to refuse them), and none may ever be shared.
        if element_id in FORBIDDEN:
            errors.append(
                AgreementError(
                    field=f"/terms/elements/{i}",
                    rule="element.forbidden",
                    message=f"Data element {element_id!r} may never be shared: {FORBIDDEN[element_id]}",
                )
            )
        elif element_id not in CATALOGUE:
            errors.append(
                AgreementError(
                    field=f"/terms/elements/{i}",
                    rule="element.unknown",
                    message=f"Data element {element_id!r} is not in the data-element catalogue.",
                )
            )
    for i, purpose in enumerate(terms.purposes):
        if purpose not in PURPOSES:
            errors.append(
                AgreementError(
                    field=f"/terms/purposes/{i}",
                    rule="purpose.unknown",
                    message=f"Purpose {purpose!r} is not one the catalogue knows; use one of: "
                    + ", ".join(sorted(PURPOSES))
                    + ".",
                )
            )
    if terms.start_date is not None and terms.end_date is not None and terms.end_date < terms.start_date:
        errors.append(
            AgreementError(
                field="/terms/end_date",
                rule="dates.end_before_start",
                message=f"The end date {terms.end_date.isoformat()} is before the start date "
                f"{terms.start_date.isoformat()}.",
            )
        )
    return errors


# --------------------------------------------------------------------- standing


def status_on(agreement: Agreement, day: date) -> Standing:
    """How this version stands on `day`: its recorded status, refined by its dates."""
    match agreement.status:
        case AgreementStatus.DRAFT:
            return Standing.DRAFT
        case AgreementStatus.SUSPENDED:
            return Standing.SUSPENDED
        case AgreementStatus.ENDED:
            return Standing.ENDED
    start, end = agreement.terms.start_date, agreement.terms.end_date
    # An active agreement without a start date cannot be created through the rules here;
    # if one is loaded anyway, it is treated as not yet in force rather than as unlimited.
    if start is None or day < start:
        return Standing.NOT_YET_IN_FORCE
    if end is not None and day > end:
        return Standing.EXPIRED
    return Standing.IN_FORCE


def is_in_force(agreement: Agreement, on: date) -> bool:
    """True when this version is active and `on` lies within its start and end dates."""
    return status_on(agreement, on) is Standing.IN_FORCE


def _ordered(history: Iterable[Agreement]) -> list[Agreement]:
    return sorted(history, key=lambda a: a.version)


def current_status(history: Sequence[Agreement]) -> AgreementStatus:
    """The agreement's status: that of its latest non-draft version, else draft."""
    for version in reversed(_ordered(history)):
        if version.status is not AgreementStatus.DRAFT:
            return version.status
    return AgreementStatus.DRAFT


def governing_version(history: Sequence[Agreement], day: date) -> Agreement | None:
    """The version whose terms govern `day` (see the module docstring), or None."""
    started = [
        v
        for v in _ordered(history)
        if v.status is not AgreementStatus.DRAFT and v.terms.start_date is not None and v.terms.start_date <= day
    ]
    if not started:
        return None
    latest = started[-1]
    if latest.terms.end_date is not None and day > latest.terms.end_date:
        return None
    return latest


def version_in_force(history: Sequence[Agreement], day: date) -> Agreement | None:
    """The version to apply to a disclosure on `day`: None unless the agreement is active."""
    if current_status(history) is not AgreementStatus.ACTIVE:
        return None
    return governing_version(history, day)


def governed_periods(history: Sequence[Agreement]) -> list[tuple[Agreement, date, date | None]]:
    """Each non-draft version with the days it governs, [first, last] (last None: open)."""
    versions = [
        v for v in _ordered(history) if v.status is not AgreementStatus.DRAFT and v.terms.start_date is not None
    ]
    periods: list[tuple[Agreement, date, date | None]] = []
    for i, v in enumerate(versions):
        assert v.terms.start_date is not None  # filtered above; narrows the type
        first = v.terms.start_date
        last = v.terms.end_date
        # A later version takes over from its own start date.
        later_starts = [w.terms.start_date for w in versions[i + 1 :] if w.terms.start_date is not None]
        if later_starts:
            cut = min(later_starts) - timedelta(days=1)
            last = cut if last is None else min(last, cut)
        if last is None or last >= first:
            periods.append((v, first, last))
    return periods


def _scope(terms: AgreementTerms) -> tuple[object, ...]:
    """Everything in the terms except the dates: what a version allows on a day it governs."""
    return (
        frozenset(terms.elements),
        frozenset(terms.purposes),
        frozenset(terms.districts),
        frozenset(terms.schools),
        frozenset(terms.classes),
        terms.storage_region,
        terms.disposition,
    )


def _overlap_errors(history: Sequence[Agreement], new: Agreement, today: date) -> list[AgreementError]:
    start, end = new.terms.start_date, new.terms.end_date
    if start is None:
        return []  # reported as activation.no_start_date
    claimed_last = today if end is None else min(end, today)
    if claimed_last < start:
        return []  # the new version claims no day that has already passed
    errors = []
    for old, first, last in governed_periods([v for v in history if v.version != new.version]):
        past_last = claimed_last if last is None else min(last, claimed_last)
        overlap_first = max(first, start)
        if overlap_first <= past_last and _scope(old.terms) != _scope(new.terms):
            errors.append(
                AgreementError(
                    field="/terms/start_date",
                    rule="versions.overlap",
                    message=f"Version {new.version} would govern {overlap_first.isoformat()} to "
                    f"{past_last.isoformat()}, days already governed by version {old.version} with "
                    f"different terms. Start it after {past_last.isoformat()}, or keep the terms of "
                    f"version {old.version}.",
                )
            )
    return errors


# ------------------------------------------------------------------- activation


# The terms an agreement cannot be activated without, in the order their errors are listed.
_REQUIRED_TO_ACTIVATE = (
    (
        "elements",
        "activation.no_elements",
        "An agreement cannot be activated before its data elements are set: it would release nothing it names.",
    ),
    ("purposes", "activation.no_purposes", "An agreement cannot be activated without at least one permitted purpose."),
    ("districts", "activation.no_districts", "An agreement cannot be activated without the districts it covers."),
    ("start_date", "activation.no_start_date", "An agreement cannot be activated without a start date."),
)


def validate_activation(
    agreement: Agreement, *, today: date, history: Sequence[Agreement] = ()
) -> list[AgreementError]:
    """Rules for making `agreement` active (or recording it as active) on `today`.

    `history` is the agreement's earlier versions, for the overlap rule.
    """
    terms = agreement.terms
    errors = validate_terms(terms)
    errors.extend(
        AgreementError(field=f"/terms/{name}", rule=rule, message=message)
        for name, rule, message in _REQUIRED_TO_ACTIVATE
        if not getattr(terms, name)  # an empty list, or no start date
    )
    if terms.end_date is not None and terms.end_date < today:
        errors.append(
            AgreementError(
                field="/terms/end_date",
                rule="activation.expired",
                message=f"The agreement ended on {terms.end_date.isoformat()}; an agreement whose end date has "
                "passed cannot be activated.",
            )
        )
    for name in missing_answers(agreement.supplemental):
        errors.append(
            AgreementError(
                field=f"/supplemental/{name}",
                rule="activation.supplemental_missing",
                message=f'Ed Law 2-d (8 NYCRR 121.3(c)) requires an answer to "{SUPPLEMENTAL_QUESTIONS[name]}" '
                "before the agreement is published; it is empty.",
            )
        )
    errors.extend(_overlap_errors(history, agreement, today))
    return errors


# -------------------------------------------------------------------- amendment


def validate_amendment(
    history: Sequence[Agreement], new_version: Agreement, *, today: date | None = None
) -> list[AgreementError]:
    """Rules for recording `new_version` after the versions in `history`.

    `today` defaults to the day the new version is recorded (`recorded_at`, in its own
    time zone). A new version that is not a draft must also pass the activation rules,
    which include the overlap rule.
    """
    if today is None:
        today = new_version.recorded_at.date()
    versions = _ordered(history)
    errors: list[AgreementError] = []
    if not versions:
        if new_version.version != 1:
            errors.append(
                AgreementError(
                    field="/version",
                    rule="version.sequence",
                    message=f"The first version of an agreement is version 1, not {new_version.version}.",
                )
            )
    else:
        latest = versions[-1]
        if new_version.id != latest.id:
            errors.append(
                AgreementError(
                    field="/id",
                    rule="amendment.id_mismatch",
                    message=f"Version {new_version.version} names agreement {new_version.id!r}, but the history is "
                    f"of agreement {latest.id!r}.",
                )
            )
        if new_version.version != latest.version + 1:
            errors.append(
                AgreementError(
                    field="/version",
                    rule="version.sequence",
                    message=f"The next version of agreement {latest.id!r} is {latest.version + 1}, "
                    f"not {new_version.version}.",
                )
            )
        if _same_name(new_version.organization) != _same_name(latest.organization):
            # A different recipient is a different agreement: it must not inherit releases.
            errors.append(
                AgreementError(
                    field="/organization",
                    rule="amendment.recipient_changed",
                    message=f"An amendment cannot change the recipient from {latest.organization!r} to "
                    f"{new_version.organization!r}; record a new agreement instead.",
                )
            )
        if current_status(versions) is AgreementStatus.ENDED:
            errors.append(
                AgreementError(
                    field="/status",
                    rule="amendment.after_end",
                    message=f"Agreement {latest.id!r} has ended and its data is due for destruction or return; "
                    "record a new agreement instead of amending it.",
                )
            )
    if new_version.status in (AgreementStatus.SUSPENDED, AgreementStatus.ENDED):
        errors.append(
            AgreementError(
                field="/status",
                rule="version.status",
                message=f"A new version is recorded as draft or active, not {new_version.status.value}; suspend or "
                "end the agreement instead.",
            )
        )
        errors.extend(validate_terms(new_version.terms))
    elif new_version.status is AgreementStatus.DRAFT:
        errors.extend(validate_terms(new_version.terms))
    else:
        errors.extend(validate_activation(new_version, today=today, history=versions))
    return errors


def _same_name(name: str) -> str:
    return " ".join(name.split()).casefold()
