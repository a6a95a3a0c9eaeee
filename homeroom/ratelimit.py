"""Rate limits per principal, with the `limits` library (moving windows).

Every service limits each verified caller (role and subject) to `HOMEROOM_RATE_LIMIT`
requests (default 1200 a minute; empty: off), checked where the bearer token is verified
(`homeroom.auth.current_principal`), so a limit is never spent on a forged token's claims.
Services calling each other (role `service`) are not limited: they act for many people.
The portal limits sign-in attempts per client address (`PortalSettings.sign_in_rate_limit`).
A refusal is a 429 problem with Retry-After, counted in `homeroom_rate_limited_total`.

The counters live in process memory: with several instances of a service each counts its
own share (a shared store, `limits`' Redis or memcached storage, gives one count).
"""

from __future__ import annotations

import math
import time

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from homeroom.problems import Problem, problem_type

RATE_LIMITED = Counter(
    "homeroom_rate_limited_total",
    "Requests refused by a rate limit (429), by service and what was limited",
    ["service", "scope"],
)


class RateLimiter:
    def __init__(self, rate: str, service: str) -> None:
        self.item = limits.parse(rate)
        self.service = service
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, key: str, scope: str) -> None:
        """Count one request for ``key``; raise the 429 problem past the limit."""
        if await self._limiter.hit(self.item, self.service, key):
            return
        stats = await self._limiter.get_window_stats(self.item, self.service, key)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        RATE_LIMITED.labels(self.service, scope).inc()
        raise Problem(
            429,
            "Too many requests",
            f"more than {self.item} for this {scope}; try again in {retry} s",
            type=problem_type("rate-limited"),
            headers={"Retry-After": str(retry)},
        )


def limiter(rate: str, service: str) -> RateLimiter | None:
    return RateLimiter(rate, service) if rate.strip() else None
