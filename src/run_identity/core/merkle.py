"""RFC 9162 (RFC 6962) Merkle tree hashes, inclusion and consistency proofs, and their verification.

Hashing (RFC 9162 §2.1.1): a leaf is ``SHA-256(0x00 || data)``, an interior node
``SHA-256(0x01 || left || right)``, the empty tree ``SHA-256("")``. A tree of ``n`` leaves splits at ``k``, the
largest power of two smaller than ``n``.

Proofs are computed from a :data:`NodeSource`: a function giving the hash of a *complete* subtree, the node
at ``level`` (0 for leaves) and ``index`` covering leaves ``[index * 2**level, (index + 1) * 2**level)``. A log
backed by tiles (:mod:`run_identity.core.tlog`), by a list in memory or by a database provides one; every
other hash is derived here. Verification (RFC 9162 §2.1.3.2 and §2.1.4.2) needs no source and raises one
:class:`ProofError` saying what did not match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias

from run_identity.core.errors import RunIdentityError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeSource",
    "ProofError",
    "consistency_proof",
    "fork_point",
    "inclusion_proof",
    "leaf_hash",
    "list_source",
    "node_hash",
    "root_from_leaf_hashes",
    "subtree_hash",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

#: ``(level, index) -> hash`` of the complete subtree of ``2**level`` leaves starting at ``index * 2**level``.
NodeSource: TypeAlias = Callable[[int, int], bytes]


class ProofError(RunIdentityError):
    """A Merkle proof, size or root does not check; the message says which and where."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(source: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range of the RFC's recursion (``start`` a multiple of the largest power of two
    not above ``end - start``); complete subtrees come from ``source``."""
    n = end - start
    if n <= 0:
        raise ValueError(f"empty or negative range [{start}, {end})")
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return source(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(source, start, start + k), subtree_hash(source, start + k, end))


def tree_hash(size: int, source: NodeSource) -> bytes:
    """The root hash of the first ``size`` leaves."""
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    return EMPTY_ROOT if size == 0 else subtree_hash(source, 0, size)


def list_source(leaf_hashes: Sequence[bytes]) -> NodeSource:
    """A :data:`NodeSource` over leaf hashes held in memory (recomputes interior nodes; for tests and tools)."""

    def node(level: int, index: int) -> bytes:
        if level == 0:
            return leaf_hashes[index]
        return node_hash(node(level - 1, 2 * index), node(level - 1, 2 * index + 1))

    return node


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose hashes are given, computed level by level."""
    if not leaf_hashes:
        return EMPTY_ROOT
    compact = CompactRange()
    for h in leaf_hashes:
        compact.append(h)
    return compact.root()


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, from the leaf's sibling up to the root's child."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            proof.append(subtree_hash(source, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(source, start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, source: NodeSource) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1 (empty when old_size is 0 or equals new_size)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    m, start, end, whole = old_size, 0, new_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_hash(source, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(source, start, start + k))
            m, start, whole = m - k, start + k, False
    if not whole:
        proof.append(subtree_hash(source, start, end))
    proof.reverse()
    return proof


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    for position, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ProofError(f"{what} hash {position} is {len(h)} bytes, not {HASH_SIZE}")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree of ``size`` with ``root`` (RFC 9162
    §2.1.3.2). Raises ProofError."""
    _check_hashes([leaf, root, *proof], "inclusion proof")
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof for leaf {index} in tree size {size} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof for leaf {index} in tree size {size} is too short")
    if r != root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with that root (the proof leads elsewhere)")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends the one of ``old_size`` with ``old_root``
    (RFC 9162 §2.1.4.2). Raises ProofError."""
    _check_hashes([old_root, new_root, *proof], "consistency proof")
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree size {new_size} cannot extend tree size {old_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for tree size {old_size}: the logs fork")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError("the root of tree size 0 is not the empty-tree hash")
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {old_size} to size {new_size}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from size {old_size} to size {new_size} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from size {old_size} to size {new_size} is too short")
    if fr != old_root:
        raise ProofError(f"the proof does not lead to the root of tree size {old_size}: the logs fork")
    if sr != new_root:
        raise ProofError(f"the proof does not lead to the root of tree size {new_size}: the logs fork")


def fork_point(size_a: int, source_a: NodeSource, size_b: int, source_b: NodeSource) -> int | None:
    """Where two trees part: the number of leading leaves they share, or None when the smaller tree is a prefix
    of the larger (no fork). Compares prefix roots by bisection, O(log² n) node reads."""
    common = min(size_a, size_b)
    if tree_hash(common, source_a) == tree_hash(common, source_b):
        return None
    low, high = 0, common  # the prefix of `low` leaves agrees, that of `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        if tree_hash(middle, source_a) == tree_hash(middle, source_b):
            low = middle
        else:
            high = middle
    return low


class CompactRange:
    """The right edge of a growing tree: one complete subtree hash per set bit of the size.

    :meth:`append` adds a leaf hash and returns every node it completes, as ``(level, index, hash)`` from
    the leaf up, so a store can keep the nodes it publishes (tile levels) and drop the rest.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} hashes, not {len(hashes)}")
        self.size = size
        self._hashes = list(hashes)  # largest subtree first

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; the nodes completed by it, leaf first."""
        index = self.size
        completed = [(0, index, leaf)]
        h, level = leaf, 0
        while index & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            index >>= 1
            completed.append((level, index, h))
        self._hashes.append(h)
        self.size += 1
        return completed

    def hashes(self) -> list[bytes]:
        """The complete subtree hashes of the right edge, largest first."""
        return list(self._hashes)

    def root(self) -> bytes:
        """The root hash of the tree so far."""
        if not self._hashes:
            return EMPTY_ROOT
        h = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            h = node_hash(left, h)
        return h
