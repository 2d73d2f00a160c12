"""run_identity.core.merkle against published RFC 6962 vectors and a reference tree written from RFC 9162 §2.1.

The vectors (tests/vectors/rfc6962/transparency-dev-merkle.json) are the testdata of github.com/transparency-dev/merkle
(Apache-2.0): the RFC 6962 reference tree of 8 leaves, its roots for every size, and inclusion and consistency
cases, valid and tampered, that any RFC 6962 verifier must accept or refuse.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from run_identity.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    fork_point,
    inclusion_proof,
    leaf_hash,
    list_source,
    node_hash,
    root_from_leaf_hashes,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc6962" / "transparency-dev-merkle.json").read_text())
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
ROOTS = [bytes.fromhex(h) for h in VECTORS["root_hashes_hex"]]


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, written from the text: recursion on the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def test_roots_of_the_rfc6962_reference_tree() -> None:
    """Every prefix of the reference tree has the published root, by each way of computing it."""
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    for size, root in enumerate(ROOTS):
        assert root_from_leaf_hashes(hashes[:size]) == root
        assert tree_hash(size, list_source(hashes)) == root
        assert reference_mth(LEAVES[:size]) == root
    assert ROOTS[0] == EMPTY_ROOT


def _inclusion_case(case: dict[str, Any]) -> None:
    verify_inclusion(
        b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [b64(p) for p in case["proof"] or []],
        b64(case["root"]),
    )


def _consistency_case(case: dict[str, Any]) -> None:
    verify_consistency(
        case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]), [b64(p) for p in case["proof"] or []]
    )


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: c["file"].removeprefix("testdata/"))
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    """Each published inclusion case is accepted or refused as its vector says."""
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _inclusion_case(case)
    else:
        _inclusion_case(case)


# Deliberate difference: the vector uses 12-byte placeholder roots ("don't care 2") for a case where only
# their equality matters; this module refuses any root that is not a 32-byte SHA-256 hash.
STRICTER = {"testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: c["file"].removeprefix("testdata/"))
def test_consistency_vectors(case: dict[str, Any]) -> None:
    """Each published consistency case is accepted or refused as its vector says (one refused as stricter)."""
    if case["wantErr"] or case["file"] in STRICTER:
        with pytest.raises(ProofError):
            _consistency_case(case)
    else:
        _consistency_case(case)


def test_generated_proofs_equal_the_published_ones() -> None:
    """The proofs this module computes for the valid cases are the published proofs, hash for hash."""
    source = list_source([leaf_hash(leaf) for leaf in LEAVES])
    checked = 0
    for case in VECTORS["inclusion"]:
        if (
            not case["wantErr"]
            and case["treeSize"] <= len(LEAVES)
            and case["root"] == base64.b64encode(ROOTS[case["treeSize"]]).decode()
        ):
            assert inclusion_proof(case["leafIdx"], case["treeSize"], source) == [b64(p) for p in case["proof"] or []]
            checked += 1
    for case in VECTORS["consistency"]:
        if (
            not case["wantErr"]
            and case["size2"] <= len(LEAVES)
            and case["root2"] == base64.b64encode(ROOTS[case["size2"]]).decode()
        ):
            assert consistency_proof(case["size1"], case["size2"], source) == [b64(p) for p in case["proof"] or []]
            checked += 1
    assert checked >= 8


def test_every_proof_of_the_reference_tree_verifies_and_any_change_fails() -> None:
    """All inclusion and consistency proofs of sizes 0..8 verify; a flipped bit, another leaf or index is refused.

    (An inclusion proof binds the tree size only through the root, which a checkpoint signs with its size: the
    proof of a leaf of the left subtree is the same for sizes 5, 6 and 7 but leads to three different roots.)"""
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    source = list_source(hashes)
    for size in range(1, 9):
        for index in range(size):
            proof = inclusion_proof(index, size, source)
            verify_inclusion(hashes[index], index, size, proof, ROOTS[size])
            for position in range(len(proof)):
                bad = list(proof)
                bad[position] = bytes([bad[position][0] ^ 1]) + bad[position][1:]
                with pytest.raises(ProofError):
                    verify_inclusion(hashes[index], index, size, bad, ROOTS[size])
            with pytest.raises(ProofError):
                verify_inclusion(leaf_hash(b"another leaf"), index, size, proof, ROOTS[size])
            if size > 1:
                with pytest.raises(ProofError):
                    verify_inclusion(hashes[index], (index + 1) % size, size, proof, ROOTS[size])
    for new in range(9):
        for old in range(new + 1):
            proof = consistency_proof(old, new, source)
            verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)
            if proof:
                bad = [*proof[:-1], node_hash(proof[-1], proof[-1])]
                with pytest.raises(ProofError):
                    verify_consistency(old, new, ROOTS[old], ROOTS[new], bad)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=300), st.data())
def test_proofs_against_the_reference_tree(leaves: list[bytes], data: st.DataObject) -> None:
    """For random trees, roots match the RFC's recursion and proofs of random (sub)trees verify."""
    hashes = [leaf_hash(leaf) for leaf in leaves]
    source = list_source(hashes)
    size = data.draw(st.integers(1, len(leaves)))
    root = reference_mth(leaves[:size])
    assert tree_hash(size, source) == root
    index = data.draw(st.integers(0, size - 1))
    verify_inclusion(hashes[index], index, size, inclusion_proof(index, size, source), root)
    old = data.draw(st.integers(0, size))
    verify_consistency(old, size, reference_mth(leaves[:old]), root, consistency_proof(old, size, source))


