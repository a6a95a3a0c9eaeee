"""One runtime for every service: the outer contract that makes knowing one service knowing all.

A service describes itself with a `ServiceSpec` (in `services/<name>/service.py`): its
settings class, routers, bus consumers, migrations and its lifecycle (which builds the
service's typed state: `runtime.state`). `create_app`
turns a spec into a FastAPI app whose lifespan builds the shared resources once, in
order, and tears them down in reverse:

    settings → database (created if missing, migrated) → data-key store and cipher →
    pseudonymiser → token verifier → publisher + outbox relay → the service's lifecycle →
    consumers

Everything a handler or route needs comes from the `Runtime` on `app.state.runtime`
(FastAPI dependencies below), so tests build the same app on real embedded servers and
swap nothing by patching.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic

import asyncpg
import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from typing_extensions import TypeVar  # PEP 696 defaults: a bare `Runtime` is Runtime[Any, Any]

from homeroom import crypto, notices
from homeroom.auth import AuthSettings, DevIssuer, Role, TokenVerifier
from homeroom.bus.consumer import BatchHandler, EventConsumer, Handler, one_at_a_time
from homeroom.bus.producer import Publisher
from homeroom.bus.topics import ALL_TOPICS, REJECTED, Topic, ensure_topics
from homeroom.clock import Clock, system_clock
from homeroom.config import KafkaSettings, ServiceSettings
from homeroom.http_headers import SecurityHeaders
from homeroom.outbox import OutboxRelay
from homeroom.problems import FieldError, Problem, install_problem_handlers, problem_response
from homeroom.pseudonym import Pseudonymizer, load_or_create_key
from homeroom.ratelimit import limiter
from homeroom.storage import (
    KERNEL,
    NOTICES,
    create_pool,
    ensure_database,
    grant_to_login,
    migrate,
    privilege_problems,
    url_user,
)
from homeroom.telemetry import (
    SERVICE_UP,
    configure_logging,
    health_router,
    instrument_http,
    start_bus_series_at_zero,
)

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings, default=Any)
StateT = TypeVar("StateT", default=Any)
# A service's lifecycle: builds its typed state from the runtime (clients, signers, background
# tasks), yields it for the service's life, and stops what it started on exit.
Lifecycle = Callable[["Runtime[SettingsT, StateT]"], contextlib.AbstractAsyncContextManager[StateT]]


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A bus consumer of a service: exactly one of `handler` (per event) or `batch_handler`
    (a poll's batch per partition, applied with set-based SQL: what hot paths use). Each is
    built from the runtime once it exists, so it can reach the cipher, clients and settings
    without globals."""

    name: str
    topics: Sequence[Topic]
    handler: Callable[[Runtime[Any, Any]], Handler] | None = None
    max_batch: int = 500
    batch_handler: Callable[[Runtime[Any, Any]], BatchHandler] | None = None

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.batch_handler is None):
            raise ValueError(f"consumer {self.name}: give exactly one of handler or batch_handler")

    def build(self, runtime: Runtime[Any, Any]) -> BatchHandler:
        """The batch handler the kernel runs (a per-event handler wrapped by `one_at_a_time`)."""
        if self.batch_handler is not None:
            return self.batch_handler(runtime)
        assert self.handler is not None
        return one_at_a_time(self.handler(runtime))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec(Generic[SettingsT, StateT]):
    settings: type[SettingsT]
    # By default the name its settings class declares (`service_name`), so it is written once.
    name: str = ""
    routers: Sequence[APIRouter] = ()
    consumers: Sequence[ConsumerSpec] = ()
    # Its numbered SQL migrations. By convention (when not given) the `migrations/` folder
    # beside the module that declares the settings class (`services/<name>/migrations`),
    # when there is one; None: no database of its own.
    migrations: Path | None = None
    description: str = ""
    uses_cipher: bool = False
    # The service's own objects: entered after the database and bus, before consumers start;
    # what it yields is `runtime.state`, typed per service (`services/<name>/state.py`).
    lifecycle: Lifecycle[SettingsT, StateT] | None = None
    # The OpenAPI document's groups (tag -> what it holds), in the document's order: each
    # router module declares the tags of its routes beside them (a `TAGS` mapping).
    openapi_tags: Mapping[str, str] = field(default_factory=dict)
    # Notices (homeroom.notices): the `notices` table, its e-mail relay and GET /v1/notices.
    sends_notices: bool = False
    # A service with no database and no bus of its own (the portal, a front end calling the
    # others' APIs) builds its own app from its settings; `create_app` then returns that.
    app_factory: Callable[[SettingsT], FastAPI] | None = None
    # NOLOGIN roles its migrations create and its transactions SET ROLE to (records' row-level
    # security role): the migration runner makes the service's login a member of each.
    database_roles: Sequence[str] = ()
    # Answers of at least this many bytes are gzip-compressed for a client that accepts it
    # (large public documents: the reports service's snapshots); None: never.
    gzip_minimum_size: int | None = None

    def __post_init__(self) -> None:
        # frozen: the conventional values are set once, here
        if not self.name:
            object.__setattr__(self, "name", self.settings.model_fields["service_name"].default)
        if self.migrations is None:
            beside = Path(inspect.getfile(self.settings)).with_name("migrations")
            if beside.is_dir():
                object.__setattr__(self, "migrations", beside)


