"""Breach scoping at the issue's size: a recipient with 1,000,000 disclosures over 100,000
students in a disclosure log of 10,000,000 entries.

Prints figures; asserts only that the scope is right. The real stack's audit and incidents
services run as processes (`homeroom_dev.stack.Stack`, with the witness); the log is bulk-loaded
into audit's database (entries with their real canonical leaf hashes, and every tree node),
a head is signed and witnessed through the API, then, in the same run:

* raw query: the selection's own SQL (the recipient's disclosures in the period, in log
  order, every column), fetched by a plain asyncpg connection: the baseline;
* scoping: `POST /v1/incidents/{id}/scope` on the incidents service, which has audit stream
  the selection with its multiproof over HTTP, checks every leaf, the multiproof and the
  witnessed head, builds the students and totals, and writes the signed bundle;
* the bundle's size (compressed, and its multiproof's share), against what one inclusion
  proof per entry would take; the multiproof's size had the same million entries been
  spread at random over the log (the worst layout) instead of in the runs a vendor's page
  reads make;
* offline verification of the downloaded bundle with pinned keys (the state's check).

Receipts in the loaded log are placeholders (scoping checks leaves against the signed
head, never receipts), and the GIN index on elements is not rebuilt (nothing here uses it).

    .venv/bin/python bench/incident_scope.py                                  # the issue's size (~25 min)
    .venv/bin/python bench/incident_scope.py --entries 200000 --disclosures 20000 --students 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from homeroom.auth import DevIssuer, Role
from homeroom.checkpoint import COSIGNATURE_V1, ED25519, Verifier, public_key_from_pem
from homeroom.storage import database_url
from homeroom.tlog.merkle import MemoryNodeStore, inclusion_ranges, leaf_hash, multiproof_nodes
from homeroom.tlog.signing import Keyring
from homeroom_dev.stack import Stack
from services.audit.entries import EntryDraft, Party, canonical_bytes
from services.audit.store import SELECTION_COLUMNS, entry_row
from services.incidents.scope import TrustAnchors, read_lines, verify_bundle

VENDOR = "Breached Vendor Inc"
ELEMENTS = ("student.first_name", "student.last_name", "enrollment.grade_level", "attendance.daily")
START = datetime(2026, 1, 5, tzinfo=UTC)
SPAN = timedelta(days=100)
RUN = 100  # a vendor's page read: this many consecutive disclosures
SECONDARY = {
    "entries_student": "(student_key, seq)",
    "entries_district": "(district_id, seq)",
    "entries_recipient": "(recipient_org, seq)",
    "entries_agreement": "(agreement_id, seq)",
    "entries_occurred": "(occurred_at, seq)",
}
COLUMNS = [c.strip() for c in SELECTION_COLUMNS.split(",")]


def student(i: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    out, n = [], i
    for _ in range(32):
        out.append(alphabet[n % 32])
        n //= 32
    return "stu_" + "".join(out)


def layout(entries: int, disclosures: int, seed: int = 21) -> list[int]:
    """Where the recipient's disclosures sit: runs of RUN consecutive entries, one per block."""
    rng = random.Random(seed)
    runs = disclosures // RUN
    block = entries // runs
    positions: list[int] = []
    for r in range(runs):
        start = r * block + rng.randrange(block - RUN + 1)
        positions.extend(range(start, start + RUN))
    return positions


def row(seq: int, draft: EntryDraft, recorded_at_ms: int, leaf: bytes) -> tuple[Any, ...]:
    return (*entry_row(seq, draft, recorded_at_ms, leaf), bytes(64), "bench")  # placeholder receipt


