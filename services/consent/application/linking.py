"""Guardianship use cases (issue 24): how a parent reaches their child in Homeroom.

- `issue_codes`: a district's data office issues one-time linking codes for its own students
  (checked against records: a key the district does not hold is refused and named).
- `revoke_code`: the district withdraws a code not yet redeemed.
- `redeem`: a signed-in person redeems a code; rate-limited, every attempt recorded, the
  link (or, for an eligible student, the move of rights, FERPA 99.5) in the audit log.
- `revoke_link`: the district ends a link (custody change, error).
- `record_transfer` (the `guardianships` consumer): a delivered transfer keeps the student's move and
  proposes the student's links to the receiving district (`carry_on_transfer`); `accept_carried`
  / `revoke_link(decline=True)`: that district decides.
- `links_of_district`, `my_links`, `attempts`: a district's links and codes, a person's own
  links, and every redemption attempt (the evidence of guessing) for compliance.
- `parent_districts`: where a parent may act for a student outside a decision (their choices).
- `parent_token`: the token the portal uses for a signed-in person, naming exactly the
  students their active links name (the authorisation every service already checks).

Guardianship lives in consent because consent is the bounded context of a student's
relationships and the choices made for them: it holds the parent's opt-outs and consents
and decides the `parent-inspection` rule (99.10); who the parent *is* is the fact those
decisions rest on. Records keeps the record, not who may ask for it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from homeroom import outbox
from homeroom.auth import Principal, Role
from homeroom.contracts.student_directory import DistrictStudents
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.events.v1.transfer_pb2 import TransferStep
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.storage import Connection
from services.consent import events, metrics
from services.consent import guardianship_store as store
from services.consent.application.common import actor, missing, party
from services.consent.decisions import Facts, guardianship_refusal
from services.consent.guardianship import (
    GUESSING_OUTCOMES,
    LinkingCode,
    LinkStatus,
    Outcome,
    RedemptionRefused,
    Relationship,
    check_redemption,
    expiry,
    new_code,
    normalise,
    standing,
)
from services.consent.state import ConsentRuntime

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------- codes


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str  # shown once, on the letter; never stored
    linking: LinkingCode
    student_name: str


@dataclass(frozen=True, slots=True)
class CodeRequest:
    student_key: str
    relationship: Relationship = Relationship.PARENT


async def issue_codes(
    runtime: ConsentRuntime,
    principal: Principal,
    token: str,
    district_id: str,
    requests: Sequence[CodeRequest],
    valid_days: int,
) -> list[IssuedCode]:
    principal.require_district(district_id)
    keys = list(dict.fromkeys(r.student_key for r in requests))
    now = runtime.clock()
    held = await runtime.state.directory.students(district_id, keys, token, now.date())
    refused: list[tuple[FieldError, Outcome, str]] = []
    for i, r in enumerate(requests):
        problem = _issue_problem(i, r, held, district_id, now.date())
        if problem is not None:
            refused.append((*problem, r.student_key))
    if refused:
        metrics.LINKING_CODES.labels("refused").inc(len(refused))
        async with runtime.pool.acquire() as conn, conn.transaction():
            for _, outcome, key in refused:
                metrics.LINKING_ATTEMPTS.labels(outcome.value).inc()
                await store.record_refused_issue(
                    conn, at=now, actor=actor(principal), district_id=district_id, student_key=key, outcome=outcome
                )
        raise Problem(
            422,
            "Code refused",
            "a linking code is issued only for a student the district holds, of the relationship the "
            "student's eligibility allows (FERPA 99.5)",
            type=problem_type("linking-student-unknown"),
            errors=[error for error, _, _ in refused],
        )
    names = held.names
    expires = expiry(now, valid_days)
    hasher = runtime.state.hasher
    issued: list[IssuedCode] = []
    async with runtime.pool.acquire() as conn, conn.transaction():
        for r in requests:
            code = new_code()
            linking = LinkingCode(
                code_id=f"lc-{uuid.uuid4().hex[:16]}",
                district_id=district_id,
                student_key=r.student_key,
                relationship=r.relationship,
                issued_by=actor(principal),
                issued_at=now,
                expires_at=expires,
                eligibility_basis=_eligibility_basis(r, held),
            )
            normalised = normalise(code)
            assert normalised is not None  # new_code writes only the alphabet
            await store.insert_code(conn, linking, hasher.digest(normalised))
            await outbox.add(
                conn,
                events.code_changed(
                    "guardian_code_issued", linking, acted_by=party(principal), expires_at=expires.isoformat()
                ),
            )
            issued.append(IssuedCode(code, linking, names[r.student_key]))
    metrics.LINKING_CODES.labels("issued").inc(len(issued))
    return issued


def _issue_problem(
    index: int, request: CodeRequest, held: DistrictStudents, district_id: str, day: date
) -> tuple[FieldError, Outcome] | None:
    """Why this code may not be issued (the field error and the outcome kept), or None."""
    key = request.student_key
    if key not in held.names:
        return (
            FieldError(
                f"/students/{index}/student_key",
                "linking.student_not_in_district",
                f"{key!r} is not a student of {district_id}",
            ),
            Outcome.NOT_IN_DISTRICT,
        )
    standing = held.eligibility.get(key)
    if standing is None or (request.relationship, standing.eligible) not in _NOT_THE_RIGHTS_HOLDER:
        return None
    rule, outcome, why = _NOT_THE_RIGHTS_HOLDER[request.relationship, standing.eligible]
    basis = standing.basis.value.replace("_", " ")
    message = why.format(key=key, day=day, eligible_from=standing.eligible_from, basis=basis)
    return FieldError(f"/students/{index}/relationship", rule, message), outcome


# A code for the one who does not hold the rights (FERPA 99.3, 99.5), by the relationship
# asked and the student's eligibility that day: the rule, the outcome kept, and why.
_NOT_THE_RIGHTS_HOLDER: dict[tuple[Relationship, bool | None], tuple[str, Outcome, str]] = {
    (Relationship.ELIGIBLE_STUDENT, False): (
        "linking.student_not_eligible",
        Outcome.NOT_ELIGIBLE,
        "{key!r} is not an eligible student on {day}: under 18 (18 on {eligible_from}) and not in postsecondary "
        "education, so the rights are the parents' (FERPA 99.3, 99.5)",
    ),
    (Relationship.PARENT, True): (
        "linking.rights_with_student",
        Outcome.RIGHTS_WITH_STUDENT,
        "{key!r} is an eligible student on {day} ({basis}): the rights are the student's (FERPA 99.5); issue the "
        "student an eligible_student code",
    ),
}


def _eligibility_basis(request: CodeRequest, held: DistrictStudents) -> str | None:
    if request.relationship is not Relationship.ELIGIBLE_STUDENT:
        return None
    standing = held.eligibility.get(request.student_key)
    if standing is None or standing.eligible is None:
        return "district_attestation"  # records holds no birth date or postsecondary enrollment
    return standing.basis.value


@contextlib.asynccontextmanager
async def _staff_change(
    runtime: ConsentRuntime, principal: Principal, district_id: str
) -> AsyncIterator[tuple[Connection, datetime]]:
    """A change made by the district's own staff: their district checked, then one transaction
    and the time it is made at."""
    principal.require_district(district_id)
    now = runtime.clock()
    async with runtime.pool.acquire() as conn, conn.transaction():
        yield conn, now


async def revoke_code(runtime: ConsentRuntime, principal: Principal, district_id: str, code_id: str) -> LinkingCode:
    async with _staff_change(runtime, principal, district_id) as (conn, now):
        revoked = await store.revoke_code(conn, district_id, code_id, actor(principal), now)
        if revoked is None:
            raise missing(
                "No code to withdraw",
                f"linking code {code_id!r} of {district_id} does not exist, or was already redeemed or withdrawn",
            )
        await outbox.add(
            conn,
            events.code_changed("guardian_code_revoked", revoked, acted_by=party(principal)),
        )
    metrics.LINKING_CODES.labels("revoked").inc()
    return revoked


# ------------------------------------------------------------------- redemption


def _refusal(outcome: Outcome, message: str, headers: dict[str, str] | None = None) -> Problem:
    status = {Outcome.RATE_LIMITED: 429, Outcome.MALFORMED: 422}.get(outcome, 409)
    if outcome is Outcome.UNKNOWN_CODE:
        status = 404
    return Problem(
        status,
        "Linking code refused",
        message,
        type=problem_type(f"linking-{outcome.value.replace('_', '-')}"),
        errors=[FieldError("/code", f"linking.{outcome.value}", message)],
        headers=headers,
        extensions={"outcome": outcome.value},
    )


async def _attempt(
    runtime: ConsentRuntime, subject: str, client: str, outcome: Outcome, code: LinkingCode | None
) -> None:
    async with runtime.pool.acquire() as conn:
        await store.record_attempt(
            conn, at=runtime.clock(), subject=subject, client=client, outcome=outcome.value, code=code
        )
    _counted(outcome, subject, client)


def _counted(outcome: Outcome, subject: str, client: str) -> None:
    """Count a refusal; one that looks like guessing is also logged for the operator (the alert)."""
    metrics.LINKING_ATTEMPTS.labels(outcome.value).inc()
    if outcome in GUESSING_OUTCOMES:
        log.warning("linking code refused: %s", outcome.value, extra={"subject": subject, "client": client})


async def redeem(runtime: ConsentRuntime, principal: Principal, code_text: str, client: str = "") -> dict[str, Any]:
    """Link the signed-in person to the code's student; Problem naming the refusal otherwise.
    Every attempt is recorded (`linking_attempts`), refused ones too."""
    if principal.role is not Role.PARENT:
        raise Problem(
            403, "Forbidden", "a linking code is redeemed by the person it was sent to, signed in as a parent"
        )
    subject = principal.subject
    limiter = runtime.state.limiter
    if limiter is not None:
        try:
            await limiter.check(subject, "linking code redemptions")
            if client:
                await limiter.check(f"client:{client}", "linking code redemptions")
        except Problem as limited:
            await _attempt(runtime, subject, client, Outcome.RATE_LIMITED, None)
            raise _refusal(Outcome.RATE_LIMITED, limited.detail or "too many tries", dict(limited.headers)) from None
    normalised = normalise(code_text)
    if normalised is None:
        await _attempt(runtime, subject, client, Outcome.MALFORMED, None)
        raise _refusal(Outcome.MALFORMED, RedemptionRefused(Outcome.MALFORMED).args[0])
    now = runtime.clock()
    failure: RedemptionRefused | None = None
    async with runtime.pool.acquire() as conn, conn.transaction():
        hasher = runtime.state.hasher
        found = await store.code_by_hash(conn, hasher.digest(normalised))
        code = found[0] if found is not None and hasher.matches(found[1], normalised) else None
        try:
            rights_moved = code is not None and await store.rights_with_student(conn, code.student_key)
            check_redemption(code, now=now, rights_with_student=rights_moved)
        except RedemptionRefused as refused:
            await store.record_attempt(
                conn, at=now, subject=subject, client=client, outcome=refused.outcome.value, code=code
            )
            failure = refused
        else:
            assert code is not None
            link = await _link(conn, code, subject, now)
            await store.record_attempt(
                conn, at=now, subject=subject, client=client, outcome=Outcome.LINKED.value, code=code
            )
    if failure is not None:
        _counted(failure.outcome, subject, client)
        raise _refusal(failure.outcome, str(failure))
    metrics.LINKING_ATTEMPTS.labels(Outcome.LINKED.value).inc()
    return link


async def _link(conn: Any, code: LinkingCode, subject: str, now: datetime) -> dict[str, Any]:
    await store.mark_redeemed(conn, code.code_id, subject, now)
    existing = await store.live_link(conn, subject, code.student_key, code.district_id)
    redeemer = Party(person=subject, role="parent")
    if existing is not None:  # already linked (a second letter): the code is spent, nothing new
        return _link_dict(existing)
    if code.relationship is Relationship.ELIGIBLE_STUDENT:
        # FERPA 99.5: the rights move to the student; every parent link, in every district, ends.
        for row in await store.parent_links_of(conn, code.student_key):
            await store.end_link(
                conn,
                row["link_id"],
                row["district_id"],
                status=LinkStatus.REVOKED,
                by=f"parent:{subject}",
                reason="rights_moved_to_student",
                at=now,
            )
            await outbox.add(
                conn,
                events.link_changed("guardianship_revoked", row, acted_by=redeemer, reason="rights_moved_to_student"),
            )
            metrics.LINKS_ENDED.labels("rights_moved_to_student").inc()
    link_id = f"gl-{uuid.uuid4().hex[:16]}"
    await store.insert_link(
        conn,
        link_id=link_id,
        subject=subject,
        student_key=code.student_key,
        district_id=code.district_id,
        relationship=code.relationship,
        status=LinkStatus.ACTIVE,
        code_id=code.code_id,
        issued_by=code.issued_by,
        at=now,
    )
    row = await store.live_link(conn, subject, code.student_key, code.district_id)
    await outbox.add(conn, events.link_changed("guardianship_linked", row, acted_by=redeemer, code_id=code.code_id))
    return _link_dict(row)


def _link_dict(row: Any) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "link_id": row["link_id"],
        "subject": row["subject"],
        "student_key": row["student_key"],
        "district_id": row["district_id"],
        "relationship": row["relationship"],
        "status": row["status"],
        "code_id": row["code_id"],
        "issued_by": row["issued_by"],
        "linked_at": iso(row["linked_at"]),
        "from_district_id": row["from_district_id"],
        "ended_at": iso(row["ended_at"]),
        "ended_by": row["ended_by"],
        "end_reason": row["end_reason"],
    }


# ------------------------------------------------------------------- links


async def revoke_link(
    runtime: ConsentRuntime, principal: Principal, district_id: str, link_id: str, reason: str, *, decline: bool = False
) -> dict[str, Any]:
    async with _staff_change(runtime, principal, district_id) as (conn, now):
        ended = await store.end_link(
            conn,
            link_id,
            district_id,
            status=LinkStatus.DECLINED if decline else LinkStatus.REVOKED,
            by=actor(principal),
            reason=reason,
            at=now,
        )
        if ended is None:
            raise missing("No such link", f"no live guardianship link {link_id!r} in {district_id}")
        await outbox.add(
            conn,
            events.link_changed("guardianship_revoked", ended, acted_by=party(principal), reason=reason),
        )
    metrics.LINKS_ENDED.labels("declined" if decline else "revoked").inc()
    return _link_dict(ended)


async def accept_carried(
    runtime: ConsentRuntime, principal: Principal, district_id: str, link_id: str
) -> dict[str, Any]:
    """The receiving district accepts a link a transfer carried: it authorises from now on."""
    async with _staff_change(runtime, principal, district_id) as (conn, now):
        accepted = await store.accept_link(conn, link_id, district_id, actor(principal), now)
        if accepted is None:
            raise missing(
                "No link awaiting acceptance", f"no carried link {link_id!r} awaits {district_id}'s acceptance"
            )
        await outbox.add(
            conn,
            events.link_changed(
                "guardianship_linked",
                accepted,
                acted_by=party(principal),
                from_district_id=accepted["from_district_id"] or "",
                reason="accepted_on_transfer",
            ),
        )
    return _link_dict(accepted)


async def carry_on_transfer(
    conn: Any, case_id: str, student_key: str, from_district: str, to_district: str, now: datetime
) -> int:
    """Propose each active link of the student in the sending district to the receiving one
    (status `proposed`: authorises nothing there until that district accepts it)."""
    carried = 0
    for row in await store.active_links_of_student(conn, student_key, from_district):
        if await store.live_link(conn, row["subject"], student_key, to_district) is not None:
            continue
        origin = row["link_id"]
        link_id = "gl-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{case_id}|{origin}").hex[:16]
        await store.insert_link(
            conn,
            link_id=link_id,
            subject=row["subject"],
            student_key=student_key,
            district_id=to_district,
            relationship=Relationship(row["relationship"]),
            status=LinkStatus.PROPOSED,
            code_id=None,
            issued_by=f"homeroom-transfer:{case_id}",
            at=now,
            from_district_id=from_district,
        )
        await outbox.add(
            conn,
            events.guardianship_changed(
                "guardianship_proposed",
                student_key=student_key,
                district_id=to_district,
                acted_by=Party(organization="homeroom-transfer", person=case_id, role="service"),
                link_id=link_id,
                subject=row["subject"],
                relationship=row["relationship"],
                from_district_id=from_district,
            ),
        )
        carried += 1
    return carried


async def links_of_district(
    runtime: ConsentRuntime, principal: Principal, district_id: str, student_key: str | None, limit: int
) -> dict[str, Any]:
    principal.require_district(district_id)
    async with runtime.pool.acquire() as conn:
        links = await store.links_of_district(conn, district_id, student_key, limit)
        codes = await store.codes_of_district(conn, district_id, student_key, limit)
    return {
        "district_id": district_id,
        "links": [_link_dict(r) for r in links],
        "codes": [
            {
                "code_id": c.code_id,
                "student_key": c.student_key,
                "relationship": c.relationship.value,
                "state": c.state,
                "issued_by": c.issued_by,
                "issued_at": c.issued_at.isoformat(),
                "expires_at": c.expires_at.isoformat(),
                "eligibility_basis": c.eligibility_basis,
                "redeemed_at": c.redeemed_at.isoformat() if c.redeemed_at else None,
            }
            for c in codes
        ],
    }


async def my_links(runtime: ConsentRuntime, principal: Principal) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        return [_link_dict(r) for r in await store.links_of_subject(conn, principal.subject)]


async def attempts(
    runtime: ConsentRuntime, *, subject: str | None, outcomes: Sequence[str], since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        rows = await store.attempts(conn, subject=subject, outcomes=outcomes, since=since, limit=limit)
    return [
        {
            "attempted_at": r["attempted_at"].isoformat(),
            "subject": r["subject"],
            "client": r["client"],
            "outcome": r["outcome"],
            "code_id": r["code_id"],
            "district_id": r["district_id"],
            "student_key": r["student_key"],
            "guessing": r["outcome"] in {o.value for o in GUESSING_OUTCOMES},
        }
        for r in rows
    ]


# ------------------------------------------------------------ parents' districts


class ParentDistricts:
    """Where a parent may act for their students outside a decision (their choices, their token's
    districts): the decision point's own rule (`guardianship.standing`, `guardianship_refusal`),
    on the registry read at once."""

    def __init__(
        self, registered: bool, statuses: dict[tuple[str, str], str], moves: dict[tuple[str, str], set[str]]
    ) -> None:
        self.registered, self.statuses, self.moves = registered, statuses, moves

    def standing(self, student_key: str, district_id: str) -> str | None:
        return standing(
            district_id,
            lambda d: self.statuses.get((student_key, d)),
            lambda d: self.moves.get((student_key, d), ()),
        )

    def refusal(self, student_key: str, district_id: str) -> tuple[str, str] | None:
        facts = Facts(
            today=date.min,
            guardianship=self.standing(student_key, district_id),
            guardian_registered=self.registered,
        )
        return guardianship_refusal(facts, district_id)

    def districts(self, student_key: str) -> list[str]:
        """The districts where the person's standing for the student is active."""
        candidates = {d for (k, d) in self.statuses if k == student_key}
        candidates |= {d for (k, d) in self.moves if k == student_key}
        return sorted(d for d in candidates if self.standing(student_key, d) == LinkStatus.ACTIVE.value)


