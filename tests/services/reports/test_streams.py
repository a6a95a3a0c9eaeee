"""The faust app the tally runs on (homeroom/streams.py): faust's per-message bookkeeping is off
and the agent gets the broker's bytes, while faust's other figures and the events' content stay.
The tally's own tests (test_tally.py, test_tally_faults.py) run the same app on the real broker."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import uuid
from dataclasses import replace
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.sensors import Monitor
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from homeroom import streams
from homeroom.bus.topics import ATTENDANCE
from homeroom.config import KafkaSettings
from services.reports.settings import ReportsSettings
from tests.services.reports.helpers import until

TOPIC = "attendance.v1"
HEADERS = (("ce_id", b"event-1"), ("ce_type", b"homeroom.attendance.recorded.v1"))


def tally_app(tmp_path: Path) -> faust.App:
    settings = ReportsSettings(database_url="postgresql://unused/unused", secrets_dir=tmp_path)
    return streams.app("test-streams", KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"), settings, partitions=4)


def message(key: bytes | None, value: bytes | None) -> Message:
    return Message(
        topic=TOPIC,
        partition=3,
        offset=41,
        timestamp=1_795_000_000.0,
        timestamp_type=0,
        headers=list(HEADERS),
        key=key,
        value=value,
        checksum=None,
    )


async def test_the_agent_gets_the_brokers_bytes_and_headers_as_they_came(tmp_path: Path) -> None:
    app = tally_app(tmp_path)
    decode = streams.RAW.compile(app)
    body = b"\x0a\x03stu\x12\x00" + bytes(range(256))  # not text: nothing may decode it
    sent = message(b"stu_0001", body)
    event = await decode(sent, propagate=True)
    assert event.key == b"stu_0001" and event.value == body
    assert event.message is sent and event.headers == dict(HEADERS)
    tombstone = await decode(message(None, None), propagate=True)  # a null key and value stay null
    assert tombstone.key is None and tombstone.value is None


async def test_faust_counts_nothing_per_message_but_keeps_its_commit_figures(tmp_path: Path) -> None:
    app = tally_app(tmp_path)
    monitor = app.monitor
    assert isinstance(monitor, streams.QuietMonitor)
    tp, sent = TP(TOPIC, 3), message(b"k", b"v")
    stream = app.stream(app.topic(TOPIC))
    state = monitor.on_stream_event_in(tp, 41, stream, None)  # type: ignore[arg-type]
    monitor.on_message_in(tp, 41, sent)
    monitor.on_stream_event_out(tp, 41, stream, None, state)  # type: ignore[arg-type]
    monitor.on_message_out(tp, 41, sent)
    assert state is None
    assert monitor.messages_received_total == 0 and monitor.events_total == 0 and not monitor.events_runtime
    assert sent.time_in is None and sent.time_out is None  # no clock read per message
    # faust's own Monitor still measures what happens per commit (not per message).
    started = monitor.on_commit_initiated(app.consumer)
    monitor.on_commit_completed(app.consumer, started)
    assert len(monitor.commit_latency) == 1


def test_faust_defaults_remain_one_setting_away(tmp_path: Path) -> None:
    """The benchmark compares faust's own Monitor (bench/reports.py --faust-floor)."""
    settings = ReportsSettings(database_url="postgresql://unused/unused", secrets_dir=tmp_path)
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    app = streams.app("test-streams-defaults", kafka, settings, partitions=4, Monitor=Monitor)
    assert type(app.monitor) is Monitor


# faust-streaming 0.15.3's `Consumer._drain_messages`, which `streams.EagerConsumer` replaces
# with a copy that differs in one call (faust's loop is private and has no hook).
FAUST_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def test_the_eager_consumer_replaces_the_drain_loop_of_the_pinned_faust() -> None:
    """`EagerConsumer._drain_messages` is faust's own loop but for the handover: if faust's
    changes (an upgrade), this fails by name, and the copy must be brought up to date."""
    source = inspect.getsource(faust_consumer.Consumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest() == FAUST_DRAIN_SHA256, (
        "faust's Consumer._drain_messages changed: compare it with homeroom.streams.EagerConsumer"
    )
    # the aiokafka driver's Consumer is the one subclassed, and faust takes it from the transport
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    assert "_drain_messages" not in vars(faust_aiokafka.Consumer)
    assert "await self.wait_first(" in source and "callback(message), self.suspend_flow.wait()" in source


def test_the_tally_app_consumes_with_the_eager_consumer_and_faust_s_stays_one_flag_away(tmp_path: Path) -> None:
    settings = ReportsSettings(database_url="postgresql://unused/unused", secrets_dir=tmp_path)
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert type(tally_app(tmp_path).consumer) is streams.EagerConsumer
    faust_own = streams.app("test-streams-faust-drain", kafka, settings, partitions=4, eager=False)
    assert type(faust_own.consumer) is faust_aiokafka.Consumer


def _consumer_handing_to(tmp_path: Path, buffer: asyncio.Queue[bytes | None]) -> streams.EagerConsumer:
    """The tally app's consumer with a callback that does what faust's conductor does with a
    message: put it in a stream buffer, waiting when the buffer is full."""
    app = tally_app(tmp_path)

    async def hand_over(sent: Message) -> None:
        await buffer.put(sent.value)

    made = app.transport.create_consumer(
        callback=hand_over,
        on_partitions_revoked=app._on_partitions_revoked,
        on_partitions_assigned=app._on_partitions_assigned,
    )
    assert isinstance(made, streams.EagerConsumer)
    return made


async def test_a_message_with_room_in_the_buffer_is_handed_over_without_waiting(tmp_path: Path) -> None:
    buffer: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)
    consumer = _consumer_handing_to(tmp_path, buffer)
    handover = consumer._deliver(message(b"k", b"first"))
    with pytest.raises(StopIteration):  # done at the first step: no task, no asyncio.wait
        handover.send(None)
    assert buffer.get_nowait() == b"first"


