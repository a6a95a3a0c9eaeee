"""`build_event` writes an event's bytes itself (EventMeta's fields and the payload joined by
their protobuf tags, issue #19): they must be the bytes protobuf gives for the whole event message
filled the way it was built before, for every topic and change, any payload (maps included) and
any meta. The oracle below is that older way: fill the topic's message, serialise it whole."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeroom.bus.envelope import OutgoingEvent, build_event, event_type
from homeroom.bus.topics import ATTENDANCE, BY_NAME, ENROLLMENT, GROUPS, Topic
from homeroom.events.v1.attendance_pb2 import AttendanceRecorded, ChronicAbsenceDetected
from homeroom.events.v1.enrollment_pb2 import StudentRegistered
from homeroom.events.v1.groups_pb2 import StudentGroupsRecorded

CHANGES = sorted(
    (topic_name, field.name)
    for topic_name, topic in BY_NAME.items()
    for field in topic.message.DESCRIPTOR.fields
    if field.containing_oneof is not None
)
# Around the one-byte length limit (127) of a length-delimited field, and empty (an absent field).
TEXT = st.one_of(st.just(""), st.text(max_size=10), st.text(min_size=100, max_size=160))
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))])
WHEN = st.one_of(
    st.just(datetime(1970, 1, 1, tzinfo=UTC)),  # seconds and nanos 0: the time field is still present
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.one_of(st.none(), ZONES)),
)
_INTEGERS = {
    FieldDescriptor.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
}


def _scalar(field: Any) -> st.SearchStrategy[Any]:
    kind = field.cpp_type
    if kind in _INTEGERS:
        return _INTEGERS[kind]
    if kind == FieldDescriptor.CPPTYPE_STRING:
        return st.binary(max_size=150) if field.type == FieldDescriptor.TYPE_BYTES else TEXT
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        return st.sampled_from([value.number for value in field.enum_type.values])
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        return st.floats(allow_nan=False)
    if kind == FieldDescriptor.CPPTYPE_FLOAT:
        return st.floats(width=32, allow_nan=False)
    raise AssertionError(f"no strategy for {field.full_name}")


def fill(data: st.DataObject, message: Message, depth: int = 0) -> None:
    """Set a drawn subset of `message`'s fields (every kind: scalars, repeated, nested, maps)."""
    for field in message.DESCRIPTOR.fields:
        if depth > 2 or not data.draw(st.booleans()):
            continue
        value = getattr(message, field.name)
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            # inserts and deletes, so that the map's table order is not its insertion order
            keys = data.draw(st.lists(_scalar(entry.fields_by_name["key"]), max_size=12))
            for i, map_key in enumerate(keys):
                if entry.fields_by_name["value"].message_type is not None:
                    fill(data, value[map_key], depth + 1)
                else:
                    value[map_key] = data.draw(_scalar(entry.fields_by_name["value"]))
                if i % 3 == 2 and keys[i // 2] in value:
                    del value[keys[i // 2]]
        elif field.is_repeated:
            for _ in range(data.draw(st.integers(0, 3))):
                if entry is not None:
                    fill(data, value.add(), depth + 1)
                else:
                    value.append(data.draw(_scalar(field)))
        elif entry is not None:
            fill(data, value, depth + 1)
            value.SetInParent()  # present even when every field is at its default
        else:
            setattr(message, field.name, data.draw(_scalar(field)))


def whole_message(topic: Topic, change: str, payload: Message, built: OutgoingEvent, **meta: Any) -> bytes:
    """The event as `build_event` made it before: protobuf's message filled, serialised whole."""
    event = topic.message()
    event.meta.id = built.event_id  # type: ignore[attr-defined]
    event.meta.type = event_type(topic.name, change)  # type: ignore[attr-defined]
    for name in ("source", "subject", "district_id", "correlation_id", "causation_id"):
        setattr(event.meta, name, meta.get(name, ""))  # type: ignore[attr-defined]
    event.meta.time.FromDatetime(meta["time"])  # type: ignore[attr-defined]
    getattr(event, change).CopyFrom(payload)
    return event.SerializeToString()


def check(topic: Topic, change: str, payload: Message, **meta: Any) -> None:
    built = build_event(topic, change, payload, **meta)
    assert built.value == whole_message(topic, change, payload, built, **meta)
    decoded = topic.message.FromString(built.value)
    assert decoded.WhichOneof("change") == change and getattr(decoded, change) == payload


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), which=st.sampled_from(CHANGES))
def test_every_change_of_every_topic_is_byte_identical_to_the_whole_message(
    data: st.DataObject, which: tuple[str, str]
) -> None:
    topic_name, change = which
    topic = BY_NAME[topic_name]
    payload = type(getattr(topic.message(), change))()
    fill(data, payload)
    meta = {name: data.draw(TEXT, label=name) for name in ("subject", "district_id", "correlation_id", "causation_id")}
    check(
        topic,
        change,
        payload,
        source=data.draw(TEXT, label="source"),
        event_id=data.draw(st.one_of(st.none(), st.text(min_size=1, max_size=40)), label="event_id"),
        time=data.draw(WHEN, label="time"),
        **meta,
    )


def test_lengths_of_two_and_three_varint_bytes_and_a_map_reordered_by_deletes() -> None:
    """Fields longer than 127 and 16,383 bytes, and a map whose table order differs from a
    copy's (writing the caller's payload as it is gives other bytes for most such maps)."""
    when = datetime(2026, 12, 7, 6, 0, 0, 123456, tzinfo=UTC)
    long_mark = AttendanceRecorded(student_key="s" * 200, school_id="é" * 9000, source_record_id="r" * 70_000)
    check(ATTENDANCE, "attendance_recorded", long_mark, source="/ingest", subject="ü" * 20_000, time=when)
    rng = random.Random(7)
    for _ in range(50):
        registered = StudentRegistered(student_key="stu_1", district_id="d-1")
        for i in range(40):
            registered.plain_elements[f"element.{rng.randrange(100)}"] = str(i)
            registered.sealed_elements[f"sealed.{rng.randrange(100)}"].ciphertext = bytes([i])
            if i % 4 == 3:
                registered.plain_elements.pop(f"element.{rng.randrange(100)}", None)
        check(ENROLLMENT, "student_registered", registered, source="/ingest", subject="stu_1", time=when)
    groups = StudentGroupsRecorded(student_key="stu_2", groups={"sex": "female", "iep": "yes"})
    check(GROUPS, "student_groups_recorded", groups, source="/ingest", subject="stu_2", time=when)


def test_a_payload_of_another_class_or_an_unknown_change_is_refused_as_before() -> None:
    with pytest.raises(TypeError, match="must be instance of same class"):
        build_event(ATTENDANCE, "attendance_recorded", ChronicAbsenceDetected(), source="/s", subject="x")
    for change in ("nope", "meta"):
        with pytest.raises(AttributeError):
            build_event(ATTENDANCE, change, AttendanceRecorded(), source="/s", subject="x")
