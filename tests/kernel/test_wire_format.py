"""The bytes on the wire are pinned: events `build_event` makes (id, topic, key, headers, value)
and the header block the outbox stores and the relay sends, against digests taken from the code
before it was made faster (issue #19). A change here changes what consumers and tools read."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from homeroom.bus.envelope import OutgoingEvent, build_event, derived_id
from homeroom.bus.topics import ATTENDANCE, ENROLLMENT, with_suffix
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_ABSENT, AttendanceRecorded
from homeroom.events.v1.enrollment_pb2 import StudentEnrolled
from homeroom.outbox import pack_headers, unpack_headers

NAMESPACE = uuid.UUID("6f1c1c36-8a52-4a51-9a7b-5d5a0d7e9c11")
TIMES = [
    datetime(2026, 12, 7, 6, 0, 0, tzinfo=UTC),
    datetime(2026, 12, 7, 6, 0, 0, 123000, tzinfo=UTC),
    datetime(2026, 12, 7, 6, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, 6),  # naive: taken as UTC
    datetime(2026, 12, 7, 7, 0, 0, tzinfo=timezone(timedelta(hours=1))),
]


def samples() -> Iterator[OutgoingEvent]:
    """Attendance as ingest builds it (derived ids, with and without a correlation id, a district
    key), and enrollments with an empty subject, an empty key and a per-test topic name."""
    for i, when in enumerate(TIMES):
        mark = AttendanceRecorded(
            student_key=f"stu_{i}",
            district_id="d-1",
            school_id="s-1",
            date="2026-11-02",
            category=ATTENDANCE_CATEGORY_ABSENT,
        )
        yield build_event(
            ATTENDANCE,
            "attendance_recorded",
            mark,
            source="/ingest/d-1",
            subject=mark.student_key,
            district_id="d-1",
            correlation_id="upload-1" if i % 2 else "",
            causation_id="upload-1",
            event_id=derived_id(NAMESPACE, f"d-1|{i}|é"),
            time=when,
            key="d-1" if i == 3 else None,
        )
    enrolled = StudentEnrolled(student_key="stu_ü", district_id="d-2", school_id="s-9", entry_date="2026-09-01")
    suffixed = with_suffix(ENROLLMENT, "t1")
    yield build_event(
        suffixed,
        "student_enrolled",
        enrolled,
        source="/records",
        subject="",
        event_id="e-1",
        time=TIMES[2],
        topic_name=suffixed.name,
    )
    yield build_event(
        ENROLLMENT,
        "student_enrolled",
        enrolled,
        source="/records",
        subject="stu_ü",
        key="",
        event_id="e-2",
        time=TIMES[1],
    )


# sha256 (first 32 hex digits) of repr((event_id, topic, key, headers, value)) and of the packed headers.
PINNED = [
    ("94e6e69a2413d37f580050feaed65efd", "d98ee866e974f2cd95ba232516f3d74f"),
    ("6a1767534f878fc209dd749715aa6f3c", "ad91bb2ac6460c7e10f69f697dbf15b3"),
    ("0310ed430d0d5abbd8cfe8b652a050a8", "1f02b72e1d4398172b69b5b06de32125"),
    ("06e1a3a85469aa5b1c5c2017e37b8cdc", "f50fcf8ad56bc8302fd951033c8d42e6"),
    ("2df3cea44690c82791dbc2c3f311ea5d", "efee6680a84990400ebc7967da6985ee"),
    ("6330d42ba38ab11e996b68371ee5da0a", "55fd5bc1d1bc498e7c5ba9a7e4ea51d0"),
    ("b3741d26048981a0b8c60bcc5218af2e", "35295d8b00f515d45b4165eb91dec7c6"),
]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@pytest.mark.parametrize(("index", "pinned"), list(enumerate(PINNED)))
def test_built_events_and_relayed_headers_are_byte_identical_to_the_pinned_ones(
    index: int, pinned: tuple[str, str]
) -> None:
    event = list(samples())[index]
    assert isinstance(event.headers, list)  # aiokafka and the relay's readers take a list
    built = repr((event.event_id, event.topic, event.key, [tuple(h) for h in event.headers], event.value))
    packed = pack_headers(event.headers)
    assert (_digest(built.encode()), _digest(packed)) == pinned
    relayed = unpack_headers(packed)
    assert relayed == event.headers and all(isinstance(k, str) and isinstance(v, bytes) for k, v in relayed)
