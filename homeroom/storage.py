"""PostgreSQL for every service: one database each, migrations, the kernel's tables, and
the two roles a service's database has.

Every service database carries the kernel's own tables (the outbox and the consumer
idempotency table) next to the service's, because exactly-once effects need the event
write, the state change and the "already applied" mark in one local transaction. They are
numbered migrations too (homeroom/migrations/: `kernel`, `notices`, `data_keys`), applied
before the service's own.

Least privilege: migrations run as an owner role (`homeroom_owner` in the embedded stack
and in docker-compose), and a service runs as its own login role (`homeroom_<service>`)
that owns nothing and so cannot ALTER, DROP, disable triggers or TRUNCATE; nor can it
set `session_replication_role` (superuser only). After applying migrations the runner
grants the login role what it needs on *every* table of the database, so a table added in
a new migration needs no grant of its own: DML on ordinary tables, only SELECT and INSERT
on the tables a migration declared append-only with `SELECT homeroom_append_only('t')`
(which also installs triggers refusing UPDATE, DELETE and TRUNCATE).
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


# The role migrations run as, and the login role of each service (docs/adding-a-service.md).
OWNER_ROLE = "homeroom_owner"
_READ_ONLY_TABLES = frozenset({"schema_migrations", "append_only_tables"})


def login_role(service: str) -> str:
    """The database login role a service runs as: it owns nothing."""
    return f"homeroom_{service}"


def with_user(url: str, user: str) -> str:
    """The same PostgreSQL URL, connecting as ``user`` (password, if any, dropped)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))


def url_user(url: str) -> str | None:
    return urlsplit(url).username


async def bootstrap_roles(superuser_server_url: str, services: Sequence[str], set_roles: Sequence[str] = ()) -> None:
    """Create the owner role and one login role per service (embedded stack and tests; in
    docker-compose `deploy/postgres/roles.sh` does the same). Idempotent and safe to race.

    ``set_roles`` are the roles services SET inside transactions (`ServiceSpec.database_roles`,
    e.g. audit's writer). Their migrations create them if missing, but roles are cluster-wide:
    once a superuser has created one (a test migrating as the superuser, say), the owner may
    no longer grant it to a login (PostgreSQL 16+ wants the ADMIN option). So they are created
    here and the owner is given ADMIN on each, whoever created them."""
    wanted = [(OWNER_ROLE, "LOGIN NOSUPERUSER CREATEDB CREATEROLE")]
    wanted += [(login_role(s), "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION") for s in services]
    wanted += [(role, "NOLOGIN") for role in set_roles]
    conn = await asyncpg.connect(database_url(superuser_server_url, "postgres"))
    try:
        for role, attributes in wanted:
            if not _NAME.match(role):
                raise ValueError(f"unusual role name {role!r}")
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                continue
            with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                await conn.execute(f'CREATE ROLE "{role}" {attributes}')
        for role in set_roles:
            await conn.execute(f'GRANT "{role}" TO "{OWNER_ROLE}" WITH ADMIN TRUE, INHERIT FALSE, SET FALSE')
    finally:
        await conn.close()


async def grant_to_login(conn: Connection, grantee: str, member_of: Sequence[str] = ()) -> None:
    """What a service's login role may do on this database, re-applied on every start, so
    tables added by any migration (even one written concurrently in another branch) are
    covered: DML on ordinary tables, SELECT and INSERT only on append-only ones, never
    TRUNCATE, REFERENCES or TRIGGER; nothing is owned, so nothing can be altered."""
    role = f'"{grantee}"'
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
    await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
    await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    append_only: set[str] = set()
    if await conn.fetchval("SELECT to_regclass('append_only_tables') IS NOT NULL"):
        append_only = {r["table_name"] for r in await conn.fetch("SELECT table_name FROM append_only_tables")}
    tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]

    def rights_for(table: str) -> str:
        if table in _READ_ONLY_TABLES:
            return "SELECT"
        if table in append_only:
            return "SELECT, INSERT"
        return "SELECT, INSERT, UPDATE, DELETE"

    for table in tables:
        await conn.execute(f'REVOKE ALL ON TABLE "{table}" FROM {role}')
        await conn.execute(f'GRANT {rights_for(table)} ON TABLE "{table}" TO {role}')
    await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    # A role the service SETs inside transactions (records' row-level security role) keeps what
    # its migrations granted it; a table nobody granted it yet (one added by a later migration)
    # gets the same rights as the login, so new tables work under it too.
    for member in member_of:
        for table in tables:
            granted = await conn.fetchval(
                "SELECT has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE')", member, f'public."{table}"'
            )
            if not granted:
                await conn.execute(f'GRANT {rights_for(table)} ON TABLE "{table}" TO "{member}"')
        await conn.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{member}"')
    # Nobody but the owner may change an append-only table, whatever a migration granted
    # (a role the service SETs, or inherits through membership, included).
    for row in await conn.fetch(
        """SELECT DISTINCT c.relname, a.grantee::regrole::text AS grantee
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
           WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1::text[])
             AND a.grantee <> c.relowner
             AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES')""",
        sorted(append_only),
    ):
        who = "PUBLIC" if row["grantee"] == "-" else f'"{row["grantee"]}"'
        await conn.execute(
            f'REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON TABLE "{row["relname"]}" FROM {who}'
        )
    await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    # Tables the owner creates between two starts (by hand, or by a newer instance's
    # migration) are usable at once; the next start narrows append-only ones.
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
    )
    await conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}")
    for member in member_of:  # roles the service SETs inside its transactions (e.g. records' RLS role)
        # SET only, never INHERIT: the login's own rights stay exactly the ones granted above.
        await conn.execute(f'GRANT "{member}" TO {role} WITH INHERIT FALSE, SET TRUE')


