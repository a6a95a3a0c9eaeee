"""The audit service as the kernel runs it: `homeroom serve audit`.

Its lifecycle loads (or, outside production, creates) the log's signing key and starts the
head keeper (`application/tree_heads.py`): a background task that signs a tree head every
`head_interval_s` when the log has grown (and at least every `head_max_age_s` regardless),
and keeps the tree-size and appended-entries metrics in step with what is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from homeroom.service import ServiceSpec
from homeroom.tasks import cancel
from homeroom.tlog.signing import load_keyring, load_or_create_signer
from services.audit.api import ROUTERS, TAGS
from services.audit.application.tree_heads import keep_heads
from services.audit.consumers import consumer_spec
from services.audit.settings import WRITER_ROLE, AuditSettings
from services.audit.state import WITNESS_PEER, AuditRuntime, AuditState


async def _check_writer_role(runtime: AuditRuntime) -> None:
    """Refuse to start when the login may not SET ROLE to the writer role every write uses."""
    role = runtime.settings.writer_role
    if not role:
        return
    member = await runtime.pool.fetchval(
        """SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                  THEN pg_has_role(current_user, $1, 'MEMBER') ELSE false END""",
        role,
    )
    if not member:
        raise PermissionError(
            f"the database user may not SET ROLE {role}: grant it "
            f"(GRANT {role} TO <login role>) or set HOMEROOM_AUDIT_WRITER_ROLE=''"
        )


@contextlib.asynccontextmanager
async def lifecycle(runtime: AuditRuntime) -> AsyncIterator[AuditState]:
    """The signer, keyring and witness transport; the head keeper (cancelled on the way out)."""
    settings = runtime.settings
    if settings.environment == "production" and not settings.signing_key_path.exists():
        raise FileNotFoundError(f"the log's signing key {settings.signing_key_path} does not exist")
    await _check_writer_role(runtime)
    signer = load_or_create_signer(settings.signing_key_path)
    state = AuditState(
        settings=settings,
        signer=signer,
        keyring=load_keyring(signer, settings.retired_keys_path),
        clock=runtime.clock,
        witness_transport=runtime.peer(WITNESS_PEER),
    )
    runtime.provide(state)  # the keeper reads runtime.state from its first tick
    state.head_keeper = asyncio.create_task(keep_heads(runtime), name="audit-head-keeper")
    try:
        yield state
    finally:
        await cancel(state.head_keeper)


SERVICE = ServiceSpec(
    settings=AuditSettings,
    routers=ROUTERS,
    consumers=(consumer_spec(),),
    description="The append-only, verifiable log of every disclosure (RFC 9162 Merkle tree).",
    database_roles=(WRITER_ROLE,),
    lifecycle=lifecycle,
    openapi_tags=TAGS,
)
