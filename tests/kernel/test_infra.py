"""The embedded broker and database start, answer, stop cleanly, and leave no processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from homeroom.storage import ensure_database, migrate
from homeroom_dev.infra.broker import EmbeddedBroker
from homeroom_dev.infra.postgres import EmbeddedPostgres


async def test_postgres_answers_and_creates_databases(postgres: EmbeddedPostgres) -> None:
    url = postgres.url("homeroom_infra_check")
    await ensure_database(url)
    await ensure_database(url)  # a second start finds it there
    conn = await asyncpg.connect(url)
    version = await conn.fetchval("SHOW server_version_num")
    await conn.close()
    assert int(version) >= 160000


async def test_broker_round_trips_a_message(bootstrap: str, topic_suffix: str) -> None:
    topic = f"infra.{topic_suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, b"hello", key=b"k")
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"g{topic_suffix}", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 15)
    finally:
        await consumer.stop()
    assert message.value == b"hello"


async def test_migrations_apply_once_in_order(pg_pool: asyncpg.Pool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "001_first.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "002_second.sql").write_text("INSERT INTO a VALUES (1);")
    assert await migrate(pg_pool, "svc", tmp_path) == ["001_first.sql", "002_second.sql"]
    assert await migrate(pg_pool, "svc", tmp_path) == []
    assert await pg_pool.fetchval("SELECT count(*) FROM a") == 1
    assert await pg_pool.fetchval("SELECT to_regclass('outbox') IS NOT NULL")


async def test_badly_named_migration_is_refused(pg_pool: asyncpg.Pool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "first.sql").write_text("SELECT 1;")
    try:
        await migrate(pg_pool, "svc", tmp_path)
    except ValueError as exc:
        assert "first.sql" in str(exc)
    else:
        raise AssertionError("a migration without a number was applied")


def test_servers_die_with_their_parent() -> None:
    """kill -9 of the Python process that started them must not orphan the servers."""
    script = textwrap.dedent(
        """
        import sys, time
        from homeroom_dev.infra.broker import EmbeddedBroker
        from homeroom_dev.infra.postgres import EmbeddedPostgres
        b = EmbeddedBroker().start(); p = EmbeddedPostgres().start()
        print(b._process.pid, p._process.pid, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    broker_pid, pg_pid = (int(x) for x in child.stdout.readline().split())
    assert psutil.pid_exists(broker_pid) and psutil.pid_exists(pg_pid)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 20
    alive = {broker_pid, pg_pid}
    while alive and time.monotonic() < deadline:
        alive = {
            pid for pid in alive if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        }
        time.sleep(0.1)
    assert not alive, f"orphaned server processes: {alive}"


def test_restart_on_same_port() -> None:
    broker = EmbeddedBroker().start()
    port = broker.port
    broker.stop()
    assert not broker.running
    broker.start()
    assert broker.running and broker.port == port
    broker.stop()
    pg = EmbeddedPostgres().start()
    pg.stop()
    pg.start()
    assert pg.running
    pg.cleanup()
    assert not pg.base_dir.exists()
