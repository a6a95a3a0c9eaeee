"""The faust app the tally runs on (homeroom/streams.py): faust's per-message bookkeeping is off
and the agent gets the broker's bytes, while faust's other figures and the events' content stay.
The tally's own tests (test_tally.py, test_tally_faults.py) run the same app on the real broker."""

from __future__ import annotations

from pathlib import Path

import faust
from faust.sensors import Monitor
from faust.types import TP, Message

from homeroom import streams
from homeroom.config import KafkaSettings
from services.reports.settings import ReportsSettings

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
