"""The kernel's own tables (outbox, consumer marks, notices, data keys) and its district-isolation
policy are numbered migrations (homeroom/migrations/), recorded in schema_migrations like a
service's, and a database made by the code that ran their DDL on every start (no such record)
migrates without losing a row."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from homeroom.crypto import ensure_schema
from homeroom.storage import DATA_KEYS, KERNEL, NOTICES, migrate


def _recorded(rows: list[asyncpg.Record]) -> set[tuple[str, int, str]]:
    return {(r["service"], r["version"], r["name"]) for r in rows}


async def test_kernel_tables_are_numbered_migrations_recorded_once(pg_pool: asyncpg.Pool, tmp_path: Path) -> None:
    (tmp_path / "001_first.sql").write_text("CREATE TABLE a (x int);")
    assert await migrate(pg_pool, "svc", tmp_path, kernel=(KERNEL, NOTICES)) == ["001_first.sql"]
    await ensure_schema(pg_pool)
    for _ in range(2):  # every later start finds them applied
        assert await migrate(pg_pool, "svc", tmp_path, kernel=(KERNEL, NOTICES)) == []
        await ensure_schema(pg_pool)
    rows = await pg_pool.fetch("SELECT service, version, name FROM schema_migrations")
    assert _recorded(rows) == {
        ("homeroom.kernel", 1, "outbox_and_consumer_marks"),
        ("homeroom.kernel", 2, "district_isolation"),
        ("homeroom.kernel", 3, "statement_triggers"),
        ("homeroom.kernel", 4, "district_entities"),
        ("homeroom.kernel", 5, "tree_states"),
        ("homeroom.notices", 1, "notices"),
        ("homeroom.data_keys", 1, "data_keys"),
        ("svc", 1, "first"),
    }
    for table in ("outbox", "processed_events", "consumer_offsets", "append_only_tables", "notices", "data_keys"):
        assert await pg_pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table), table


async def test_a_service_that_sends_no_notices_gets_no_notices_table(pg_pool: asyncpg.Pool) -> None:
    await migrate(pg_pool, "quiet", None)
    assert await pg_pool.fetchval("SELECT to_regclass('outbox') IS NOT NULL")
    assert not await pg_pool.fetchval("SELECT to_regclass('notices') IS NOT NULL")


async def test_a_database_made_before_kernel_migrations_migrates_keeping_its_rows(
    pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # What the old code left: the kernel's DDL run directly (no schema_migrations row for it),
    # the service's own migration recorded, and rows waiting in each kernel table.
    for _, directory in (KERNEL, NOTICES, DATA_KEYS):
        for path in sorted(directory.glob("*.sql")):
            await pg_pool.execute(path.read_text())
    (tmp_path / "001_first.sql").write_text("CREATE TABLE a (x int);")
    await pg_pool.execute(
        """CREATE TABLE schema_migrations (
               service text NOT NULL, version int NOT NULL, name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version));
           CREATE TABLE a (x int);
           INSERT INTO schema_migrations (service, version, name) VALUES ('svc', 1, 'first');
           INSERT INTO outbox (event_id, topic, key, header_bytes, payload) VALUES ('e-1', 't', 'k', '', 'p');
           INSERT INTO processed_events (consumer, event_id, topic, partition, "offset", outcome)
               VALUES ('c', 'e-0', 't', 0, 7, 'applied');
           INSERT INTO notices (notice_id, recipient_role, recipient_id, kind, subject, body, cause)
               VALUES ('n-1', 'parent', 'p-1', 'k', 's', 'b', 'c');
           INSERT INTO data_keys (district_id, scope, subject, kek_version, wrapped)
               VALUES ('d-1', 'student', 's-1', 1, 'w');"""
    )
    assert await migrate(pg_pool, "svc", tmp_path, kernel=(KERNEL, NOTICES)) == []
    await ensure_schema(pg_pool)
    rows = await pg_pool.fetch("SELECT service, version, name FROM schema_migrations")
    assert {(r["service"], r["version"]) for r in rows} == {
        ("homeroom.kernel", 1),
        ("homeroom.kernel", 2),
        ("homeroom.kernel", 3),
        ("homeroom.kernel", 4),
        ("homeroom.kernel", 5),
        ("homeroom.notices", 1),
        ("homeroom.data_keys", 1),
        ("svc", 1),
    }
    assert await pg_pool.fetchval("SELECT payload FROM outbox WHERE event_id = 'e-1'") == b"p"
    assert await pg_pool.fetchval("""SELECT "offset" FROM processed_events WHERE event_id = 'e-0'""") == 7
    assert await pg_pool.fetchval("SELECT recipient_id FROM notices WHERE notice_id = 'n-1'") == "p-1"
    assert await pg_pool.fetchval("SELECT wrapped FROM data_keys WHERE subject = 's-1'") == b"w"


async def test_district_isolation_lets_a_session_see_and_write_only_the_district_it_entered(
    pg_pool: asyncpg.Pool,
) -> None:
    # The policy every district-keyed table rests on, written once in the kernel's migration 002.
    await migrate(pg_pool, "svc", None)
    role = f"iso_app_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide: one of this test's own
    await pg_pool.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        await pg_pool.execute("CREATE TABLE pupils (district_id text NOT NULL, name text NOT NULL)")
        await pg_pool.execute("SELECT homeroom_district_isolation('pupils', 'SELECT, INSERT', $1)", role)
        await pg_pool.execute("INSERT INTO pupils VALUES ('d-a', 'Ada'), ('d-b', 'Bo')")  # as the superuser

        async def as_district(district: str | None, query: str) -> object:
            async with pg_pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {role}")
                if district is not None:
                    await conn.execute("SELECT set_config('homeroom.district_id', $1, true)", district)
                return await conn.fetchval(query)

        assert await as_district("d-a", "SELECT string_agg(name, ',') FROM pupils") == "Ada"
        assert await as_district("d-b", "SELECT string_agg(name, ',') FROM pupils") == "Bo"
        assert await as_district(None, "SELECT count(*) FROM pupils") == 0  # no district entered: none
        assert await as_district("d-a", "INSERT INTO pupils VALUES ('d-a', 'Cy') RETURNING name") == "Cy"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await as_district("d-a", "INSERT INTO pupils VALUES ('d-b', 'Di') RETURNING name")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # granted SELECT and INSERT only
            await as_district("d-a", "DELETE FROM pupils RETURNING name")
        forced = await pg_pool.fetchval("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'pupils'")
        assert forced  # the table's owner obeys the policy too
    finally:
        await pg_pool.execute("DROP TABLE IF EXISTS pupils")
        await pg_pool.execute(f"DROP ROLE {role}")


async def test_a_district_entity_table_has_the_key_first_and_deleted_and_updated_at_last(
    pg_pool: asyncpg.Pool,
) -> None:
    # The convention records' schools, sessions, courses, classes and staff share (kernel 004).
    await migrate(pg_pool, "svc", None)
    await pg_pool.execute(
        """SELECT homeroom_district_entity('rooms', 'room_id', $columns$
               name      text NOT NULL DEFAULT '',  -- a comment in the list is harmless
               capacity  int
           $columns$)"""
    )
    try:
        columns = await pg_pool.fetch(
            """SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'rooms' ORDER BY ordinal_position"""
        )
        assert [(c["column_name"], c["data_type"], c["is_nullable"], c["column_default"]) for c in columns] == [
            ("district_id", "text", "NO", None),
            ("room_id", "text", "NO", None),
            ("name", "text", "NO", "''::text"),
            ("capacity", "integer", "YES", None),
            ("deleted", "boolean", "NO", "false"),
            ("updated_at", "timestamp with time zone", "NO", "clock_timestamp()"),
        ]
        key = await pg_pool.fetchval(
            """SELECT pg_get_constraintdef(oid) FROM pg_constraint
               WHERE conrelid = 'rooms'::regclass AND contype = 'p'"""
        )
        assert key == "PRIMARY KEY (district_id, room_id)"
        row = await pg_pool.fetchrow("INSERT INTO rooms (district_id, room_id) VALUES ('d-a', 'r-1') RETURNING *")
        assert row is not None
        assert (row["name"], row["deleted"], row["updated_at"] is not None) == ("", False, True)
        with pytest.raises(asyncpg.UniqueViolationError):  # one row per district and key
            await pg_pool.execute("INSERT INTO rooms (district_id, room_id) VALUES ('d-a', 'r-1')")
        await pg_pool.execute("INSERT INTO rooms (district_id, room_id) VALUES ('d-b', 'r-1')")  # another district's
    finally:
        await pg_pool.execute("DROP TABLE IF EXISTS rooms")


async def test_a_tree_states_table_keeps_a_size_and_a_sha256_root_before_its_own_columns(
    pg_pool: asyncpg.Pool,
) -> None:
    # The pair audit's signed tree heads and cosigned checkpoints share (kernel 005).
    await migrate(pg_pool, "svc", None)
    for _ in range(2):  # IF NOT EXISTS, like the log's other tables
        await pg_pool.execute("SELECT homeroom_tree_states('views', 'seen_by text NOT NULL')")
    try:
        columns = await pg_pool.fetch(
            """SELECT column_name, data_type FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'views' ORDER BY ordinal_position"""
        )
        assert [(c["column_name"], c["data_type"]) for c in columns] == [
            ("id", "bigint"),
            ("size", "bigint"),
            ("root", "bytea"),
            ("seen_by", "text"),
        ]
        first = await pg_pool.fetchval(
            "INSERT INTO views (size, root, seen_by) VALUES (0, $1, 'w') RETURNING id", bytes(32)
        )
        second = await pg_pool.fetchval(
            "INSERT INTO views (size, root, seen_by) VALUES (7, $1, 'w') RETURNING id", bytes(32)
        )
        assert second == first + 1
        with pytest.raises(asyncpg.CheckViolationError, match="views_size_check"):
            await pg_pool.execute("INSERT INTO views (size, root, seen_by) VALUES (-1, $1, 'w')", bytes(32))
        with pytest.raises(asyncpg.CheckViolationError, match="views_root_check"):  # a SHA-256 root: 32 bytes
            await pg_pool.execute("INSERT INTO views (size, root, seen_by) VALUES (1, $1, 'w')", bytes(31))
        with pytest.raises(asyncpg.NotNullViolationError):
            await pg_pool.execute("INSERT INTO views (size, seen_by) VALUES (1, 'w')")
    finally:
        await pg_pool.execute("DROP TABLE IF EXISTS views")
