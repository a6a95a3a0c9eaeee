"""Background asyncio tasks of a service: stopped the one way (cancelled, then awaited), and
woken the one way (`NotifyWake`: PostgreSQL NOTIFY, a poll only as the safety net)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from homeroom.storage import keeps_session_state

log = logging.getLogger(__name__)


async def cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel these tasks and wait until each has finished (None: a task never started), so
    that nothing they hold (a connection, a lock) outlives the stop."""
    for task in tasks:
        if task is not None:
            task.cancel()
    for task in tasks:
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for_wake(wake: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``wake`` is set or ``timeout_s`` passes (True: woken). A background loop's
    idle wait: a cancellation is always passed on, even one that arrives in the same turn as
    the wake. ``asyncio.wait_for`` on Python 3.11 swallows that one (CPython gh-86296), and the
    loop it was meant to stop runs on for ever: a service's stop hung on it."""
    try:
        async with asyncio.timeout(timeout_s):
            await wake.wait()
    except TimeoutError:
        return False
    return True


# How seldom an idle relay (outbox, notices) looks while its LISTEN connection is up and no
# NOTIFY went missing: a write's NOTIFY wakes it at once, so this is only the safety net
# (ServiceSettings.relay_fallback_s; the short poll takes over whenever the net is needed).
RELAY_FALLBACK_S = 10.0


@dataclass(eq=False)
class NotifyWake:
    """PostgreSQL NOTIFY as the wake-up of a relay's loop, a poll only as its safety net.

    While the LISTEN connection is up and has not been caught missing a write, an idle loop
    waits `fallback_s` (a write's NOTIFY wakes it at once); otherwise it polls every `poll_s`:
    while the connection is down or being reopened, and after a missed wake (a fallback pass
    found work that no NOTIFY announced) until the next NOTIFY arrives. A connection the server
    dropped wakes the loop, which opens a new one before its next pass.
    """

    pool: asyncpg.Pool
    channel: str
    poll_s: float
    fallback_s: float
    event: asyncio.Event = field(default_factory=asyncio.Event)
    conn: PoolConnectionProxy[asyncpg.Record] | None = field(default=None, init=False)
    trusted: bool = field(default=True, init=False)  # False: a NOTIFY went missing; poll short
    _unannounced: bool = field(default=False, init=False)  # the last wait ran out the fallback

    _dropped_conn: bool = field(default=False, init=False)  # the server closed the LISTEN connection

    @property
    def listening(self) -> bool:
        # (a pool's proxy of a closed connection answers nothing, not even is_closed())
        return self.conn is not None and not self._dropped_conn

    @property
    def interval_s(self) -> float:
        """How long an idle loop waits now."""
        return self.fallback_s if self.trusted and self.listening else self.poll_s

    async def listen(self) -> PoolConnectionProxy[asyncpg.Record]:
        """The LISTEN connection, opened anew if there is none or the server dropped it. Call it
        before each pass: the pass that follows a new one finds what the gap's writes announced
        to nobody."""
        if self.conn is not None and not self._dropped_conn:
            return self.conn
        await self.close()
        conn = await self.pool.acquire()
        try:
            keeps_session_state(conn)  # LISTEN (and the outbox relay's advisory lock) are session state
            conn.add_termination_listener(self._dropped)
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            await self.pool.release(conn)
            raise
        self.conn, self._dropped_conn = conn, False
        return conn

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._dropped)
            await conn.remove_listener(self.channel, self._notified)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def wait(self, *, busy: bool = False, within_s: float | None = None) -> bool:
        """The loop's wait between passes (True: woken). `busy`: work is still waiting, so poll
        short whatever the connection; `within_s`: something falls due by then."""
        interval = self.poll_s if busy else self.interval_s
        if within_s is not None:
            interval = max(0.0, min(interval, within_s))
        woken = await wait_for_wake(self.event, interval)
        self.event.clear()
        self._unannounced = not woken and interval >= self.fallback_s
        return woken

    def found(self, work: bool) -> None:
        """After a pass: work that only the fallback found is a NOTIFY that never arrived."""
        if work and self._unannounced and self.trusted:
            log.warning("a write's NOTIFY never arrived; polling short until one does", extra={"channel": self.channel})
            self.trusted = False
        self._unannounced = False

    def _notified(self, *_: object) -> None:
        self.trusted = True
        self.event.set()

    def _dropped(self, *_: object) -> None:
        self._dropped_conn = True
        self.event.set()
