"""Least privilege, proved against the running services' own database logins.

Every service runs as its login role (`homeroom_<service>`), migrated by the owner role;
the login owns nothing. Whatever someone holding that login's password tries against the
append-only tables (the audit log, records' read log, consent's decisions and agreement
history, transfer's case history, an incident's history, frozen scopes, letters and
reports, published statistics snapshots) is refused by PostgreSQL: UPDATE, DELETE,
TRUNCATE, ALTER, disabling or dropping the triggers, and switching triggers off with
session_replication_role. So are creating tables and becoming the owner. A table added by
a later migration gets the same treatment without a grant of its own.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from homeroom.service import ServiceSpec
from homeroom.storage import (
    OWNER_ROLE,
    Connection,
    bootstrap_roles,
    create_pool,
    database_url,
    migrate,
    privilege_problems,
    with_user,
)
from homeroom_dev.infra.postgres import EmbeddedPostgres
from services.audit.service import SERVICE as AUDIT
from services.consent.service import SERVICE as CONSENT
from services.incidents.service import SERVICE as INCIDENTS
from services.ingest.service import SERVICE as INGEST
from services.records.service import SERVICE as RECORDS
from services.reports.service import SERVICE as REPORTS
from services.transfer.service import SERVICE as TRANSFER
from tests.harness import ServiceEnv, drop_database, new_database, service_under_test

APPEND_ONLY: list[tuple[ServiceSpec, tuple[str, ...]]] = [
    (AUDIT, ("entries", "tree_nodes", "tree_heads")),
    (RECORDS, ("read_log",)),
    (CONSENT, ("agreement_history", "decisions", "linking_attempts")),
    (TRANSFER, ("transfer_history",)),
    (INGEST, ()),
    (
        INCIDENTS,
        (
            "incident_history",
            "contractor_notices",
            "scope_versions",
            "scope_bundle_chunks",
            "scope_students",
            "containment_steps",
            "reports",
            "letters",
            "publications",
        ),
    ),
    (REPORTS, ("snapshots",)),
]


def attacks(table: str, column: str) -> list[str]:
    return [
        f'UPDATE "{table}" SET "{column}" = "{column}"',  # noqa: S608 (our own identifiers)
        f'DELETE FROM "{table}"',  # noqa: S608
        f'TRUNCATE "{table}"',
        f'ALTER TABLE "{table}" ADD COLUMN rewritten int',
        f'ALTER TABLE "{table}" DISABLE TRIGGER ALL',
        f'ALTER TABLE "{table}" DISABLE TRIGGER "{table}_append_only"',
        f'DROP TRIGGER "{table}_append_only" ON "{table}"',
        f'DROP TABLE "{table}"',
        f'ALTER TABLE "{table}" OWNER TO CURRENT_USER',
    ]


EVERYWHERE = [
    "SET session_replication_role = replica",
    "CREATE TABLE shadow (i int)",
    f"SET ROLE {OWNER_ROLE}",
    "ALTER FUNCTION homeroom_refuse_change() RENAME TO harmless",
    "DROP FUNCTION homeroom_refuse_change() CASCADE",
]


async def _refused(conn: Connection, statement: str) -> None:
    try:
        async with conn.transaction():
            await conn.execute(statement)
    except (asyncpg.InsufficientPrivilegeError, asyncpg.exceptions.InvalidParameterValueError) as exc:
        assert "permission denied" in str(exc) or "must be owner" in str(exc) or "append-only" in str(exc), exc
        return
    raise AssertionError(f"{statement!r} succeeded as the service's login")


@pytest.mark.parametrize(("spec", "tables"), APPEND_ONLY, ids=[s.name for s, _ in APPEND_ONLY])
async def test_a_service_login_cannot_rewrite_history(
    service_env: ServiceEnv, spec: ServiceSpec, tables: tuple[str, ...]
) -> None:
    async with service_under_test(spec, service_env, start_consumers=False) as svc:
        settings = svc.runtime.settings
        assert settings.database_url.startswith(f"postgresql://homeroom_{spec.name}@")
        assert await privilege_problems(svc.pool) == []
        attempts = 0
        async with svc.pool.acquire() as conn:
            for table in tables:
                column = await conn.fetchval(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = $1 ORDER BY ordinal_position",
                    table,
                )
                assert column, f"{spec.name} has no table {table}"
                for statement in attacks(table, column):
                    await _refused(conn, statement)
                    attempts += 1
                rights = {
                    p: await conn.fetchval("SELECT has_table_privilege(current_user, $1, $2)", table, p)
                    for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES")
                }
                assert rights == {
                    "SELECT": True,
                    "INSERT": True,
                    "UPDATE": False,
                    "DELETE": False,
                    "TRUNCATE": False,
                    "TRIGGER": False,
                    "REFERENCES": False,
                }, table
            for statement in EVERYWHERE:
                await _refused(conn, statement)
                attempts += 1
            # The roles the service SETs inside transactions are no stronger.
            for role in spec.database_roles:
                for table in tables:
                    column = await conn.fetchval(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
                    )
                    for statement in attacks(table, column)[:5]:
                        await _refused(conn, f'SET LOCAL ROLE "{role}"; {statement}')
                        attempts += 1
            owned = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            )
            assert owned == 0
        print(f"{spec.name}: {attempts} attempts refused")


async def test_tables_from_a_later_migration_are_covered_without_a_grant_of_their_own(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Another branch adds a table (and an append-only one) in a new migration: the runner's
    grants cover both on the next start, with nothing in the migration about roles."""
    url = await new_database(postgres, "later")
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.mkdir()
    (first / "001_base.sql").write_text("CREATE TABLE base (id int PRIMARY KEY);")
    second.mkdir()
    (second / "001_base.sql").write_text("CREATE TABLE base (id int PRIMARY KEY);")
    (second / "002_new.sql").write_text(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);\n"
        "CREATE TABLE happenings (id bigserial PRIMARY KEY, what text);\n"
        "SELECT homeroom_append_only('happenings');\n"
    )
    owner = await create_pool(with_user(url, OWNER_ROLE), max_size=1)
    login = "homeroom_ingest"
    try:
        await migrate(owner, "later", first, grantee=login)
        await migrate(owner, "later", second, grantee=login)
    finally:
        await owner.close()
    conn = await asyncpg.connect(with_user(url, login))
    try:
        await conn.execute("INSERT INTO notes VALUES (1, 'a')")
        await conn.execute("UPDATE notes SET body = 'b'")
        await conn.execute("INSERT INTO happenings (what) VALUES ('x')")
        for statement in [*attacks("happenings", "what"), *attacks("notes", "body")[2:5]]:
            await _refused(conn, statement)
        assert await conn.fetchval("SELECT count(*) FROM happenings") == 1
    finally:
        await conn.close()
        await drop_database(postgres, url)


