"""What the case worker's steps share: moving a case one step, in one transaction with its
history row, its events and its notices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from homeroom import notices as homeroom_notices
from homeroom import outbox
from homeroom.bus.envelope import OutgoingEvent
from services.transfer import events, store
from services.transfer.metrics import TRANSITIONS
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import State

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)  # a closed or parked case is never due


async def commit(
    runtime: TransferRuntime,
    case: Case,
    target: State,
    step_name: str,
    *,
    build: Callable[[Case], list[OutgoingEvent]],
    reason: str = "",
    detail: dict[str, Any] | None = None,
    extra_history: Sequence[tuple[str, dict[str, Any]]] = (),
    notices: Sequence[homeroom_notices.Notice] = (),
    **fields: Any,
) -> Case | None:
    """Move the case (its `reason` set to `reason`), record the step and write its
    events, in one transaction. `build(moved_case)` makes the events, which carry the
    new state. None when the case was no longer where this step found it."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        moved = await store.move(conn, case.case_id, case.state, target, reason=reason, **fields)
        if moved is None:  # someone else moved it (or this is a replay): nothing to do
            return None
        out = build(moved)
        first = out[-1].event_id if out else ""
        await store.add_history(
            conn,
            case.case_id,
            events.in_round(case, step_name),
            target,
            reason=reason,
            detail=detail,
            event_id=first,
        )
        for name, more in extra_history:
            await store.add_history(conn, case.case_id, name, target, detail=more)
        await outbox.add(conn, out)
        await homeroom_notices.add(conn, notices)
    TRANSITIONS.labels(target.value).inc()
    return moved
