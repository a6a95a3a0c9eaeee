"""The incidents service as the kernel runs it: `homeroom serve incidents`.

Its own bounded context and database (docs/services/incidents.md says why): an incident's
record changes (status, clocks, letters), the disclosure log never does, so incidents live
beside the log, not in it; the service reads the log only through audit's selection, with
proofs, and holds no key that could unseal student data.

On start it loads (or, outside production, creates) the key that signs frozen scopes,
builds its peers' clients, and starts the clocks' keeper (metrics for the alert rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime

from homeroom.checkpoint import COSIGNATURE_V1, NoteSigner, Verifier, public_key_from_pem
from homeroom.service import ServiceSpec
from homeroom.tlog.signing import Keyring
from homeroom.witness import load_private_key
from services.incidents import metrics
from services.incidents.api import ROUTERS, TAGS
from services.incidents.application import clocks
from services.incidents.clients import Peers
from services.incidents.settings import IncidentsSettings
from services.incidents.state import IncidentsRuntime, IncidentsState


def _pinned_audit_keys(settings: IncidentsSettings) -> Keyring | None:
    """A saved `GET /v1/keys` answer of audit ({"keys": {id: PEM}}), or a plain {id: PEM}."""
    path = settings.audit_keys_file
    if path is None:
        return None
    raw = json.loads(path.read_text())
    pems = raw.get("keys", raw) if isinstance(raw, dict) else {}
    return Keyring.from_pems(str(p).encode() for p in pems.values())


def _witness(settings: IncidentsSettings) -> Verifier | None:
    path = settings.witness_public_key_file
    if path is None or not path.exists():
        return None
    return Verifier(settings.witness_name, COSIGNATURE_V1, public_key_from_pem(path.read_bytes()))


@contextlib.asynccontextmanager
async def lifecycle(runtime: IncidentsRuntime) -> AsyncIterator[IncidentsState]:
    """The signing key, the peers' clients (to the transports a test gave, else the network)
    and the clocks' keeper; the keeper stopped and the clients closed on the way out."""
    settings = runtime.settings
    key = load_private_key(settings.signing_key_path, create=settings.environment != "production")
    urls = {"audit": settings.audit_url, "consent": settings.consent_url, "records": settings.records_url}
    transports = {name: t for name in urls if (t := runtime.peer(name)) is not None}
    peers = Peers.build(urls, runtime.service_token, timeout_s=settings.peer_timeout_s, transports=transports)

    def now() -> datetime:
        return runtime.clock()  # read at each use: tests move the runtime's clock

    try:
        state = IncidentsState(
            settings=settings,
            peers=peers,
            signer=NoteSigner(settings.signer_name, key),
            witness=_witness(settings),
            audit_keys=_pinned_audit_keys(settings),
            clock=now,
        )
        metrics.initialise()
        keeper = asyncio.create_task(clocks.keep(runtime.pool, settings.clock_refresh_s), name="incident-clocks")
        try:
            yield state
        finally:
            await clocks.stop(keeper)
    finally:
        await peers.aclose()


SERVICE = ServiceSpec(
    settings=IncidentsSettings,
    routers=ROUTERS,
    description="Breach response: incidents, their scope proven from the disclosure log, the clocks, the notices.",
    sends_notices=True,
    lifecycle=lifecycle,
    openapi_tags=TAGS,
)
