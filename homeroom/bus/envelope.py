"""Events on the wire: a protobuf value plus CloudEvents binary-mode headers.

`build_event` wraps a past-tense payload (StudentEnrolled, DisclosureRecorded ...) in its
topic's event message with an `EventMeta`, and mirrors the meta into ce_* headers so
tools and brokers can route on them without decoding protobuf. `decode` does the
reverse and raises `PoisonMessage`, naming what is wrong, for anything it cannot read.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from homeroom.bus.topics import BY_NAME, Topic
from homeroom.events.v1.envelope_pb2 import EventMeta

SPEC_VERSION = b"1.0"
CONTENT_TYPE = b"application/protobuf"


class PoisonMessage(Exception):
    """A message that can never be applied, however often it is retried."""

    def __init__(self, rule: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field


def undecoded_event_id(topic: str, partition: int, offset: int, headers: Sequence[tuple[str, bytes]]) -> str:
    """The id a record that could not be decoded is dead-lettered under: its ce_id header, else
    where it stood (topic:partition:offset)."""
    return dict(headers).get("ce_id", b"").decode(errors="replace") or f"{topic}:{partition}:{offset}"


_VERSIONED = re.compile(r"^(.+?)\.(v\d+)(?:\..*)?$")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@functools.lru_cache(maxsize=1024)
def event_type(topic_name: str, change: str) -> str:
    """CloudEvents type from the topic's base name and version, e.g. enrollment.v1 + student_enrolled
    → org.homeroom.enrollment.v1.StudentEnrolled. A per-test suffix after the version is ignored."""
    match = _VERSIONED.match(topic_name)
    base, version = (match.group(1), match.group(2)) if match else (topic_name, "v1")
    return f"org.homeroom.{base}.{version}.{_camel(change)}"


# The namespaces are a few constants; a UUID's `bytes` is computed from its int on every read.
_NAMESPACE_BYTES: dict[uuid.UUID, bytes] = {}
# The RFC 4122 variant digit of a version-5 UUID: the top two bits of the digit forced to 10.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def derived_id(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, without building a UUID object: the id of an
    event derived from a cause, which ingest makes once per record."""
    prefix = _NAMESPACE_BYTES.get(namespace)
    if prefix is None:
        prefix = _NAMESPACE_BYTES[namespace] = namespace.bytes
    h = hashlib.sha1(prefix + name.encode(), usedforsecurity=False).hexdigest()
    # Digit 12 becomes the version (5), digit 16 carries the variant; the rest is the hash.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


@functools.lru_cache(maxsize=64)  # a batch of events is stamped with one time
def timestamp(when: datetime) -> tuple[int, int, bytes]:
    """Seconds and nanos of a protobuf Timestamp, and the RFC 3339 text its ToJsonString
    gives (UTC, "Z", no fraction or 3 or 6 digits), without protobuf's slow conversions:
    every event is stamped, ingest builds thousands a second."""
    when = when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)
    micros = when.microsecond
    seconds = (when - _EPOCH) // _SECOND
    fraction = "" if micros == 0 else f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    text = f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    return seconds, micros * 1000, f"{text}{fraction}Z".encode()


_SPEC_VERSION_HEADER = ("ce_specversion", SPEC_VERSION)
_CONTENT_TYPE_HEADER = ("content-type", CONTENT_TYPE)
# Type, source, time and correlation id repeat across the events of a batch: each distinct
# value gets one shared header tuple, not a new tuple (and encoded copy) per event, which
# also spares the garbage collector (ingest holds thousands of built events at a time).
_SHARED_HEADERS: dict[tuple[str, str | bytes], tuple[str, bytes]] = {}
_SHARED_KEPT = 1024


def _shared_header(name: str, value: str | bytes) -> tuple[str, bytes]:
    pair = _SHARED_HEADERS.get((name, value))
    if pair is None:
        pair = (name, value.encode() if isinstance(value, str) else value)
        if len(_SHARED_HEADERS) >= _SHARED_KEPT:
            _SHARED_HEADERS.clear()
        _SHARED_HEADERS[(name, value)] = pair
    return pair


