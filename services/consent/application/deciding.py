"""The decision use case, an adapter over the decision engine (`decisions.py`, the rules, and
`facts.py`, the facts in memory and the decision log): decide disclosures one at a time or in a
batch (`decide`), screen a rostering list (`screen`), read a logged decision (`decision`), count
the refusals (`denials`), and show the policy (`policy`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from homeroom.contracts.consent import DecisionRequest, ScreenRequest
from homeroom.problems import Problem, problem_type
from services.consent import metrics, store
from services.consent.cedar_policy import policy_text
from services.consent.decisions import DENIAL_CODES, policy_document
from services.consent.facts import Logged
from services.consent.state import ConsentRuntime


async def decide(runtime: ConsentRuntime, requests: Sequence[DecisionRequest], *, route: str = "single") -> Logged:
    """Decide every request on the facts in memory; the answers come back once their rows are
    logged (facts.DecisionLog: group commit, decided again if the facts moved), with each
    row's JSON, which is what the caller is sent."""
    with metrics.DECISION_TIMES[route].time():
        logged = await runtime.state.decisions.decide(requests, runtime.clock())
    outcomes = Counter((request.action, answer.allow) for request, answer in zip(requests, logged.answers, strict=True))
    for outcome, count in outcomes.items():
        metrics.DECISION_COUNTS[outcome].inc(count)
    denials = Counter(answer.denial or "nothing_releasable" for answer in logged.answers if not answer.allow)
    for code, count in denials.items():
        (metrics.DENIAL_COUNTS.get(code) or metrics.DENIALS.labels(code)).inc(count)
    return logged


async def screen(runtime: ConsentRuntime, request: ScreenRequest) -> list[str]:
    """The students a read would release nothing to, on facts brought up to date first (a
    count must not include a student whose parent just opted out)."""
    point = runtime.state.decisions
    async with point.pool.acquire() as conn:
        await point.facts.refresh(conn)
    with metrics.DECISION_TIMES["screen"].time():
        return point.facts.screen(request, runtime.clock())


async def denials(runtime: ConsentRuntime, days: int) -> dict[str, Any]:
    """Decisions that released nothing in the last `days` days, counted by action and denial code."""
    since = runtime.clock() - timedelta(days=days)
    async with runtime.pool.acquire() as conn:
        total, groups = await store.denials_by_reason(conn, since)
    by_reason = [g | {"meaning": DENIAL_CODES.get(g["code"] or "", "not classified")} for g in groups]
    return {"since": since.isoformat(), "days": days, "total": total, "by_reason": by_reason}


async def decision(runtime: ConsentRuntime, decision_id: str) -> dict[str, Any]:
    """A logged decision: the request and the answer as given."""
    async with runtime.pool.acquire() as conn:
        found = await store.get_decision(conn, decision_id)
    if found is None:
        raise Problem(404, "Not found", f"No decision {decision_id} is logged.", type=problem_type("not-found"))
    return found


def policy() -> dict[str, Any]:
    """The decision rules as data, with their legal bases, and the Cedar policy that bounds every release."""
    return {**policy_document(), "cedar": policy_text()}
