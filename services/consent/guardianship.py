"""Guardianship: who may act as a student's parent, and the linking codes that prove it (pure).

A district's identity provider knows its staff, not its families; the district's data office
does know who each student's guardians are. So the district issues a one-time *linking code*
per student and guardian (printed on a letter, or merged into the district's own mailing),
and the guardian, signed in with any identity the portal accepts, redeems it. The redemption
records a *guardianship link* (subject <-> student key, in the issuing district), and from
then on consent's parent tokens name that student (see `linking.py`).

Rules, each with the refusal it gives (`RedemptionRefused.reason`, also the outcome counted
in `homeroom_consent_linking_attempts_total` and kept in `linking_attempts`):

- a code that is not well formed: `malformed`; one nobody issued: `unknown_code`;
- after its expiry: `expired`; once redeemed: `already_used` (single use: a replay, even
  by the person who redeemed it, links nothing more); after the district revoked it: `revoked`;
- (at issue) a code for a student the issuing district does not hold: `student_not_in_district`;
- a parent's code for a student whose rights have moved to the student (an eligible
  student linked themselves, FERPA 99.5): `rights_with_student`.

An eligible student (18, or attending a postsecondary institution: FERPA 99.3, 99.5) gets a
code of relationship `eligible_student`. Eligibility is computed by records on the day of issue
from the birth date and enrollment it keeps sealed (consent receives only the answer); where
records holds neither, the district's issuing the code is its attestation (`eligibility_basis`
`district_attestation`). A parent code for a student records shows eligible is refused.
Redeeming it ends every parent link of the student, in every district (reason
`rights_moved_to_student`): the rights FERPA gives parents now belong to the student.

Codes are 12 characters of Crockford's base32 (60 random bits), shown as XXXX-XXXX-XXXX;
only an HMAC of each under a server secret is stored (`CodeHasher`). Guessing one among a
million live codes takes about 2^40 tries on average, and each person and each address is
held to a few tries an hour.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
CODE_LENGTH = 12
DEFAULT_VALID_DAYS = 60
MIN_KEY_BYTES = 16
_DOMAIN = b"homeroom/linking-code/v1:"
MAX_VALID_DAYS = 365
# Letters people misread, mapped as Crockford's base32 decodes them.
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})


class Relationship(StrEnum):
    PARENT = "parent"
    ELIGIBLE_STUDENT = "eligible_student"  # FERPA 99.5: the student holds the rights


class LinkStatus(StrEnum):
    ACTIVE = "active"
    PROPOSED = "proposed"  # carried by a transfer; the receiving district has not accepted it
    REVOKED = "revoked"
    DECLINED = "declined"  # the receiving district did not accept a carried link


class Outcome(StrEnum):
    """What a redemption attempt came to (the label of the attempts counter)."""

    LINKED = "linked"
    MALFORMED = "malformed"
    UNKNOWN_CODE = "unknown_code"
    EXPIRED = "expired"
    ALREADY_USED = "already_used"
    REVOKED = "revoked"
    RIGHTS_WITH_STUDENT = "rights_with_student"
    RATE_LIMITED = "rate_limited"
    # At issue, not redemption: staff asked for a code for a student their district does not hold,
    # an eligible-student code for a student records shows is not one (under 18, not in
    # postsecondary education), or a parent code for a student records shows is eligible.
    NOT_IN_DISTRICT = "student_not_in_district"
    NOT_ELIGIBLE = "student_not_eligible"


# Outcomes that look like someone trying codes they were not given (the guessing alert).
GUESSING_OUTCOMES = frozenset({Outcome.MALFORMED, Outcome.UNKNOWN_CODE, Outcome.RATE_LIMITED})

MESSAGES: dict[Outcome, str] = {
    Outcome.MALFORMED: "a linking code is 12 letters and digits, written XXXX-XXXX-XXXX",
    Outcome.UNKNOWN_CODE: "this linking code was not issued; check it against the letter",
    Outcome.EXPIRED: "this linking code has expired; ask the district's data office for a new one",
    Outcome.ALREADY_USED: "this linking code has already been used; each code links one person once",
    Outcome.REVOKED: "this linking code was withdrawn by the district",
    Outcome.RIGHTS_WITH_STUDENT: (
        "the student is an eligible student and holds these rights (FERPA 99.5); a parent code no longer links"
    ),
}


class RedemptionRefused(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(MESSAGES.get(outcome, outcome.value))
        self.outcome = outcome


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[0:4]}-{raw[4:8]}-{raw[8:12]}"


def normalise(code: str) -> str | None:
    """The code's 12 characters as issued, or None when it cannot be one (spaces, dashes and
    case are forgiven, and I, L, O read as 1, 1, 0)."""
    cleaned = "".join(code.split()).replace("-", "").upper().translate(_READ_AS)
    if len(cleaned) != CODE_LENGTH or any(c not in ALPHABET for c in cleaned):
        return None
    return cleaned


class CodeHasher:
    """What a linking code is kept as: an HMAC-SHA256 of the normalised code under a server
    secret (`HOMEROOM_CONSENT_LINKING_CODE_KEY_FILE`). A copy of the table alone tests no guess:
    an unkeyed hash of a 60-bit code could be searched offline; a keyed one needs the secret."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the linking-code key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "CodeHasher(<key hidden>)"  # never print the key into a log

    def digest(self, normalised: str) -> bytes:
        return hmac.new(self._key, _DOMAIN + normalised.encode(), hashlib.sha256).digest()

    def matches(self, stored: bytes, normalised: str) -> bool:
        """Constant-time comparison of a stored digest with the code's (the row is found by its
        digest's index; this confirms it without a timing signal of where the bytes differ)."""
        return hmac.compare_digest(bytes(stored), self.digest(normalised))


