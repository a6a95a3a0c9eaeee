"""A real SMTP server (aiosmtpd) for the tests that check what notices said, and to whom."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from homeroom.infra.smtp import EmbeddedSMTP

Match = Callable[[EmailMessage], bool]


def smtp_overrides(smtp: EmbeddedSMTP) -> dict[str, Any]:
    """Settings that point a service under test at the test's SMTP server."""
    return {"smtp_host": smtp.host, "smtp_port": smtp.port, "notice_poll_interval_s": 0.1}


def _report(count: int, found: list[EmailMessage], read: list[EmailMessage]) -> str:
    return f"expected {count} matching e-mail(s), found {len(found)}; received: {[m['Subject'] for m in read]}"


async def mail_arrives(
    read: Callable[[], list[EmailMessage]], match: Match, *, count: int = 1, timeout_s: float = 30.0
) -> list[EmailMessage]:
    """Wait (without blocking the services running in this loop) until `count` messages match."""
    deadline = time.monotonic() + timeout_s
    while True:
        everything = read()
        found = [m for m in everything if match(m)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, _report(count, found, everything)
            return found
        await asyncio.sleep(0.1)


def wait_for_mail(
    read: Callable[[], list[EmailMessage]], match: Match, *, count: int = 1, timeout_s: float = 60.0
) -> list[EmailMessage]:
    """The same for a whole stack running in other processes."""
    deadline = time.monotonic() + timeout_s
    while True:
        everything = read()
        found = [m for m in everything if match(m)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, _report(count, found, everything)
            return found
        time.sleep(0.2)


def to(address_part: str) -> Match:
    return lambda m: address_part in str(m["To"])
