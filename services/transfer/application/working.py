"""Use case: work one leased case as far as it can go now (what the case worker calls for
each case it leases). The domain's `next_action` says which step is due: decide, fetch,
deliver, re-send, escalate or wait; a peer's failure becomes a retry or a failed case."""

from __future__ import annotations

import contextlib

from homeroom.contracts.clients import PeerUnavailable
from services.transfer import store
from services.transfer.application.deciding import decide
from services.transfer.application.delivering import deliver
from services.transfer.application.escalating import attempt_failed, escalate, fail, park
from services.transfer.application.fetching import fetch
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import Action, next_action

_STEP_NAMES = {Action.DECIDE: "decide", Action.PACKAGE: "package", Action.DELIVER: "deliver", Action.RESEND: "resend"}


async def work(runtime: TransferRuntime, case: Case) -> bool:
    """Take the case as far as it can go now: decide, package and deliver follow each other
    under one lease (each step committed on its own), then the lease is released. True when
    the case is due again at once (its retries are used up: it escalates next)."""
    settings = runtime.settings
    retry, deadlines = settings.retry_policy, settings.deadlines
    current: Case | None = case
    at = case
    step_name = ""
    try:
        while current is not None:
            action, reason = next_action(current.view, runtime.clock(), retry, deadlines)
            step_name = _STEP_NAMES.get(action, "")
            at = current
            if action is Action.DECIDE:
                current = await decide(runtime, at)
            elif action is Action.PACKAGE:
                current = await fetch(runtime, at)
            elif action in (Action.DELIVER, Action.RESEND):
                await deliver(runtime, at, resend=action is Action.RESEND)
                current = None
            elif action is Action.ESCALATE:
                await escalate(runtime, at, reason)
                current = None
            elif action is Action.WAIT:
                assert at.delivered_at is not None
                await park(runtime, at, deadlines.acknowledge_due(at.delivered_at))
                current = None
            else:
                current = None
    except PeerUnavailable as exc:
        if exc.retryable:
            return await attempt_failed(runtime, at, step_name, str(exc))
        await fail(runtime, at, step_name, str(exc))
    finally:
        with contextlib.suppress(Exception):  # the lease runs out by itself otherwise
            await store.release(runtime.pool, case.case_id)
    return False
