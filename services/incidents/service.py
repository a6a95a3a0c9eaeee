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
import json
from pathlib import Path

from homeroom.checkpoint import COSIGNATURE_V1, NoteSigner, Verifier, public_key_from_pem
from homeroom.service import Runtime, ServiceSpec
from homeroom.tlog.signing import Keyring
from homeroom.witness import load_private_key
from services.incidents import metrics
from services.incidents.api import ROUTERS
from services.incidents.application import clocks
from services.incidents.application.common import STATE_KEY, IncidentsState, state_of
from services.incidents.clients import Peers
from services.incidents.settings import IncidentsSettings


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


async def on_start(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, IncidentsSettings)
    key = load_private_key(settings.signing_key_path, create=settings.environment != "production")
    peers = Peers.build(
        {"audit": settings.audit_url, "consent": settings.consent_url, "records": settings.records_url},
        runtime.service_token,
        timeout_s=settings.peer_timeout_s,
    )
    state = IncidentsState(
        settings=settings,
        peers=peers,
        signer=NoteSigner(settings.signer_name, key),
        witness=_witness(settings),
        audit_keys=_pinned_audit_keys(settings),
    )
    runtime.extras[STATE_KEY] = state
    metrics.initialise()
    state.tasks.append(asyncio.create_task(clocks.keep(runtime.pool, settings.clock_refresh_s), name="incident-clocks"))


async def on_stop(runtime: Runtime) -> None:
    if STATE_KEY not in runtime.extras:
        return
    state = state_of(runtime)
    for task in state.tasks:
        await clocks.stop(task)
    await state.peers.aclose()


SERVICE = ServiceSpec(
    name="incidents",
    settings=IncidentsSettings,
    routers=ROUTERS,
    migrations=Path(__file__).parent / "migrations",
    description="Breach response: incidents, their scope proven from the disclosure log, the clocks, the notices.",
    sends_notices=True,
    on_start=on_start,
    on_stop=on_stop,
    openapi_tags=(
        {"name": "incidents", "description": "Breaches and unauthorized releases (8 NYCRR 121.10)"},
        {"name": "scope", "description": "Who and what was affected, proven from the disclosure log"},
        {"name": "notices", "description": "Reports to the CPO, letters to families, district summaries"},
        {"name": "public", "description": "Breach notices districts choose to publish"},
    ),
)
