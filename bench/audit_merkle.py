"""Audit log core: append rate, proof cost and offline verify rate at a million entries.

Prints figures; asserts nothing about speed. The verifier is compared with a plain
``hashlib.sha256`` loop over the same entry bytes in the same run, the floor any
verifier that looks at every entry has to pay.

    .venv/bin/python bench/audit_merkle.py              # 1,000,000 entries (a few minutes)
    .venv/bin/python bench/audit_merkle.py --entries 100000
    .venv/bin/python bench/audit_merkle.py --skip-every-receipt   # leaves out the ~2 minute pass
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import resource
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from homeroom.tlog.merkle import MemoryNodeStore, MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from homeroom.tlog.signing import LogSigner, TreeHead
from homeroom.tlog.verify import ExportedEntry, verify_log

T0 = 1_767_225_600_000


def canonical(i: int) -> bytes:
    """About 150 bytes, shaped like a disclosure entry (who, what elements, to whom, why)."""
    record = {
        "seq": i,
        "at": T0 + i,
        "actor": f"vendor:{i % 97}",
        "student": f"{i * 2654435761 % 2**32:08x}",
        "elements": ["attendance.daily", "enrollment.school_id"],
        "purpose": "instruction",
        "basis": "FERPA 99.31(a)(1)",
    }
    return json.dumps(record, separators=(",", ":")).encode()


def timed(label: str, fn: Callable[[], object], count: int, unit: str = "/s") -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    rate = count / seconds
    print(f"  {label:<52} {rate:>14,.0f} {unit}   ({seconds:.2f} s)")
    return rate


def per_op(label: str, fn: Callable[[], object], count: int) -> None:
    start = time.perf_counter()
    fn()
    micros = (time.perf_counter() - start) / count * 1e6
    print(f"  {label:<52} {micros:>14.1f} µs each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--heads-every", type=int, default=100_000, help="sign a tree head every N entries")
    parser.add_argument("--skip-every-receipt", action="store_true", help="skip the slow pass checking all receipts")
    args = parser.parse_args()
    n = args.entries
    rng = random.Random(7)
    print(f"audit Merkle core, {n:,} entries")

    data = [canonical(i) for i in range(n)]
    print(f"  entry size: {sum(map(len, data)) / n:.0f} bytes on average")

    print("append")
    leaves: list[bytes] = []
    timed("leaf_hash (SHA-256 of 0x00 || entry)", lambda: leaves.extend(leaf_hash(d) for d in data), n)
    log = MerkleLog()
    timed("MerkleLog.append (in-memory store)", lambda: log.extend(leaves), n)
    store = log.store
    assert isinstance(store, MemoryNodeStore)
    print(f"  stored hashes: {store.nbytes() / 2**20:.1f} MiB for {n:,} leaves")
    packed = bytearray(b"".join(leaves))
    timed(
        "bulk build of the same tree (verifier's path)",
        lambda: MemoryNodeStore.from_leaf_hashes(packed),
        n,
    )

    print(f"queries at size {n:,}")
    size = log.size
    root = log.root()
    picks = [rng.randrange(size) for _ in range(10_000)]
    per_op("inclusion proof", lambda: [log.inclusion_proof(i) for i in picks], len(picks))
    proofs = [(i, log.inclusion_proof(i)) for i in picks]
    per_op("verify_inclusion", lambda: [verify_inclusion(leaves[i], i, size, p, root) for i, p in proofs], len(proofs))
    olds = [rng.randrange(1, size) for _ in range(2_000)]
    per_op("historical root (any earlier size)", lambda: [log.root(m) for m in olds], len(olds))
    per_op("consistency proof", lambda: [log.consistency_proof(m) for m in olds], len(olds))
    cproofs = [(m, log.root(m), log.consistency_proof(m)) for m in olds]
    per_op(
        "verify_consistency",
        lambda: [verify_consistency(m, size, r, root, p) for m, r, p in cproofs],
        len(cproofs),
    )

    print("export (setup, not a figure of the verifier)")
    signer = LogSigner(Ed25519PrivateKey.generate())
    entries: list[ExportedEntry] = []

    def sign_all() -> None:
        for i in range(n):
            entries.append(ExportedEntry(i, data[i], leaves[i], signer.sign_receipt(i, leaves[i], T0 + i)))

    timed("sign entry receipts (Ed25519)", sign_all, n)
    heads = [
        signer.sign_head(TreeHead(s, log.root(s), T0 + s))
        for s in sorted({*range(args.heads_every, n + 1, args.heads_every), n})
    ]
    leaves.clear()
    # The dataset is a million live objects that a streaming export would not keep;
    # freezing them keeps the collector from rescanning them during the timings.
    gc.collect()
    gc.freeze()

    print("offline verify")
    baseline = timed(
        "plain hashlib.sha256 loop over the same bytes",
        lambda: [hashlib.sha256(e.canonical_bytes).digest() for e in entries],
        n,
    )
    public = signer.public_key
    sample = entries[: min(n, 20_000)]
    ed = timed(
        "plain Ed25519 verify loop (receipts)",
        lambda: [public.verify(e.receipt.signature, e.receipt.signing_bytes()) for e in sample if e.receipt],
        len(sample),
    )
    reports = []
    fast = timed(
        "verify_log, receipts only where no head vouches",
        lambda: reports.append(verify_log(entries, heads, public, check_all_receipts=False)),
        n,
    )
    full = 0.0
    if not args.skip_every_receipt:

        def every_receipt() -> None:
            reports.append(verify_log(entries, heads, public))

        full = timed("verify_log, every receipt signature", every_receipt, n)
    assert all(r.ok for r in reports), [r.lines()[:5] for r in reports]

    print("ratios (same run)")
    print(f"  verify (heads vouch) vs plain sha256 loop: {baseline / fast:6.1f}x the time")
    if full:
        print(f"  verify (every receipt) vs plain sha256 loop: {baseline / full:6.1f}x the time")
        print(f"  verify (every receipt) vs plain Ed25519 loop: {ed / full:6.2f}x the time")
    print("  (the tree alone needs about two hashes per entry: its leaf, and one interior node)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process (dataset included): {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
