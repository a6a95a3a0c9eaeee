"""Relays are woken by PostgreSQL NOTIFY and poll only as a safety net (homeroom/tasks.py
`NotifyWake`): a lost NOTIFY delays nothing past the fallback, a dropped LISTEN connection
brings back the short poll until a new one listens, and a notice backing off is sent when due.
A batch of notices is mailed in one SMTP session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller

from homeroom.bus.producer import Publisher
from homeroom.bus.topics import ensure_topics
from homeroom.notices import NOTIFY_CHANNEL as NOTICES
from homeroom.notices import AddressBook, NoticeRelay, Recipient, SmtpSettings, add
from homeroom.outbox import COPY_FROM, OutboxRelay, pack_headers
from homeroom.tasks import NotifyWake
from homeroom_dev.infra.process import free_port
from homeroom_dev.infra.smtp import EmbeddedSMTP
from tests.harness import ServiceEnv, service_under_test
from tests.kernel.busfixtures import absence, prepare, topics, wait_for, write_to_outbox
from tests.kernel.test_notices import SPEC, _transfer_notice
from tests.mail import mail_arrives, smtp_overrides, to


async def _terminate(pool: asyncpg.Pool, wake: NotifyWake) -> int:
    assert wake.conn is not None
    pid = wake.conn.get_server_pid()
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
    return pid


async def test_the_wait_is_long_only_while_listening_and_trusted(pg_pool: asyncpg.Pool) -> None:
    wake = NotifyWake(pg_pool, "homeroom_wake_test", poll_s=0.05, fallback_s=0.2)
    assert wake.interval_s == 0.05  # not listening yet
    await wake.listen()
    try:
        assert wake.interval_s == 0.2
        assert await wake.wait() is False  # the fallback ran out ...
        wake.found(True)  # ... and the pass found work no NOTIFY announced
        assert (wake.trusted, wake.interval_s) == (False, 0.05)
        await pg_pool.execute("NOTIFY homeroom_wake_test")
        assert await wake.wait() is True  # a NOTIFY arrives: the connection is trusted again
        assert (wake.trusted, wake.interval_s) == (True, 0.2)
        assert await wake.wait(busy=True) is False  # work waiting: the short poll whatever the connection
        wake.found(True)
        assert wake.trusted  # found after a short wait: nothing was missed

        wake.fallback_s = 60.0
        first = await _terminate(pg_pool, wake)
        assert await wake.wait() is True  # the dropped connection wakes the loop (not the 60 s fallback)
        assert (wake.listening, wake.interval_s) == (False, 0.05)
        conn = await wake.listen()
        assert conn.get_server_pid() != first and wake.interval_s == 60.0
        await pg_pool.execute("NOTIFY homeroom_wake_test")  # heard on the new connection
        assert await wake.wait() is True
    finally:
        await wake.close()
    assert wake.conn is None


@contextlib.asynccontextmanager
async def _listening_relay(
    pool: asyncpg.Pool, bootstrap: str, topic_suffix: str, fallback_s: float
) -> AsyncIterator[OutboxRelay]:
    """A started outbox relay on the test's topics, once it listens; stopped on exit."""
    await prepare(pool)
    await ensure_topics({"bootstrap_servers": bootstrap}, list(topics(topic_suffix)))
    relay = OutboxRelay("test", pool, Publisher("test", {"bootstrap_servers": bootstrap}), fallback_s=fallback_s)
    relay.start()

    async def ready() -> bool:
        return relay.wake.listening

    try:
        await wait_for(ready)
        yield relay
    finally:
        await relay.stop()


async def test_a_write_whose_notify_never_arrives_is_relayed_within_the_fallback(
    pg_pool: asyncpg.Pool, bootstrap: str, topic_suffix: str
) -> None:
    async with _listening_relay(pg_pool, bootstrap, topic_suffix, fallback_s=1.0) as relay:
        lost = absence(1, topic_suffix)
        # written without the NOTIFY `outbox.add` sends: only the fallback poll can find it
        await pg_pool.execute(
            "INSERT INTO outbox (event_id, topic, key, header_bytes, payload) VALUES ($1, $2, $3, $4, $5)",
            lost.event_id,
            lost.topic,
            lost.key,
            pack_headers(lost.headers),
            lost.value,
        )
        await wait_for(lambda: _eq(relay.published, 1))
        assert await relay.backlog() == 0


