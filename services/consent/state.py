"""What a running consent service holds, typed: one object, reached by routes and consumers alike.

`ConsentState` is built by the service's lifecycle (`service.py`) and is `runtime.state`:
the decision point's facts and log, records' student directory (the guardianship codes are
issued for a district's own students only), the linking-code hasher, the redemption rate
limit and the key parent tokens are signed with. `ConsentRuntime` is the kernel's runtime
typed with this service's settings and state; `RuntimeDep` hands it to a route."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Protocol

from fastapi import Depends

from homeroom.auth import DevIssuer
from homeroom.contracts.student_directory import DistrictStudents
from homeroom.ratelimit import RateLimiter
from homeroom.service import Runtime, get_runtime
from services.consent.facts import DecisionLog
from services.consent.guardianship import CodeHasher
from services.consent.settings import ConsentSettings

TOKEN_TTL_S = 300  # a revoked link stops authorising within this; consent refuses at once


class StudentDirectory(Protocol):
    """Which of these keys are the district's own students, with their names and their FERPA
    eligibility on a day (records' API, called with the district staff member's own token)."""

    async def students(
        self, district_id: str, student_keys: Sequence[str], token: str, on: date
    ) -> DistrictStudents: ...


@dataclass(slots=True)
class ConsentState:
    decisions: DecisionLog  # the decision point: facts in memory, every answer logged by group commit
    directory: StudentDirectory
    hasher: CodeHasher  # linking codes are stored only as its HMAC
    limiter: RateLimiter | None  # linking-code redemptions per person and per client address
    issuer: DevIssuer | None  # signs parent tokens; None: this instance issues none
    token_ttl_s: int = TOKEN_TTL_S


ConsentRuntime = Runtime[ConsentSettings, ConsentState]

RuntimeDep = Annotated[ConsentRuntime, Depends(get_runtime)]
