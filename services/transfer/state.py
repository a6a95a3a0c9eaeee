"""What a running transfer service holds, typed: the two peers a case needs and the case
worker, built by the service's lifecycle (`service.py`) and reached as `runtime.state`.

`TransferRuntime` is the kernel's runtime typed with this service's settings and state;
`RuntimeDep` hands it to a route (the routes need its pool, clock and settings too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends

from homeroom.contracts.clients import ConsentClient, RecordsClient
from homeroom.service import Runtime, get_runtime
from services.transfer.settings import TransferSettings

if TYPE_CHECKING:
    from services.transfer.worker import CaseWorker


@dataclass(slots=True)
class TransferState:
    consent: ConsentClient  # the consent decision point
    records: RecordsClient  # records' internal transfer endpoints (package, deliver)
    worker: CaseWorker | None = None  # drives open cases; started when `worker_enabled`


TransferRuntime = Runtime[TransferSettings, TransferState]


RuntimeDep = Annotated[TransferRuntime, Depends(get_runtime)]