async def _eq(value: int, expected: int) -> bool:
    return value == expected


_LOCK_HOLDER = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = hashtext('homeroom.outbox.relay')::oid"


async def test_a_relay_whose_listen_connection_dropped_listens_again_and_relays(
    pg_pool: asyncpg.Pool, bootstrap: str, topic_suffix: str
) -> None:
    # a fallback longer than the test: only a NOTIFY (or the short poll) can relay in time
    async with _listening_relay(pg_pool, bootstrap, topic_suffix, fallback_s=600.0) as relay:
        dropped = await _terminate(pg_pool, relay.wake)

        async def listening_anew_with_the_lock() -> bool:
            # the new connection listens and holds the relay's advisory lock again (a second relay stands by)
            conn = relay.wake.conn
            if not relay.wake.listening or conn is None or conn.get_server_pid() == dropped:
                return False
            holder = await pg_pool.fetchval(_LOCK_HOLDER)
            return bool(holder == conn.get_server_pid())

        await wait_for(listening_anew_with_the_lock)
        await write_to_outbox(pg_pool, [absence(i, topic_suffix) for i in range(COPY_FROM + 1)])
        await wait_for(lambda: _eq(relay.published, COPY_FROM + 1))


async def test_a_notice_backing_off_is_sent_when_due_without_a_notify(
    service_env: ServiceEnv, smtp: EmbeddedSMTP
) -> None:
    async with service_under_test(SPEC, service_env, **smtp_overrides(smtp), start_consumers=False) as svc:
        assert svc.runtime.notices is not None
        await svc.runtime.notices.stop()  # replaced below by one whose fallback outlasts the test
        async with svc.pool.acquire() as conn, conn.transaction():
            await add(conn, _transfer_notice("c-3", Recipient("district", "d-1")))
            # as a failed send leaves it: due a moment from now, and no NOTIFY will come
            await conn.execute("UPDATE notices SET attempts = 1, next_attempt_at = clock_timestamp() + interval '1 s'")
        relay = NoticeRelay(
            "noticetest",
            svc.pool,
            SmtpSettings(host=smtp.host, port=smtp.port, sender="Homeroom <notices@homeroom.invalid>"),
            AddressBook({}, "homeroom.test"),
            poll_interval_s=0.1,
            fallback_s=600.0,
        )
        relay.start()
        try:
            await mail_arrives(smtp.messages, to("district.d-1@homeroom.test"))
            assert relay.wake.channel == NOTICES
            await wait_for(lambda: _eq(relay.sent, 1))  # recorded as sent after the server took it
        finally:
            await relay.stop()


class _Sessions:
    """An aiosmtpd handler that remembers which SMTP session carried each message."""

    def __init__(self) -> None:
        self.carried: list[tuple[int, str]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.carried.append((id(session), envelope.rcpt_tos[0]))
        return "250 OK"


async def test_a_batch_of_notices_goes_out_in_one_smtp_session(service_env: ServiceEnv) -> None:
    sessions = _Sessions()
    port = free_port("127.0.0.1")
    server = Controller(sessions, hostname="127.0.0.1", port=port)
    server.start()
    try:
        async with service_under_test(
            SPEC, service_env, smtp_host="127.0.0.1", smtp_port=port, start_consumers=False
        ) as svc:
            relay = svc.runtime.notices
            assert relay is not None
            await relay.stop()  # driven by hand below
            async with svc.pool.acquire() as conn, conn.transaction():
                await add(conn, [_transfer_notice("c-4", Recipient("district", f"d-{i}")) for i in range(3)])
            assert await relay.send_due() == 3
    finally:
        server.stop()
    assert sorted(to for _, to in sessions.carried) == [f"district.d-{i}@homeroom.test" for i in range(3)]
    assert len({session for session, _ in sessions.carried}) == 1
