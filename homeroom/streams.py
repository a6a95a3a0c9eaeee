"""faust-streaming inside a Homeroom service process: how it runs on Apache Kafka and on Tansu.

A service that consumes with faust (the reports service's statewide tally) builds its faust
app here, so every such app runs with the settings the embedded broker needs and production
does not mind:

* session and rebalance timeouts are the service's consumer session timeout, so a killed
  process's partitions move on as quickly as the kernel consumers' do (faust's defaults
  are a minute);
* no faust tables: a table is recovered by replaying its changelog up to the high-water mark
  the broker reports, and Tansu's can trail the log by several records, so recovery stopped
  short and lost keys (issue 22). Durable state goes to PostgreSQL, written in the same
  transaction as what it produces, with the offsets of the events applied, so a redelivered
  event changes nothing;
* nothing faust does per message that nobody reads: the `QuietMonitor` keeps faust's Monitor
  (its per-commit, per-send and per-rebalance figures) without the per-message bookkeeping
  (four calls, two dicts and three clock reads per message: nothing here serves faust's web
  views, which are off), and a topic read with `RAW` hands the broker's bytes to the agent
  without a codec lookup per message. What faust's per-message path still costs, and what
  each of these saves: docs/services/reports.md, "Where the tally's CPU goes".
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import faust
from faust.sensors import Monitor
from faust.types import TP, AppT, EventT, Message, StreamT

from homeroom.bus.topics import Topic, ensure_topics
from homeroom.config import KafkaSettings, ServiceSettings
from homeroom.telemetry import CONSUMER_ASSIGNED, CONSUMER_LAG


def credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """The bus's TLS/SASL settings as faust credentials (the same as the kernel's clients)."""
    context = kafka.client_kwargs().get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context if isinstance(context, ssl.SSLContext) else None,
        )
    if isinstance(context, ssl.SSLContext):
        return faust.SSLCredentials(context)
    return None


class QuietMonitor(Monitor):
    """faust's Monitor without its per-message bookkeeping (counts by topic, stream and task,
    times in and out, a dict per event): the four per-message hooks of faust's Sensor interface
    do nothing. The per-commit, per-send, per-rebalance and per-table hooks are faust's own."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any], state: dict[str, Any] | None = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None


class RawSchema(faust.Schema[bytes, bytes]):
    """Keys and values as the broker's bytes, for an agent that decodes them itself: faust's
    serializer registry (a codec looked up and called twice per message) is not asked."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def loads_key(
        self, app: AppT, message: Message, *, loads: Callable[..., Any] | None = None, serializer: Any = None
    ) -> Any:
        return message.key

    def loads_value(
        self, app: AppT, message: Message, *, loads: Callable[..., Any] | None = None, serializer: Any = None
    ) -> Any:
        return message.value


RAW = RawSchema()


def app(app_id: str, kafka: KafkaSettings, settings: ServiceSettings, *, partitions: int, **options: Any) -> faust.App:
    """A faust app for one service process (no web server, no tables; see the module).
    `options` are faust settings over these (the benchmark compares faust's defaults)."""
    session_s = settings.consumer_session_timeout_ms / 1000
    conf: dict[str, Any] = {"Monitor": QuietMonitor, **options}
    return faust.App(
        app_id,
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=credentials(kafka),
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication_factor,
        table_standby_replicas=0,
        producer_acks=-1,
        broker_session_timeout=session_s,
        broker_rebalance_timeout=session_s,
        broker_heartbeat_interval=max(1.0, session_s / 4),
        consumer_auto_offset_reset="earliest",
        **conf,
    )


async def create_topics(kafka: KafkaSettings, topics: Iterable[Topic], replication_factor: int) -> None:
    """Create the topics explicitly, before the app subscribes (Tansu gives auto-created topics 4
    partitions)."""
    await ensure_topics(kafka.client_kwargs(), list(topics), replication_factor)


def record_lag(
    faust_app: faust.App, service: str, consumer: str, positions: MutableMapping[TP, int]
) -> dict[TP, int] | None:
    """Lag of the app's source partitions in ``homeroom_consumer_lag``, like every consumer's:
    the high-water mark minus the next offset to apply (``positions``: the agent's own count).
    Returns the lag by partition held (None while not started or rebalancing)."""
    try:
        assignment = faust_app.consumer.assignment()
    except Exception:  # not started or rebalancing: nothing to say
        return None
    lags: dict[TP, int] = {}
    sources = set(assignment)  # no tables, so no changelog partitions
    CONSUMER_ASSIGNED.labels(service, consumer).set(len({tp.partition for tp in sources}))
    for tp in sources:
        highwater: int | None = None
        with contextlib.suppress(Exception):  # a partition just revoked has none
            highwater = faust_app.consumer.highwater(tp)
        if highwater is None:
            continue
        position = positions.get(tp)
        behind = max(0, highwater - position if position is not None else highwater)
        CONSUMER_LAG.labels(service, consumer, tp.topic, str(tp.partition)).set(behind)
        lags[tp] = behind
    return lags