async def test_a_role_a_service_sets_is_grantable_by_the_owner_whoever_created_it(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Roles are cluster-wide: once the superuser has created a service's SET role (a test
    migrating as the superuser, say), the owner could no longer grant it to the login
    (PostgreSQL 16+ wants ADMIN): 26 audit tests errored that way in one full run. The
    bootstrap gives the owner ADMIN on each such role, so the migration's grant works."""
    role = f"homeroom_set_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url(postgres.server_url, "postgres"))
    try:
        await admin.execute(f'CREATE ROLE "{role}" NOLOGIN')  # created by the superuser, not the owner
        url = await new_database(postgres, "setrole")
        migrations = tmp_path / "m"
        migrations.mkdir()
        (migrations / "001_base.sql").write_text("CREATE TABLE base (id int PRIMARY KEY);")
        owner = await create_pool(with_user(url, OWNER_ROLE), max_size=1)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await migrate(owner, "setrole", migrations, grantee="homeroom_ingest", member_of=[role])
            await bootstrap_roles(postgres.server_url, ["ingest"], [role])
            await migrate(owner, "setrole", migrations, grantee="homeroom_ingest", member_of=[role])
        finally:
            await owner.close()
        assert await admin.fetchval(
            "SELECT pg_has_role('homeroom_ingest', $1, 'SET') AND NOT pg_has_role('homeroom_ingest', $1, 'USAGE')", role
        )
        await drop_database(postgres, url)
    finally:
        await admin.execute(f'REVOKE "{role}" FROM homeroom_ingest')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()