async def parent_districts(conn: Any, subject: str) -> ParentDistricts:
    registered, statuses = await store.subject_links(conn, subject)
    moves = await store.moves_of(conn, sorted({k for k, _ in statuses}))
    return ParentDistricts(registered, statuses, moves)


# ------------------------------------------------------------------- tokens


async def parent_token(runtime: ConsentRuntime, subject: str) -> dict[str, Any]:
    """A parent token for this person naming the students of their active links, with the
    district of each link (none: a token that opens no child's data). Asked for by the portal (role service) after it
    verified the person's sign-in with the identity provider."""
    issuer = runtime.state.issuer
    if issuer is None:
        raise Problem(
            503,
            "No guardianship issuer",
            "this consent service has no key to sign parent tokens with (HOMEROOM_CONSENT_GUARDIAN_KEY_FILE)",
            type=problem_type("guardianship-issuer-missing"),
        )
    async with runtime.pool.acquire() as conn:
        standing_of = await parent_districts(conn, subject)
    students = sorted({k for (k, _), status in standing_of.statuses.items() if status == LinkStatus.ACTIVE.value})
    links = [(k, d) for k in students for d in standing_of.districts(k)]
    ttl = runtime.state.token_ttl_s
    # The token names each student's districts too (`guardianships`), so services that do not
    # ask consent (audit's disclosures, records' amendments) scope a parent per district as well.
    token = issuer.issue(Role.PARENT, subject=subject, students=students, ttl_s=ttl, guardianships=links)
    return {"token": token, "students": students, "expires_in": ttl}


async def record_transfer(runtime: ConsentRuntime, conn: Connection, step: TransferStep) -> None:
    """A delivered transfer: keep the move (a link in the receiving district then also opens the
    sending district's record) and propose the student's links to the receiving district."""
    now = runtime.clock()
    await store.record_move(conn, step.student_key, step.from_district_id, step.to_district_id, step.case_id, now)
    carried = await carry_on_transfer(
        conn, step.case_id, step.student_key, step.from_district_id, step.to_district_id, now
    )
    metrics.LINKS_CARRIED.inc(carried)