@dataclass(slots=True)
class Runtime(Generic[SettingsT, StateT]):
    """What a running service has. Built in the lifespan; one per app.

    Typed per service: `Runtime[RecordsSettings, RecordsState]` (aliased in
    `services/<name>/state.py`) gives routes and consumers the service's own settings
    and state without casts."""

    spec: ServiceSpec[SettingsT, StateT]
    settings: SettingsT
    kafka: KafkaSettings
    pool: asyncpg.Pool
    publisher: Publisher
    relay: OutboxRelay
    pseudonymizer: Pseudonymizer
    verifier: TokenVerifier
    dev_issuer: DevIssuer | None
    cipher: crypto.EnvelopeCipher | None = None
    keys_pool: asyncpg.Pool | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    notices: notices.NoticeRelay | None = None
    # Now, for every rule about time; tests move it.
    clock: Clock = system_clock
    # HTTP transports to other services by name (tests: their in-process ASGI apps); a client
    # built by the lifecycle uses the one named for its peer, else the network.
    peers: Mapping[str, httpx.AsyncBaseTransport] = field(default_factory=dict)
    built_state: StateT | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> StateT:
        """The service's own objects, built by its lifecycle."""
        if self.built_state is None:
            raise RuntimeError(f"service {self.name}: its state is built by its lifecycle, which has not run")
        return self.built_state

    def provide(self, state: StateT) -> StateT:
        """Make `state` the runtime's state now, inside the lifecycle, before it starts
        background work that reads `runtime.state` (the kernel sets it again from what the
        lifecycle yields)."""
        self.built_state = state
        return state

    def peer(self, name: str) -> httpx.AsyncBaseTransport | None:
        """The transport to reach service `name` by, when one was given (tests); else None."""
        return self.peers.get(name)

    def require_cipher(self) -> crypto.EnvelopeCipher:
        if self.cipher is None:
            raise RuntimeError(f"service {self.name} was not built with uses_cipher=True")
        return self.cipher

    def service_token(self, ttl_s: int = 300) -> str:
        """A token for calling another Homeroom service on this service's own behalf.

        Development: minted by the dev issuer. Production: read from
        HOMEROOM_SERVICE_TOKEN_FILE, which the deployment's OIDC client-credentials
        sidecar keeps fresh.
        """
        token_file = self.settings.service_token_file
        if token_file is not None:
            return token_file.read_text().strip()
        if self.dev_issuer is None:
            raise RuntimeError("no service token: set HOMEROOM_SERVICE_TOKEN_FILE")
        return self.dev_issuer.issue(Role.SERVICE, subject=f"homeroom-{self.name}", ttl_s=ttl_s)

    async def drain_outbox(self, timeout_s: float = 30.0) -> None:
        await self.relay.drain(timeout_s)