async def privilege_problems(conn: Connection | asyncpg.Pool) -> list[str]:
    """Why the connected role is more than a least-privileged service login (empty if it is not)."""
    row = await conn.fetchrow(
        """SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
                  (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid
                     AND c.relnamespace = 'public'::regnamespace) AS owned,
                  has_schema_privilege(current_user, 'public', 'CREATE') AS can_create
           FROM pg_roles r WHERE r.rolname = current_user"""
    )
    assert row is not None
    problems = []
    for flag, what in (
        ("rolsuper", "is a superuser"),
        ("rolcreaterole", "may create roles"),
        ("rolcreatedb", "may create databases"),
        ("rolbypassrls", "bypasses row-level security"),
    ):
        if row[flag]:
            problems.append(what)
    if row["owned"]:
        problems.append(f"owns {row['owned']} tables, indexes or sequences")
    if row["can_create"]:
        problems.append("may create objects in schema public")
    return problems


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


# The kernel's own tables, under numbered migrations like every service's (homeroom/migrations/):
# each set is recorded in schema_migrations under its own name, so a service's versions and
# the kernel's never collide. Every file is idempotent DDL, so databases made before these
# were numbered (the same DDL run on every start) migrate without a change.
KERNEL_MIGRATIONS = Path(__file__).parent / "migrations"
KERNEL = ("homeroom.kernel", KERNEL_MIGRATIONS / "kernel")  # outbox, consumer marks: every service database
NOTICES = ("homeroom.notices", KERNEL_MIGRATIONS / "notices")  # services that send notices
DATA_KEYS = ("homeroom.data_keys", KERNEL_MIGRATIONS / "data_keys")  # the keys database

MigrationSet: TypeAlias = tuple[str, Path]


async def migrate(
    db: asyncpg.Pool | Connection,
    service: str,
    migrations_dir: Path | None,
    extra_schema: str = "",
    *,
    grantee: str | None = None,
    member_of: Sequence[str] = (),
    kernel: Sequence[MigrationSet] = (KERNEL,),
) -> list[str]:
    """Apply the kernel's migrations (``kernel``) and the service's numbered SQL files, once
    each, in order, then (given the service's login role as ``grantee``) grant it what
    `grant_to_login` says. The service's applied file names are returned.

    Files are named NNN_description.sql. An advisory lock serialises concurrent starts of
    several instances of one service.
    """
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await migrate(
                conn, service, migrations_dir, extra_schema, grantee=grantee, member_of=member_of, kernel=kernel
            )
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(hashtext('homeroom.migrate'))")
        kernel_applied = await apply_kernel_migrations(db, kernel)
        if extra_schema:
            await db.execute(extra_schema)
        applied = await _apply(db, service, migrations_dir)
        if grantee:
            await grant_to_login(db, grantee, member_of)
    if applied or kernel_applied:
        log.info("migrations applied", extra={"service": service, "migrations": kernel_applied + applied})
    return applied


async def apply_kernel_migrations(conn: Connection, kernel: Sequence[MigrationSet]) -> list[str]:
    """Create schema_migrations if missing and apply each kernel set's new files (inside the
    caller's transaction and lock); the applied ones as ``set/file``."""
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               service text NOT NULL, version int NOT NULL, name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))"""
    )
    applied: list[str] = []
    for name, directory in kernel:
        applied += [f"{name}/{file}" for file in await _apply(conn, name, directory)]
    return applied


async def _apply(conn: Connection, owner: str, migrations_dir: Path | None) -> list[str]:
    """Apply ``owner``'s files not yet in schema_migrations, in version order; their names."""
    applied: list[str] = []
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations WHERE service=$1", owner)}
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
            owner,
            version,
            match.group(2),
        )
        applied.append(path.name)
    return applied
