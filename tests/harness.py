"""Run real services in the test process: the same app and runtime as `homeroom serve`,
on the session's embedded PostgreSQL and a broker, driven over ASGI with httpx.

    async with service_under_test(spec, env) as svc:
        r = await svc.client.post("/v1/...", headers=env.auth("district_staff", district="d-1"))

`ServiceEnv` (fixture `service_env`) holds what several services in one test share: the
bootstrap servers, a keys database, secrets and the dev token issuer, so that a record
sealed by ingest opens in records, and a token minted here is trusted by every service.

Every service runs as in production: migrated by the owner role, connected as its own
login role that owns nothing (`homeroom.storage`), so every test exercises least privilege.
`env.superuser(url)` connects as the superuser where a test must tamper with a database.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from homeroom.auth import AuthSettings, DevIssuer, Role
from homeroom.clock import Clock
from homeroom.config import KafkaSettings, ServiceSettings
from homeroom.service import Runtime, ServiceSpec, attach, create_app, running
from homeroom.storage import OWNER_ROLE, bootstrap_roles, database_url, login_role, with_user
from homeroom_dev.infra.postgres import EmbeddedPostgres

# A service's stop (consumers, lifecycle, relays, pools) takes a second or two; a minute is
# far beyond any healthy stop on a loaded CI machine.
STOP_DEADLINE_S = 60.0

_ROLES_READY: set[str] = set()
_LOGINS_READY: set[str] = set()


async def ensure_roles(postgres: EmbeddedPostgres) -> None:
    """The owner role and every service's login role, once per server."""
    if postgres.server_url in _ROLES_READY:
        return
    from homeroom.registry import SERVICES, load_spec

    set_roles = [role for name in SERVICES if name != "portal" for role in load_spec(name).database_roles]
    await bootstrap_roles(postgres.server_url, list(SERVICES), set_roles)
    _ROLES_READY.add(postgres.server_url)


async def new_database(postgres: EmbeddedPostgres, prefix: str = "t") -> str:
    """A new database owned by the owner role; the URL connects as the superuser."""
    await ensure_roles(postgres)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url(postgres.server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}"')
    finally:
        await admin.close()
    return database_url(postgres.server_url, name)


async def drop_database(postgres: EmbeddedPostgres, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(database_url(postgres.server_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class ServiceEnv:
    postgres: EmbeddedPostgres
    bootstrap: str
    secrets_dir: Path
    keys_database_url: str
    service_urls: dict[str, str] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)

    @property
    def auth_settings(self) -> AuthSettings:
        return AuthSettings(dev_key_file=self.secrets_dir / "dev-issuer.pem")

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=self.bootstrap)

    @property
    def issuer(self) -> DevIssuer:
        return self.auth_settings.dev_issuer()

    def token(self, role: Role | str, subject: str = "tester", **scope: Any) -> str:
        return self.issuer.issue(role, subject=subject, **scope)

    def auth(self, role: Role | str, subject: str = "tester", **scope: Any) -> dict[str, str]:
        """Authorization header for a fresh dev token, e.g. auth("vendor", agreement="a-1", organization="x")."""
        return {"Authorization": f"Bearer {self.token(role, subject, **scope)}"}

    def superuser_url(self, url: str) -> str:
        return with_user(url, "postgres")

    async def superuser(self, url: str) -> asyncpg.Connection[asyncpg.Record]:
        """A superuser connection to a service's database (for tests that tamper with it)."""
        return await asyncpg.connect(self.superuser_url(url))

    async def settings_for(self, spec: ServiceSpec, **overrides: Any) -> ServiceSettings:
        url = overrides.pop("database_url", None) or await new_database(self.postgres, spec.name[:8])
        self.databases.append(url)
        login = login_role(spec.name)
        if spec.name not in _LOGINS_READY:  # a test's own spec has no login role in the stack's list
            await bootstrap_roles(self.postgres.server_url, [spec.name], spec.database_roles)
            _LOGINS_READY.add(spec.name)
        values: dict[str, Any] = {
            # Migrated by the owner; run as the service's own login, which owns nothing.
            "database_url": with_user(url, login),
            "migration_database_url": with_user(url, OWNER_ROLE),
            "keys_database_url": with_user(self.keys_database_url, login),
            "migration_keys_database_url": with_user(self.keys_database_url, OWNER_ROLE),
            "secrets_dir": self.secrets_dir,
            "create_database": False,
            "consumer_backoff_s": 0.01,
            "consumer_session_timeout_ms": 6000,
            "outbox_poll_interval_s": 0.02,
            **overrides,
        }
        settings: ServiceSettings = spec.settings(**values)
        return settings


@dataclass
class ServiceUnderTest:
    runtime: Runtime
    client: httpx.AsyncClient
    # The in-process app as a transport: what another service under test is given as its
    # peer (`service_under_test(..., peers={"consent": consent.transport})`).
    transport: httpx.AsyncBaseTransport

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runtime.pool


@contextlib.asynccontextmanager
async def service_under_test(
    spec: ServiceSpec,
    env: ServiceEnv,
    *,
    settings: ServiceSettings | None = None,
    peers: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    clock: Clock | None = None,
    stop_deadline_s: float = STOP_DEADLINE_S,
    **overrides: Any,
) -> AsyncIterator[ServiceUnderTest]:
    """Start a service's runtime (database, relay, consumers) and an ASGI client to its app.

    `peers`: the other services it calls, by name (their `ServiceUnderTest.transport`).
    Stopping it takes at most `stop_deadline_s`, or the test fails with `StopOverran`."""
    resolved = settings or await env.settings_for(spec, **overrides)
    started = contextlib.AsyncExitStack()
    runtime = await started.enter_async_context(
        running(spec, resolved, kafka=env.kafka, auth=env.auth_settings, peers=peers, clock=clock)
    )
    try:
        app = create_app(spec, resolved, lifespan=False)
        attach(app, runtime)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = await started.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url=f"http://{spec.name}.test")
        )
        env.service_urls[spec.name] = str(client.base_url)
        yield ServiceUnderTest(runtime, client, transport)
    finally:
        await stop_within(spec.name, started.aclose(), stop_deadline_s)