async def _build_runtime(
    spec: ServiceSpec[SettingsT, StateT],
    settings: SettingsT,
    kafka: KafkaSettings | None,
    auth: AuthSettings | None,
) -> Runtime[SettingsT, StateT]:
    settings.require_production_secrets()
    kafka = kafka or KafkaSettings()
    if not kafka.bootstrap_servers:
        raise ValueError("no bus configured: set KAFKA_BOOTSTRAP_SERVERS (the `./run stack` command does)")
    if not settings.database_url:
        raise ValueError(
            f"no database configured: set HOMEROOM_DATABASE_URL or HOMEROOM_{spec.name.upper()}_DATABASE_URL"
        )
    auth = auth or AuthSettings()
    verifier = auth.build_verifier(spec.name)  # only tokens meant for this service
    dev_issuer = auth.dev_issuer() if auth.environment != "production" else None

    if settings.migrate_on_start:
        await prepare_databases(spec, settings)
    pool = await create_pool(settings.database_url, max_size=settings.db_pool_size)
    try:
        if not settings.migrate_on_start:
            await _require_migrated(pool, spec)
        problems = await privilege_problems(pool)
        if problems and settings.migration_database_url:
            raise PermissionError(
                f"the {spec.name} service's database login {', '.join(problems)}: it must own nothing "
                "(docs/adding-a-service.md, 'Database roles')"
            )
        if problems:
            log.warning("service runs with more database rights than it needs", extra={"problems": problems})
        cipher: crypto.EnvelopeCipher | None = None
        keys_pool: asyncpg.Pool | None = None
        if spec.uses_cipher:
            keys_url = settings.keys_database_url or settings.database_url
            keys_pool = await create_pool(keys_url, max_size=max(2, settings.db_pool_size // 2))
            keyring = crypto.FileKeyring(settings.keyring_path, allow_create=settings.environment != "production")
            cipher = crypto.EnvelopeCipher(keyring, crypto.PostgresDataKeyStore(keys_pool))
        pseudonymizer = Pseudonymizer(load_or_create_key(settings.pseudonym_key_path))
        client = kafka.client_kwargs()
        publisher = Publisher(spec.name, client, check_partitions=kafka.check_partitions)
        relay = OutboxRelay(
            spec.name,
            pool,
            publisher,
            poll_interval_s=settings.outbox_poll_interval_s,
            fallback_s=settings.relay_fallback_s,
            prepare=lambda: ensure_topics(client, ALL_TOPICS, settings.topic_replication_factor),
        )
        notice_relay = _notice_relay(spec, settings, pool) if spec.sends_notices else None
    except BaseException:
        await pool.close()
        raise
    return Runtime(
        spec=spec,
        settings=settings,
        kafka=kafka,
        pool=pool,
        publisher=publisher,
        relay=relay,
        pseudonymizer=pseudonymizer,
        verifier=verifier,
        dev_issuer=dev_issuer,
        cipher=cipher,
        keys_pool=keys_pool,
        notices=notice_relay,
    )


async def _require_migrated(pool: asyncpg.Pool, spec: ServiceSpec[Any, Any]) -> None:
    files = sorted(spec.migrations.glob("*.sql")) if spec.migrations and spec.migrations.exists() else []
    wanted = {int(p.name.split("_", 1)[0]) for p in files}
    try:
        done = {
            r["version"]
            for r in await pool.fetch("SELECT version FROM schema_migrations WHERE service = $1", spec.name)
        }
    except asyncpg.UndefinedTableError:
        done = set()
    if not wanted <= done:
        missing = ", ".join(str(v) for v in sorted(wanted - done))
        raise RuntimeError(
            f"the {spec.name} database lacks migrations {missing}: run `homeroom migrate {spec.name}` first"
        )


async def prepare_databases(spec: ServiceSpec[Any, Any], settings: ServiceSettings) -> None:
    """Create (if asked) and migrate the service's database, and the keys database, as the
    owner role; then grant the service's login what it needs (homeroom.storage)."""
    owner_url = settings.migration_database_url or settings.database_url
    separate = owner_url != settings.database_url
    grantee = url_user(settings.database_url) if separate else None
    if separate and not grantee:
        raise ValueError(f"name the {spec.name} service's login role in its database URL (postgresql://ROLE@host/db)")
    if settings.create_database:
        await ensure_database(owner_url)
    owner = await create_pool(owner_url, min_size=1, max_size=1)
    try:
        await migrate(
            owner,
            spec.name,
            spec.migrations,
            grantee=grantee,
            member_of=spec.database_roles,
            kernel=(KERNEL, NOTICES) if spec.sends_notices else (KERNEL,),
        )
    finally:
        await owner.close()
    if not spec.uses_cipher:
        return
    keys_url = settings.keys_database_url or settings.database_url
    keys_owner_url = settings.migration_keys_database_url or (owner_url if keys_url == settings.database_url else "")
    keys_owner_url = keys_owner_url or keys_url
    if settings.create_database:
        await ensure_database(keys_owner_url)
    keys_owner = await create_pool(keys_owner_url, min_size=1, max_size=1)
    try:
        await crypto.ensure_schema(keys_owner)
        keys_grantee = url_user(keys_url) if keys_owner_url != keys_url else None
        if keys_grantee:
            async with keys_owner.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('homeroom.data_keys.schema'))")
                await grant_to_login(conn, keys_grantee)
    finally:
        await keys_owner.close()


def _notice_relay(spec: ServiceSpec[Any, Any], settings: ServiceSettings, pool: asyncpg.Pool) -> notices.NoticeRelay:
    smtp = None
    if settings.smtp_host:
        password = settings.smtp_password_file.read_text().strip() if settings.smtp_password_file else ""
        smtp = notices.SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=password,
        )
    book = notices.AddressBook.from_file(
        settings.notice_address_book_file,
        settings.notice_dev_domain if settings.environment != "production" else None,
    )
    return notices.NoticeRelay(
        spec.name,
        pool,
        smtp,
        book,
        poll_interval_s=settings.notice_poll_interval_s,
        fallback_s=settings.relay_fallback_s,
    )


