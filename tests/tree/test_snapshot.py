"""tree/snapshot.py: exact round-trip of tree + sessions, and rejection of bad bytes."""

from __future__ import annotations

import pytest

from corral.protocol.constants import OpCode
from corral.protocol.errors import DecodeError
from corral.protocol.jute import Writer
from corral.protocol.records import ACL, Id
from corral.tree.snapshot import SNAPSHOT_FORMAT, decode_snapshot, encode_snapshot
from corral.tree.tree import DataTree
from tests.tree.harness import S1, S2, Harness, digest_id


def state_of(tree: DataTree) -> tuple[object, ...]:
    """Everything a snapshot must preserve, in comparable form."""
    nodes = [
        (
            path,
            znode.data,
            znode.acl,
            znode.stat(),
            znode.cversion,
            znode.ephemeral_owner,
            znode.children_peak,
            tree.children_in_order(path, znode),
        )
        for path, znode in tree.walk()
    ]
    return (
        tree.last_zxid,
        dict(tree.sessions),
        {session_id: tree.ephemeral_peak(session_id) for session_id in tree.sessions},
        nodes,
        tree.node_count,
        tree.ephemeral_count,
        tree.approximate_data_size,
    )


def busy_harness() -> Harness:
    h = Harness(sessions=(S1, S2), extended_types_enabled=True)
    h.create("/a", b"data", acl=(ACL(perms=31, id=digest_id("u:p")),))
    h.create("/a/b", None)
    h.create("/a/q-", flags=2)
    h.create("/e", flags=1, session=S2)
    h.create("/c", opcode=OpCode.CREATE_CONTAINER)
    h.create("/t", opcode=OpCode.CREATE_TTL, flags=5, ttl_ms=100)
    h.create("/zookeeper/quota/a")
    h.create("/zookeeper/quota/a/zookeeper_limits", b"count=5")
    h.create("/zookeeper/quota/a/zookeeper_stats", b"")
    h.set_data("/", b"root")
    h.delete("/a/b")
    h.set_acl("/c", (ACL(perms=1, id=Id(scheme="world", id="anyone")),))
    return h


def test_fresh_tree_round_trip() -> None:
    tree = DataTree()
    restored = decode_snapshot(encode_snapshot(tree))
    assert state_of(restored) == state_of(tree)
    restored.check_invariants()


def test_busy_tree_round_trip_and_keeps_working() -> None:
    h = busy_harness()
    data = encode_snapshot(h.tree)
    restored = decode_snapshot(data, extended_types_enabled=True)
    assert state_of(restored) == state_of(h.tree)
    assert encode_snapshot(restored) == data
    restored.check_invariants()
    assert restored.ephemerals(S2) == frozenset({"/e"})
    assert restored.reap_candidates(10**13) == h.tree.reap_candidates(10**13) == ["/t"]
    # Applying the same txn to both gives the same result (quota index included).
    original, twin = h.tree, restored
    h.tree = twin
    result_twin = h.create("/a/more", b"xyz")
    h.tree, h.zxid = original, h.zxid - 1
    result_original = h.create("/a/more", b"xyz")
    assert result_twin == result_original
    assert state_of(twin) == state_of(original)


def test_truncated_snapshot_is_rejected() -> None:
    data = encode_snapshot(busy_harness().tree)
    for cut in range(0, len(data), 7):
        with pytest.raises(DecodeError):
            decode_snapshot(data[:cut])
    with pytest.raises(DecodeError):
        decode_snapshot(data + b"\x00")


def _snapshot(nodes: list[tuple[str, int]], sessions: int = 0, last_zxid: int = 10) -> bytes:
    w = Writer()
    w.int32(SNAPSHOT_FORMAT)
    w.int64(last_zxid)
    w.int32(sessions)
    for index in range(sessions):
        w.int64(index + 1)
        w.int32(4000)
        w.buffer(bytes(16))
        w.int32(1)  # ephemeral peak
    w.int32(len(nodes))
    for path, owner in nodes:
        w.ustring(path)
        w.buffer(b"")
        w.int32(0)
        for _ in range(5):
            w.int64(0)
        for _ in range(3):
            w.int32(0)
        w.int64(owner)
        w.int32(8)  # children peak: at least every node's child count here
    return w.getvalue()


BASE = [("/", 0), ("/zookeeper", 0), ("/zookeeper/config", 0), ("/zookeeper/quota", 0)]


def test_hand_built_snapshot_decodes() -> None:
    tree = decode_snapshot(_snapshot([*BASE, ("/x", 1)], sessions=1))
    assert tree.ephemerals(1) == frozenset({"/x"})
    tree.check_invariants()


@pytest.mark.parametrize(
    "nodes",
    [
        [("/x", 0), *BASE],  # root not first / child before parent
        [*BASE, ("/a/b", 0)],  # orphan
        [*BASE, ("/x", 0), ("/x", 0)],  # duplicate
        [*BASE, ("/x", 99)],  # ephemeral of an unknown session
        [*BASE, ("/x", 1), ("/x/y", 0)],  # child of an ephemeral
        [*BASE, ("/bad/", 0)],  # invalid path
        BASE[:3],  # a protected node missing
    ],
)
def test_inconsistent_snapshots_are_rejected(nodes: list[tuple[str, int]]) -> None:
    with pytest.raises(DecodeError):
        decode_snapshot(_snapshot(nodes, sessions=1))


def test_unknown_format_is_rejected() -> None:
    data = bytearray(encode_snapshot(DataTree()))
    data[3] = 99
    with pytest.raises(DecodeError):
        decode_snapshot(bytes(data))
