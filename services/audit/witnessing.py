"""Publishing signed heads where the log's operator cannot quietly withdraw them.

Each signed tree head becomes a checkpoint (c2sp.org/tlog-checkpoint) signed by the log's
key as a signed note, sent to the witness (c2sp.org/tlog-witness `add-checkpoint`) with a
consistency proof from the size that witness cosigned last; the cosigned checkpoint is
kept in `checkpoints` and served at `GET /v1/checkpoint`.

Truncation shows here: the witness remembers the largest log it cosigned, so after entries
and heads are deleted it answers 409 with its size, larger than the log now stored: the
entries from the log's size to the witness's are missing, and that is what is reported
(`homeroom_audit_witness_failures_total{reason="truncated"}`, `/v1/verification`).

Takes a signed head and the stored tree; nothing here writes the log itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from homeroom.checkpoint import COSIGNATURE_V1, Checkpoint, Note, NoteError, Verifier, public_key_from_pem, verify_note
from homeroom.service import Runtime
from homeroom.witness import SIZE_CONTENT_TYPE, request_body
from services.audit import metrics, store
from services.audit.settings import AuditSettings
from services.audit.signing import LogSigner, SignedTreeHead

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Witnessed:
    """What the witness said about a head: its cosigned note, or why not."""

    note: Note | None = None
    witness_size: int | None = None  # the largest size the witness has cosigned, when it said
    problem: str = ""
    truncated: tuple[int, int] | None = None  # (first, last) index missing from the stored log


def _settings(runtime: Runtime) -> AuditSettings:
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    return settings


def checkpoint_note(runtime: Runtime, signed: SignedTreeHead) -> Note:
    signer: LogSigner = runtime.extras["signer"]
    origin = _settings(runtime).checkpoint_origin
    return signer.note_signer(origin).checkpoint(Checkpoint(origin, signed.head.size, signed.head.root))


def witness_verifier(settings: AuditSettings) -> Verifier | None:
    if settings.witness_public_key_file is None or not settings.witness_public_key_file.exists():
        return None
    key = public_key_from_pem(settings.witness_public_key_file.read_bytes())
    return Verifier(settings.witness_name, COSIGNATURE_V1, key)


async def last_cosigned_size(runtime: Runtime) -> int:
    size = await runtime.pool.fetchval(
        "SELECT max(size) FROM checkpoints WHERE witness = $1", _settings(runtime).witness_name
    )
    return int(size or 0)


def _truncated(stored: int, witness_size: int) -> Witnessed:
    metrics.WITNESS_FAILURES.labels("truncated").inc()
    message = (
        f"the witness cosigned a log of {witness_size} entries; the log now holds {stored}: "
        f"entries {stored} to {witness_size - 1} missing (truncated)"
    )
    log.error(message)
    return Witnessed(witness_size=witness_size, problem=message, truncated=(stored, witness_size - 1))


async def submit(runtime: Runtime, signed: SignedTreeHead) -> Witnessed:
    """Ask the witness to cosign ``signed``; keep the cosigned checkpoint."""
    settings = _settings(runtime)
    if not settings.witness_url:
        return Witnessed(problem="no witness configured (HOMEROOM_AUDIT_WITNESS_URL)")
    verifier = witness_verifier(settings)
    if verifier is None:
        return Witnessed(problem="the witness's public key is not pinned (HOMEROOM_AUDIT_WITNESS_PUBLIC_KEY_FILE)")
    note = checkpoint_note(runtime, signed)
    size = signed.head.size
    old = await last_cosigned_size(runtime)
    transport = runtime.extras.get("witness_transport")
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
            await runtime.pool.execute(
                "INSERT INTO checkpoints (size, root, note, witness, cosigned_at) VALUES ($1, $2, $3, $4, $5)",
                size,
                signed.head.root,
                cosigned.render(),
                verifier.name,
                times[verifier.name],
            )
            metrics.WITNESSED_SIZE.set(size)
            return Witnessed(note=cosigned, witness_size=size)
    return Witnessed(problem="the witness kept answering with another size")


async def latest(runtime: Runtime) -> tuple[int, bytes, str, str, int] | None:
    row = await runtime.pool.fetchrow(
        "SELECT size, root, note, witness, cosigned_at FROM checkpoints ORDER BY size DESC, id DESC LIMIT 1"
    )
    if row is None:
        return None
    return row["size"], bytes(row["root"]), row["note"], row["witness"], row["cosigned_at"]
