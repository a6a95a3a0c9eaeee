"""The case worker: drives open cases through decide → package → deliver, retries failed
calls with backoff, re-sends and escalates past deadlines.

Crash safety: the worker leases a case (a lease a dead worker held runs out), calls the
peer, then in ONE transaction moves the case by compare-and-set on its state, records the
step in its history and writes the step's events to the outbox. A crash before that
commit repeats the call (the peers are idempotent on the case id); a crash after it finds
the case already moved. Step event ids are deterministic in (case, step), so nothing is
emitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from homeroom import notices as homeroom_notices
from homeroom import outbox
from homeroom.bus.envelope import OutgoingEvent
from homeroom.catalogue import ELEMENTS, LegalBasis, is_known
from homeroom.catalogue import element as catalogue_element
from homeroom.contracts.clients import ConsentClient, PeerUnavailable, RecordsClient
from homeroom.contracts.consent import DecisionRequest, Requester
from homeroom.contracts.transfer_package import TransferDeliveryRequest, TransferPackageRequest
from homeroom.service import Runtime
from services.transfer import events, store
from services.transfer.consumers import NOTIFY_CHANNEL
from services.transfer.metrics import (
    CASES_BY_STATE,
    DEADLINE_BREACHES,
    ESCALATIONS,
    REFUSALS,
    STEP_FAILURES,
    TIME_TO_DELIVERY,
    TRANSITIONS,
)
from services.transfer.settings import TransferSettings
from services.transfer.store import Case
from services.transfer.transfers import Action, RetryPolicy, State, next_action

log = logging.getLogger(__name__)

PACKAGE_ELEMENT = "transfer.package"
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)

# Sections of a records package and the elements that allow each to travel.
_SECTION_ELEMENTS: dict[str, tuple[str, ...]] = {
    "enrollments": (
        "enrollment.school_id",
        "enrollment.entry_date",
        "enrollment.exit_date",
        "enrollment.exit_code",
        "enrollment.grade_level",
    ),
    "suspension_dates": ("discipline.suspension_dates",),
    "parent_statements": ("record.parent_statement",),
}


def now_utc() -> datetime:
    return datetime.now(UTC)


def transfer_notices(case: Case, sent: Sequence[str]) -> list[homeroom_notices.Notice]:
    """FERPA 99.34(a)(1): the parent is told the record went to the school where the child
    enrolls, may have a copy and may challenge it; the sending district is told it left."""
    names = ", ".join(catalogue_element(e).name for e in sent if is_known(e)) or "nothing"
    withheld = "; ".join(f"{w['element']}: {w['reason']}" for w in case.elements_withheld) or "nothing"
    cause = f"transfer:{case.case_id}"
    return [
        homeroom_notices.Notice(
            recipient=homeroom_notices.Recipient("parent", case.student_key),
            kind="transfer_delivered",
            subject=f"Your child's record was sent to district {case.to_district_id}",
            body=(
                f"Your child enrolled in district {case.to_district_id} (school {case.to_school_id}), so district "
                f"{case.from_district_id}\nsent their education record there (FERPA 34 CFR 99.31(a)(2)).\n\n"
                f"Sent: {names}.\nWithheld: {withheld}.\n\n"
                "You may ask for a copy of what was sent and, if you think it is wrong, ask for a hearing to\n"
                "challenge it (FERPA 34 CFR 99.34(a)(1)). The portal shows the transfer under your child's name.\n"
            ),
            cause=cause,
            student_key=case.student_key,
            district_id=case.from_district_id,
        ),
        homeroom_notices.Notice(
            recipient=homeroom_notices.Recipient("district", case.from_district_id),
            kind="transfer_delivered",
            subject=f"A student's record was sent to district {case.to_district_id} (case {case.case_id})",
            body=(
                f"Transfer case {case.case_id}: the record of student {case.student_key} was delivered to district "
                f"{case.to_district_id},\nschool {case.to_school_id}, where the student enrolled on "
                f"{case.entry_date.isoformat()}.\n\nSent: {names}.\nWithheld: {withheld}.\n"
                "The parent has been notified. The disclosure is in the audit log.\n"
            ),
            cause=cause,
            student_key=case.student_key,
            district_id=case.from_district_id,
        ),
    ]


class BadAnswer(PeerUnavailable):
    def __init__(self, peer: str, message: str) -> None:
        super().__init__(peer, message, retryable=True)


# Where the peer clients are (built in service.py's start hook unless a test put its own there).
CONSENT_EXTRA = "transfer.consent"
RECORDS_EXTRA = "transfer.records"


def filter_package(raw: dict[str, Any], case: Case) -> tuple[dict[str, Any], list[str]]:
    """Keep only what the decision released, whatever records sent back (defence in depth).
    Returns the package and the element ids it carries."""
    if raw.get("case_id") != case.case_id or raw.get("student_key") != case.student_key:
        raise BadAnswer("records", "the package names another case or student")
    released = set(case.elements_released)
    values = raw.get("elements") or {}
    if not isinstance(values, dict):
        raise BadAnswer("records", "package 'elements' is not an object")
    elements = {k: v for k, v in values.items() if k in released}
    package: dict[str, Any] = {
        "case_id": case.case_id,
        "student_key": case.student_key,
        "from_district_id": case.from_district_id,
        "elements": elements,
    }
    for section, needs in _SECTION_ELEMENTS.items():
        if released.intersection(needs):
            package[section] = raw.get(section) or []
        else:
            package[section] = []
    attendance = raw.get("attendance") or {}
    package["attendance"] = {
        "days": attendance.get("days", []) if "attendance.daily" in released and isinstance(attendance, dict) else [],
        "summary": attendance.get("summary", {})
        if "attendance.summary" in released and isinstance(attendance, dict)
        else {},
    }
    flags = raw.get("program_flags") or []
    package["program_flags"] = [
        f for f in flags if isinstance(f, str) and (f in released or f"program.{f}" in released)
    ]
    included = sorted(set(elements) | {e for e in raw.get("elements_included") or [] if e in released})
    package["elements_included"] = included
    # Not an element: the parent's choice, which travels with the record and binds the receiving district.
    package["directory_opt_out"] = raw.get("directory_opt_out") is True
    return package, included


class CaseWorker:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        assert isinstance(settings, TransferSettings)
        self.runtime = runtime
        self.settings = settings
        self.retry = RetryPolicy(
            settings.retry_max_attempts, settings.retry_base_backoff_s, settings.retry_max_backoff_s
        )
        self.deadlines = settings.deadlines
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._semaphore = asyncio.Semaphore(max(1, settings.worker_concurrency))
        self._gauge_at = 0.0
        self._inflight: dict[str, asyncio.Task[None]] = {}

    # --- peers (looked up on every use, so they can be swapped in runtime.extras) --------
    @property
    def consent(self) -> ConsentClient:
        client: ConsentClient = self.runtime.extras[CONSENT_EXTRA]
        return client

    @property
    def records(self) -> RecordsClient:
        client: RecordsClient = self.runtime.extras[RECORDS_EXTRA]
        return client

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="transfer-case-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        inflight = list(self._inflight.values())
        for task in inflight:
            task.cancel()
        for task in inflight:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        pool = self.runtime.pool
        listener = await pool.acquire()
        wake = lambda *_: self._wake.set()  # noqa: E731
        try:
            await listener.add_listener(NOTIFY_CHANNEL, wake)
            while not self._stopping:
                worked = 0
                try:
                    worked = await self._claim_and_spawn()
                    await self._refresh_gauge()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # database trouble: keep going, cases are leased
                    log.warning("case worker pass failed", extra={"error": repr(exc)})
                if worked == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self.settings.worker_poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(NOTIFY_CHANNEL, wake)
            await pool.release(listener)

    async def _refresh_gauge(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._gauge_at < 5.0:
            return
        self._gauge_at = loop.time()
        counts = await store.count_by_state(self.runtime.pool)
        for state in State:
            CASES_BY_STATE.labels(state.value).set(counts.get(state.value, 0))

    async def _claim_and_spawn(self) -> int:
        """Lease as many due cases as there are free slots and work each in its own task, so
        one slow peer call never holds up the other cases."""
        free = self.settings.worker_concurrency - len(self._inflight)
        if free <= 0:
            return 0
        cases = await store.claim_due(
            self.runtime.pool, min(free, self.settings.worker_batch), self.settings.worker_lease_s
        )
        for case in cases:
            if case.case_id in self._inflight:
                continue
            task = asyncio.create_task(self._guarded(case), name=f"transfer-case-{case.case_id}")
            self._inflight[case.case_id] = task
            task.add_done_callback(functools.partial(self._done, case.case_id))
        return len(cases)

    def _done(self, case_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(case_id, None)
        self._wake.set()  # a slot is free

    async def work_once(self) -> int:
        """Lease the cases that are due and work each as far as it goes now; returns how
        many (tests and tools; the running worker spawns instead of waiting)."""
        cases = await store.claim_due(self.runtime.pool, self.settings.worker_batch, self.settings.worker_lease_s)
        if cases:
            await asyncio.gather(*(self._guarded(c) for c in cases))
        return len(cases)

    async def _guarded(self, case: Case) -> None:
        async with self._semaphore:
            try:
                await self.work(case)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or the database: leave the lease to run out, retry then
                log.exception("case step crashed", extra={"case_id": case.case_id, "error": repr(exc)})

    # --- one step ------------------------------------------------------------------------
    async def work(self, case: Case) -> None:
        """Take the case as far as it can go now: decide, package and deliver follow each
        other under one lease (each step committed on its own), then the lease is released."""
        current: Case | None = case
        step_name = ""
        try:
            while current is not None:
                action, reason = next_action(current.view, now_utc(), self.retry, self.deadlines)
                step_name = {
                    Action.DECIDE: "decide",
                    Action.PACKAGE: "package",
                    Action.DELIVER: "deliver",
                    Action.RESEND: "resend",
                }.get(action, "")
                at = current
                if action is Action.DECIDE:
                    current = await self._decide(at)
                elif action is Action.PACKAGE:
                    current = await self._package(at)
                elif action is Action.DELIVER:
                    await self._deliver(at, resend=False)
                    current = None
                elif action is Action.RESEND:
                    await self._deliver(at, resend=True)
                    current = None
                elif action is Action.ESCALATE:
                    await self._escalate(at, reason)
                    current = None
                elif action is Action.WAIT:
                    assert at.delivered_at is not None
                    await self._park(at, self.deadlines.acknowledge_due(at.delivered_at))
                    current = None
                else:
                    current = None
        except PeerUnavailable as exc:
            if exc.retryable:
                await self._attempt_failed(at, step_name, str(exc))
            else:
                await self._fail(at, step_name, str(exc))
        finally:
            with contextlib.suppress(Exception):  # the lease runs out by itself otherwise
                await store.release(self.runtime.pool, case.case_id)

    async def _commit(
        self,
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
        async with self.runtime.pool.acquire() as conn, conn.transaction():
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

    async def _decide(self, case: Case) -> Case | None:
        request = DecisionRequest(
            action="transfer",
            requester=Requester(
                role="district_staff",
                subject=f"transfer-case:{case.case_id}",
                organization=case.to_district_id,
                district_id=case.to_district_id,
            ),
            student_key=case.student_key,
            district_id=case.from_district_id,
            elements=[e.id for e in ELEMENTS],
            purpose="records_transfer",
            to_district_id=case.to_district_id,
        )
        answer = await self.consent.decide(request)
        allow = answer.allow
        withheld: list[dict[str, str]] = [w.model_dump() for w in answer.elements_withheld]
        allowed: list[str] = []
        for name in answer.elements_allowed:
            if not is_known(name):
                withheld.append({"element": name, "reason": "not in the data-element catalogue"})
            elif not catalogue_element(name).transferable:
                withheld.append({"element": name, "reason": "never transferable (catalogue)"})
            else:
                allowed.append(name)
        decision_id = answer.decision_id
        legal_basis = answer.legal_basis or (LegalBasis.TRANSFER.value if allow else "")
        detail = {"decision_id": decision_id, "legal_basis": legal_basis, "reason": answer.reason}
        now = now_utc()
        if not allow or not allowed:
            reason = answer.reason or "consent_denied"
            moved = await self._commit(
                case,
                State.REFUSED,
                "refused",
                reason=reason,
                detail=detail | {"elements_withheld": withheld},
                build=lambda c: [events.step(c, "transfer_refused", "refused", reason="consent_denied")],
                decision_id=decision_id,
                legal_basis=legal_basis,
                elements_withheld=withheld,
                closed_at=now,
                decided_at=now,
                next_attempt_at=FAR_FUTURE,
            )
            if moved is not None:
                REFUSALS.labels("consent_denied").inc()
            return None
        return await self._commit(
            case,
            State.DECIDED,
            "decided",
            detail=detail | {"elements_allowed": allowed, "elements_withheld": withheld},
            build=lambda c: [events.step(c, "transfer_decided", "decided")],
            decision_id=decision_id,
            legal_basis=legal_basis,
            elements_released=allowed,
            elements_withheld=withheld,
            decided_at=now,
            attempt=0,
            next_attempt_at=now,
        )

    async def _package(self, case: Case) -> Case | None:
        raw = await self.records.transfer_package(
            TransferPackageRequest(
                case_id=case.case_id,
                student_key=case.student_key,
                from_district_id=case.from_district_id,
                elements=case.elements_released,
            )
        )
        package, included = filter_package(raw, case)
        cipher = self.runtime.require_cipher()
        sealed = await cipher.seal(
            case.from_district_id, case.student_key, PACKAGE_ELEMENT, json.dumps(package, sort_keys=True)
        )
        return await self._commit(
            case,
            State.PACKAGED,
            "packaged",
            detail={
                "elements_included": included,
                "elements_withheld": case.elements_withheld,
                "sections": sorted(k for k, v in package.items() if v and k not in ("case_id", "student_key")),
            },
            build=lambda c: [events.step(c, "transfer_packaged", "packaged", elements_released=included)],
            package_sealed=sealed,
            attempt=0,
            next_attempt_at=now_utc(),
        )

    async def _open_package(self, case: Case) -> dict[str, Any]:
        if case.package_sealed is None:
            raise PeerUnavailable("transfer", "the case has no package to send", retryable=False)
        cipher = self.runtime.require_cipher()
        plain = await cipher.open(case.from_district_id, case.student_key, PACKAGE_ELEMENT, case.package_sealed)
        package: dict[str, Any] = json.loads(plain)
        return package

    async def _deliver(self, case: Case, *, resend: bool) -> None:
        package = await self._open_package(case)
        answer = await self.records.transfer_delivery(
            TransferDeliveryRequest(
                case_id=case.case_id,
                student_key=case.student_key,
                to_district_id=case.to_district_id,
                to_school_id=case.to_school_id,
                package=package,
            )
        )
        if answer.get("delivered") is not True or answer.get("case_id") != case.case_id:
            raise BadAnswer("records", "the delivery was not confirmed for this case")
        now = now_utc()
        included = list(package.get("elements_included") or [])
        if resend:
            n = case.resends + 1
            resent = await self._commit(
                case,
                State.DELIVERED,
                f"resent:{n}",
                reason="acknowledgement_overdue",
                detail={"resend": n},
                build=lambda c: [
                    events.step(c, "transfer_delivered", f"delivered:resend:{n}", reason="resent", attempt=n)
                ],
                resends=n,
                attempt=0,
                delivered_at=now,
                next_attempt_at=self.deadlines.acknowledge_due(now),
            )
            if resent is not None:
                DEADLINE_BREACHES.labels("acknowledgement").inc()
            return
        moved = await self._commit(
            case,
            State.DELIVERED,
            "delivered",
            detail={"elements_included": included, "to_school_id": case.to_school_id},
            build=lambda c: [
                events.disclosure(c, included),
                events.step(c, "transfer_delivered", "delivered", elements_released=included),
            ],
            notices=transfer_notices(case, included),
            extra_history=[
                (
                    "notified:sending_district",
                    {
                        "recipient": case.from_district_id,
                        "notice": "record sent to the enrolling school",
                        "via": "e-mail and the portal's notices (homeroom.notices)",
                    },
                ),
                (
                    "notified:parent",
                    {
                        "recipient": "parent of " + case.student_key,
                        "notice": "FERPA 99.34(a)(1): record sent to the enrolling school; a copy may be requested",
                        "via": "e-mail and the portal's notices (homeroom.notices)",
                    },
                ),
            ],
            delivered_at=now,
            attempt=0,
            next_attempt_at=self.deadlines.acknowledge_due(now),
        )
        if moved is not None:
            TIME_TO_DELIVERY.observe(max(0.0, (now - case.enrolled_at).total_seconds()))

    async def _escalate(self, case: Case, reason: str) -> None:
        moved = await self._commit(
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

    async def _fail(self, case: Case, step_name: str, message: str) -> None:
        await self._commit(
            case,
            State.FAILED,
            "failed",
            reason=f"{step_name}_refused_by_peer",
            detail={"step": step_name, "error": message[:500]},
            build=lambda c: [events.step(c, "transfer_failed", "failed", reason=f"{step_name}_refused_by_peer")],
            closed_at=now_utc(),
            package_sealed=None,
            next_attempt_at=FAR_FUTURE,
        )

    async def _attempt_failed(self, case: Case, step_name: str, message: str) -> None:
        attempt = case.attempt + 1
        STEP_FAILURES.labels(step_name).inc()
        now = now_utc()
        if step_name == "resend":
            # A failed re-send keeps the case delivered; try again after the backoff.
            due = now + self.retry.backoff(attempt)
        else:
            due = min(now + self.retry.backoff(attempt), self.deadlines.delivery_due(case.clock_started_at))
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            if not await store.note_failure(conn, case.case_id, case.state, attempt, due, f"{step_name}_failed"):
                return
            await store.add_history(
                conn,
                case.case_id,
                events.in_round(case, f"attempt_failed:{step_name}:{case.state.value}:{attempt}"),
                case.state,
                reason=f"{step_name}_failed",
                detail={"attempt": attempt, "error": message[:500], "next_attempt_at": due.isoformat()},
            )
        if self.retry.exhausted(attempt) and step_name != "resend":
            log.warning("transfer step retries exhausted", extra={"case_id": case.case_id, "step": step_name})
            self.wake()

    async def _park(self, case: Case, until: datetime) -> None:
        await self.runtime.pool.execute(
            "UPDATE transfer_cases SET next_attempt_at = $2, lease_until = NULL WHERE case_id = $1 AND state = $3",
            case.case_id,
            until,
            case.state.value,
        )
