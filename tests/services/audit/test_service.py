"""The audit service end to end: events on the real broker become entries exactly once."""

from __future__ import annotations

import uuid

from homeroom.bus.topics import DISCLOSURE
from tests.services.audit.conftest import Audit, disclosure


async def test_published_disclosure_becomes_one_entry(audit: Audit) -> None:
    event_id = str(uuid.uuid4())
    event = audit.event(DISCLOSURE, "disclosure_recorded", disclosure(), event_id=event_id)
    await audit.publish(event)
    await audit.publish(event)  # redelivered: the same id again
    await audit.wait_for_processed(1)
    await audit.wait_for_entries(1)
    other = audit.event(DISCLOSURE, "disclosure_recorded", disclosure())
    await audit.publish(other)
    await audit.wait_for_entries(2)
    rows = await audit.svc.pool.fetch("SELECT seq, event_id FROM entries ORDER BY seq")
    assert [(r["seq"], r["event_id"]) for r in rows] == [(0, event_id), (1, other.event_id)]
