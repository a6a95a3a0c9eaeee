"""Audit log on PostgreSQL: append rate, time to signed inclusion, one student's history, offline verify.

Prints figures; asserts nothing. Runs on the embedded PostgreSQL (fsync off, as in dev and
tests), with the service's own code (`store.append_many`, `tree_heads.sign_head`, `store.search`,
`verify_log`), and the same-run baselines each figure needs:

* appends (one `append_many` per batch, as the consumer makes them) vs plain INSERTs of the
  same rows into a copy of the table with the same indexes, and into one with none (no
  tree, lock, receipt or trigger either; same batch size, one writer);
* time-to-signed-inclusion: appends run while a head is signed every --head-interval
  seconds; for each batch, the time from its commit to the first signed head covering it;
* one student's history (newest 100 of ~N/students entries) p50/p99;
* offline verify (every receipt checked, and the faster mode) vs a plain SHA-256 loop over
  the same canonical bytes.

    .venv/bin/python bench/audit_store.py                      # 100,000 entries
    .venv/bin/python bench/audit_store.py --entries 1000000 --skip-every-receipt   # the issue's size (~20 min)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from homeroom.storage import create_pool, database_url, migrate
from homeroom.tlog.signing import LogSigner
from homeroom.tlog.verify import ExportedEntry, verify_log
from homeroom_dev.infra.postgres import EmbeddedPostgres
from services.audit import store
from services.audit.application import tree_heads
from services.audit.entries import EntryDraft, Party

MIGRATIONS = Path(__file__).resolve().parent.parent / "services" / "audit" / "migrations"
ELEMENTS = ("student.first_name", "attendance.daily", "enrollment.school_id")


def student(i: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    out, n = [], i
    for _ in range(32):
        out.append(alphabet[n % 32])
        n //= 32
    return "stu_" + "".join(out)


def draft(i: int, students: int) -> EntryDraft:
    return EntryDraft(
        event_id=str(uuid.uuid4()),
        topic="disclosure.v1",
        kind="disclosure_recorded",
        occurred_at=datetime.now(UTC),
        requester=Party("Acme Learning", "acme-app", f"teacher-{i % 50}", "vendor"),
        recipient=Party("Acme Learning", "acme-app", "", "vendor"),
        student_key=student(i % students),
        district_id=f"d-{i % 7}",
        elements=ELEMENTS[: 1 + i % 3],
        purpose="instruction",
        legal_basis="FERPA 99.31(a)(1) school official",
        agreement_id=f"agr-{i % 13}",
        decision_id=str(uuid.uuid4()),
        policy_version="consent-policy/1",
        channel="records-api",
        details={"disclosure_id": str(uuid.uuid4())},
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def raw_baseline(pool: asyncpg.Pool, drafts: list[EntryDraft], batch: int, *, indexes: bool) -> float:
    await pool.execute("DROP TABLE IF EXISTS raw_entries")
    like = "INCLUDING DEFAULTS INCLUDING INDEXES" if indexes else "INCLUDING DEFAULTS"
    await pool.execute(f"CREATE TABLE raw_entries (LIKE entries {like})")
    leaf, sig = bytes(32), bytes(64)
    started = time.perf_counter()
    for start in range(0, len(drafts), batch):
        rows = []
        for i, d in enumerate(drafts[start : start + batch], start):
            r, q = d.requester, d.recipient
            parties = (r.organization, r.client_id, r.person, r.role, q.organization, q.client_id, q.person, q.role)
            what = (d.student_key, d.district_id, list(d.elements), d.purpose, d.legal_basis, d.agreement_id)
            rest: tuple[object, ...] = (d.decision_id, d.policy_version, [], d.channel, True, "{}", leaf, sig, "k")
            rows.append((i, d.event_id, d.topic, d.kind, d.occurred_at, 0, *parties, *what, *rest))
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                f"INSERT INTO raw_entries ({store._ENTRY_COLUMNS}) VALUES ({', '.join(f'${n}' for n in range(1, 30))})",  # noqa: S608
                rows,
            )
    return len(drafts) / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    pg = EmbeddedPostgres().start()
    try:
        admin = await asyncpg.connect(database_url(pg.server_url, "postgres"))
        await admin.execute("CREATE DATABASE bench_audit")
        await admin.close()
        pool = await create_pool(database_url(pg.server_url, "bench_audit"), max_size=4)
        await migrate(pool, "audit", MIGRATIONS)
        signer = LogSigner(Ed25519PrivateKey.generate())
        n, batch = args.entries, args.batch
        students = max(1, n // args.per_student)
        print(f"{n:,} entries, {students:,} students, batches of {batch}, head every {args.head_interval}s")
        drafts = [draft(i, students) for i in range(n)]

        # --- appends, with heads signed alongside -------------------------------------------
        commits: list[tuple[int, float]] = []  # (last seq in batch, commit time)
        heads: list[tuple[int, float]] = []  # (size, signed time)
        done = asyncio.Event()

        async def signer_loop() -> None:
            while not done.is_set():
                await asyncio.sleep(args.head_interval)
                async with pool.acquire() as conn, conn.transaction():
                    signed = await tree_heads.sign_head(conn, signer, time.time_ns() // 1_000_000)
                heads.append((signed.head.size, time.monotonic()))

        task = asyncio.create_task(signer_loop())
        per_entry: list[float] = []
        started = time.perf_counter()
        for start in range(0, n, batch):
            t0 = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL ROLE homeroom_audit_writer")
                appended = await store.append_many(conn, drafts[start : start + batch], time.time_ns() // 1_000_000)
                assert all(a is not None for a in appended)
                last = start + len(appended) - 1
            commits.append((last, time.monotonic()))
            per_entry.append((time.perf_counter() - t0) / len(drafts[start : start + batch]))
            if start and start % (batch * 200) == 0:
                print(f"  appended {start:,} ({start / (time.perf_counter() - started):,.0f}/s)", flush=True)
        append_s = time.perf_counter() - started
        done.set()
        await task
        async with pool.acquire() as conn, conn.transaction():
            signed = await tree_heads.sign_head(conn, signer, time.time_ns() // 1_000_000)
        heads.append((signed.head.size, time.monotonic()))
        rate = n / append_s
        print(f"append: {rate:,.0f} entries/s ({append_s:.1f} s); per entry p50 {pct(per_entry, 0.5) * 1e3:.3f} ms")

        latencies = []
        h = 0
        for last, committed in commits:
            while heads[h][0] <= last:
                h += 1
            latencies.append(heads[h][1] - committed)
        print(
            f"time to signed inclusion (head every {args.head_interval}s): "
            f"p50 {pct(latencies, 0.5):.2f} s, p99 {pct(latencies, 0.99):.2f} s, max {max(latencies):.2f} s"
        )

        raw_indexed = await raw_baseline(pool, drafts, batch, indexes=True)
        raw = await raw_baseline(pool, drafts, batch, indexes=False)
        print(
            f"plain INSERT of the same rows, same indexes: {raw_indexed:,.0f} rows/s; appends run at "
            f"{rate / raw_indexed:.2f}x of that"
        )
        print(f"plain INSERT of the same rows, no index: {raw:,.0f} rows/s; appends run at {rate / raw:.2f}x of that")

        # --- one student's history --------------------------------------------------------------
        rng = random.Random(7)
        times = []
        for _ in range(args.queries):
            key = student(rng.randrange(students))
            t0 = time.perf_counter()
            found = await store.search(pool, store.EntryFilter(student_key=key), 100)
            times.append(time.perf_counter() - t0)
            assert found
        print(
            f"one student's history (~{args.per_student} entries, first 100): "
            f"p50 {pct(times, 0.5) * 1e3:.2f} ms, p99 {pct(times, 0.99) * 1e3:.2f} ms over {args.queries} queries"
        )

        # --- proof reads ------------------------------------------------------------------------
        times = []
        for _ in range(200):
            index = rng.randrange(n)
            t0 = time.perf_counter()
            await store.inclusion_proof(pool, index, n)
            times.append(time.perf_counter() - t0)
        print(
            f"inclusion proof from the database: p50 {pct(times, 0.5) * 1e3:.2f} ms, "
            f"p99 {pct(times, 0.99) * 1e3:.2f} ms"
        )

        # --- offline verify vs plain SHA-256 ----------------------------------------------------
        t0 = time.perf_counter()
        exported: list[ExportedEntry] = []
        async for page in store.iter_entries(pool, 5000):
            exported.extend(ExportedEntry(e.seq, e.canonical(), e.leaf_hash, e.receipt) for e in page)
        read_s = time.perf_counter() - t0
        all_heads = await store.heads(pool)
        size = sum(len(e.canonical_bytes) for e in exported)
        print(f"read and re-encode {n:,} entries from the database: {n / read_s:,.0f}/s (avg {size / n:.0f} bytes)")
        t0 = time.perf_counter()
        for e in exported:
            hashlib.sha256(b"\x00" + e.canonical_bytes).digest()
        sha_s = time.perf_counter() - t0
        modes = [("every receipt", True)] if not args.skip_every_receipt else []
        for label, every in [*modes, ("receipts where needed", False)]:
            t0 = time.perf_counter()
            report = verify_log(iter(exported), all_heads, signer.public_key, check_all_receipts=every)
            v_s = time.perf_counter() - t0
            assert report.ok, report.lines()[:5]
            print(
                f"offline verify ({label}): {n / v_s:,.0f} entries/s vs plain SHA-256 loop {n / sha_s:,.0f}/s "
                f"({sha_s / v_s:.3f}x); {len(all_heads)} heads, {report.consistency_checked} consistency proofs"
            )
        await pool.close()
    finally:
        pg.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="entries per transaction (the consumer's max batch)")
    parser.add_argument("--per-student", type=int, default=200, help="entries per student")
    parser.add_argument("--head-interval", type=float, default=1.0)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--skip-every-receipt", action="store_true", help="skip the slow check-every-receipt pass")
    asyncio.run(main(parser.parse_args()))
