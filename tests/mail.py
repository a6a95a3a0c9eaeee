"""A real SMTP server (aiosmtpd) for the tests that check what notices said, and to whom."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from homeroom_dev.infra.smtp import EmbeddedSMTP

Match = Callable[[EmailMessage], bool]


def smtp_overrides(smtp: EmbeddedSMTP) -> dict[str, Any]:
    """Settings that point a service under test at the test's SMTP server."""
    return {"smtp_host": smtp.host, "smtp_port": smtp.port, "notice_poll_interval_s": 0.1}


def _report(count: int, found: list[EmailMessage], read: list[EmailMessage]) -> str:
    return f"expected {count} matching e-mail(s), found {len(found)}; received: {[m['Subject'] for m in read]}"


def _found(
    read: Callable[[], list[EmailMessage]], match: Match, count: int, deadline: float
) -> list[EmailMessage] | None:
    """The matching messages once there are `count`; None to keep waiting; fails past the deadline."""
    everything = read()
    found = [m for m in everything if match(m)]
    if len(found) >= count:
        return found
    assert time.monotonic() <= deadline, _report(count, found, everything)
    return None


async def mail_arrives(
    read: Callable[[], list[EmailMessage]], match: Match, *, count: int = 1, timeout_s: float = 30.0
) -> list[EmailMessage]:
    """Wait (without blocking the services running in this loop) until `count` messages match.
    A whole stack's mail is read without waiting: `Stack.mail()`."""
    deadline = time.monotonic() + timeout_s
    while (found := _found(read, match, count, deadline)) is None:  # noqa: ASYNC110 (polling a file)
        await asyncio.sleep(0.1)
    return found


def to(address_part: str) -> Match:
    return lambda m: address_part in str(m["To"])
