"""A transparency-log witness (c2sp.org/tlog-witness), run as its own process with its own key.

The audit log's operator must not be able to withdraw a signed head quietly: each new
checkpoint is sent here with a consistency proof from the last size this witness
cosigned, and the witness cosigns it (c2sp.org/tlog-cosignature, Ed25519 type 0x04) only
if it is signed by the log's key and consistent with everything it cosigned before. It
refuses a smaller tree (409 with its own size), the same size with another root (409),
a proof that does not verify (422), an unknown origin (404) or a bad signature (403). Its
state (per origin: size and root) is persisted before it answers, atomically with the
check, so a restart never forgets what it has seen.

    homeroom witness serve     (settings HOMEROOM_WITNESS_*; embedded stack: started for you)
    homeroom witness key       (prints the witness's name and public key, to pin)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import FastAPI, Request, Response
from prometheus_client import Counter
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from homeroom.checkpoint import (
    ED25519,
    Checkpoint,
    Cosigner,
    Note,
    NoteError,
    Verifier,
    public_key_from_pem,
    verify_note,
)
from homeroom.config import Environment
from homeroom.tlog.merkle import verify_consistency

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_BODY = 64 * 1024
MAX_PROOF_LINES = 63

REQUESTS = Counter("homeroom_witness_requests_total", "add-checkpoint requests answered, by outcome", ["outcome"])


class WitnessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_WITNESS_", extra="ignore")

    name: str = "witness.homeroom.local/w1"
    host: str = "127.0.0.1"
    port: int = 8007
    key_file: Path = Path(".homeroom/secrets/witness.key")  # Ed25519 PKCS#8 PEM, mode 0600
    state_file: Path = Path(".homeroom/witness/state.json")
    # The one log it witnesses: its origin line and public key(s) (PEM files).
    log_origin: str = "homeroom.local/audit-log"
    log_public_key_files: list[Path] = Field(default_factory=list)
    environment: Environment = Field(
        default="development", validation_alias=AliasChoices("HOMEROOM_ENVIRONMENT", "environment")
    )
    instance_id: str = Field(default="", validation_alias=AliasChoices("HOMEROOM_INSTANCE_ID", "instance_id"))


def load_private_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    from homeroom.tlog.signing import load_or_create_signer  # the same 0600, race-safe key file

    if not path.exists() and not create:
        raise FileNotFoundError(f"the witness key {path} does not exist")
    load_or_create_signer(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


class Witness:
    def __init__(self, settings: WitnessSettings, clock: Any = time.time) -> None:
        self.settings = settings
        self.cosigner = Cosigner(
            settings.name, load_private_key(settings.key_file, create=settings.environment != "production")
        )
        self._clock = clock
        self._lock = asyncio.Lock()
        self._state: dict[str, dict[str, Any]] = (
            json.loads(settings.state_file.read_text()) if settings.state_file.exists() else {}
        )

    def _log_verifiers(self) -> list[Verifier]:
        # Read each time: the embedded stack writes the log's public key when audit first starts.
        keys: list[Ed25519PublicKey] = [
            public_key_from_pem(p.read_bytes()) for p in self.settings.log_public_key_files if p.exists()
        ]
        return [Verifier(self.settings.log_origin, ED25519, k) for k in keys]

    def latest(self, origin: str) -> tuple[int, bytes]:
        state = self._state.get(origin)
        return (0, b"") if state is None else (int(state["size"]), base64.b64decode(state["root"]))

    def _persist(self, origin: str, size: int, root: bytes) -> None:
        state = {**self._state, origin: {"size": size, "root": base64.b64encode(root).decode()}}
        path = self.settings.state_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w") as out:
            json.dump(state, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._state = state

    async def add_checkpoint(self, body: bytes) -> tuple[int, str, str]:
        """(HTTP status, content type, body) as c2sp.org/tlog-witness says."""
        try:
            old, proof, note = parse_request(body)
            checkpoint = Checkpoint.from_text(note.text)
        except (NoteError, UnicodeDecodeError, ValueError) as exc:
            return self._answer("malformed", 400, f"{exc}\n")
        if checkpoint.origin != self.settings.log_origin:
            return self._answer("unknown_origin", 404, "unknown log origin\n")
        try:
            verify_note(note, self._log_verifiers())
        except NoteError:
            return self._answer("bad_signature", 403, "the checkpoint is not signed by the log's key\n")
        if old > checkpoint.size:
            return self._answer("malformed", 400, "old size exceeds the checkpoint's size\n")
        async with self._lock:  # the check and the persisted update are one step
            size, root = self.latest(checkpoint.origin)
            if old != size:
                REQUESTS.labels("conflict").inc()
                return 409, SIZE_CONTENT_TYPE, f"{size}\n"
            if old == checkpoint.size:
                if size and root != checkpoint.root:
                    return self._answer("conflict", 409, "same size, another root: refused\n")
            elif old and not verify_consistency(old, checkpoint.size, root, checkpoint.root, proof):
                return self._answer("inconsistent", 422, "the consistency proof does not verify\n")
            elif not old and proof:
                return self._answer("malformed", 400, "the proof from size 0 must be empty\n")
            await asyncio.to_thread(self._persist, checkpoint.origin, checkpoint.size, checkpoint.root)
        cosignature = self.cosigner.cosign(note.text, int(self._clock()))
        return self._answer("cosigned", 200, cosignature.line())

    @staticmethod
    def _answer(outcome: str, status: int, text: str) -> tuple[int, str, str]:
        REQUESTS.labels(outcome).inc()
        return status, "text/plain; charset=utf-8", text


def parse_request(body: bytes) -> tuple[int, list[bytes], Note]:
    if len(body) > MAX_BODY:
        raise NoteError("request too large")
    text = body.decode("utf-8")
    head, sep, rest = text.partition("\n\n")
    if not sep:
        raise NoteError("no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise NoteError("the first line is 'old <size>'")
    size = lines[0][4:]
    if not size.isdigit() or not size.isascii() or (size != "0" and size.startswith("0")):
        raise NoteError("old size is not a decimal without leading zeroes")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError("too many proof lines")
    proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    if any(len(h) != 32 for h in proof):
        raise NoteError("a proof hash is not 32 bytes")
    return int(size), proof, Note.parse(rest)


def request_body(old: int, proof: list[bytes], note: Note) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note.render()).encode()


def create_app(settings: WitnessSettings | None = None) -> FastAPI:
    settings = settings or WitnessSettings()
    witness = Witness(settings)
    app = FastAPI(title="Homeroom witness", description=__doc__)
    app.state.witness = witness

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()
        status, content_type, text = await witness.add_checkpoint(body)
        return Response(text, status_code=status, media_type=content_type)

    @app.get("/key")
    async def key() -> dict[str, str]:
        raw = witness.cosigner.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        pem = witness.cosigner.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"name": witness.cosigner.name, "public_key": base64.b64encode(raw).decode(), "pem": pem.decode()}

    @app.get("/healthz")
    @app.get("/readyz")
    async def health() -> dict[str, str]:
        answer = {"status": "ok", "service": "witness"}
        if settings.instance_id:  # which process answers (homeroom_dev.stack.Stack.wait_ready)
            answer["instance"] = settings.instance_id
        return answer

    return app
