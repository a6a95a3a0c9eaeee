"""Append-only is enforced by the database, and tampering by an all-powerful operator is named.

The service's role may only SELECT and INSERT; a trigger refuses UPDATE, DELETE and
TRUNCATE from anyone, the table owner and superusers included. A superuser who switches
triggers off (session_replication_role = replica) can still rewrite rows; then
`homeroom audit verify` names exactly the entries and the signed tree heads that no
longer match.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY
from rich.console import Console
from typer.testing import CliRunner

from homeroom.tlog.merkle import verify_inclusion
from services.audit import cli as cli_module
from services.audit.cli import app as cli_app
from services.audit.cli import fetch_export, verify_export
from services.audit.service import SERVICE
from services.audit.state import AuditState
from tests.harness import ServiceEnv, service_under_test
from tests.services.audit.conftest import Audit, seed

WRITER = "homeroom_audit_writer"


@pytest.fixture
async def superuser(audit: Audit) -> AsyncIterator[asyncpg.Connection]:
    conn = await audit.env.superuser(audit.svc.runtime.settings.database_url)
    yield conn
    await conn.close()


REFUSED = (
    "UPDATE entries SET purpose = 'research' WHERE seq = 0",
    "DELETE FROM entries WHERE seq = 0",
    "TRUNCATE entries",
    "UPDATE tree_nodes SET hash = hash WHERE level = 0 AND idx = 0",
    "DELETE FROM tree_nodes",
    "UPDATE tree_heads SET size = 0",
    "DELETE FROM tree_heads",
    "TRUNCATE tree_heads",
)


async def test_the_trigger_refuses_changes_even_from_a_superuser(audit: Audit, superuser: asyncpg.Connection) -> None:
    await seed(audit, (2,))
    heads = await superuser.fetchval("SELECT count(*) FROM tree_heads")
    nodes = await superuser.fetchval("SELECT count(*) FROM tree_nodes")
    for statement in REFUSED:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await superuser.execute(statement)
    assert await audit.count() == 2
    assert await superuser.fetchval("SELECT purpose FROM entries WHERE seq = 0") == "instruction"
    assert await superuser.fetchval("SELECT count(*) FROM tree_heads") == heads
    assert await superuser.fetchval("SELECT count(*) FROM tree_nodes") == nodes


async def test_the_writer_role_may_only_read_and_insert(audit: Audit, superuser: asyncpg.Connection) -> None:
    await seed(audit, (1,))
    for table in ("entries", "tree_nodes", "tree_heads"):
        privileges = {
            p: await superuser.fetchval("SELECT has_table_privilege($1, $2, $3)", WRITER, table, p)
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        }
        assert privileges == {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False}
    for statement in ("UPDATE entries SET purpose = 'x'", "DELETE FROM entries", "TRUNCATE tree_nodes"):
        async with superuser.transaction():
            await superuser.execute(f"SET LOCAL ROLE {WRITER}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await superuser.execute(statement)
    assert await audit.count() == 1


# --- tampering with triggers off, and what verify says -----------------------------------


async def _tamper(conn: asyncpg.Connection, *statements: str) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off: superuser only
        for statement in statements:
            await conn.execute(statement)


async def _export(audit: Audit, path: Path) -> None:
    response = await audit.svc.client.get("/v1/export", headers=audit.auth("compliance"))
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)


def _pin(audit: Audit, tmp_path: Path) -> Path:
    state: AuditState = audit.svc.runtime.state
    key = tmp_path / "log.pub.pem"
    key.write_bytes(state.signer.public_key_pem())
    return key


def _failures() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "homeroom_audit_verification_failures"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _run_verify(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli_app, ["verify", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


TAMPERING = {
    "altered": (
        ["UPDATE entries SET purpose = 'research' WHERE seq = 3"],
        [3],
        [5, 12],
        {"stored_hash_mismatch"},
    ),
    "altered with its leaf hash recomputed": (
        ["UPDATE entries SET recipient_org = 'Nobody Inc', leaf_hash = sha256(leaf_hash) WHERE seq = 7"],
        [7],
        [12],
        {"stored_hash_mismatch"},  # the stored leaf is not the content's; head 12 no longer matches
    ),
    "deleted": (["DELETE FROM entries WHERE seq = 8"], [8], [12], {"missing"}),
    "swapped": (
        [
            "UPDATE entries SET seq = 1000000 WHERE seq = 9",
            "UPDATE entries SET seq = 9 WHERE seq = 10",
            "UPDATE entries SET seq = 10 WHERE seq = 1000000",
        ],
        [9, 10],
        [12],
        # each row now sits under the other's index: its leaf, hashed with the old index, differs there
        {"stored_hash_mismatch"},
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_verify_names_the_tampered_entries_and_the_heads_they_break(
    audit: Audit, superuser: asyncpg.Connection, tmp_path: Path, case: str
) -> None:
    statements, entries, heads, kinds = TAMPERING[case]
    await seed(audit, (5, 12))
    key = _pin(audit, tmp_path)
    before = tmp_path / "before.jsonl"
    await _export(audit, before)
    code, report = _run_verify("--export", str(before), "--public-key", str(key))
    assert (code, report["ok"], report["failing_entries"], report["failing_heads"]) == (0, True, [], [])

    await _tamper(superuser, *statements)
    after = tmp_path / "after.jsonl"
    await _export(audit, after)
    code, report = _run_verify("--export", str(after), "--public-key", str(key))
    assert code == 1
    assert report["failing_entries"] == entries
    assert [h["size"] for h in report["failing_heads"]] == heads
    assert {f["kind"] for f in report["findings"] if not f["message"].startswith("tree head")} == kinds

    failures_before = _failures()
    live = await audit.svc.client.get("/v1/verification", headers=audit.auth("compliance"))
    assert live.status_code == 200
    body = live.json()
    assert (body["ok"], body["failing_entries"]) == (False, entries)
    assert [h["size"] for h in body["failing_heads"]] == heads
    # homeroom_audit_verification_failures_total counts each finding, and each stored node or root that fails
    counted = len(body["findings"]) + len(body["stored_nodes_invalid"]) + len(body["stored_roots_mismatched"])
    assert _failures() - failures_before == counted


async def test_verify_fetches_the_live_log(audit: Audit, superuser: asyncpg.Connection, tmp_path: Path) -> None:
    await seed(audit, (4,))
    transport = audit.svc.transport
    dest = tmp_path / "live.jsonl"
    token = audit.env.token("compliance")
    latest = await fetch_export("http://audit.test", token, dest, transport=transport)
    assert latest is not None and latest.head.size == 4
    state: AuditState = audit.svc.runtime.state
    report = verify_export(dest, public_key_pems=[state.signer.public_key_pem()], extra_heads=[latest])
    assert report.ok and report.entries_read == 4

    # A key other than the log's: every head fails, nothing is vouched for.
    other = Ed25519PrivateKey.generate().public_key()
    pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    report = verify_export(dest, public_key_pems=[pem])
    assert not report.ok and report.authenticated_size == 0

    with pytest.raises(RuntimeError, match="403"):
        await fetch_export("http://audit.test", audit.env.token("operator"), dest, transport=transport)


def test_verify_refuses_an_unreadable_export(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"type": "entry"}\n')
    result = CliRunner().invoke(cli_app, ["verify", "--export", str(junk)])
    assert result.exit_code == 2
    assert "line 1" in result.output
    result = CliRunner().invoke(cli_app, ["verify"])
    assert result.exit_code == 2


async def test_the_service_refuses_to_start_without_its_writer_role(service_env: ServiceEnv) -> None:
    with pytest.raises(PermissionError, match="no_such_writer"):
        async with service_under_test(SERVICE, service_env, writer_role="no_such_writer", start_consumers=False):
            pass


async def test_altered_tree_nodes_are_found_and_their_proofs_fail(
    audit: Audit, superuser: asyncpg.Connection, tmp_path: Path
) -> None:
    _, head12 = await seed(audit, (5, 12))
    compliance = audit.auth("compliance")
    # The node over leaves 0..1: in the audit paths of entries 2 and 3.
    await _tamper(superuser, "UPDATE tree_nodes SET hash = sha256(hash) WHERE level = 1 AND idx = 0")
    body = (await audit.svc.client.get("/v1/verification", headers=compliance)).json()
    assert (body["ok"], body["entries_ok"]) == (False, True)
    # The node itself, and its parent, which no longer hashes its children.
    assert body["stored_nodes_invalid"] == [{"level": 1, "index": 0}, {"level": 2, "index": 0}]
    r = (await audit.svc.client.get("/v1/proofs/inclusion?index=2&tree_size=12", headers=compliance)).json()
    proof = [bytes.fromhex(h) for h in r["proof"]]
    assert not verify_inclusion(bytes.fromhex(r["leaf_hash"]), 2, 12, proof, bytes.fromhex(head12["root"]))
    # The entries are intact, so an export still verifies: the damage is to what proofs are made of.
    export = tmp_path / "export.jsonl"
    await _export(audit, export)
    code, report = _run_verify("--export", str(export), "--public-key", str(_pin(audit, tmp_path)))
    assert (code, report["ok"]) == (0, True)


async def test_long_runs_show_a_progress_bar(audit: Audit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await seed(audit, (3,))
    export = tmp_path / "export.jsonl"
    await _export(audit, export)
    monkeypatch.setattr(cli_module, "PROGRESS_FROM", 1)  # a "long run" of three entries
    out = io.StringIO()
    report = verify_export(export, console=Console(file=out, force_terminal=True, width=100))
    assert report.ok
    assert "verifying" in out.getvalue() and "3/3" in out.getvalue()
