"""PostgreSQL for every service: one database each, migrations, and the kernel's tables.

Every service database carries the kernel's own tables (the outbox and the consumer
idempotency table) next to the service's, because exactly-once effects need the event
write, the state change and the "already applied" mark in one local transaction.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

# A connection as handlers receive it: a plain one, or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

KERNEL_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id            bigserial PRIMARY KEY,
    event_id      text        NOT NULL UNIQUE,
    topic         text        NOT NULL,
    key           bytea,
    header_keys   text[]      NOT NULL,  -- the Kafka record headers as the driver decodes them:
    header_values bytea[]     NOT NULL,  -- nothing for the relay to parse
    payload       bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Databases made before the headers became arrays: convert the waiting rows in place.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'outbox' AND column_name = 'headers') THEN
        ALTER TABLE outbox ADD COLUMN header_keys text[], ADD COLUMN header_values bytea[];
        UPDATE outbox SET
            header_keys = ARRAY(SELECT h.v->>0 FROM jsonb_array_elements(headers) WITH ORDINALITY h(v, n) ORDER BY n),
            header_values = ARRAY(SELECT decode(h.v->>1, 'hex')
                                  FROM jsonb_array_elements(headers) WITH ORDINALITY h(v, n) ORDER BY n);
        ALTER TABLE outbox DROP COLUMN headers;
        ALTER TABLE outbox ALTER COLUMN header_keys SET NOT NULL, ALTER COLUMN header_values SET NOT NULL;
    END IF;
END
$$;
-- The relay's lanes read one topic at a time in id order.
CREATE INDEX IF NOT EXISTS outbox_topic_id ON outbox (topic, id);
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    partition    int         NOT NULL,
    "offset"     bigint      NOT NULL,
    outcome      text        NOT NULL,  -- applied | dead_lettered
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
-- The next offset to apply per consumer group and partition, written in the same transaction
-- as the state it covers; consumers seek here on assignment (homeroom/bus/consumer.py).
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group text   NOT NULL,
    topic          text   NOT NULL,
    partition      int    NOT NULL,
    next_offset    bigint NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
"""

# Failures of the infrastructure, not of the work: the database is down or restarting.
# Retrying the work later helps; recording it as failed (or dead-lettering an event)
# would lose it. Consumers and background jobs stop, back off and try again.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

# The largest value a bigint column or parameter takes: API cursors and offsets are bounded
# by it, since a larger one would overflow the driver (a 500 instead of a 422).
BIGINT_MAX = 2**63 - 1

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def columns(rows: Sequence[Any], *names: str) -> list[list[Any]]:
    """Those attributes of each row, one list per attribute: the arrays a multi-row statement
    over `unnest($1::text[], $2::date[], ...)` takes."""
    return [[getattr(row, name) for row in rows] for name in names]


def database_url(server_url: str, database: str) -> str:
    """Replace the database in a PostgreSQL URL (query string, e.g. sslmode, kept)."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def ensure_database(url: str) -> None:
    """Create the URL's database if it does not exist (needs CREATEDB on the server)."""
    name = urlsplit(url).path.lstrip("/")
    if not _NAME.match(name):
        raise ValueError(f"refusing to create database with unusual name {name!r}")
    admin = await asyncpg.connect(database_url(url, "postgres"))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another process may win the race: PostgreSQL reports that as a duplicate database
            # or, when both got past the catalogue check together, as a unique violation.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


class SessionConnection(asyncpg.Connection):
    """A pooled connection that knows whether it changed session state the pool must undo.

    Everything Homeroom sets per use is transaction-scoped (`set_config(..., true)`, `SET
    LOCAL`, transaction advisory locks), so most releases need no server round trip; asyncpg's
    default reset sends four statements (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) on
    every release. A connection that LISTENs, or is marked by `keeps_session_state` (session
    advisory locks), is reset in full."""

    session_state_changed = False

    async def add_listener(self, channel: str, callback: Any) -> None:
        self.session_state_changed = True
        await super().add_listener(channel, callback)


def keeps_session_state(conn: Connection) -> None:
    """Mark a borrowed connection as holding session state (a session advisory lock ...),
    so the pool resets it in full when it is released."""
    raw = getattr(conn, "_con", conn)  # a pool's proxy wraps the connection
    if isinstance(raw, SessionConnection):
        raw.session_state_changed = True


async def _reset_if_changed(conn: asyncpg.Connection) -> None:
    # asyncpg has already rolled back any open transaction and dropped Python-side listeners.
    if isinstance(conn, SessionConnection) and conn.session_state_changed:
        await conn.execute(conn.get_reset_query())
        conn.session_state_changed = False


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=60,
        connection_class=SessionConnection,
        reset=_reset_if_changed,
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, service: str, migrations_dir: Path | None, extra_schema: str = "") -> list[str]:
    """Apply the kernel schema and the service's numbered SQL files, once each, in order.

    Files are named NNN_description.sql. An advisory lock serialises concurrent starts of
    several instances of one service.
    """
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('homeroom.migrate'))")
        await conn.execute(KERNEL_SCHEMA)
        if extra_schema:
            await conn.execute(extra_schema)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   service text NOT NULL, version int NOT NULL, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))"""
        )
        done = {
            r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations WHERE service=$1", service)
        }
        files = sorted(migrations_dir.glob("*.sql")) if migrations_dir and migrations_dir.exists() else []
        for path in files:
            match = re.match(r"^(\d+)_(.+)\.sql$", path.name)
            if not match:
                raise ValueError(f"migration file {path.name} is not named NNN_description.sql")
            version = int(match.group(1))
            if version in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute(
                "INSERT INTO schema_migrations (service, version, name) VALUES ($1, $2, $3)",
                service,
                version,
                match.group(2),
            )
            applied.append(path.name)
    if applied:
        log.info("migrations applied", extra={"service": service, "migrations": applied})
    return applied