def test_compact_range_reports_completed_nodes() -> None:
    """Appending reports each completed node once, with the hash the tree gives it."""
    hashes = [leaf_hash(bytes([i])) for i in range(37)]
    source = list_source(hashes)
    compact = CompactRange()
    seen = {}
    for h in hashes:
        for level, index, value in compact.append(h):
            assert (level, index) not in seen
            seen[(level, index)] = value
            assert value == source(level, index)
    assert compact.root() == reference_mth([bytes([i]) for i in range(37)])
    assert len(seen) == 37 + 18 + 9 + 4 + 2 + 1
    again = CompactRange(compact.size, compact.hashes())
    assert again.root() == compact.root()
    with pytest.raises(ValueError, match="hashes"):
        CompactRange(37, compact.hashes()[:-1])


def test_fork_point_names_the_first_differing_leaf() -> None:
    """Two logs that differ from leaf 41 on fork at 41; a log and its extension do not fork."""
    a = [leaf_hash(b"%d" % i) for i in range(100)]
    b = a[:41] + [leaf_hash(b"other %d" % i) for i in range(41, 77)]
    assert fork_point(100, list_source(a), 77, list_source(b)) == 41
    assert fork_point(60, list_source(a), 100, list_source(a)) is None
    assert fork_point(5, list_source(a), 5, list_source([leaf_hash(b"x"), *a[1:]])) == 0


def test_the_empty_tree_is_consistent_with_any_tree() -> None:
    """From size 0 the proof is empty and the old root must be the empty-tree hash (c2sp.org/tlog-witness)."""
    verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])
    with pytest.raises(ProofError, match="empty-tree"):
        verify_consistency(0, 8, ROOTS[1], ROOTS[8], [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [ROOTS[1]])


def test_verification_refuses_bad_shapes() -> None:
    """Sizes out of range, short hashes and proofs for the empty tree are refused with ProofError."""
    h = leaf_hash(b"")
    with pytest.raises(ProofError, match="not in a tree"):
        verify_inclusion(h, 1, 1, [], h)
    with pytest.raises(ProofError, match="32"):
        verify_inclusion(h[:31], 0, 1, [], h)
    with pytest.raises(ProofError, match="cannot extend"):
        verify_consistency(3, 2, h, h, [h])
    with pytest.raises(ProofError, match="fork"):
        verify_consistency(2, 2, h, leaf_hash(b"x"), [])
    with pytest.raises(ValueError):
        inclusion_proof(0, 0, list_source([]))
