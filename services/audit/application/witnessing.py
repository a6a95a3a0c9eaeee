"""Publishing signed heads where the log's operator cannot quietly withdraw them.

Each signed tree head becomes a checkpoint (c2sp.org/tlog-checkpoint) signed by the log's
key as a signed note, sent to the witness (c2sp.org/tlog-witness `add-checkpoint`) with a
consistency proof from the size that witness cosigned last; the cosigned checkpoint is
kept in `checkpoints` and served at `GET /v1/checkpoint`.

Truncation shows here: the witness remembers the largest log it cosigned, so after entries
and heads are deleted it answers 409 with its size, larger than the log now stored: the
entries from the log's size to the witness's are missing, and that is what is reported
(`homeroom_audit_witness_failures_total{reason="truncated"}`, `/v1/verification`).

Use cases:
- `submit`: ask the witness to cosign a signed head; keep the cosigned checkpoint.
- `latest`: the latest cosigned checkpoint (served at `GET /v1/checkpoint`).

Takes a signed head and the stored tree; nothing here writes the log itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from homeroom.checkpoint import COSIGNATURE_V1, Checkpoint, Note, NoteError, Verifier, public_key_from_pem, verify_note
from homeroom.tlog.signing import SignedTreeHead
from homeroom.witness import SIZE_CONTENT_TYPE, request_body
from services.audit import metrics, store
from services.audit.settings import AuditSettings
from services.audit.state import AuditRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Witnessed:
    """What the witness said about a head: its cosigned note, or why not."""

    note: Note | None = None
    witness_size: int | None = None  # the largest size the witness has cosigned, when it said
    problem: str = ""
    truncated: tuple[int, int] | None = None  # (first, last) index missing from the stored log


def checkpoint_note(runtime: AuditRuntime, signed: SignedTreeHead) -> Note:
    origin = runtime.settings.checkpoint_origin
    return runtime.state.signer.note_signer(origin).checkpoint(Checkpoint(origin, signed.head.size, signed.head.root))


def witness_verifier(settings: AuditSettings) -> Verifier | None:
    if settings.witness_public_key_file is None or not settings.witness_public_key_file.exists():
        return None
    key = public_key_from_pem(settings.witness_public_key_file.read_bytes())
    return Verifier(settings.witness_name, COSIGNATURE_V1, key)


def _truncated(stored: int, witness_size: int) -> Witnessed:
    metrics.WITNESS_FAILURES.labels("truncated").inc()
    message = (
        f"the witness cosigned a log of {witness_size} entries; the log now holds {stored}: "
        f"entries {stored} to {witness_size - 1} missing (truncated)"
    )
    log.error(message)
    return Witnessed(witness_size=witness_size, problem=message, truncated=(stored, witness_size - 1))


async def submit(runtime: AuditRuntime, signed: SignedTreeHead) -> Witnessed:
    """Ask the witness to cosign ``signed``; keep the cosigned checkpoint."""
    settings = runtime.settings
    if not settings.witness_url:
        return Witnessed(problem="no witness configured (HOMEROOM_AUDIT_WITNESS_URL)")
    verifier = witness_verifier(settings)
    if verifier is None:
        return Witnessed(problem="the witness's public key is not pinned (HOMEROOM_AUDIT_WITNESS_PUBLIC_KEY_FILE)")
    note = checkpoint_note(runtime, signed)
    size = signed.head.size
    old = await store.last_cosigned_size(runtime.pool, settings.witness_name)
    transport = runtime.state.witness_transport
    async with httpx.AsyncClient(base_url=settings.witness_url, timeout=10.0, transport=transport) as client:
        for _ in range(3):
            if old > size:
                return _truncated(size, old)
            proof = await store.consistency_proof(runtime.pool, old, size) if 0 < old < size else []
            try:
                response = await client.post("/add-checkpoint", content=request_body(old, proof, note))
            except httpx.HTTPError as exc:
                metrics.WITNESS_FAILURES.labels("unreachable").inc()
                return Witnessed(problem=f"the witness is unreachable: {type(exc).__name__}")
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(SIZE_CONTENT_TYPE):
                old = int(response.text.strip())  # its own record of what it cosigned: start from there
                continue
            if response.status_code != 200:
                metrics.WITNESS_FAILURES.labels(f"http_{response.status_code}").inc()
                return Witnessed(problem=f"the witness refused: {response.status_code} {response.text.strip()[:200]}")
            try:
                cosigned = Note.parse(note.render() + response.text)
                times = verify_note(Note(note.text, cosigned.signatures), [verifier])
            except NoteError as exc:
                metrics.WITNESS_FAILURES.labels("bad_cosignature").inc()
                return Witnessed(problem=f"the witness's answer does not verify: {exc}")
            await store.insert_checkpoint(
                runtime.pool,
                store.StoredCheckpoint(size, signed.head.root, cosigned.render(), verifier.name, times[verifier.name]),
            )
            metrics.WITNESSED_SIZE.set(size)
            return Witnessed(note=cosigned, witness_size=size)
    return Witnessed(problem="the witness kept answering with another size")


async def latest(runtime: AuditRuntime) -> store.StoredCheckpoint | None:
    return await store.latest_checkpoint(runtime.pool)
