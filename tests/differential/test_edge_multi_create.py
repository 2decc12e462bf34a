"""server-semantics §27 edge cases 21-47: multi, multiRead, create validation, paths."""

from __future__ import annotations

import pytest

from corral.protocol.constants import OpCode
from corral.protocol.records import CheckVersionRequest
from tests.differential.ops import (
    acl,
    children,
    children2,
    create,
    create2,
    create_container,
    create_ttl,
    delete,
    exists,
    get_data,
    m_check,
    m_children,
    m_container,
    m_create,
    m_create2,
    m_delete,
    m_get,
    m_set,
    m_ttl,
    multi,
    multi_read,
    set_acl,
    set_data,
)
from tests.support.scenario import Drain, ExpectClosed, Known, Op, Open
from tests.support.servers import SHARED_SPEC, ServerSpec

pytestmark = pytest.mark.zookeeper


def test_edge_021_multi_fails_at_third_op(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/a", b"old"),
            multi(
                "a",
                m_create(f"{ns}/c"),
                m_set(f"{ns}/a", b"new"),
                m_check(f"{ns}/a", 99),
                m_create(f"{ns}/d"),
                m_delete(f"{ns}/a"),
            ),
            exists("a", f"{ns}/c"),
            get_data("a", f"{ns}/a"),
        ]
    )


def test_edge_022_multi_create_existing_first(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/x"),
            multi("a", m_create(f"{ns}/x"), m_create(f"{ns}/new")),
            children("a", ns),
        ]
    )


def test_edge_023_multi_sees_its_own_earlier_ops(diff) -> None:
    ns = diff.ns
    p = f"{ns}/P"
    diff.run(
        [
            Open(session="a"),
            multi(
                "a",
                m_create(p),
                m_create(f"{p}/c"),
                m_set(f"{p}/c", b"v"),
                m_check(f"{p}/c", 1),
                m_delete(f"{p}/c"),
                m_delete(p),
            ),
            exists("a", p),
            children2("a", ns),
        ]
    )


def test_edge_024_multi_delete_then_recreate(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create2("a", f"{ns}/X", b"1"),
            multi("a", m_delete(f"{ns}/X"), m_create(f"{ns}/X", b"2")),
            get_data("a", f"{ns}/X"),
        ]
    )


def test_edge_025_mixed_read_and_write_ops(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            multi("a", m_create(f"{ns}/c"), m_get(ns)),
            multi_read("a", m_get(ns), m_create(f"{ns}/d")),
            children("a", ns),
        ]
    )


def test_edge_026_multi_read_partial_failures(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/k", b"data"),
            multi_read(
                "a",
                m_get(f"{ns}/k"),
                m_children(ns),
                m_get(f"{ns}/missing"),
                m_children(f"{ns}/missing"),
            ),
            create2("a", f"{ns}/after"),
        ]
    )


def test_edge_027_multi_result_types(diff) -> None:
    # create2 inside multi: 3.8 answers type 1, corral type 15 (docs/compatibility.md);
    # the runner accepts exactly that difference against corral.
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/s", b"x"),
            multi(
                "a",
                m_create(f"{ns}/c1"),
                m_create2(f"{ns}/c2"),
                m_ttl(f"{ns}/c3", 60_000),
                m_container(f"{ns}/c4"),
                m_delete(f"{ns}/c1"),
                m_set(f"{ns}/s", b"y"),
                m_check(f"{ns}/s", 1),
            ),
            # The TTL node would be reaped in a minute, mid-way through a later scenario.
            delete("a", f"{ns}/c3"),
        ]
    )


def test_edge_028_multi_check_variants(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/e"),
            multi("a", m_check(f"{ns}/e", -1)),
            multi("a", m_check(f"{ns}/missing", -1)),
            multi("a", m_check("noslash", -1)),
        ]
    )


def test_edge_029_multi_nodes_share_czxid_and_ctime(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            multi("a", m_create(f"{ns}/a"), m_create(f"{ns}/b"), m_create(f"{ns}/a/c")),
            exists("a", f"{ns}/a"),
            exists("a", f"{ns}/b"),
            exists("a", f"{ns}/a/c"),
        ]
    )


def test_edge_030_failed_multi_fires_no_watch(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            children("w", ns, watch=True),
            exists("w", f"{ns}/new", watch=True),
            multi("a", m_set(f"{ns}/x", b"1"), m_create(f"{ns}/new"), m_check(f"{ns}/x", 42)),
            Drain(session="w"),
            set_data("a", f"{ns}/x", b"later"),
            Drain(session="w"),
        ]
    )


def test_edge_031_top_level_check(diff) -> None:
    # Only a mismatching version is sent: 3.8.0 answers a matching one with no reply and
    # logs a txn it cannot restart from (server-semantics §24).
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/x"),
            Op(
                session="a",
                opcode=OpCode.CHECK,
                record=CheckVersionRequest(path=f"{ns}/x", version=7),
                known=Known.TOP_LEVEL_CHECK,
            ),
            ExpectClosed(session="a", wait_ms=1_000, known=Known.TOP_LEVEL_CHECK),
        ]
    )


