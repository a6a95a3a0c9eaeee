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
  each of these saves: docs/services/reports.md, "Where the tally's CPU goes";
* a message is handed to the agent without faust's per-message `wait_first` (four asyncio tasks
  and an `asyncio.wait`) when handing it over cannot block: `EagerConsumer` below. A handover
  that would block (a full stream buffer, flow control, the producer's buffer) still runs under
  faust's `wait_first`, so a rebalance still cancels it (docs/services/reports.md, "Handing a
  message over without a task when it cannot block").
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import types
from collections.abc import Callable, Coroutine, Generator, Iterable, MutableMapping
from typing import Any

import faust
from faust.sensors import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
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


@types.coroutine
def _resumed(delivery: Coroutine[Any, Any, Any], awaited: Any) -> Generator[Any, Any, Any]:
    """The rest of `delivery`, a coroutine already run up to its first suspension (it waits on
    `awaited`): what `yield from delivery` does, so a Task running this waits where `delivery`
    waits, and cancelling the Task cancels `delivery` where it waits (PEP 380's expansion)."""
    while True:
        try:
            sent = yield awaited
        except GeneratorExit:
            delivery.close()
            raise
        except BaseException as exc:  # CancelledError above all: into the delivery where it waits
            try:
                awaited = delivery.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                awaited = delivery.send(sent)
            except StopIteration as done:
                return done.value


async def _rest_of(delivery: Coroutine[Any, Any, Any], awaited: Any) -> Any:
    return await _resumed(delivery, awaited)


class EagerConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka Consumer, handing each message to the conductor (which puts it in the
    stream buffers of the agents that read its topic) without a task per message when that cannot
    block.

    faust's `Consumer._drain_messages` (faust-streaming 0.15.3, pinned by
    tests/services/reports/test_streams.py) awaits, for every message,
    `wait_first(callback(message), suspend_flow.wait())`: the callback and the suspend event as
    tasks, plus the service's stopped and crashed events, and an `asyncio.wait`, so that a
    callback blocked on a full stream buffer (or on flow control, or the producer's buffer) is
    cancelled when flow is suspended (a rebalance), the consumer stops or it crashes. That is
    about half of faust's CPU per message (docs/services/reports.md).

    `_drain_messages` here is faust's, line for line, except that the call goes through
    `_deliver`: while flow is not suspended and the consumer neither stopped nor crashed, the
    callback runs at once in the drain loop (as Python 3.12's eager tasks do) and, when it finishes
    without suspending, it cannot have been blocked and there was nothing to cancel. If it
    suspends, the rest of it runs under faust's own `wait_first` (`_resumed`), so a handover that
    blocks is cancelled exactly as faust cancels it. When flow is suspended, stopped or crashed
    the message takes faust's path from the start."""

    async def _deliver(self, message: Message) -> None:
        delivery = self.callback(message)
        if (
            self.suspend_flow.is_set()
            or self._stopped.is_set()
            or self._crashed.is_set()
            or not isinstance(delivery, types.CoroutineType)  # not faust's conductor
        ):  # faust's path
            await self.wait_first(delivery, self.suspend_flow.wait())
            return
        try:
            awaited = delivery.send(None)
        except StopIteration:  # handed over without waiting on anything
            return
        # it waits (a full buffer, flow control, the producer's buffer): cancellable as in faust
        await self.wait_first(_rest_of(delivery, awaited), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (faust's own, but one line)
        callback = self._deliver  # faust: self.callback, awaited in wait_first (see the class)
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await callback(message)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class EagerTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with `EagerConsumer` (faust picks its consumer class from the
    transport's `Consumer` attribute)."""

    Consumer = EagerConsumer


def app(
    app_id: str,
    kafka: KafkaSettings,
    settings: ServiceSettings,
    *,
    partitions: int,
    eager: bool = True,
    **options: Any,
) -> faust.App:
    """A faust app for one service process (no web server, no tables; see the module).
    `options` are faust settings over these and `eager=False` keeps faust's own consumer (the
    benchmark compares faust's defaults)."""
    session_s = settings.consumer_session_timeout_ms / 1000
    conf: dict[str, Any] = {"Monitor": QuietMonitor, **options}
    made = faust.App(
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
    if eager:  # as faust's App._new_transport builds it, with the eager consumer
        made.transport = EagerTransport(made.conf.broker_consumer, made)
    return made


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
