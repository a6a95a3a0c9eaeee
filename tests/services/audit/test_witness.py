"""Issue 17, item 3: truncating the log was invisible to both verifiers.

Deleting the newest entries and every later head (as a superuser with triggers off)
passed `homeroom audit verify --url` and `/v1/verification`, and
`/v1/proofs/consistency` with a smaller second size answered 422. Now heads are C2SP
checkpoints cosigned by a witness (its own process and key in the stack; here its real
app in process) that refuses anything inconsistent with what it cosigned; the witness's
memory names the truncation in `/v1/verification`, the verifier pins the last head it
saw (`--trusted-head`), and the consistency route answers a verification failure.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from homeroom.bus.producer import Publisher
from homeroom.bus.topics import DISCLOSURE, REJECTED, ensure_topics, with_suffix
from homeroom.checkpoint import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    Cosigner,
    Note,
    NoteError,
    NoteSigner,
    Verifier,
    key_id,
    verify_note,
)
from homeroom.tlog.merkle import MemoryNodeStore, MerkleLog, leaf_hash
from homeroom.tlog.signing import LogSigner
from homeroom.witness import SIZE_CONTENT_TYPE, Witness, WitnessSettings, create_app, load_private_key, request_body
from services.audit.cli import app as cli_app
from services.audit.consumers import SOURCE_TOPICS, consumer_spec
from services.audit.service import SERVICE
from services.audit.state import WITNESS_PEER
from tests.harness import ServiceEnv, service_under_test
from tests.services.audit.conftest import Audit, disclosure, seed

ORIGIN = "homeroom.test/audit-log"


# --- the formats -------------------------------------------------------------------------


def test_a_checkpoint_note_round_trips_and_verifies_as_the_specifications_say() -> None:
    log_key, witness_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    signer = NoteSigner(ORIGIN, log_key)
    checkpoint = Checkpoint(ORIGIN, 20852163, bytes(range(32)))
    assert checkpoint.text() == f"{ORIGIN}\n20852163\n{base64.b64encode(bytes(range(32))).decode()}\n"
    note = signer.checkpoint(checkpoint)
    cosigned = note.with_signatures(Cosigner("witness.test/w1", witness_key).cosign(note.text, 1679315147))
    parsed = Note.parse(cosigned.render())
    assert parsed == cosigned and Checkpoint.from_text(parsed.text) == checkpoint
    log_verifier = Verifier(ORIGIN, ED25519, log_key.public_key())
    witness_verifier = Verifier("witness.test/w1", COSIGNATURE_V1, witness_key.public_key())
    assert verify_note(parsed, [log_verifier, witness_verifier]) == {ORIGIN: 0, "witness.test/w1": 1679315147}
    # Key IDs follow the spec's recipe, so a signature is never read as the other kind.
    assert log_verifier.key_id != key_id(ORIGIN, COSIGNATURE_V1, log_key.public_key())
    # An altered size, or a cosignature replayed on another checkpoint, does not verify.
    forged = Note(checkpoint.text().replace("20852163", "20852162"), parsed.signatures)
    with pytest.raises(NoteError):
        verify_note(forged, [log_verifier])
    with pytest.raises(NoteError):
        verify_note(Note(forged.text, parsed.signatures[1:]), [witness_verifier])
    for junk in ("no blank line\n", "text\n\n- not an em dash\n", f"{ORIGIN}\n01\nAA==\n\n"):
        with pytest.raises(NoteError):
            Checkpoint.from_text(Note.parse(junk).text)


# --- the witness on its own --------------------------------------------------------------


def _tree(n: int) -> MerkleLog:
    return MerkleLog(MemoryNodeStore.from_leaf_hashes(bytearray(b"".join(leaf_hash(b"e%d" % i) for i in range(n)))))


def _witness(tmp_path: Path, log_key: Ed25519PrivateKey) -> Witness:
    pem = tmp_path / "log.pub.pem"
    pem.write_bytes(LogSigner(log_key).public_key_pem())
    settings = WitnessSettings(
        name="witness.test/w1",
        key_file=tmp_path / "witness.key",
        state_file=tmp_path / "state" / "witness.json",
        log_origin=ORIGIN,
        log_public_key_files=[pem],
    )
    return Witness(settings, clock=lambda: 1700000000)


async def test_the_witness_refuses_anything_inconsistent_with_what_it_cosigned(tmp_path: Path) -> None:
    log_key = Ed25519PrivateKey.generate()
    signer = NoteSigner(ORIGIN, log_key)
    witness = _witness(tmp_path, log_key)
    tree = _tree(12)

    def note(size: int, root: bytes | None = None) -> Note:
        return signer.checkpoint(Checkpoint(ORIGIN, size, root or tree.root(size)))

    status, _, body = await witness.add_checkpoint(request_body(0, [], note(5)))
    assert status == 200 and body.startswith("\u2014 witness.test/w1 ")
    cosigned = Note.parse(note(5).render() + body)
    verifier = Verifier("witness.test/w1", COSIGNATURE_V1, witness.cosigner.public_key)
    assert verify_note(Note(cosigned.text, cosigned.signatures[1:]), [verifier]) == {"witness.test/w1": 1700000000}
    attempts = {
        # a smaller tree after a larger one (the truncation): 409 with the witness's own size
        "rollback": (request_body(0, [], note(3)), 409),
        # another history of the same size
        "fork": (request_body(5, [], note(5, bytes(32))), 409),
        # growth whose proof does not connect to what was cosigned
        "bad proof": (request_body(5, tree.consistency_proof(4, 12), note(12)), 422),
        "old past new": (request_body(12, [], note(5)), 400),
        "not the log's key": (
            request_body(
                5,
                [],
                NoteSigner(ORIGIN, Ed25519PrivateKey.generate()).checkpoint(Checkpoint(ORIGIN, 12, tree.root(12))),
            ),
            403,
        ),
        "unknown origin": (
            request_body(
                0, [], NoteSigner("other.test/log", log_key).checkpoint(Checkpoint("other.test/log", 1, tree.root(1)))
            ),
            404,
        ),
        "junk": (b"old 5\nnot base64!\n\nx\n", 400),
    }
    for name, (request, expected) in attempts.items():
        status, content_type, body = await witness.add_checkpoint(request)
        assert status == expected, (name, body)
    status, content_type, body = await witness.add_checkpoint(request_body(0, [], note(3)))
    assert (status, content_type, body) == (409, SIZE_CONTENT_TYPE, "5\n")
    # Consistent growth is cosigned, and the state survives a restart of the process.
    status, _, _ = await witness.add_checkpoint(request_body(5, tree.consistency_proof(5, 12), note(12)))
    assert status == 200
    again = _witness(tmp_path, log_key)
    assert again.latest(ORIGIN) == (12, tree.root(12))
    assert (await again.add_checkpoint(request_body(5, [], note(5))))[0] == 409
    print(f"witness: {len(attempts) + 1} refused attempts")


# --- the log, its witness and both verifiers -----------------------------------------------


@pytest.fixture
async def witnessed(service_env: ServiceEnv, topic_suffix: str, tmp_path: Path) -> AsyncIterator[Audit]:
    topics = [with_suffix(t, topic_suffix) for t in (*SOURCE_TOPICS, REJECTED)]
    await ensure_topics(service_env.kafka.client_kwargs(), topics)
    signer = LogSigner(Ed25519PrivateKey.generate())
    key_file = tmp_path / "audit-signing.key"
    key_file.write_bytes(
        signer._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    log_pub = tmp_path / "log.pub.pem"
    log_pub.write_bytes(signer.public_key_pem())
    witness_settings = WitnessSettings(
        name="witness.test/w1",
        key_file=tmp_path / "witness.key",
        state_file=tmp_path / "witness-state.json",
        log_origin=ORIGIN,
        log_public_key_files=[log_pub],
    )
    witness_app = create_app(witness_settings)
    witness_pub = tmp_path / "witness.pub.pem"  # pinned by the audit service, as an operator would
    witness_pub.write_bytes(
        load_private_key(witness_settings.key_file, create=False)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    spec = replace(SERVICE, consumers=(consumer_spec(topic_suffix),))
    publisher = Publisher("audit-test", service_env.kafka.client_kwargs())
    try:
        async with service_under_test(
            spec,
            service_env,
            head_interval_s=3600.0,
            head_max_age_s=36000.0,
            signing_key_file=key_file,
            checkpoint_origin=ORIGIN,
            witness_url="http://witness.test",
            witness_name="witness.test/w1",
            witness_public_key_file=witness_pub,
            peers={WITNESS_PEER: httpx.ASGITransport(app=witness_app)},
        ) as svc:
            yield Audit(svc, service_env, topic_suffix, publisher)
    finally:
        await publisher.stop()


async def _truncate(audit: Audit, keep: int) -> None:
    """Delete entries from ``keep`` on, their tree nodes, every head and checkpoint above it."""
    conn: asyncpg.Connection = await audit.env.superuser(audit.svc.runtime.settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off: superuser only
            await conn.execute("DELETE FROM entries WHERE seq >= $1", keep)
            await conn.execute("DELETE FROM tree_nodes WHERE (idx + 1) * (1::bigint << level) > $1", keep)
            await conn.execute("DELETE FROM tree_heads WHERE size > $1", keep)
            await conn.execute("DELETE FROM checkpoints WHERE size > $1", keep)
    finally:
        await conn.close()


def _verify(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli_app, ["verify", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


async def test_truncation_is_named_by_the_witness_the_pinned_verifier_and_the_proof_route(
    witnessed: Audit, tmp_path: Path
) -> None:
    audit = witnessed
    await seed(audit, (5, 12))
    compliance = audit.auth("compliance")
    checkpoint = (await audit.svc.client.get("/v1/checkpoint", headers=compliance)).json()
    assert checkpoint["size"] == 12 and checkpoint["witness"] == "witness.test/w1"
    note = Note.parse(checkpoint["note"])
    assert Checkpoint.from_text(note.text).size == 12 and len(note.signatures) == 2
    assert (await audit.svc.client.get("/v1/verification", headers=compliance)).json()["ok"] is True

    # The verifier's first run pins what it saw.
    export = tmp_path / "log.jsonl"
    export.write_bytes((await audit.svc.client.get("/v1/export", headers=compliance)).content)
    log_pub = tmp_path / "log.pub.pem"
    pinned = tmp_path / "last-head.json"
    code, report = _verify("--export", str(export), "--public-key", str(log_pub), "--trusted-head", str(pinned))
    assert (code, report["ok"]) == (0, True) and json.loads(pinned.read_text())["size"] == 12
    # Issue 17, item 12: without a pinned key the verifier says so, loudly.
    unpinned = CliRunner().invoke(cli_app, ["verify", "--export", str(export), "--json"])
    assert unpinned.exit_code == 0 and json.loads(unpinned.stdout)["pinned_key"] is False
    assert "NO PINNED KEY" in unpinned.stderr
    # A C2SP checkpoint note (as GET /v1/checkpoint serves it) works as the trusted head too.
    note_file = tmp_path / "checkpoint.note"
    note_file.write_text(checkpoint["note"])

    await _truncate(audit, 7)  # entries 7..11 gone, with the head of 12 and its checkpoint

    # Before issue 17 all three of these passed or answered 422.
    live = (await audit.svc.client.get("/v1/verification", headers=compliance)).json()
    assert live["ok"] is False
    (truncated,) = [f for f in live["findings"] if f["kind"] == "truncated"]
    assert (truncated["index"], truncated["last_index"]) == (7, 11), truncated
    assert "entries 7 to 11 missing" in truncated["message"]

    export.write_bytes((await audit.svc.client.get("/v1/export", headers=compliance)).content)
    for trusted in (pinned, note_file):
        code, report = _verify("--export", str(export), "--public-key", str(log_pub), "--trusted-head", str(trusted))
        assert (code, report["ok"]) == (1, False), trusted
        (finding,) = [f for f in report["findings"] if f["kind"] == "truncated"]
        assert "entries 7 to 11 missing" in finding["message"]
    assert json.loads(pinned.read_text())["size"] == 12  # a failed run never lowers what was seen

    proof = await audit.svc.client.get("/v1/proofs/consistency", params={"first": 12, "second": 7}, headers=compliance)
    assert proof.status_code == 409, proof.text
    body = proof.json()
    assert body["type"].endswith("log-truncated") and (body["missing_from"], body["missing_to"]) == (7, 11)
    # The log re-grown to 12 with other entries is never cosigned: the witness holds the old root.
    await audit.publish(*(audit.event(DISCLOSURE, "disclosure_recorded", disclosure()) for _ in range(5)))
    await audit.wait_for_entries(12)
    regrown = await audit.svc.client.post("/v1/tree-heads", headers=compliance)
    assert regrown.status_code == 201 and regrown.json()["size"] == 12
    assert await audit.svc.pool.fetchval("SELECT count(*) FROM checkpoints WHERE size = 12") == 0
    assert (await audit.svc.client.get("/v1/checkpoint", headers=compliance)).json()["size"] == 5
