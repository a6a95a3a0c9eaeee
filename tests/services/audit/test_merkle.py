"""The Merkle tree against RFC 9162's own definitions and against published test vectors.

``naive_mth``, ``naive_path`` and ``naive_proof`` below are the RFC's recursive
definitions transcribed directly over the raw data (sections 2.1.1, 2.1.3.1, 2.1.4.1),
sharing no code with the module under test, so they check it independently.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeroom.tlog.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    MerkleLog,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    multiproof_nodes,
    node_hash,
    range_nodes,
    subtree_range,
    verify_consistency,
    verify_inclusion,
    verify_multiproof,
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split_point(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d: list[bytes]) -> bytes:
    if not d:
        return sha(b"")
    if len(d) == 1:
        return sha(b"\x00" + d[0])
    k = split_point(len(d))
    return sha(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:]))


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = split_point(len(d))
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = split_point(n)
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def naive_proof(m: int, d: list[bytes]) -> list[bytes]:
    return naive_subproof(m, d, True)


def entries(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]


def log_of(data: list[bytes]) -> MerkleLog:
    log = MerkleLog()
    log.extend(leaf_hash(x) for x in data)
    return log


# --- published vectors ------------------------------------------------------------------
# From transparency-dev/merkle, proof/verify_test.go (commit 02194e9a) and
# rfc6962/rfc6962_test.go (commit 78493b07); the same figures appear in
# google/certificate-transparency's C++ and Go tests. The Go file numbers leaves from 1;
# indices below are 0-based.

VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]
VECTOR_ROOTS = [  # root of the tree over the first 1..8 leaves
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
VECTOR_INCLUSION = [  # (index, size, path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
VECTOR_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def unhex(hashes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


def test_hash_primitives_match_published_vectors() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # The empty leaf is not the empty tree: the 0x00 prefix tells them apart.
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


def test_roots_match_published_vectors_at_every_size() -> None:
    log = log_of(VECTOR_LEAVES)
    assert log.root(0) == EMPTY_ROOT
    for size, want in enumerate(VECTOR_ROOTS, start=1):
        assert log.root(size).hex() == want
    assert log.root().hex() == VECTOR_ROOTS[-1]


@pytest.mark.parametrize(("index", "size", "path"), VECTOR_INCLUSION)
def test_inclusion_proofs_match_published_vectors(index: int, size: int, path: list[str]) -> None:
    log = log_of(VECTOR_LEAVES)
    assert log.inclusion_proof(index, size) == unhex(path)
    root = bytes.fromhex(VECTOR_ROOTS[size - 1])
    assert verify_inclusion(leaf_hash(VECTOR_LEAVES[index]), index, size, unhex(path), root)


@pytest.mark.parametrize(("old", "new", "proof"), VECTOR_CONSISTENCY)
def test_consistency_proofs_match_published_vectors(old: int, new: int, proof: list[str]) -> None:
    log = log_of(VECTOR_LEAVES)
    assert log.consistency_proof(old, new) == unhex(proof)
    old_root, new_root = bytes.fromhex(VECTOR_ROOTS[old - 1]), bytes.fromhex(VECTOR_ROOTS[new - 1])
    assert verify_consistency(old, new, old_root, new_root, unhex(proof))


# --- against the RFC's definitions --------------------------------------------------------


def test_root_equals_naive_mth_for_every_size_up_to_70_and_historical_sizes() -> None:
    data = entries(70)
    log = MerkleLog()
    for n in range(71):
        assert log.root() == naive_mth(data[:n]), n
        if n < 70:
            log.append(leaf_hash(data[n]))
    # Every earlier size is still answerable from stored nodes.
    for n in range(71):
        assert log.root(n) == naive_mth(data[:n])


@pytest.mark.parametrize("size", [127, 128, 129, 255, 256, 257, 1000, 1023, 1025])
def test_root_equals_naive_mth_at_awkward_sizes(size: int) -> None:
    data = entries(size, seed=size)
    log = log_of(data)
    assert log.root() == naive_mth(data)
    for n in random.Random(size).sample(range(size + 1), 10):
        assert log.root(n) == naive_mth(data[:n])


def test_every_proof_up_to_size_40_equals_the_rfc_definition_and_verifies() -> None:
    data = entries(40, seed=1)
    log = log_of(data)
    for size in range(1, 41):
        root = log.root(size)
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert proof == naive_path(index, data[:size])
            assert verify_inclusion(leaf_hash(data[index]), index, size, proof, root)
        for old in range(1, size + 1):
            proof = log.consistency_proof(old, size)
            assert proof == naive_proof(old, data[:size])
            assert verify_consistency(old, size, log.root(old), root, proof)


def test_proof_lengths_stay_logarithmic() -> None:
    log = log_of(entries(1000))
    assert max(len(log.inclusion_proof(i)) for i in range(1000)) == 10  # ceil(log2(1000))
    assert max(len(log.consistency_proof(m)) for m in range(1, 1000)) <= 2 * 10


# --- tampering must fail ----------------------------------------------------------------


def flip(h: bytes, bit: int = 3) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


InclusionProbe = tuple[bytes, int, int, list[bytes], bytes]  # verify_inclusion's arguments
ConsistencyProbe = tuple[int, int, bytes, bytes, list[bytes]]  # verify_consistency's arguments


def corrupted_inclusion(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes) -> list[InclusionProbe]:
    """The same corruptions transparency-dev/merkle probes its verifier with."""
    probes: list[InclusionProbe] = [
        (leaf, index - 1, size, proof, root),
        (leaf, index + 1, size, proof, root),
        (leaf, index ^ 2, size, proof, root),
        (leaf, index, size * 2, proof, root),
        (leaf, index, size // 2, proof, root),
        (leaf_hash(b"WrongLeaf"), index, size, proof, root),
        (leaf, index, size, proof, EMPTY_ROOT),
        (leaf, index, size, proof, SOME_HASH),
        (leaf, index, size, [*proof, b""], root),
        (leaf, index, size, [*proof, root], root),
        (leaf, index, size, [b"", *proof], root),
        (leaf, index, size, [root, *proof], root),
    ]
    for i in range(len(proof)):
        probes.append((leaf, index, size, [*proof[:i], flip(proof[i]), *proof[i + 1 :]], root))
    if proof:
        probes.append((leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append((leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
    return probes


def test_tampered_inclusion_proofs_fail_for_every_leaf_up_to_size_40() -> None:
    data = entries(40, seed=2)
    log = log_of(data)
    for size in range(1, 41):
        root = log.root(size)
        for index in range(size):
            leaf = leaf_hash(data[index])
            proof = log.inclusion_proof(index, size)
            for probe in corrupted_inclusion(index, size, proof, root, leaf):
                assert not verify_inclusion(*probe), (index, size, probe[1:3])


def test_inclusion_of_a_different_leaf_fails() -> None:
    data = entries(33, seed=3)
    log = log_of(data)
    root = log.root()
    for index in range(33):
        proof = log.inclusion_proof(index)
        others = [j for j in range(33) if data[j] != data[index]]
        for j in others[:5]:
            assert not verify_inclusion(leaf_hash(data[j]), index, 33, proof, root)


def test_tampered_consistency_proofs_fail_up_to_size_40() -> None:
    data = entries(40, seed=4)
    log = log_of(data)
    for new in range(2, 41):
        new_root = log.root(new)
        for old in range(1, new):
            old_root = log.root(old)
            proof = log.consistency_proof(old, new)
            probes: list[ConsistencyProbe] = [
                (old - 1, new, old_root, new_root, proof),
                (old + 1, new, old_root, new_root, proof),
                (old ^ 2, new, old_root, new_root, proof),
                (old, new * 2, old_root, new_root, proof),
                (old, new // 2, old_root, new_root, proof),
                (old, new, SOME_HASH, new_root, proof),
                (old, new, old_root, SOME_HASH, proof),
                (old, new, new_root, old_root, proof),
                (old, new, old_root, new_root, []),
                (old, new, old_root, new_root, [*proof, b""]),
                (old, new, old_root, new_root, [*proof, old_root]),
                (old, new, old_root, new_root, [*proof, new_root]),
                (old, new, old_root, new_root, [b"", *proof]),
                (old, new, old_root, new_root, [old_root, *proof]),
                (old, new, old_root, new_root, [new_root, *proof]),
                (old, new, old_root, new_root, [proof[0], *proof]),
                (old, new, old_root, new_root, proof[:-1]),
            ]
            for i in range(len(proof)):
                probes.append((old, new, old_root, new_root, [*proof[:i], flip(proof[i], 4), *proof[i + 1 :]]))
            for probe in probes:
                # old ^ 2 can land on new itself, or old - 1 on 0: those are other statements
                # with their own rules, and must fail too because the roots no longer fit.
                assert not verify_consistency(*probe), (old, new, probe[:2])


def test_consistency_edge_cases() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, a, [])  # the empty tree is a prefix of every tree
    assert not verify_consistency(0, 5, a, b, [])  # ...but a size-0 head must carry the empty root
    assert verify_consistency(3, 3, a, a, [])
    assert not verify_consistency(3, 3, a, b, [])  # same size, two roots: a fork
    assert not verify_consistency(3, 3, a, a, [b])  # nothing to prove, so no proof accepted
    assert not verify_consistency(2, 1, a, b, [a])  # time travel
    assert not verify_consistency(1, 2, a, b, [])


def test_inclusion_edge_cases() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)  # in a one-leaf tree the leaf is the root
    assert not verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaf, 1, 1, [], leaf)
    assert not verify_inclusion(b"", 0, 1, [], b"")  # hashes of the wrong length


# --- structure and storage ----------------------------------------------------------------


def test_range_nodes_are_aligned_perfect_subtrees() -> None:
    assert range_nodes(0, 1) == [(0, 0)]
    assert range_nodes(0, 8) == [(3, 0)]
    assert range_nodes(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert range_nodes(8, 13) == [(2, 2), (0, 12)]
    with pytest.raises(ValueError, match="not a subtree"):
        range_nodes(1, 3)  # never hashed by the RFC's tree
    assert inclusion_ranges(5, 8) == [(4, 5), (6, 8), (0, 4)]
    assert consistency_ranges(6, 8) == [(4, 6), (6, 8), (0, 4)]


def test_proofs_touch_logarithmically_many_stored_nodes() -> None:
    class CountingStore(MemoryNodeStore):
        reads = 0

        def get(self, level: int, index: int) -> bytes:
            CountingStore.reads += 1
            return super().get(level, index)

    log = MerkleLog(CountingStore())
    log.extend(leaf_hash(i.to_bytes(4, "big")) for i in range(5000))
    for probe in (
        lambda: log.root(4097),
        lambda: log.inclusion_proof(4096, 4999),
        lambda: log.consistency_proof(1234, 4999),
    ):
        CountingStore.reads = 0
        probe()
        assert 0 < CountingStore.reads <= 2 * 13  # 2 * ceil(log2(5000)), nowhere near 5000


def test_reopening_a_store_continues_the_same_tree() -> None:
    data = entries(300, seed=5)
    first = log_of(data[:173])
    reopened = MerkleLog(first.store)
    assert reopened.size == 173 and reopened.root() == naive_mth(data[:173])
    reopened.extend(leaf_hash(x) for x in data[173:])
    assert reopened.root() == naive_mth(data)
    assert reopened.root(100) == naive_mth(data[:100])


def test_a_failed_store_write_leaves_the_log_as_it_was() -> None:
    class Transactional(MemoryNodeStore):
        """Fails once part-way through an append and rolls back what it wrote, as a database would."""

        def __init__(self) -> None:
            super().__init__()
            self.fail_at_level: int | None = None
            self.written: list[int] = []

        def put(self, level: int, index: int, digest: bytes) -> None:
            if level == 0:
                self.written = []
            if level == self.fail_at_level:
                self.fail_at_level = None
                for lvl in self.written:
                    del self._levels[lvl][-32:]
                raise OSError("disk full")
            super().put(level, index, digest)
            self.written.append(level)

    data = entries(8, seed=6)
    store = Transactional()
    log = MerkleLog(store)
    log.extend(leaf_hash(x) for x in data[:7])  # size 7: the next leaf completes three subtrees
    store.fail_at_level = 2  # after the leaf and one node were written
    with pytest.raises(OSError):
        log.append(leaf_hash(data[7]))
    assert log.size == 7 and store.leaf_count() == 7
    log.append(leaf_hash(data[7]))  # the retry sees the tree exactly as before the failure
    assert log.root() == naive_mth(data)
    assert MerkleLog(store).root() == naive_mth(data)


def test_bulk_built_store_equals_incremental_appends() -> None:
    for n in (0, 1, 2, 3, 64, 65, 300):
        data = entries(n, seed=n)
        incremental = log_of(data)
        bulk = MerkleLog(MemoryNodeStore.from_leaf_hashes(bytearray(b"".join(leaf_hash(x) for x in data))))
        assert bulk.size == n
        assert bulk.root() == incremental.root() == naive_mth(data)
        if n:
            assert bulk.inclusion_proof(n // 2) == incremental.inclusion_proof(n // 2)
            bulk.append(leaf_hash(b"next"))  # a bulk-built tree keeps growing like any other
            assert bulk.root() == naive_mth([*data, b"next"])


def test_bulk_build_across_its_batch_boundary() -> None:
    # The bulk build hashes 65,536 nodes per batch; an odd size past two batches checks the seams.
    n = 2 * 2 * 65_536 + 3
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    incremental = MerkleLog()
    incremental.extend(leaves)
    bulk = MerkleLog(MemoryNodeStore.from_leaf_hashes(bytearray(b"".join(leaves))))
    for size in (n, 131_072, 131_073, 65_537):
        assert bulk.root(size) == incremental.root(size)
    assert bulk.inclusion_proof(131_071) == incremental.inclusion_proof(131_071)


def test_store_refuses_holes_and_bad_hashes() -> None:
    store = MemoryNodeStore()
    with pytest.raises(ValueError, match="out of order"):
        store.put(0, 1, leaf_hash(b"x"))
    with pytest.raises(ValueError, match="32 bytes"):
        store.put(0, 0, b"short")
    with pytest.raises(KeyError):
        store.get(0, 0)


def test_out_of_range_requests_are_refused() -> None:
    log = log_of(entries(10))
    with pytest.raises(ValueError):
        log.root(11)
    with pytest.raises(ValueError):
        log.inclusion_proof(10, 10)
    with pytest.raises(ValueError):
        log.consistency_proof(5, 11)
    with pytest.raises(ValueError):
        log.consistency_proof(6, 5)
    with pytest.raises(IndexError):
        log.leaf(10)
    with pytest.raises(ValueError):
        log.append(b"not a hash")


# --- properties -----------------------------------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=24), min_size=1, max_size=150)


@settings(max_examples=60, deadline=None)
@given(data=leaf_lists, picks=st.data())
def test_any_tree_roots_and_proofs_agree_with_the_rfc(data: list[bytes], picks: st.DataObject) -> None:
    log = log_of(data)
    size = picks.draw(st.integers(1, len(data)), label="size")
    index = picks.draw(st.integers(0, size - 1), label="index")
    old = picks.draw(st.integers(0, size), label="old")
    root = log.root(size)
    assert root == naive_mth(data[:size])
    proof = log.inclusion_proof(index, size)
    assert proof == naive_path(index, data[:size])
    assert verify_inclusion(leaf_hash(data[index]), index, size, proof, root)
    cproof = log.consistency_proof(old, size)
    assert verify_consistency(old, size, log.root(old), root, cproof)


@settings(max_examples=60, deadline=None)
@given(data=leaf_lists, picks=st.data())
def test_any_single_byte_change_in_an_inclusion_proof_is_caught(data: list[bytes], picks: st.DataObject) -> None:
    log = log_of(data)
    size = picks.draw(st.integers(1, len(data)), label="size")
    index = picks.draw(st.integers(0, size - 1), label="index")
    proof = log.inclusion_proof(index, size)
    if not proof:
        return
    which = picks.draw(st.integers(0, len(proof) - 1), label="element")
    byte = picks.draw(st.integers(0, 31), label="byte")
    mask = picks.draw(st.integers(1, 255), label="mask")
    bad = bytearray(proof[which])
    bad[byte] ^= mask
    tampered = [*proof[:which], bytes(bad), *proof[which + 1 :]]
    assert not verify_inclusion(leaf_hash(data[index]), index, size, tampered, log.root(size))


@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.binary(max_size=16), min_size=2, max_size=120), picks=st.data())
def test_a_rewritten_prefix_is_never_consistent(data: list[bytes], picks: st.DataObject) -> None:
    # The operator's attack: change an entry inside an old tree, then try to prove the new
    # tree extends the old signed one.
    new = picks.draw(st.integers(2, len(data)), label="new")
    old = picks.draw(st.integers(1, new - 1), label="old")
    victim = picks.draw(st.integers(0, old - 1), label="victim")
    honest = log_of(data)
    forged_data = list(data)
    forged_data[victim] = forged_data[victim] + b"!"
    forged = log_of(forged_data)
    assert not verify_consistency(old, new, honest.root(old), forged.root(new), forged.consistency_proof(old, new))


# --- multiproofs ---------------------------------------------------------------------------


def _multiproof(log: MerkleLog, indices: list[int], size: int) -> list[bytes]:
    return [log._hash_range(*subtree_range(node, size)) for node in multiproof_nodes(indices, size)]


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 300), picks=st.data())
def test_any_set_of_leaves_is_proven_by_one_multiproof_against_any_historical_root(
    size: int, picks: st.DataObject
) -> None:
    log = MerkleLog()
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size + 20)]
    log.extend(leaves)
    chosen = sorted(picks.draw(st.sets(st.integers(0, size - 1), min_size=1)))
    proof = _multiproof(log, chosen, size)
    assert verify_multiproof([(i, leaves[i]) for i in chosen], size, proof, log.root(size))
    # Never more than one inclusion proof per leaf would send, and one for a single leaf is its audit path.
    assert len(proof) <= sum(len(log.inclusion_proof(i, size)) for i in chosen)
    if len(chosen) == 1:
        assert proof == log.inclusion_proof(chosen[0], size)
    # A leaf changed, a hash dropped or added, a leaf left out: none of them gives the root.
    wrong = [(i, leaves[i] if n else leaf_hash(b"forged")) for n, i in enumerate(chosen)]
    assert not verify_multiproof(wrong, size, proof, log.root(size))
    if proof:
        assert not verify_multiproof([(i, leaves[i]) for i in chosen], size, proof[1:], log.root(size))
        flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        assert not verify_multiproof([(i, leaves[i]) for i in chosen], size, flipped, log.root(size))
    assert not verify_multiproof([(i, leaves[i]) for i in chosen], size, [*proof, leaves[0]], log.root(size))
    if len(chosen) > 1:
        assert not verify_multiproof([(i, leaves[i]) for i in chosen[1:]], size, proof, log.root(size))


def test_a_run_of_leaves_shares_its_nodes() -> None:
    """A million leaves in runs of a hundred within ten million: a few hashes per run, not 24 per leaf."""
    size = 10_000_000
    chosen = [start + k for start in range(0, size - 100, 10_000) for k in range(100)]
    nodes = multiproof_nodes(chosen, size)
    assert len(chosen) == 100_000 and len(nodes) < 20 * 1000
    with pytest.raises(ValueError, match="sorted and unique"):
        multiproof_nodes([3, 2], 10)
    with pytest.raises(ValueError, match="within a tree"):
        multiproof_nodes([10], 10)