def test_edge_032_unknown_opcode_closes(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            Op(session="a", opcode=99, record=None),
            ExpectClosed(session="a"),
        ]
    )


@pytest.mark.skip(
    reason="edge 33 crashes Apache ZooKeeper (server-semantics §24): not differential"
)
def test_edge_033_create_ttl_non_ttl_flags_negative_ttl(diff) -> None:
    pass


def test_edge_034_create_flags_7_before_parent_check(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/missing/x", flags=7),
            create("a", f"{ns}/x", flags=7),
            create("a", f"{ns}/x", flags=-1),
        ]
    )


def test_edge_035_ttl_flag_consistency(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create2("a", f"{ns}/a", flags=5),
            create2("a", f"{ns}/b", flags=6),
            create_ttl("a", f"{ns}/c", 1000, flags=0),
            create_ttl("a", f"{ns}/d", 1000, flags=1),
            create_ttl("a", f"{ns}/e", 1000, flags=4),
            children("a", ns),
        ]
    )


def test_edge_036_ttl_without_extended_types(diff) -> None:
    spec = ServerSpec(
        zoo_cfg=SHARED_SPEC.zoo_cfg,
        system_properties={"zookeeper.extendedTypesEnabled": "false"},
    )
    diff.run(
        [
            Open(session="a"),
            create_ttl("a", "/t", 1000),
            create_ttl("a", "/t2", 1000, flags=6),
            create_container("a", "/c"),
            children("a", "/"),
        ],
        spec=spec,
    )


def test_edge_037_ttl_range(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create_ttl("a", f"{ns}/zero", 0),
            create_ttl("a", f"{ns}/max", 1099511627775),
            create_ttl("a", f"{ns}/over", 1099511627776),
            create_ttl("a", f"{ns}/negative", -5),
            exists("a", f"{ns}/max"),
        ]
    )


def test_edge_038_invalid_acl_beats_no_node(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/missing/x", acls=[]),
            create("a", f"{ns}/x", acls=[]),
        ]
    )


def test_edge_039_no_auth_beats_node_exists(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/p", acls=[acl(31 & ~4)]),
            create("a", f"{ns}/p/x"),
            create("a", f"{ns}/q"),
            create("a", f"{ns}/q/x"),
            set_acl("a", f"{ns}/q", [acl(31 & ~4)]),
            create("a", f"{ns}/q/x"),
        ]
    )


def test_edge_040_no_children_for_ephemerals(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create2("a", f"{ns}/e", flags=1),
            create("a", f"{ns}/e/c"),
            create("a", f"{ns}/e/s-", flags=2),
            create("a", f"{ns}/e/c", flags=1),
        ]
    )


def test_edge_041_node_exists_beats_no_children_for_ephemerals(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/e", flags=1),
            create("a", f"{ns}/e"),
            create("a", f"{ns}/e", flags=1),
        ]
    )


def test_edge_042_create_root_and_relative_paths(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            create("a", "/"),
            create("a", ""),
            create("a", "noslash"),
        ],
        pristine=True,
    )


def test_edge_043_empty_and_dot_segments(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            create("a", f"{ns}/q//x"),
            create("a", f"{ns}/q/./x"),
            create("a", f"{ns}/q/."),
            create("a", f"{ns}/q/.."),
            create("a", f"{ns}/q/../x"),
        ]
    )


def test_edge_044_unusual_but_valid_names(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            create("a", f"{ns}/q/..."),
            create("a", f"{ns}/q/.hidden"),
            create("a", f"{ns}/q/a b"),
            create("a", f"{ns}/q/é"),
            create("a", f"{ns}/q/\u00a0"),
            create("a", f"{ns}/q/zookeeper"),
            children("a", f"{ns}/q"),
        ]
    )


BAD_CHARS = [
    "\u0000",
    "\u0001",
    "\u001f",
    "\u007f",
    "\u0085",
    "\u009f",
    "\ue000",
    "\uf8ff",
    "\ufff0",
    "\uffff",
]


def test_edge_045_invalid_path_characters(diff) -> None:
    ns = diff.ns
    steps = [Open(session="a")]
    for ch in BAD_CHARS:
        steps.append(create("a", f"{ns}/bad{ch}x", label=f"create with U+{ord(ch):04X}"))
    steps.append(children("a", ns))
    diff.run(steps)


def test_edge_046_supplementary_plane_character(diff) -> None:
    ns = diff.ns
    diff.run([Open(session="a"), create("a", f"{ns}/emoji\U0001f600"), children("a", ns)])


def test_edge_047_children_of_zookeeper_nodes(diff) -> None:
    ns = diff.ns
    name = ns.strip("/")
    diff.run(
        [
            Open(session="a"),
            create("a", f"/zookeeper/{name}"),
            create("a", f"/zookeeper/config/{name}"),
            exists("a", f"/zookeeper/{name}"),
            delete("a", f"/zookeeper/{name}"),
        ]
    )