# An event is built as bytes rather than as a protobuf message that is then serialised:
# protobuf's wire rule is that a message is its fields' encodings concatenated in field-number
# order, a length-delimited field being tag, length and bytes. EventMeta's strings are encoded
# here (the fields a batch shares, and their headers, once per batch), and the payload is
# serialised on its own: about 0.6 of the CPU of filling the event message and serialising it
# whole (issue #19; `bench/bus.py --build`). Tested byte for byte against protobuf's own
# serialisation of the whole message (tests/kernel/test_event_bytes.py).


def _varint(value: int) -> bytes:
    """A non-negative int as a protobuf varint (seven bits a byte, low bits first)."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(message: type[Message], name: str) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(message.DESCRIPTOR.fields_by_name[name].number << 3 | 2)


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _delimited(tag: bytes, data: bytes) -> bytes:
    size = len(data)
    return b"".join((tag, _ONE_BYTE[size] if size < 0x80 else _varint(size), data))


def _text(tag: bytes, text: str) -> bytes:
    """A proto3 string field: absent when empty."""
    return _delimited(tag, text.encode()) if text else b""


_ID, _TYPE, _SOURCE, _TIME, _SUBJECT, _DISTRICT, _CORRELATION, _CAUSATION = (
    _tag(EventMeta, name)
    for name in ("id", "type", "source", "time", "subject", "district_id", "correlation_id", "causation_id")
)
_META = b"\x0a"  # every topic's event message carries its EventMeta as field 1 (checked in _change_field)


_Header = tuple[str, bytes]


@functools.lru_cache(maxsize=64)  # a batch of events shares its type, source and time
def _meta_head(ce_type: str, source: str, when: datetime) -> tuple[bytes, tuple[_Header, _Header, _Header]]:
    """EventMeta's type, source and time fields, encoded, and their ce_type, ce_source and
    ce_time headers."""
    seconds, nanos, time_text = timestamp(when)
    stamp = Timestamp(seconds=seconds, nanos=nanos).SerializeToString()
    fields = _text(_TYPE, ce_type) + _text(_SOURCE, source) + _delimited(_TIME, stamp)
    headers = (
        _shared_header("ce_type", ce_type),
        _shared_header("ce_source", source),
        _shared_header("ce_time", time_text),
    )
    return fields, headers


@functools.lru_cache(maxsize=64)
def _meta_tail(district_id: str, correlation_id: str, causation_id: str) -> tuple[bytes, tuple[_Header, ...]]:
    """EventMeta's district, correlation and causation fields, encoded, and the ce_correlationid
    header (none without a correlation id)."""
    fields = _text(_DISTRICT, district_id) + _text(_CORRELATION, correlation_id) + _text(_CAUSATION, causation_id)
    return fields, (_shared_header("ce_correlationid", correlation_id),) if correlation_id else ()


def _has_map(descriptor: Any, seen: frozenset[str] = frozenset()) -> bool:  # protobuf types it as two classes
    """Whether a message holds a map field, itself or in a message field (at any depth)."""
    seen = seen | {descriptor.full_name}
    for one in descriptor.fields:
        nested = one.message_type
        if nested is None or nested.full_name in seen:
            continue
        if nested.GetOptions().map_entry or _has_map(nested, seen):
            return True
    return False


_CHANGES: dict[tuple[type[Message], str], tuple[bytes, type[Message], bool]] = {}


def _change_field(message: type[Message], change: str) -> tuple[bytes, type[Message], bool]:
    """The tag of `change` in the event message, the payload class it takes, and whether that
    class holds a map."""
    found = _CHANGES.get((message, change))
    if found is not None:
        return found
    descriptor = message.DESCRIPTOR
    field = descriptor.fields_by_name.get(change)
    if field is None or field.containing_oneof is None or field.message_type is None:
        raise AttributeError(f"{descriptor.full_name} has no change {change!r}")
    meta = descriptor.fields_by_name["meta"]
    if meta.number != 1 or field.number < meta.number:  # the concatenation below puts meta first
        raise AttributeError(f"{descriptor.full_name}: meta must be field 1, before the changes")
    found = _CHANGES[(message, change)] = (
        _tag(message, change),
        type(getattr(message(), change)),
        _has_map(field.message_type),
    )
    return found


@dataclass(slots=True)
class OutgoingEvent:
    """An event ready for the bus (or the outbox): everything already serialised.

    Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, about
    0.4 µs more per event, and nothing changes an event once built."""

    event_id: str
    topic: str
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes


def build_event(
    topic: Topic,
    change: str,
    payload: Message,
    *,
    source: str,
    subject: str,
    district_id: str = "",
    key: str | None = None,
    correlation_id: str = "",
    causation_id: str = "",
    event_id: str | None = None,
    time: datetime | None = None,
    topic_name: str | None = None,
) -> OutgoingEvent:
    """Wrap `payload` as the `change` case of `topic`'s event message.

    `event_id` should be deterministic where the event is derived from another (for
    example uuid5 of the cause), so that re-deriving it after a crash yields the same id
    and consumers drop the repeat.
    """
    name = topic_name or topic.name
    ce_id = event_id or str(uuid.uuid4())
    ce_type = event_type(topic.name, change)
    change_tag, payload_class, has_map = _change_field(topic.message, change)
    if type(payload) is not payload_class:  # as the message's CopyFrom would refuse it
        raise TypeError(
            f"Parameter to CopyFrom() must be instance of same class: expected {payload_class} got {type(payload)}."
        )
    if has_map:
        # A map is written in its hash table's order, which a copy may not share: serialise
        # the copy the event message would hold, as building it whole did (same bytes).
        held = payload_class()
        held.CopyFrom(payload)
        body = held.SerializeToString()
    else:
        body = payload.SerializeToString()
    head, stamped = _meta_head(ce_type, source, time or datetime.now(UTC))
    tail, correlated = _meta_tail(district_id, correlation_id, causation_id)
    meta = b"".join((_text(_ID, ce_id), head, _text(_SUBJECT, subject), tail))
    headers = [
        _SPEC_VERSION_HEADER,
        ("ce_id", ce_id.encode()),
        *stamped,
        ("ce_subject", subject.encode()),
        _CONTENT_TYPE_HEADER,
        *correlated,
    ]
    partition_key = key if key is not None else subject
    return OutgoingEvent(
        ce_id,
        name,
        partition_key.encode() if partition_key else None,
        headers,
        _delimited(_META, meta) + _delimited(change_tag, body),
    )


@dataclass(slots=True)
class IncomingEvent:
    """A decoded event with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes]
    event_id: str
    message: Message
    change: str
    payload: Message
    meta: EventMeta = field(default_factory=EventMeta)


