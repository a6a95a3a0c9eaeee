"""Use case: what the worker does when a step cannot go on: a failed attempt is noted and
retried after a backoff, a case past its deadline or out of attempts is escalated to people,
one a peer refused for good fails, and a delivered case waits for its answer."""

from __future__ import annotations

import logging
from datetime import datetime

from services.transfer import events, store
from services.transfer.application.common import FAR_FUTURE, commit
from services.transfer.metrics import DEADLINE_BREACHES, ESCALATIONS, STEP_FAILURES
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import State

log = logging.getLogger(__name__)


async def escalate(runtime: TransferRuntime, case: Case, reason: str) -> None:
    moved = await commit(
        runtime,
        case,
        State.ESCALATED,
        "escalated",
        reason=reason,
        detail={"from_state": case.state.value, "attempt": case.attempt, "resends": case.resends},
        build=lambda c: [events.step(c, "transfer_escalated", "escalated", reason=reason, attempt=case.attempt)],
        next_attempt_at=FAR_FUTURE,
    )
    if moved is not None:
        ESCALATIONS.labels(reason).inc()
        if reason.endswith("deadline_passed"):
            DEADLINE_BREACHES.labels(reason.split("_", 1)[0]).inc()


async def fail(runtime: TransferRuntime, case: Case, step_name: str, message: str) -> None:
    """A peer refused the step for good: the case closes as failed."""
    await commit(
        runtime,
        case,
        State.FAILED,
        "failed",
        reason=f"{step_name}_refused_by_peer",
        detail={"step": step_name, "error": message[:500]},
        build=lambda c: [events.step(c, "transfer_failed", "failed", reason=f"{step_name}_refused_by_peer")],
        closed_at=runtime.clock(),
        package_sealed=None,
        next_attempt_at=FAR_FUTURE,
    )


async def attempt_failed(runtime: TransferRuntime, case: Case, step_name: str, message: str) -> bool:
    """Note a failed attempt and when to try again. True when the attempts are used up, so
    the case is due again at once (and is escalated then)."""
    retry = runtime.settings.retry_policy
    attempt = case.attempt + 1
    STEP_FAILURES.labels(step_name).inc()
    now = runtime.clock()
    if step_name == "resend":
        # A failed re-send keeps the case delivered; try again after the backoff.
        due = now + retry.backoff(attempt)
    else:
        due = min(now + retry.backoff(attempt), runtime.settings.deadlines.delivery_due(case.clock_started_at))
    async with runtime.pool.acquire() as conn, conn.transaction():
        if not await store.note_failure(conn, case.case_id, case.state, attempt, due, f"{step_name}_failed"):
            return False
        await store.add_history(
            conn,
            case.case_id,
            events.in_round(case, f"attempt_failed:{step_name}:{case.state.value}:{attempt}"),
            case.state,
            reason=f"{step_name}_failed",
            detail={"attempt": attempt, "error": message[:500], "next_attempt_at": due.isoformat()},
        )
    if retry.exhausted(attempt) and step_name != "resend":
        log.warning("transfer step retries exhausted", extra={"case_id": case.case_id, "step": step_name})
        return True
    return False


async def park(runtime: TransferRuntime, case: Case, until: datetime) -> None:
    """A delivered case waits for the receiving district's answer until `until`."""
    await runtime.pool.execute(
        "UPDATE transfer_cases SET next_attempt_at = $2, lease_until = NULL WHERE case_id = $1 AND state = $3",
        case.case_id,
        until,
        case.state.value,
    )
