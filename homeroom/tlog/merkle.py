"""The disclosure log's Merkle tree, exactly as RFC 9162 §2.1 defines it.

Hashes are SHA-256. A leaf is ``HASH(0x00 || data)`` and an interior node is
``HASH(0x01 || left || right)``, so a leaf can never be passed off as a node. The tree
over ``n`` leaves splits at ``k``, the largest power of two below ``n``: the left part
is always a *perfect* subtree of ``k`` leaves, the right part the tree over the rest.

Every subtree the RFC ever hashes, for a root, an inclusion proof or a consistency
proof, is therefore a run of perfect subtrees laid side by side, each one aligned on
its own size. ``MerkleLog`` keeps the hash of every perfect subtree once it is complete,
addressed by ``(level, index)`` (level 0 = the leaves; node ``(L, i)`` covers leaves
``i*2**L`` to ``(i+1)*2**L - 1``). It never rehashes leaves to answer anything:
historical roots and proofs read O(log n) stored nodes, and an append writes the new
leaf plus, amortised, one node.

The work is split in two so that an asynchronous store (PostgreSQL) can use it without
this module doing I/O: ``inclusion_ranges`` / ``consistency_ranges`` say which subtrees
a proof is made of, ``range_nodes`` which stored nodes each subtree is made of, and
``fold`` hashes those nodes into the subtree's hash. ``MerkleLog`` is the same recipe
over a synchronous ``NodeStore``.

``verify_inclusion`` and ``verify_consistency`` are the RFC 9162 §2.1.3.2 and §2.1.4.2
verification algorithms step by step: what an auditor or a parent's browser runs
against a signed tree head, trusting nothing the server computed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeAlias

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = HASH(), the root of the empty tree

NodeId: TypeAlias = tuple[int, int]  # (level, index) of a perfect subtree
Range: TypeAlias = tuple[int, int]  # leaves [start, end)

# Hash states with the prefix already absorbed, copied per hash: measured faster in CPython
# than concatenating the prefix onto the data first.
_LEAF_STATE = hashlib.sha256(LEAF_PREFIX)
_NODE_STATE = hashlib.sha256(NODE_PREFIX)
_sha256 = hashlib.sha256
_BULK_CHUNK = 64 * 2 * HASH_SIZE * 1024  # bytes of the level below hashed per batch (65,536 nodes)


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of a leaf is HASH(0x00 || data)."""
    h = _LEAF_STATE.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of an interior node is HASH(0x01 || left || right)."""
    h = _NODE_STATE.copy()
    h.update(left)
    h.update(right)
    return h.digest()


# --- which subtrees make up a root or a proof (pure arithmetic, no hashing) -------------


def _split(n: int) -> int:
    """k, the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees, left to right, that MTH(D[start:end]) is built from.

    The RFC's split puts a perfect subtree of the largest power of two on the left and
    recurses on the right, so the pieces follow the binary digits of ``end - start``.
    Only ranges that occur in the RFC's tree are accepted: each piece must sit aligned
    on its own size, or it would not be a stored node.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    nodes: list[NodeId] = []
    remaining = end - start
    while remaining:
        level = remaining.bit_length() - 1
        if start & ((1 << level) - 1):
            raise ValueError(f"range [{start}, {end}) is not a subtree of the RFC 9162 tree")
        nodes.append((level, start >> level))
        start += 1 << level
        remaining -= 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its perfect pieces (as listed by ``range_nodes``).

    MTH(D[a:b]) = HASH(0x01 || perfect-left || MTH(rest)), so the pieces combine from
    the right.
    """
    if not hashes:
        raise ValueError("nothing to fold")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes form PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf upwards."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    top_down: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            top_down.append((start + k, end))
            end = start + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            top_down.append((start, start + k))
            start += k
    return top_down[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees whose hashes form PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1).

    Empty when there is nothing to prove (old_size 0 or equal sizes).
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    top_down: list[Range] = []
    start, end, m, whole = 0, new_size, old_size, True  # whole: the RFC's flag b
    while True:
        n = end - start
        if m == n:
            if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
                top_down.append((start, end))
            break
        k = _split(n)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            top_down.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            top_down.append((start, start + k))
            start, m, whole = start + k, m - k, False
    return top_down[::-1]


# --- storage ------------------------------------------------------------------------------


class NodeStore(Protocol):
    """Leaf hashes (level 0) and completed perfect-subtree hashes (levels 1 and up).

    ``MerkleLog`` writes each node exactly once, in order of index within its level,
    and never changes it: the log is append-only. ``leaf_count`` is the tree size the
    store holds, read when a ``MerkleLog`` is opened on it.
    """

    def leaf_count(self) -> int: ...

    def get(self, level: int, index: int) -> bytes: ...

    def put(self, level: int, index: int, digest: bytes) -> None: ...


class MemoryNodeStore:
    """Each level in one contiguous ``bytearray`` of 32-byte hashes.

    A million leaves cost 64 MB in total (leaves plus nodes), with no per-hash Python
    object. Writes must append (index == current count at that level): anything else is
    a bug in the caller, so it raises rather than leave a hole.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]

    @classmethod
    def from_leaf_hashes(cls, leaves: bytearray) -> MemoryNodeStore:
        """A store over concatenated leaf hashes, computing every perfect subtree at once.

        Takes ownership of ``leaves`` (no copy). Used to rebuild a whole tree in one pass,
        as the offline verifier does; pairs are hashed level by level, ~n hashes in all.
        """
        if len(leaves) % HASH_SIZE:
            raise ValueError("leaf buffer is not a whole number of 32-byte hashes")
        store = cls()
        store._levels = [leaves]
        below = leaves
        pair = 2 * HASH_SIZE
        while len(below) >= pair:
            level = bytearray()
            end = len(below) // pair * pair  # an odd last node has no partner at this level
            # In chunks, so only a bounded number of digests are alive at once. Left and right
            # children sit side by side in the level below: one slice hashes a whole node.
            for start in range(0, end, _BULK_CHUNK):
                chunk = bytes(below[start : min(end, start + _BULK_CHUNK)])
                level += b"".join(
                    [_sha256(NODE_PREFIX + chunk[o : o + pair]).digest() for o in range(0, len(chunk), pair)]
                )
            store._levels.append(level)
            below = level
        return store

    def leaf_count(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def get(self, level: int, index: int) -> bytes:
        if level >= len(self._levels) or not 0 <= index < len(self._levels[level]) // HASH_SIZE:
            raise KeyError(f"no node ({level}, {index})")
        o = index * HASH_SIZE
        return bytes(self._levels[level][o : o + HASH_SIZE])

    def put(self, level: int, index: int, digest: bytes) -> None:
        if len(digest) != HASH_SIZE:
            raise ValueError(f"node hash must be {HASH_SIZE} bytes, got {len(digest)}")
        while level >= len(self._levels):
            self._levels.append(bytearray())
        buf = self._levels[level]
        if index != len(buf) // HASH_SIZE:
            raise ValueError(f"node ({level}, {index}) written out of order: level holds {len(buf) // HASH_SIZE}")
        buf += digest

    def nbytes(self) -> int:
        return sum(len(b) for b in self._levels)


# --- the log ------------------------------------------------------------------------------


class MerkleLog:
    """An append-only RFC 9162 tree over leaf hashes, answering for any size it has had.

    Besides the store, it keeps the right edge of the tree (the "compact range": one
    perfect-subtree hash per set bit of the size), so an append merges with the edge
    instead of reading the store, and the current root is a fold of at most 64 hashes.
    """

    __slots__ = ("_edge", "_root", "_size", "store")

    def __init__(self, store: NodeStore | None = None) -> None:
        self.store: NodeStore = MemoryNodeStore() if store is None else store
        self._size = self.store.leaf_count()
        self._edge: list[bytes] = [self.store.get(level, index) for level, index in _edge_nodes(self._size)]
        self._root: bytes | None = None

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash (see ``leaf_hash``); returns its index.

        If the store raises, this object is left as it was before the call; undoing any
        writes the store already made is the store's business (a transaction).
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        index = self._size
        edge = self._edge
        put = self.store.put
        put(0, index, leaf)
        # Each trailing 1-bit of the old size is a perfect subtree on the edge that the
        # new leaf completes into one twice as large. The edge is only read here and
        # changed once every write went through.
        h, level, i, keep = leaf, 0, index, len(edge)
        while i & 1:
            keep -= 1
            h = node_hash(edge[keep], h)
            level += 1
            i >>= 1
            put(level, i, h)
        del edge[keep:]
        edge.append(h)
        self._size = index + 1
        self._root = None
        return index

    def extend(self, leaves: Iterable[bytes]) -> int:
        """Append many leaf hashes; returns the new size."""
        for leaf in leaves:
            self.append(leaf)
        return self._size

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} outside 0..{self._size - 1}")
        return self.store.get(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them)."""
        if size is None or size == self._size:
            if self._root is None:
                self._root = fold(self._edge) if self._edge else EMPTY_ROOT
            return self._root
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._hash_range(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]): the audit path for leaf ``index`` in the tree of ``size``."""
        size = self._size if size is None else size
        self._check_size(size)
        return [self._hash_range(a, b) for a, b in inclusion_ranges(index, size)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]): that the tree of old_size is a prefix of new_size."""
        new_size = self._size if new_size is None else new_size
        self._check_size(new_size)
        return [self._hash_range(a, b) for a, b in consistency_ranges(old_size, new_size)]

    def _hash_range(self, start: int, end: int) -> bytes:
        get = self.store.get
        return fold([get(level, index) for level, index in range_nodes(start, end)])

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} outside 0..{self._size}")


def _edge_nodes(size: int) -> list[NodeId]:
    return range_nodes(0, size) if size else []


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------


def _all_hashes(items: Iterable[bytes]) -> bool:
    return all(len(h) == HASH_SIZE for h in items)


def _climb(fn: int, sn: int, seed: bytes, path: Sequence[bytes], *, with_old_root: bool) -> tuple[bytes, bytes] | None:
    """The walk both verifications share (RFC 9162 §2.1.3.2 step 4, §2.1.4.2 step 6): from
    ``seed`` at node ``fn`` of a tree whose last node is ``sn``, take in each path value on
    the side the walk says. Returns (sr, fr): sr, the root the whole path leads to (the
    inclusion proof's r); fr, with ``with_old_root``, the root of the left values only (the
    old tree's, in a consistency proof). None when the path does not fit the tree."""
    fr = sr = seed
    for c in path:
        # a. If sn is 0, stop and fail.
        if sn == 0:
            return None
        # b. If LSB(fn) is set, or fn equals sn:
        if fn & 1 or fn == sn:
            sr = node_hash(c, sr)
            if with_old_root:
                fr = node_hash(c, fr)
            # If LSB(fn) is not set, right-shift both until LSB(fn) is set or fn is 0.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c. Right-shift both once.
        fn >>= 1
        sn >>= 1
    # After the path, sn must be 0.
    return (sr, fr) if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``."""
    if not _all_hashes([leaf, root, *proof]):
        return False
    # 1. leaf_index must be below tree_size.
    if not 0 <= index < size:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1, r = hash.  3.-4. The walk over inclusion_path.
    climbed = _climb(index, size - 1, leaf, proof, with_old_root=False)
    # 5. sn must be 0 and r must equal root_hash.
    return climbed is not None and climbed[0] == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    The RFC's algorithm covers 0 < old_size < new_size. The edges are settled here as the
    definitions imply: equal sizes need equal roots and an empty proof; the empty tree is
    a prefix of every tree, but only if its root really is the empty tree's root.
    """
    if not _all_hashes([old_root, new_root, *proof]):
        return False
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    # 1. An empty consistency_path fails.
    if not proof:
        return False
    path = list(proof)
    # 2. If first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, right-shift both until it is not.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first value of the path.  6. The walk over each subsequent value.
    climbed = _climb(fn, sn, path[0], path[1:], with_old_root=True)
    # 7. fr must equal first_hash, sr second_hash, and sn must be 0.
    return climbed is not None and climbed == (new_root, old_root)


# --- multiproofs: many leaves against one root, interior nodes shared ---------------------
#
# One inclusion proof per entry repeats the nodes near the root for every entry: a million
# entries in a tree of ten million take about 24 hashes each. A multiproof for a set of
# leaves carries each node it needs once: walking up level by level, a node whose hash the
# verifier cannot compute from the leaves it was given (a sibling holding none of them) is
# sent, in the order the walk meets it (level by level, left to right). Consecutive
# leaves share every node above them, so a run of leaves costs about two hashes per level.
#
# The walk sees the RFC 9162 tree level by level: the node (L, i) covers leaves
# [i*2**L, min((i+1)*2**L, size)), and a node with no right sibling at its level (the
# last one, when the level has an odd count) moves up unchanged. That is the RFC's tree:
# MTH of a range of m leaves, 2**(L-1) < m <= 2**L, splits at 2**(L-1), so it is
# HASH(0x01 || left perfect half || MTH(rest)), and a range with nothing right of the
# split is its left half.


def _level_width(size: int, level: int) -> int:
    """How many nodes the walk has at ``level`` for a tree of ``size`` leaves."""
    return (size + (1 << level) - 1) >> level


def multiproof_nodes(indices: Sequence[int], size: int) -> list[NodeId]:
    """The nodes, as (level, index), a multiproof for the leaves ``indices`` carries, in order.

    ``indices`` must be sorted, unique and below ``size``. Each node is a subtree of the
    RFC tree (``subtree_range`` says which leaves it covers); its hash is the MTH of them.
    """
    _check_indices(indices, size)
    needed: list[NodeId] = []
    known = list(indices)
    level, width = 0, size
    while width > 1:
        parents: list[int] = []
        i, n = 0, len(known)
        while i < n:
            k = known[i]
            sibling = k ^ 1
            if not k & 1 and i + 1 < n and known[i + 1] == sibling:
                i += 2  # both children known: nothing to send
            else:
                if sibling < width:
                    needed.append((level, sibling))
                i += 1  # else the last node of an odd level: it moves up unchanged
            parent = k >> 1
            if not parents or parents[-1] != parent:
                parents.append(parent)
        known = parents
        level += 1
        width = _level_width(size, level)
    return needed


def subtree_range(node: NodeId, size: int) -> Range:
    """The leaves [start, end) that node (level, index) of the walk covers in a tree of ``size``."""
    level, index = node
    start = index << level
    if not 0 <= start < size:
        raise ValueError(f"node {node} is outside a tree of size {size}")
    return start, min(start + (1 << level), size)


def root_from_multiproof(leaves: Sequence[tuple[int, bytes]], size: int, proof: Sequence[bytes]) -> bytes:
    """The root that leaves (index, leaf hash) and a multiproof give for a tree of ``size``.

    Raises ValueError when the proof has too few or too many hashes, or the leaves are not
    sorted, unique and below ``size``: a verifier compares the result with a signed root.
    """
    _check_indices([i for i, _ in leaves], size)
    if not leaves:
        raise ValueError("a multiproof proves at least one leaf")
    if not _all_hashes([h for _, h in leaves]) or not _all_hashes(proof):
        raise ValueError("every leaf and proof hash is 32 bytes")
    indices = [i for i, _ in leaves]
    hashes = [h for _, h in leaves]
    taken = 0
    level, width = 0, size
    total = len(proof)
    while width > 1:
        next_indices: list[int] = []
        next_hashes: list[bytes] = []
        i, n = 0, len(indices)
        while i < n:
            k = indices[i]
            h = hashes[i]
            if not k & 1 and i + 1 < n and indices[i + 1] == k | 1:
                parent_hash = node_hash(h, hashes[i + 1])
                i += 2
            else:
                sibling = k ^ 1
                if sibling < width:
                    if taken >= total:
                        raise ValueError(f"the multiproof ends early: {total} hashes are not enough")
                    other = proof[taken]
                    taken += 1
                    parent_hash = node_hash(h, other) if k & 1 == 0 else node_hash(other, h)
                else:
                    parent_hash = h
                i += 1
            next_indices.append(k >> 1)
            next_hashes.append(parent_hash)
        indices, hashes = next_indices, next_hashes
        level += 1
        width = _level_width(size, level)
    if taken != total:
        raise ValueError(f"the multiproof carries {total - taken} hashes more than the leaves need")
    return hashes[0]


def verify_multiproof(leaves: Sequence[tuple[int, bytes]], size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows every (index, leaf hash) in the tree of ``size`` with ``root``."""
    try:
        return root_from_multiproof(leaves, size, proof) == root
    except ValueError:
        return False


def _check_indices(indices: Sequence[int], size: int) -> None:
    previous = -1
    for index in indices:
        if index <= previous:
            raise ValueError("leaf indices must be sorted and unique")
        previous = index
    if (indices and indices[0] < 0) or previous >= size:
        raise ValueError(f"leaf indices must be within a tree of size {size}")