def _has_frame(awaitable: Any) -> bool:
    return hasattr(awaitable, "cr_frame") or hasattr(awaitable, "ag_frame")


class StopOverran(AssertionError):
    """A service under test did not stop within its deadline: a failing test fails, never hangs."""


async def stop_within(service: str, stopping: Coroutine[Any, Any, None], deadline_s: float) -> None:
    """Run a service's stop with a deadline. pytest-timeout cancels its timer once a test has
    failed, so a stop that never ends (a background task that swallowed its cancellation, a
    connection never given back to the pool) would hang the run: it fails loudly instead,
    naming the service and what its stop was waiting on."""
    task = asyncio.create_task(stopping, name=f"stop-{service}")
    done, _ = await asyncio.wait({task}, timeout=deadline_s)
    if task in done:
        return task.result()
    waits_on = "\n".join(_waiting_chain(task))
    task.cancel()  # best effort: a stop stuck on a task that ignores cancellation stays stuck
    raise StopOverran(f"service {service} did not stop within {deadline_s:g} s; its stop waits on:\n{waits_on}")


def _waiting_chain(task: asyncio.Task[Any], depth: int = 0) -> list[str]:
    """Where `task` is suspended (its innermost frames), then the task it awaits, and so on."""
    lines = [f"{'  ' * depth}task {task.get_name()!r}:"]
    awaitable: Any = task.get_coro()
    while awaitable is not None:  # coroutines and async generators awaiting one another
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"{'  ' * depth}  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
        if frame is not None and awaitable is not None and not _has_frame(awaitable):
            # `async with` over an async generator (`running`, a lifecycle) awaits its opaque
            # asend/athrow: follow the generator itself.
            generator = getattr(frame.f_locals.get("self"), "gen", None)
            awaitable = generator if inspect.isasyncgen(generator) else None
    waiter = getattr(task, "_fut_waiter", None)  # the future the task is blocked on (no public API)
    if isinstance(waiter, asyncio.Task) and depth < 5:
        lines += _waiting_chain(waiter, depth + 1)
    return lines


def exported(exposition: str, series: str) -> float:
    """The value of one series (`name{labels}` as a /metrics answer writes it); 0 when absent.
    Counters are exported at 0 from a service's start, so a test that an event was counted
    asserts the value, never only that the series is there."""
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
