"""The audit service as the kernel runs it: `homeroom serve audit`.

On start it loads (or, outside production, creates) the log's signing key and starts the
head keeper: a background task that signs a tree head every `head_interval_s` when the
log has grown (and at least every `head_max_age_s` regardless), and keeps the tree-size
and appended-entries metrics in step with what is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from homeroom.service import Runtime, ServiceSpec
from services.audit.api import router
from services.audit.consumers import consumer_spec
from services.audit.heads import keep_heads
from services.audit.settings import WRITER_ROLE, AuditSettings
from services.audit.signing import load_keyring, load_or_create_signer


async def _on_start(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    if settings.environment == "production" and not settings.signing_key_path.exists():
        raise FileNotFoundError(f"the log's signing key {settings.signing_key_path} does not exist")
    if settings.writer_role:
        member = await runtime.pool.fetchval(
            """SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                      THEN pg_has_role(current_user, $1, 'MEMBER') ELSE false END""",
            settings.writer_role,
        )
        if not member:
            raise PermissionError(
                f"the database user may not SET ROLE {settings.writer_role}: grant it "
                f"(GRANT {settings.writer_role} TO <login role>) or set HOMEROOM_AUDIT_WRITER_ROLE=''"
            )
    signer = load_or_create_signer(settings.signing_key_path)
    runtime.extras["signer"] = signer
    runtime.extras["keyring"] = load_keyring(signer, settings.retired_keys_path)
    runtime.extras["head_task"] = asyncio.create_task(keep_heads(runtime, settings), name="audit-head-keeper")


async def _on_stop(runtime: Runtime) -> None:
    task: asyncio.Task[None] | None = runtime.extras.pop("head_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


SERVICE = ServiceSpec(
    name="audit",
    settings=AuditSettings,
    routers=(router,),
    consumers=(consumer_spec(),),
    migrations=Path(__file__).parent / "migrations",
    description="The append-only, verifiable log of every disclosure (RFC 9162 Merkle tree).",
    uses_cipher=False,
    database_roles=(WRITER_ROLE,),
    on_start=_on_start,
    on_stop=_on_stop,
    openapi_tags=(
        {"name": "compliance", "description": "Search, export and verify the disclosure log"},
        {"name": "proofs", "description": "Signed tree heads, inclusion and consistency proofs"},
        {"name": "parents", "description": "What was disclosed about a child, in plain language"},
    ),
)
