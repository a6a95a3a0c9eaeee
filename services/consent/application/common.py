"""What every consent use case shares: the base of its request bodies (`Command`), its errors
(problem+json), who the caller is in the history (`actor`), who may manage an agreement
(`manager_check`, `authorizer`) or read one (`may_read`), and an agreement changed under its head
row lock (`changing`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
from pydantic import BaseModel, ConfigDict

from homeroom.auth import Forbidden, Principal, Role
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.storage import Connection
from services.consent import store
from services.consent.agreements import Agreement, AgreementError, AgreementStatus

Authorize = Callable[[Sequence[Agreement]], None]


class Command(BaseModel):
    """A request body of a use case: a misnamed or unknown field is a 422 naming it, never dropped."""

    model_config = ConfigDict(extra="forbid")


def rejected(errors: Sequence[AgreementError], detail: str | None = None) -> Problem:
    return Problem.validation([FieldError(e.field, e.rule, e.message) for e in errors], detail)


def not_found(agreement_id: str) -> Problem:
    return Problem(404, "Not found", f"No agreement {agreement_id!r} is on record.", type=problem_type("not-found"))


def missing(title: str, detail: str) -> Problem:
    return Problem(404, title, detail, type=problem_type("not-found"))


def conflict(message: str, rule: str) -> Problem:
    return Problem(409, "Conflict", message, type=problem_type("conflict"), extensions={"rule": rule})


def actor(principal: Principal) -> str:
    """The caller as the history and the events name it (`role:subject`)."""
    return f"{principal.role.value}:{principal.subject}"


def party(principal: Principal) -> Party:
    """A district's member of staff (or a parent) as an audit event names them."""
    return Party(organization=principal.district_id or "", person=principal.subject, role=principal.role.value)


def manager_check(principal: Principal, *district_sets: Sequence[str]) -> None:
    """Compliance; or district staff when every given set of districts is their district alone.

    A district signs for itself only: an agreement that covers another district (too) is
    created, changed, suspended and ended by compliance staff."""
    if principal.role is Role.COMPLIANCE:
        return
    own = principal.district_id
    for districts in district_sets:
        others = sorted(set(districts) - {own})
        if others:
            raise Forbidden(
                f"district staff act for their own district only; this agreement covers {', '.join(others)} "
                "(compliance staff manage agreements that cover other districts)"
            )
        if not districts:
            raise Forbidden(f"an agreement district staff record must cover their district ({own!r})")


def authorizer(principal: Principal, *extra: Sequence[str]) -> Authorize:
    """The check a use case runs on the versions it locked: may this caller manage them (and the new terms)?"""

    def check(versions: Sequence[Agreement]) -> None:
        covered = sorted({d for v in versions for d in v.terms.districts})
        if versions and principal.role is Role.DISTRICT_STAFF and principal.district_id not in covered:
            # An agreement that does not concern the caller's district answers as a missing one.
            raise not_found(versions[-1].id)
        manager_check(principal, covered, *extra)

    return check


def may_read(principal: Principal, agreement_id: str, districts: Sequence[str]) -> bool:
    if principal.role is Role.COMPLIANCE:
        return True
    if principal.role is Role.VENDOR:
        return principal.agreement_id == agreement_id
    return principal.district_id in districts


def require_district_or_compliance(principal: Principal, district_id: str) -> None:
    if principal.role is not Role.COMPLIANCE:
        principal.require_district(district_id)


@contextlib.asynccontextmanager
async def changing(
    pool: asyncpg.Pool, agreement_id: str, authorize: Authorize | None
) -> AsyncIterator[tuple[Connection, store.Head, list[Agreement]]]:
    """A transaction holding the agreement's head row lock, with every version, once the caller
    may change it (`authorize`; None: the service itself). 404 when there is no such agreement."""
    async with pool.acquire() as conn, conn.transaction():
        head = await store.lock_agreement(conn, agreement_id)
        if head is None:
            raise not_found(agreement_id)
        versions = await store.history(conn, agreement_id)
        if authorize is not None:
            authorize(versions)
        yield conn, head, versions


def latest_non_draft(versions: Sequence[Agreement]) -> Agreement:
    return [v for v in versions if v.status is not AgreementStatus.DRAFT][-1]