def _consumer(runtime: Runtime[Any, Any], consumer: ConsumerSpec) -> EventConsumer:
    settings = runtime.settings
    return EventConsumer(
        service=runtime.name,
        name=consumer.name,
        topics=[t.name for t in consumer.topics],
        batch_handler=consumer.build(runtime),
        pool=runtime.pool,
        client_kwargs=runtime.kafka.client_kwargs(),
        dead_letter_topic=REJECTED.name,
        max_attempts=settings.consumer_max_attempts,
        backoff_s=settings.consumer_backoff_s,
        max_batch=consumer.max_batch,
        session_timeout_ms=settings.consumer_session_timeout_ms,
    )


@contextlib.asynccontextmanager
async def running(
    spec: ServiceSpec[SettingsT, StateT],
    settings: SettingsT,
    *,
    kafka: KafkaSettings | None = None,
    auth: AuthSettings | None = None,
    peers: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Runtime[SettingsT, StateT]]:
    """Start a service's resources (no HTTP server) and stop them in reverse order.

    `kafka` and `auth` default to the environment; tests pass their own, and the transports
    to the other services (`peers`, by service name) and a clock they can move."""
    runtime = await _build_runtime(spec, settings, kafka, auth)
    if peers:
        runtime.peers = dict(peers)
    if clock is not None:
        runtime.clock = clock
    lifecycle = contextlib.AsyncExitStack()
    start_bus_series_at_zero(spec.name, [(c.name, [t.name for t in c.topics]) for c in spec.consumers])
    try:
        runtime.relay.start()
        if runtime.notices is not None:
            runtime.notices.start()
        if spec.lifecycle is not None:
            runtime.built_state = await lifecycle.enter_async_context(spec.lifecycle(runtime))
        if settings.start_consumers and spec.consumers:
            # Topics must exist with their partition counts before a group subscribes.
            await ensure_topics(runtime.kafka.client_kwargs(), ALL_TOPICS, settings.topic_replication_factor)
            for consumer_spec in spec.consumers:
                consumer = _consumer(runtime, consumer_spec)
                consumer.start()
                runtime.consumers.append(consumer)
        SERVICE_UP.labels(spec.name).set(1)
        yield runtime
    finally:
        SERVICE_UP.labels(spec.name).set(0)
        for consumer in runtime.consumers:
            await consumer.stop()
        try:
            await lifecycle.aclose()
        except Exception:
            # Stopping goes on: the database and bus connections are closed below regardless.
            log.exception("service %s: its lifecycle failed to stop cleanly", spec.name)
        if runtime.notices is not None:
            await runtime.notices.stop()
        await runtime.relay.stop()
        await runtime.publisher.stop()
        if runtime.keys_pool is not None:
            await runtime.keys_pool.close()
        await runtime.pool.close()