async def test_a_handover_blocked_on_a_full_buffer_is_cancelled_when_flow_is_suspended(tmp_path: Path) -> None:
    """faust's guarantee kept: the handover waits on the full buffer as faust's does, and a
    rebalance (`stop_flow`) cancels it, so the message never lands in the buffer afterwards."""
    buffer: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
    buffer.put_nowait(b"already there")
    consumer = _consumer_handing_to(tmp_path, buffer)
    handover = asyncio.ensure_future(consumer._deliver(message(b"k", b"blocked")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not handover.done()  # waiting on the full buffer
    consumer.stop_flow()
    await asyncio.wait_for(handover, 5)  # returns: the blocked put was cancelled
    assert buffer.get_nowait() == b"already there"
    for _ in range(5):
        await asyncio.sleep(0)
    assert buffer.empty()  # the cancelled put did not complete once there was room

    # While flow is suspended a handover takes faust's path from the start; resumed, the eager one.
    consumer.resume_flow()
    await consumer._deliver(message(b"k", b"after"))
    assert buffer.get_nowait() == b"after"


async def test_a_handover_that_fails_after_waiting_raises_as_in_faust(tmp_path: Path) -> None:
    """An error raised after the handover waited reaches the drain loop (faust's wait_first
    re-raises it), not lost in a task."""
    app = tally_app(tmp_path)
    gate = asyncio.Event()

    async def refuse(sent: Message) -> None:
        await gate.wait()
        raise ValueError(f"refused {sent.offset}")

    consumer = app.transport.create_consumer(
        callback=refuse,
        on_partitions_revoked=app._on_partitions_revoked,
        on_partitions_assigned=app._on_partitions_assigned,
    )
    assert isinstance(consumer, streams.EagerConsumer)
    handover = asyncio.ensure_future(consumer._deliver(message(b"k", b"v")))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(ValueError, match="refused 41"):
        await asyncio.wait_for(handover, 5)


async def test_a_rebalance_while_the_stream_buffer_is_full_completes_and_loses_nothing(
    bootstrap: str, topic_suffix: str, tmp_path: Path
) -> None:
    """One instance reads slowly with a small stream buffer, so its drain loop is blocked on the
    full buffer; a second instance joins the group. The rebalance completes (both hold
    partitions) and every event is processed by one of them."""
    topic = replace(ATTENDANCE, name=f"{ATTENDANCE.name}.{topic_suffix}", partitions=2)
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    settings = ReportsSettings(
        database_url="postgresql://unused/unused", secrets_dir=tmp_path, consumer_session_timeout_ms=6000
    )
    await streams.create_topics(kafka, [topic], 1)
    sent = 120
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(sent):
            await producer.send(topic.name, str(n).encode(), partition=n % 2)
        await producer.flush()
    finally:
        await producer.stop()

    group = f"test-streams-rebalance-{uuid.uuid4().hex[:8]}"
    seen: dict[str, set[bytes]] = {"a": set(), "b": set()}
    buffers: dict[str, asyncio.Queue[object]] = {}

    def instance(name: str) -> faust.App:
        app = streams.app(group, kafka, settings, partitions=2, stream_buffer_maxsize=4)

        async def agent(stream: faust.StreamT[bytes]) -> None:
            async for event in cast_stream(stream).events():
                buffers[name] = stream.channel.queue  # type: ignore[attr-defined]
                seen[name].add(event.value)
                await asyncio.sleep(0.05)  # slower than the broker: the buffer fills

        app.agent(app.topic(topic.name, schema=streams.RAW), name=f"{group}.read")(agent)
        return app

    first = instance("a")
    await first.start()
    second: faust.App | None = None

    async def filled() -> bool:
        return "a" in buffers and buffers["a"].full()

    async def rebalanced() -> tuple[set[TP], set[TP]] | None:
        held = _held(first, topic.name), _held(second, topic.name) if second else set()
        return held if len(held[0]) == 1 and len(held[1]) == 1 else None

    async def processed() -> bool:
        return len(seen["a"] | seen["b"]) == sent

    try:
        await until(filled, 60, "the first instance's buffer filled")
        second = instance("b")
        await second.start()
        await until(rebalanced, 60, "the rebalance completed with a partition each")
        await until(processed, 60, "every event processed")
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
    assert seen["b"], "the second instance processed its partition's events"


def cast_stream(stream: faust.StreamT[bytes]) -> faust.Stream[bytes]:
    assert isinstance(stream, faust.Stream)
    return stream


def _held(app: faust.App, topic: str) -> set[TP]:
    """The partitions of `topic` the app holds (not faust's own leader topic)."""
    try:
        return {tp for tp in app.consumer.assignment() if tp.topic == topic}
    except Exception:  # rebalancing
        return set()
