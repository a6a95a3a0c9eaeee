"""A real local SMTP server (aiosmtpd) for the embedded stack and the tests.

It accepts every message for any address on 127.0.0.1 and appends it to an mbox file, so
a test, the demo or a person can read exactly what Homeroom's notices said and to whom.
Production points `HOMEROOM_SMTP_HOST` at a real mail server instead.
"""

from __future__ import annotations

import mailbox
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from homeroom_dev.infra.process import free_port


class _MboxHandler:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        with self.lock:
            box = mailbox.mbox(self.path)
            try:
                box.lock()
                box.add(raw)
                box.flush()
            finally:
                box.unlock()
                box.close()
        return "250 Message accepted for delivery"


class EmbeddedSMTP:
    """`EmbeddedSMTP(mbox_path).start()`; `.port`, `.messages()`, `.stop()`."""

    def __init__(self, mbox_path: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.path = mbox_path
        self.host = host
        self.port = port or free_port(host)
        self._handler = _MboxHandler(mbox_path)
        self._controller: Controller | None = None

    def start(self) -> EmbeddedSMTP:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        self._controller = Controller(self._handler, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def messages(self) -> list[EmailMessage]:
        """Every message received so far, parsed, oldest first."""
        return read_mbox(self.path)

    def __enter__(self) -> EmbeddedSMTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_mbox(path: Path) -> list[EmailMessage]:
    if not path.exists():
        return []
    box = mailbox.mbox(path)
    try:
        out: list[EmailMessage] = []
        for message in box:
            parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out
    finally:
        box.close()
