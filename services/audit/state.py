"""What a running audit service holds, typed: the log's signer and keyring, the witness's
transport, the head keeper; reached by routes and consumers alike.

`AuditState` is built by the service's lifecycle (`service.py`) and is `runtime.state`;
`AuditRuntime` is the kernel's runtime typed with this service's settings and state, and
`RuntimeDep` hands it to a route."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
from fastapi import Depends

from homeroom.clock import Clock
from homeroom.service import Runtime, get_runtime
from homeroom.tlog.signing import Keyring, LogSigner
from services.audit.settings import AuditSettings

WITNESS_PEER = "witness"  # tests give the in-process witness as `peers={"witness": ...}`
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class AuditState:
    settings: AuditSettings
    signer: LogSigner  # signs tree heads and checkpoints
    keyring: Keyring  # the signer's public key first, then every retired one
    clock: Clock
    witness_transport: httpx.AsyncBaseTransport | None = None  # None: the network (witness_url)
    head_keeper: asyncio.Task[None] | None = None

    def now_ms(self) -> int:
        """Now by the service's clock, in milliseconds since the Unix epoch (what heads and entries record)."""
        return epoch_ms(self.clock())


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch (what heads and entries record)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


AuditRuntime = Runtime[AuditSettings, AuditState]
RuntimeDep = Annotated[AuditRuntime, Depends(get_runtime)]
