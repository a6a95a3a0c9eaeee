"""Real infrastructure for every test: an embedded PostgreSQL and a Tansu broker.

Both start once per test session (about half a second together), and once per worker
when `./run test` runs two pytest-xdist workers. Each test that asks for a database gets
a fresh one, so tests never see each other's rows; each test that asks for topics gets
uniquely named ones for the same reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from homeroom.infra.broker import EmbeddedBroker
from homeroom.infra.postgres import EmbeddedPostgres
from homeroom.infra.smtp import EmbeddedSMTP
from homeroom.storage import create_pool
from tests.harness import ServiceEnv, drop_database, new_database

# Tests that start the whole stack as processes (seven of them plus PostgreSQL and the
# broker) run one after another on one worker: two stacks at once on two cores would turn
# their generous timeouts into flakes. The other worker takes everything else meanwhile.
_WHOLE_STACK = ("tests/e2e/", "tests/services/portal/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in item.nodeid for part in _WHOLE_STACK):
            item.add_marker(pytest.mark.xdist_group("whole-stack"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def bootstrap(broker: EmbeddedBroker) -> str:
    if not broker.running:  # a fault test may have stopped it
        broker.start()
    return broker.bootstrap_servers


@pytest.fixture
async def fresh_database_url(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """URL of a new, empty database, dropped after the test."""
    url = await new_database(postgres)
    yield url
    await drop_database(postgres, url)


@pytest.fixture
async def pg_pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_database_url, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
def topic_suffix() -> str:
    """Append to topic names so tests sharing one broker never share a topic."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def service_env(
    postgres: EmbeddedPostgres, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceEnv]:
    """What the services in one test share: the broker, a keys database, secrets, the dev issuer."""
    keys_url = await new_database(postgres, "keys")
    env = ServiceEnv(postgres, bootstrap, tmp_path_factory.mktemp("secrets"), keys_url)
    yield env
    for url in [*env.databases, keys_url]:
        await drop_database(postgres, url)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[EmbeddedSMTP]:
    """A real SMTP server on a free local port; `smtp.messages()` is what it received."""
    with EmbeddedSMTP(tmp_path / "mail.mbox") as server:
        yield server
