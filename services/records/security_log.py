"""The security log of refused reads, for every records router (the records API and OneRoster):
a route's 403, 404 or 410 is logged with who asked for what (`refused_reads`), then raised on."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import Request

from homeroom.auth import Principal
from homeroom.problems import Problem
from services.records import store


async def security_log(request: Request) -> AsyncIterator[None]:
    """Refused attempts to read student data go to the security log (`refused_reads`), which
    compliance searches: not disclosures (nothing was released), but who tried what."""
    try:
        yield
    except Problem as problem:
        if problem.status in (403, 404, 410):
            await log_refusal(request, problem)
        raise


async def log_refusal(request: Request, problem: Problem) -> None:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        return
    params = request.path_params
    route = getattr(request.scope.get("route"), "path", request.url.path)
    try:
        await store.log_refusal(
            request.app.state.runtime.pool,
            requester_role=principal.role.value,
            requester=principal.subject,
            organization=principal.organization or principal.district_id or "",
            agreement_id=principal.agreement_id or "",
            method=request.method,
            route=str(route),
            student_key=str(params.get("student_key") or params.get("sourced_id") or ""),
            district_id=str(params.get("district_id") or ""),
            status=problem.status,
            reason=str((problem.extensions or {}).get("reason") or problem.title),
        )
    except Exception:  # the log must never turn a refusal into a 500
        logging.getLogger(__name__).warning("refused read not logged", exc_info=True)
