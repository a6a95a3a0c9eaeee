"""What a running incidents service holds, typed: one object, built by the service's
lifecycle (`service.py`) and reached as `runtime.state` by the use cases in `application/`.

`IncidentsRuntime` is the kernel's runtime typed with this service's settings and state;
`RuntimeDep` hands it to a route, `StateDep` the state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends

from homeroom.checkpoint import NoteSigner, Verifier
from homeroom.clock import Clock, system_clock
from homeroom.service import Runtime, get_runtime, get_state
from homeroom.tlog.signing import Keyring
from services.incidents.clients import Peers
from services.incidents.settings import IncidentsSettings


@dataclass(slots=True)
class IncidentsState:
    """The service's own objects; `clock` reads the runtime's clock, which tests move."""

    settings: IncidentsSettings
    peers: Peers
    signer: NoteSigner
    witness: Verifier | None = None
    audit_keys: Keyring | None = None  # pinned; None: what audit's /v1/keys says
    clock: Clock = system_clock

    def now(self) -> datetime:
        return self.clock()


IncidentsRuntime = Runtime[IncidentsSettings, IncidentsState]
RuntimeDep = Annotated[IncidentsRuntime, Depends(get_runtime)]
StateDep = Annotated[IncidentsState, Depends(get_state)]
