"""Every topic Homeroom uses, with its message type, partitions and retention.

Topics are created explicitly before use: the embedded broker gives auto-created topics
4 partitions, and a consumer that reads several topics by partition number (the reports
tally: one student's events on the same partition of each) needs the counts declared here.
Keys are the pseudonymous student key (or the agreement / district id where a topic is about
those) so one student's events stay in order on one partition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from google.protobuf.message import Message

from homeroom.events.v1 import (
    attendance_pb2,
    calendar_pb2,
    consent_pb2,
    discipline_pb2,
    disclosure_pb2,
    enrollment_pb2,
    groups_pb2,
    incident_pb2,
    rejected_pb2,
    roster_pb2,
    transfer_pb2,
)

FOREVER = -1


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    message: type[Message]
    partitions: int = 6
    retention_ms: int = 7 * 24 * 3600 * 1000
    key: str = "student key"
    description: str = ""


def _history(name: str, message: type[Message], *, key: str, description: str = "") -> Topic:
    """A topic a reader started later replays from the start: one partition (one order), kept forever."""
    return Topic(name, message, partitions=1, retention_ms=FOREVER, key=key, description=description)


ENROLLMENT = Topic("enrollment.v1", enrollment_pb2.EnrollmentEvent, description="enroll, withdraw, school change")
ORGANIZATION = Topic(
    "organization.v1", enrollment_pb2.OrganizationEvent, partitions=1, key="district id", description="schools"
)
ATTENDANCE = Topic("attendance.v1", attendance_pb2.AttendanceEvent, description="daily and period attendance")
DISCIPLINE = Topic("discipline.v1", discipline_pb2.DisciplineEvent, description="suspensions, dates only")
# Coarse group codes (sex, programs) for statewide statistics: read by the reports service only.
GROUPS = Topic("groups.v1", groups_pb2.GroupsEvent, description="student-group codes for statewide statistics")
CONSENT = Topic(
    "consent.v1", consent_pb2.ConsentEvent, retention_ms=FOREVER, description="consents, opt-outs, agreements"
)
KEYS = _history("keys.v1", consent_pb2.KeyEvent, key="district id")
TRANSFER = Topic("transfer.v1", transfer_pb2.TransferEvent, retention_ms=FOREVER, description="transfer case steps")
DISCLOSURE = Topic(
    "disclosure.v1", disclosure_pb2.DisclosureEvent, retention_ms=FOREVER, description="every release of student data"
)
# Rosters for vendors' apps (issue 23): sessions, courses, classes, staff, class enrollments.
# Keyed by district id so a district's roster changes stay in order on one partition.
ROSTER = Topic(
    "roster.v1",
    roster_pb2.RosterEvent,
    partitions=6,
    key="district id",
    description="academic sessions, courses, classes, staff, class enrollments",
)
# Kept forever: a reports service started later must find every school year's calendar.
CALENDAR = _history(
    "calendar.v1",
    calendar_pb2.SchoolCalendarEvent,
    key="district id",
    description="school calendars: instructional days per school and school year",
)
# Breach incidents (8 NYCRR 121.10): every change, for the audit log; kept forever like it.
INCIDENT = _history(
    "incident.v1",
    incident_pb2.IncidentEvent,
    key="incident id",
    description="breach incidents: opened, scoped, notified, contained, closed",
)
REJECTED = Topic(
    "ingest.rejected.v1", rejected_pb2.RejectedEvent, retention_ms=30 * 24 * 3600 * 1000, description="dead letters"
)

ALL_TOPICS: tuple[Topic, ...] = (
    ENROLLMENT,
    ORGANIZATION,
    ROSTER,
    ATTENDANCE,
    DISCIPLINE,
    GROUPS,
    CALENDAR,
    CONSENT,
    KEYS,
    TRANSFER,
    DISCLOSURE,
    INCIDENT,
    REJECTED,
)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL_TOPICS}


def with_suffix(topic: Topic, suffix: str) -> Topic:
    """A copy under another name: tests give each test its own topics on one broker."""
    return Topic(
        f"{topic.name}.{suffix}",
        topic.message,
        topic.partitions,
        topic.retention_ms,
        topic.key,
        topic.description,
    )


async def ensure_topics(
    client_kwargs: Mapping[str, object], topics: tuple[Topic, ...] | list[Topic], replication_factor: int = 1
) -> None:
    """Create missing topics. Production uses replication factor 3 (see docs/operations.md)."""
    admin = AIOKafkaAdminClient(**client_kwargs)
    await admin.start()
    try:
        for topic in topics:
            config = {"retention.ms": str(topic.retention_ms)}
            with contextlib.suppress(TopicAlreadyExistsError):
                # One at a time: a batch with one existing topic would fail as a whole.
                await admin.create_topics(
                    [
                        NewTopic(
                            topic.name,
                            num_partitions=topic.partitions,
                            replication_factor=replication_factor,
                            topic_configs=config,
                        )
                    ]
                )
    finally:
        await admin.close()
