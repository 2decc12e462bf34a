"""tree/javaorder.py: Java hash codes and collection orders that clients can observe."""

from __future__ import annotations

from corral.protocol.records import Id
from corral.tree.javaorder import (
    clone_capacity,
    cloned_hash_set_order,
    concurrent_set_order,
    hash_map_capacity,
    id_hash,
    string_hash,
)
from tests.tree.harness import S1, S2, Harness

NS = "/test_edge_087_others_see_ephemerals_go"


def signed(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


def test_string_hash_matches_java() -> None:
    # Values of "...".hashCode() in Java.
    assert string_hash("") == 0
    assert signed(string_hash("hello")) == 99162322
    assert signed(string_hash("polygenelubricants")) == -(2**31)  # the famous MIN_VALUE hash
    # Beyond the BMP Java hashes the surrogate pair.
    assert string_hash("\U0001f600") == (0xD83D * 31 + 0xDE00) & 0xFFFFFFFF


def test_id_hash_is_jute_formula() -> None:
    identity = Id(scheme="ip", id="127.0.0.1")
    expected = 37 * ((37 * 17 + string_hash("ip")) & 0xFFFFFFFF) + string_hash("127.0.0.1")
    assert id_hash(identity) == expected & 0xFFFFFFFF


def test_capacities() -> None:
    assert [hash_map_capacity(n) for n in (0, 12, 13, 24, 25)] == [16, 16, 32, 32, 64]
    assert [clone_capacity(n) for n in (1, 2, 3, 6, 12)] == [2, 4, 8, 16, 32]


def test_concurrent_set_collapses_duplicates_and_is_insertion_independent_across_bins() -> None:
    ids = [Id(scheme="digest", id=f"user{i}:x") for i in range(40)]  # forces two resizes
    ordered = concurrent_set_order([*ids, ids[0]])
    assert sorted(ordered, key=lambda i: i.id) == sorted(ids, key=lambda i: i.id)
    assert len(ordered) == 40


def test_close_order_matches_zookeeper() -> None:
    # Differential edge 87 on ZooKeeper 3.8: NodeDeleted for e2 came before e1.
    h = Harness(sessions=(S1, S2))
    h.create(NS)
    h.create(NS + "/e1", flags=1)
    h.create(NS + "/e2", flags=1)
    deleted = [e.path for e in h.expire(S1).events if e.type == 2]
    assert deleted == [NS + "/e2", NS + "/e1"]
    assert cloned_hash_set_order([(NS + "/e1", 1), (NS + "/e2", 2)], peak_size=2) == deleted


def test_get_ephemerals_uses_the_same_order() -> None:
    from corral.protocol.constants import OpCode
    from corral.protocol.records import GetEphemeralsRequest

    h = Harness()
    h.create(NS)
    h.create(NS + "/e1", flags=1)
    h.create(NS + "/e2", flags=1)
    _, body = h.read(OpCode.GET_EPHEMERALS, GetEphemeralsRequest(prefix_path="/"))
    assert body.ephemerals == (NS + "/e2", NS + "/e1")  # type: ignore[union-attr]


def test_peak_survives_deletes_but_not_a_failed_multi() -> None:
    from tests.tree.harness import create_op

    h = Harness()
    for index in range(14):
        h.create(f"/e{index}", flags=1)
    for index in range(14):
        h.delete(f"/e{index}")
    assert h.tree.ephemeral_peak(S1) == 14
    h2 = Harness()
    h2.multi(*[(1, create_op(f"/e{i}", flags=1)) for i in range(3)], (1, create_op("/e0")))
    assert h2.tree.ephemeral_peak(S1) == 0
    h2.tree.check_invariants()


def test_get_children_order_matches_zookeeper() -> None:
    from corral.protocol.records import GetChildrenResponse

    h = Harness()
    h.create("/corral")
    # wire-protocol §4.2: ZooKeeper 3.8 answered getChildren("/") with [zookeeper, corral].
    assert h.get_children("/") == (0, GetChildrenResponse(children=("zookeeper", "corral")))
    assert h.get_children("/zookeeper")[1] == GetChildrenResponse(children=("config", "quota"))


def test_children_order_depends_on_peak_and_insertion() -> None:
    from corral.tree.javaorder import hash_set_order

    names = [f"n{i}" for i in range(20)]
    small = hash_set_order(
        [(n, i) for i, n in enumerate(names[:3])], peak_size=3, initial_capacity=8
    )
    grown = hash_set_order(
        [(n, i) for i, n in enumerate(names[:3])], peak_size=20, initial_capacity=8
    )
    assert sorted(small) == sorted(grown) == sorted(names[:3])
    h = Harness()
    h.create("/p")
    for name in names:
        h.create(f"/p/{name}")
    for name in names[3:]:
        h.delete(f"/p/{name}")
    _, body = h.get_children("/p")
    assert list(body.children) == grown  # type: ignore[union-attr]
    assert h.tree.get("/p").children_peak == 20  # type: ignore[union-attr]


def test_failed_multi_restores_children_peak() -> None:
    from tests.tree.harness import create_op

    h = Harness()
    h.create("/p")
    h.multi(*[(1, create_op(f"/p/c{i}")) for i in range(10)], (1, create_op("/p")))
    assert h.tree.get("/p").children_peak == 0  # type: ignore[union-attr]
    h.tree.check_invariants()