@functools.lru_cache(maxsize=256)
def base_topic(topic_name: str) -> Topic:
    """The registered topic for a name, allowing the per-test suffixes of `with_suffix`."""
    if topic_name in BY_NAME:
        return BY_NAME[topic_name]
    for name, topic in BY_NAME.items():
        if topic_name.startswith(name + "."):
            return topic
    raise PoisonMessage("topic.unknown", f"no message type is registered for topic {topic_name!r}")


def decode(
    topic_name: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
) -> IncomingEvent:
    header_map = dict(headers)
    topic = base_topic(topic_name)
    if value is None:
        raise PoisonMessage("payload.missing", "the message has no value")
    message = topic.message()
    try:
        message.ParseFromString(value)
    except DecodeError as exc:
        raise PoisonMessage(
            "payload.malformed", f"the value is not a valid {topic.message.DESCRIPTOR.name}: {exc}"
        ) from None
    change = message.WhichOneof("change")
    if change is None:
        raise PoisonMessage("payload.empty", f"the {topic.message.DESCRIPTOR.name} carries no change", "change")
    meta: EventMeta = message.meta  # type: ignore[attr-defined]
    event_id = meta.id or header_map.get("ce_id", b"").decode(errors="replace")
    if not event_id:
        raise PoisonMessage("meta.id_missing", "the event has no id (meta.id or ce_id header)", "meta.id")
    # In field order, not by keyword: ten keywords cost 1.6 µs more per event (CPython 3.11).
    payload = getattr(message, change)
    return IncomingEvent(topic_name, partition, offset, key, header_map, event_id, message, change, payload, meta)