def create_app(
    spec: ServiceSpec[SettingsT, StateT],
    settings: SettingsT | None = None,
    *,
    lifespan: bool = True,
    freeze_once_started: bool = False,
) -> FastAPI:
    """The service's FastAPI app; nothing connects until the lifespan runs.

    With `lifespan=False` the caller starts the runtime itself (`running`) and calls
    `attach(app, runtime)`: tests do this to drive the app in process over ASGI.
    `freeze_once_started` (`homeroom serve`, one service per process): once the lifecycle has
    started, what the process holds is frozen (`freeze_startup_objects`). Never in a test
    process, which starts and stops many services whose objects must stay collectable."""
    resolved = settings if settings is not None else spec.settings()
    if spec.app_factory is not None:
        return spec.app_factory(resolved)

    @contextlib.asynccontextmanager
    async def run_lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(spec, resolved) as runtime:
            attach(app, runtime)
            if freeze_once_started:
                freeze_startup_objects()  # with what the lifecycle loaded to keep (consent's facts)
            yield

    app = FastAPI(
        title=f"Homeroom {spec.name}",
        description=spec.description,
        version="0.1.0",
        lifespan=run_lifespan if lifespan else None,
        openapi_tags=[{"name": tag, "description": text} for tag, text in spec.openapi_tags.items()] or None,
        # Homeroom's telemetry is Prometheus and JSON logs (homeroom/telemetry.py). FastAPI's own
        # OpenTelemetry layer, on by default, looked up three providers in the environment on
        # every request (4 % of a consent decision's CPU) to find none configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_problem_handlers(app)
    if spec.gzip_minimum_size is not None:
        app.add_middleware(GZipMiddleware, minimum_size=spec.gzip_minimum_size)
    app.add_middleware(SecurityHeaders)
    _refuse_nul_characters(app)
    instrument_http(app, spec.name)

    async def database_check() -> None:
        await app.state.runtime.pool.fetchval("SELECT 1")

    async def bus_check() -> None:
        await app.state.runtime.publisher.ping()

    app.include_router(health_router(spec.name, {"database": database_check, "bus": bus_check}, resolved.instance_id))
    for router in spec.routers:
        app.include_router(router)
    if spec.sends_notices:
        app.include_router(notices.router)
    return app


def _nul_problem(where: str) -> Problem:
    return Problem.validation(
        [FieldError(where, "text.nul_character", "text may not contain the NUL character (U+0000)")]
    )


class RefuseNul:
    """Plain ASGI middleware: a NUL in the path or query is bad input (422), not a failure
    deep inside a query (500). No Homeroom id or value contains one, and PostgreSQL cannot
    store one in text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            in_path = "\x00" in scope["path"]
            if in_path or b"%00" in scope.get("query_string", b""):
                await problem_response(_nul_problem("path" if in_path else "query"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refuse_nul_characters(app: FastAPI) -> None:
    app.add_middleware(RefuseNul)

    async def _on_nul(request: Request, exc: Exception) -> Response:
        return problem_response(_nul_problem("body"))

    for error in (asyncpg.UntranslatableCharacterError, asyncpg.CharacterNotInRepertoireError):
        app.add_exception_handler(error, _on_nul)


def attach(app: FastAPI, runtime: Runtime[Any, Any]) -> None:
    app.state.runtime = runtime
    app.state.token_verifier = runtime.verifier
    app.state.rate_limiter = limiter(runtime.settings.rate_limit, runtime.name)


def configure(spec: ServiceSpec[Any, Any], settings: ServiceSettings) -> None:
    configure_logging(spec.name, settings.log_level)


def freeze_startup_objects() -> None:
    """Keep what a service process built at start (modules, FastAPI's routes, pydantic's
    validators: about 100,000 objects that live as long as the process; consent's decision
    facts) out of the garbage collector's full passes. Each pass over them cost 120-160 ms of
    CPU, and ingest ran about one per 5,000 events (22 µs of CPU per event). The app of
    `homeroom serve` calls it once the service's lifecycle has started (`create_app`'s
    `freeze_once_started`), so what the lifecycle loaded is frozen too; objects made later are
    collected as before."""
    gc.collect()
    gc.freeze()


# --- FastAPI dependencies ---------------------------------------------------------------


# async, though they do no I/O: FastAPI runs a plain `def` dependency in a worker thread,
# a thread hop on every request.
async def get_runtime(request: Request) -> Runtime[Any, Any]:
    """The app's runtime; a service's own alias (`services/<name>/state.py`) types it:
    `Annotated[Runtime[RecordsSettings, RecordsState], Depends(get_runtime)]`."""
    runtime: Runtime[Any, Any] = request.app.state.runtime
    return runtime


async def get_state(request: Request) -> Any:
    """The service's state (`runtime.state`); a service's alias types it:
    `Annotated[IngestState, Depends(get_state)]`."""
    runtime: Runtime[Any, Any] = request.app.state.runtime
    return runtime.state


async def get_pool(request: Request) -> asyncpg.Pool:
    runtime: Runtime = request.app.state.runtime
    return runtime.pool


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