@dataclass(frozen=True, slots=True)
class LinkingCode:
    code_id: str
    district_id: str
    student_key: str
    relationship: Relationship
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    eligibility_basis: str | None = None  # eligible-student codes: age_18, postsecondary, district_attestation
    redeemed_at: datetime | None = None
    redeemed_by: str | None = None
    revoked_at: datetime | None = None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.redeemed_at is not None:
            return "redeemed"
        return "issued"


def expiry(issued_at: datetime, valid_days: int) -> datetime:
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        raise ValueError(f"a linking code is valid for 1 to {MAX_VALID_DAYS} days")
    return issued_at + timedelta(days=valid_days)


def check_redemption(code: LinkingCode | None, *, now: datetime, rights_with_student: bool) -> None:
    """Raise RedemptionRefused naming why this code links nobody now; return if it links."""
    if code is None:
        raise RedemptionRefused(Outcome.UNKNOWN_CODE)
    if code.revoked_at is not None:
        raise RedemptionRefused(Outcome.REVOKED)
    if code.redeemed_at is not None:
        raise RedemptionRefused(Outcome.ALREADY_USED)
    if now >= code.expires_at:
        raise RedemptionRefused(Outcome.EXPIRED)
    if code.relationship is Relationship.PARENT and rights_with_student:
        raise RedemptionRefused(Outcome.RIGHTS_WITH_STUDENT)


def standing(
    district_id: str, status_in: Callable[[str], str | None], moved_to: Callable[[str], Iterable[str]]
) -> str | None:
    """A person's standing for a student in a district, as the parent-inspection rule reads it: the
    status of their own link there if they have one (a carried link awaiting acceptance, or a revoked
    or declined one, opens nothing, whatever they hold elsewhere); otherwise `active` when a district
    the student transferred to from here (directly or further along) holds their active link, since
    that district holds the record this one sent it and verified the person; else None.

    `status_in(d)`: the person's link status in district d (None: no link); `moved_to(d)`: the
    districts the student was transferred to from d. A link never reaches *forward*: a link in the
    sending district opens the receiving district's record only once that district accepts it."""
    own = status_in(district_id)
    if own is not None:
        return own
    seen, frontier = {district_id}, [district_id]
    while frontier:
        for receiving in moved_to(frontier.pop()):
            if receiving in seen:
                continue
            seen.add(receiving)
            if status_in(receiving) == LinkStatus.ACTIVE.value:
                return LinkStatus.ACTIVE.value
            frontier.append(receiving)
    return None
