"""faust-streaming inside a Homeroom service process: how it runs on Apache Kafka and on Tansu.

A service that keeps a streaming table (the reports service's statewide tally) builds its
faust app here, so every such app runs with the settings the embedded broker needs and
production does not mind:

* the table's changelog topic is created explicitly before the app starts, compacted, with
  the partitions of its source topics (faust refuses a table whose source and changelog
  partition counts differ, and Tansu gives auto-created topics 4);
* faust's recovery consistency check is off: Tansu's reported high-water mark can trail what
  a process already read from a changelog partition it held before a rebalance, and the
  check then crashes recovery ("persisted offset ... is higher than the last offset");
* session and rebalance timeouts are the service's consumer session timeout, so a killed
  process's partitions move on as quickly as the kernel consumers' do (faust's defaults
  are a minute);
* values are JSON without a value type (faust would call ``value_type.from_data`` on
  recovery), and the store is memory: the table is rebuilt from its changelog when a process
  starts or is given partitions, including after kill -9.

Tables are written once per key per batch (``BatchTable``): an agent takes its events in
batches (``stream.take_events``), folds each key's events into one new value and writes it
once. faust flushes the changelog before it commits the source offsets, so after a crash
the events after the last commit come again: values must be idempotent (sets, offsets of
the last event applied) so that a redelivered event changes nothing. Tansu has no
transactions; exactly-once *effects* come from those values, as elsewhere from the outbox.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, MutableMapping
from typing import Any

import faust
from faust.types import TP

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


class BatchTable(faust.Table[Any, Any]):
    """A table whose keys are written by an agent that takes events in batches.

    faust puts a key's changelog record on the partition of the event being processed, and
    in a batch that is the batch's last event, whichever key is written. The agent names the
    partition of each key it writes (``partition_of``: the partition its events came from),
    so each key's changelog stays with its source partition and recovers where it belongs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.partition_of: MutableMapping[Any, int] = {}

    def partition_for_key(self, key: Any) -> int | None:
        return self.partition_of[key]


def app(app_id: str, kafka: KafkaSettings, settings: ServiceSettings, *, partitions: int) -> faust.App:
    """A faust app for one service process (no web server; memory store; see the module)."""
    session_s = settings.consumer_session_timeout_ms / 1000
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
        recovery_consistency_check=False,
        Table=BatchTable,
    )


def table(faust_app: faust.App, name: str, *, partitions: int) -> BatchTable:
    """A JSON-valued table keyed by text (one per app here)."""
    created = faust_app.Table(
        name,
        default=dict,
        partitions=partitions,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
    )
    assert isinstance(created, BatchTable)
    return created


def changelog_topic(faust_app: faust.App, table_name: str, source: Topic) -> Topic:
    """The changelog of ``table_name`` as a Homeroom topic: compacted, kept forever, with the
    source's partitions (the name faust gives it: ``<app id>-<table>-changelog``)."""
    return Topic(
        f"{faust_app.conf.id}-{table_name}-changelog",
        source.message,
        partitions=source.partitions,
        retention_ms=-1,
        key=source.key,
        description=f"changelog of the {table_name} table",
        compacted=True,
    )


async def create_topics(kafka: KafkaSettings, topics: Iterable[Topic], replication_factor: int) -> None:
    """Create the sources and the changelog explicitly, before the app subscribes."""
    await ensure_topics(kafka.client_kwargs(), list(topics), replication_factor)


def record_lag(faust_app: faust.App, service: str, consumer: str, positions: MutableMapping[TP, int]) -> None:
    """Lag of the app's source partitions in ``homeroom_consumer_lag``, like every consumer's:
    the high-water mark minus the next offset to apply (``positions``: the agent's own count)."""
    try:
        assignment = faust_app.consumer.assignment()
    except Exception:  # not started or rebalancing: nothing to say
        return
    sources = {tp for tp in assignment if not tp.topic.endswith("-changelog")}
    CONSUMER_ASSIGNED.labels(service, consumer).set(len({tp.partition for tp in sources}))
    for tp in sources:
        highwater: int | None = None
        with contextlib.suppress(Exception):  # a partition just revoked has none
            highwater = faust_app.consumer.highwater(tp)
        if highwater is None:
            continue
        position = positions.get(tp)
        behind = highwater - position if position is not None else highwater
        CONSUMER_LAG.labels(service, consumer, tp.topic, str(tp.partition)).set(max(0, behind))