def entry(seq: int, n: int, ours: bool, k: int, students: int, per_student: int, destroyed: int | None) -> EntryDraft:
    when = START + SPAN * (seq / n)
    if destroyed is not None:
        return EntryDraft(
            event_id=str(uuid.uuid4()),
            topic="keys.v1",
            kind="data_keys_destroyed",
            occurred_at=when,
            requester=Party("d-1", "", "data-office", "district_staff"),
            student_key=student(destroyed),
            district_id="d-1",
            details={"scope": "student", "subject": student(destroyed), "reason": "erasure order", "keys_destroyed": 1},
        )
    organization = VENDOR if ours else f"Other Vendor {k % 50}"
    who = Party(organization, "app", "", "vendor")
    return EntryDraft(
        event_id=str(uuid.uuid4()),
        topic="disclosure.v1",
        kind="disclosure_recorded",
        occurred_at=when,
        requester=who,
        recipient=who,
        # The recipient's disclosures in time order: each student's close together (k // per-student).
        student_key=student(k // max(1, per_student) if ours else students + k % (students * 9)),
        district_id="d-1",
        elements=ELEMENTS if ours else ELEMENTS[: 1 + k % 4],
        purpose="instruction",
        legal_basis="FERPA 99.31(a)(1) school official",
        agreement_id="agr-breached" if ours else f"agr-other-{k % 50}",
        decision_id=str(uuid.uuid4()),
        policy_version="consent-policy/1",
        channel="records-api",
        details={"disclosure_id": str(uuid.uuid4())},
    )


async def load(url: str, n: int, positions: list[int], students: int, destroyed: dict[int, int]) -> bytearray:
    """Every entry and tree node, by COPY, with the secondary indexes built afterwards."""
    conn = await asyncpg.connect(url)
    leaves = bytearray()
    try:
        for name in SECONDARY:
            await conn.execute(f"DROP INDEX IF EXISTS {name}")
        await conn.execute("DROP INDEX IF EXISTS entries_elements")
        await conn.execute("ALTER TABLE entries DROP CONSTRAINT IF EXISTS entries_event_id_key")
        await conn.execute("ALTER TABLE tree_nodes DROP CONSTRAINT IF EXISTS tree_nodes_pkey")
        ours = set(positions)
        order = {p: i for i, p in enumerate(positions)}
        started = time.perf_counter()
        chunk: list[tuple[Any, ...]] = []
        other = 0
        for seq in range(n):
            mine = seq in ours
            k = order[seq] if mine else other
            other += 0 if mine else 1
            draft = entry(seq, n, mine, k, students, len(positions) // students, destroyed.get(seq))
            recorded = 1_700_000_000_000 + seq
            leaf = leaf_hash(canonical_bytes(seq, recorded, draft))
            leaves += leaf
            chunk.append(row(seq, draft, recorded, leaf))
            if len(chunk) == 100_000:
                await conn.copy_records_to_table("entries", records=chunk, columns=COLUMNS)
                chunk = []
                if seq % 1_000_000 == 999_999:
                    print(
                        f"  {seq + 1:,} entries loaded ({(seq + 1) / (time.perf_counter() - started):,.0f}/s)",
                        flush=True,
                    )
        if chunk:
            await conn.copy_records_to_table("entries", records=chunk, columns=COLUMNS)
        store = MemoryNodeStore.from_leaf_hashes(bytearray(leaves))
        for level, buffer in enumerate(store._levels):
            count = len(buffer) // 32
            for lo in range(0, count, 500_000):
                await conn.copy_records_to_table(
                    "tree_nodes",
                    records=[
                        (level, i, bytes(buffer[i * 32 : i * 32 + 32])) for i in range(lo, min(count, lo + 500_000))
                    ],
                    columns=["level", "idx", "hash"],
                )
        print(f"  entries and tree nodes copied in {time.perf_counter() - started:.0f} s; building indexes", flush=True)
        await conn.execute("ALTER TABLE tree_nodes ADD PRIMARY KEY (level, idx)")
        await conn.execute("ALTER TABLE entries ADD CONSTRAINT entries_event_id_key UNIQUE (event_id)")
        for name, columns in SECONDARY.items():
            await conn.execute(f"CREATE INDEX {name} ON entries {columns}")
        await conn.execute("ANALYZE entries")
        await conn.execute("ANALYZE tree_nodes")
        print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await conn.close()
    return leaves


RAW = f"""SELECT {SELECTION_COLUMNS} FROM entries
    WHERE recipient_org = $1 AND seq < $2 AND kind = 'disclosure_recorded'
      AND occurred_at < $3 AND ($4::timestamptz IS NULL OR occurred_at >= $4)
    ORDER BY seq"""  # noqa: S608 (constant): the selection's own query (services/audit/store.py)


async def raw_query(url: str, n: int, until: datetime) -> tuple[float, int]:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        rows = await conn.fetch(RAW, VENDOR, n, until, None)
        return time.perf_counter() - started, len(rows)
    finally:
        await conn.close()


def main(args: argparse.Namespace) -> None:
    n, disclosures, students = args.entries, args.disclosures, args.students
    positions = layout(n, disclosures)
    exposure_start = START + SPAN * 0.9
    # One student in a hundred of the first half had their key shredded (an erasure order) halfway
    # through, after all their disclosures and before the exposure: their data was not readable.
    rng = random.Random(5)
    free = sorted(set(range(n // 2, n // 2 + students)) - set(positions))
    destroyed = {seq: i for i, seq in zip(range(0, students // 2, 100), free, strict=False)}
    stack = Stack(services=["audit", "incidents"], fixed_ports=False)
    try:
        stack.start()
        assert stack.postgres is not None
        audit_db = database_url(stack.postgres.server_url, "homeroom_audit")
        print(f"{n:,} log entries, {disclosures:,} disclosures to {VENDOR} over {students:,} students; loading ...")
        leaves = asyncio.run(load(audit_db, n, positions, students, destroyed))
        del leaves
        issuer = DevIssuer(stack.secrets_dir / "dev-issuer.pem")
        compliance = {"Authorization": f"Bearer {issuer.issue(Role.COMPLIANCE, subject='bench')}"}
        with httpx.Client(timeout=7200) as http:
            head = http.post(f"{stack.url('audit')}/v1/tree-heads", headers=compliance).json()
            assert head["size"] == n, head
            until = START + SPAN
            asyncio.run(raw_query(audit_db, n, until))  # warm the cache for both
            raw_s, raw_rows = asyncio.run(raw_query(audit_db, n, until))
            opened = http.post(
                f"{stack.url('incidents')}/v1/incidents",
                json={
                    "discovered_at": until.isoformat(),
                    "description": "benchmark breach",
                    "recipient_organization": VENDOR,
                    "districts": ["d-1"],
                    "exposure_start": exposure_start.isoformat(),
                    "exposure_end": until.isoformat(),
                },
                headers=compliance,
            )
            incident = opened.json()["incident_id"]
            started = time.perf_counter()
            frozen = http.post(f"{stack.url('incidents')}/v1/incidents/{incident}/scope", json={}, headers=compliance)
            scope_s = time.perf_counter() - started
            assert frozen.status_code == 201, frozen.text[:500]
            scope = frozen.json()
            totals = scope["totals"]
            assert totals["disclosures"] == disclosures == raw_rows, (totals["disclosures"], raw_rows)
            assert totals["students"] + totals["students_unreadable_only"] == students
            bundle = http.get(f"{stack.url('incidents')}/v1/incidents/{incident}/scope/1/bundle", headers=compliance)
            keys = http.get(f"{stack.url('audit')}/v1/keys", headers=compliance).json()["keys"]
            signer = http.get(f"{stack.url('incidents')}/v1/keys", headers=compliance).json()
        anchors = TrustAnchors(
            log_keys=Keyring.from_pems(p.encode() for p in keys.values()),
            witness=Verifier(
                "witness.homeroom.local/w1",
                COSIGNATURE_V1,
                public_key_from_pem((stack.secrets_dir / "witness.pub.pem").read_bytes()),
            ),
            incidents=Verifier(signer["name"], ED25519, public_key_from_pem(signer["public_key"].encode())),
        )
        started = time.perf_counter()
        report = verify_bundle(read_lines([bundle.content]), anchors)
        verify_s = time.perf_counter() - started
        assert report.ok and report.witnessed, report.findings[:5]
    finally:
        stack.cleanup()

    proven = sorted(positions)
    per_entry = sum(len(inclusion_ranges(i, n)) for i in proven) * 32
    spread = sorted(rng.sample(range(n), disclosures))
    spread_hashes = len(multiproof_nodes(spread, n))
    multiproof_bytes = scope["proof_hashes"] * 32
    figures = {
        "entries": n,
        "disclosures": disclosures,
        "students": students,
        "students_readable": totals["students"],
        "students_unreadable_only": totals["students_unreadable_only"],
        "raw_query_s": round(raw_s, 2),
        "scoping_s": round(scope_s, 2),
        "scoping_vs_raw": round(scope_s / raw_s, 1),
        "bundle_bytes": len(bundle.content),
        "bundle_raw_bytes": scope["raw_bytes"],
        "proof_hashes": scope["proof_hashes"],
        "multiproof_bytes": multiproof_bytes,
        "per_entry_proofs_bytes": per_entry,
        "random_layout_multiproof_bytes": spread_hashes * 32,
        "verify_offline_s": round(verify_s, 2),
    }
    print()
    print(f"{'raw query of the same selection (fetch every row)':<62} {raw_s:>10.2f} s  ({raw_rows:,} rows)")
    ratio = scope_s / raw_s
    print(f"{'scoping: stream, prove, check, build, sign, store (HTTP)':<62} {scope_s:>10.2f} s  ({ratio:.1f}x raw)")
    print(f"{'offline verification of the bundle (pinned keys, witness)':<62} {verify_s:>10.2f} s")
    raw_mb = scope["raw_bytes"] / 1e6
    print(f"{'bundle, gzip (uncompressed)':<62} {len(bundle.content) / 1e6:>10.1f} MB  ({raw_mb:.0f} MB)")
    print(f"{'  of which the multiproof':<62} {multiproof_bytes / 1e6:>10.2f} MB  ({scope['proof_hashes']:,} hashes)")
    print(f"{'one inclusion proof per entry instead':<62} {per_entry / 1e6:>10.1f} MB")
    print(f"{'multiproof if the same entries were spread at random':<62} {spread_hashes * 32 / 1e6:>10.1f} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--disclosures", type=int, default=1_000_000)
    parser.add_argument("--students", type=int, default=100_000)
    main(parser.parse_args())
