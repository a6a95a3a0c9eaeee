"""Real infrastructure for every test: an embedded PostgreSQL and a Tansu broker.

Both start once per test session (about half a second together), and once per worker
when `./run test` runs its three pytest-xdist workers. Each test that asks for a database gets
a fresh one, so tests never see each other's rows; each test that asks for topics gets
uniquely named ones for the same reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from _pytest.nodeid import NodeId

from homeroom.storage import create_pool
from homeroom_dev.infra.broker import EmbeddedBroker
from homeroom_dev.infra.postgres import EmbeddedPostgres
from homeroom_dev.infra.smtp import EmbeddedSMTP
from homeroom_dev.scenario import Scenario
from homeroom_dev.stack import Stack
from tests.harness import ServiceEnv, drop_database, new_database
from tests.stacks import DemoStack, child_processes, start_prometheus

# Tests that start the whole stack as processes (seven of them plus PostgreSQL and the
# broker) run in two xdist groups, one after another within each: the fault tests (two
# stacks: one shared by five tests, one for the broker restart) and everything else on a
# stack (the shared demo stack, the privacy attacks, the fuzz). One group for all of them
# made its worker the critical path of `./run test` (about 13 of CI's 15 minutes); two
# stacks at once on two cores hold (beside a third worker's in-process tests), with readiness
# waits of 180 s (`Stack.start`). Only a module that starts a stack (or uses a fixture that
# does) carries the marker: an in-process test left in a stack group lengthens that group's
# worker.
WHOLE_STACK = "whole_stack"


WHOLE_STACK_GROUP = "whole-stack"
FAULTS_GROUP = "whole-stack-faults"
FAULTS_MODULE = "tests/e2e/test_faults.py"


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook, whose grouping pytest 9 ignores (below)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        starts_a_stack = module is not None and any(value is Stack for value in vars(module).values())
        if starts_a_stack and item.get_closest_marker(WHOLE_STACK) is None:
            raise pytest.UsageError(f"{item.nodeid} starts a Stack: mark its module `pytest.mark.{WHOLE_STACK}`")
        if item.get_closest_marker(WHOLE_STACK) is not None or "demo_stack" in getattr(item, "fixturenames", ()):
            group = FAULTS_GROUP if item.nodeid.startswith(FAULTS_MODULE) else WHOLE_STACK_GROUP
            item.add_marker(pytest.mark.xdist_group(group))
            # `--dist loadgroup` schedules by an "@group" suffix of the node id. pytest-xdist 3.8
            # writes it to `item._nodeid`, which pytest 9 no longer reads (the id is `item._id`),
            # so the group was silently ignored: stack tests ran on both workers at once and
            # module- and session-scoped stacks started once per worker. Written here until
            # xdist writes it where pytest reads it (tests/ops/test_run_script.py checks the ids).
            if getattr(config.option, "loadgroup", False) and "@" not in item.nodeid:
                item._id = NodeId.parse(f"{item.nodeid}@{group}")
    # The users of the shared `demo_stack` run one after another at the end, so no other stack
    # runs beside it; the demo test last: its final steps end the vendor's agreement the
    # portal's pages show, and it stops the stack to prove nothing is left running.
    items.sort(
        key=lambda item: (
            "demo_stack" in getattr(item, "fixturenames", ()),
            item.get_closest_marker("stops_demo_stack") is not None,
        )
    )


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


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """One stack for the demo test, the portal's pages and the live Prometheus test (tests/stacks.py)."""
    before = child_processes()
    stack = Stack(fixed_ports=False)
    demo: DemoStack | None = None
    try:
        stack.start()
        lines: list[str] = []
        scenario = Scenario(
            {name: stack.url(name) for name in stack.services},
            stack.secrets_dir,
            say=lambda *a, **_: lines.append(" ".join(map(str, a))),
        )
        demo = DemoStack(stack, scenario, lines, before)
        demo.prometheus = start_prometheus(stack, tmp_path_factory.mktemp("prometheus"))
        steps = demo.steps()
        demo.play(steps[: steps.index("agreement_ends")])  # the portal shows the vendor's agreement active
        yield demo
    finally:
        if demo is not None:
            demo.stop()
        stack.cleanup()
