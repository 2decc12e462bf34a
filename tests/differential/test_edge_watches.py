"""server-semantics §27 edge cases 89-115: standard, persistent and recursive watches,
removeWatches/checkWatches, setWatches after reconnect, ACL filtering, 4lw watch lists."""

from __future__ import annotations

import pytest

from corral.protocol.constants import OpCode
from corral.protocol.records import AddWatchRequest
from tests.differential.ops import (
    acl,
    add_watch,
    auth,
    check_watches,
    children,
    children2,
    create,
    delete,
    digest_id,
    exists,
    get_data,
    m_check,
    m_create,
    m_set,
    multi,
    remove_watches,
    set_acl,
    set_data,
    set_watches,
)
from tests.support.scenario import Disconnect, Drain, FourLetter, Known, Mark, Op, Open

PERSISTENT, RECURSIVE = 0, 1
CHILDREN, DATA, ANY_TYPE, PERSISTENT_TYPE, RECURSIVE_TYPE = 1, 2, 3, 4, 5
ALICE = digest_id("alice", "pw-a")

pytestmark = pytest.mark.zookeeper


def test_edge_089_exists_watch_on_missing_node(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            exists("w", f"{ns}/x", watch=True),
            create("a", f"{ns}/x"),
            Drain(session="w"),
        ]
    )


def test_edge_090_get_data_and_children_watch_not_armed_on_missing(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            get_data("w", f"{ns}/x", watch=True),
            children("w", f"{ns}/x", watch=True),
            create("a", f"{ns}/x"),
            create("a", f"{ns}/x/c"),
            Drain(session="w"),
        ]
    )


def test_edge_091_data_and_child_watch_one_deleted_event(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            children("w", f"{ns}/x", watch=True),
            exists("w", f"{ns}/x", watch=True),
            delete("a", f"{ns}/x"),
            Drain(session="w"),
        ]
    )


def test_edge_092_child_watch_ignores_child_data(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/P"),
            children2("w", f"{ns}/P", watch=True),
            create("a", f"{ns}/P/c"),
            set_data("a", f"{ns}/P/c", b"x"),
            Drain(session="w"),
            children("w", f"{ns}/P", watch=True),
            set_data("a", f"{ns}/P/c", b"y"),
            Drain(session="w"),
        ]
    )


def test_edge_093_set_acl_and_failed_set_data_fire_nothing(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            set_acl("a", f"{ns}/x", [acl(31)]),
            set_data("a", f"{ns}/x", b"v", 42),
            Drain(session="w"),
            set_data("a", f"{ns}/x", b"v"),
            Drain(session="w"),
        ]
    )


def test_edge_094_duplicate_watches_fire_once(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            get_data("w", f"{ns}/x", watch=True),
            exists("w", f"{ns}/x", watch=True),
            set_data("a", f"{ns}/x", b"1"),
            Drain(session="w"),
            set_data("a", f"{ns}/x", b"2"),
            Drain(session="w"),
        ]
    )


def test_edge_095_persistent_watch_events(diff) -> None:
    ns = diff.ns
    p = f"{ns}/P"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", p),
            add_watch("w", p, PERSISTENT),
            set_data("a", p, b"1"),
            create("a", f"{p}/c"),
            set_data("a", f"{p}/c", b"2"),
            create("a", f"{p}/c/d"),
            delete("a", f"{p}/c/d"),
            delete("a", f"{p}/c"),
            Drain(session="w"),
        ]
    )


def test_edge_096_persistent_watch_survives_recreate(diff) -> None:
    ns = diff.ns
    p = f"{ns}/P"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", p),
            add_watch("w", p, PERSISTENT),
            delete("a", p),
            create("a", p),
            set_data("a", p, b"x"),
            Drain(session="w"),
        ]
    )


def test_edge_097_recursive_watch_events(diff) -> None:
    ns = diff.ns
    r = f"{ns}/R"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", r),
            add_watch("w", r, RECURSIVE),
            set_data("a", r, b"1"),
            create("a", f"{r}/a"),
            create("a", f"{r}/a/b"),
            set_data("a", f"{r}/a/b", b"2"),
            delete("a", f"{r}/a/b"),
            delete("a", f"{r}/a"),
            delete("a", r),
            create("a", r),
            Drain(session="w"),
        ]
    )


def test_edge_098_recursive_watch_on_missing_path(diff) -> None:
    ns = diff.ns
    r = f"{ns}/R"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            add_watch("w", r, RECURSIVE),
            create("a", r),
            create("a", f"{r}/x"),
            Drain(session="w"),
        ]
    )


def test_edge_099_overlapping_recursive_watches(diff) -> None:
    # §27 says "/" and "/a"; on the shared servers the scenario's own subtree plays "/".
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/a"),
            add_watch("w", ns, RECURSIVE),
            add_watch("w", f"{ns}/a", RECURSIVE),
            create("a", f"{ns}/a/x"),
            set_data("a", f"{ns}/a/x", b"1"),
            set_data("a", f"{ns}/a", b"2"),
            Drain(session="w"),
        ]
    )


def test_edge_100_recursive_plus_child_watch(diff) -> None:
    ns = diff.ns
    r = f"{ns}/r"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", r),
            create("a", f"{r}/k"),
            add_watch("w", r, RECURSIVE),
            children("w", f"{r}/k", watch=True),
            create("a", f"{r}/k/z"),
            Drain(session="w"),
        ]
    )


def test_edge_101_persistent_plus_standard_data_watch(diff) -> None:
    ns = diff.ns
    p = f"{ns}/P"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", p),
            add_watch("w", p, PERSISTENT),
            get_data("w", p, watch=True),
            set_data("a", p, b"1"),
            Drain(session="w"),
            set_data("a", p, b"2"),
            Drain(session="w", known=Known.STANDARD_PLUS_PERSISTENT),
            create("a", f"{p}/c"),
            Drain(session="w"),
        ]
    )


def test_edge_102_add_watch_modes(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="w"),
            Op(session="w", opcode=OpCode.ADD_WATCH, record=AddWatchRequest(path=ns, mode=7)),
            add_watch("w", ns, PERSISTENT),
            add_watch("w", f"{ns}/missing", RECURSIVE),
            add_watch("w", "noslash", PERSISTENT),
            exists("w", ns),
        ]
    )


def test_edge_103_remove_data_watch(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            check_watches("w", f"{ns}/x", DATA),
            remove_watches("w", f"{ns}/x", DATA),
            remove_watches("w", f"{ns}/x", DATA),
            check_watches("w", f"{ns}/x", DATA),
            remove_watches("w", f"{ns}/nothing", DATA),
            remove_watches("w", f"{ns}/nothing", ANY_TYPE),
            children("w", f"{ns}/x", watch=True),
            check_watches("w", f"{ns}/x", CHILDREN),
            remove_watches("w", f"{ns}/x", ANY_TYPE),
            set_data("a", f"{ns}/x", b"1"),
            create("a", f"{ns}/x/c"),
            Drain(session="w"),
        ]
    )


def test_edge_104_remove_persistent_watch_types(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/p"),
            create("a", f"{ns}/r"),
            create("a", f"{ns}/q"),
            add_watch("w", f"{ns}/p", PERSISTENT),
            add_watch("w", f"{ns}/r", RECURSIVE),
            add_watch("w", f"{ns}/q", PERSISTENT),
            remove_watches(
                "w", f"{ns}/p", PERSISTENT_TYPE, known=Known.REMOVE_WATCHES_PERSISTENT_TYPES
            ),
            remove_watches(
                "w", f"{ns}/r", RECURSIVE_TYPE, known=Known.REMOVE_WATCHES_PERSISTENT_TYPES
            ),
            remove_watches("w", f"{ns}/q", DATA, known=Known.REMOVE_WATCHES_EXACT_MODE),
        ]
    )


def test_edge_105_remove_watches_unknown_type(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="w"),
            remove_watches("w", ns, 6),
            check_watches("w", ns, 0),
            exists("w", ns),
        ]
    )


def test_edge_106_watch_removal_is_per_session(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            check_watches("a", f"{ns}/x", DATA, known=Known.CHECK_WATCHES_OTHER_SESSION),
            remove_watches("a", f"{ns}/x", ANY_TYPE),
            Drain(session="w"),
            set_data("a", f"{ns}/x", b"1"),
            Drain(session="w"),
            Drain(session="a"),
        ]
    )


def test_edge_107_set_watches_catch_up(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/d1"),
            create("a", f"{ns}/d2"),
            create("a", f"{ns}/d3"),
            create("a", f"{ns}/c1"),
            create("a", f"{ns}/c2"),
            Mark(name="z0"),
            set_data("a", f"{ns}/d1", b"changed"),
            delete("a", f"{ns}/d2"),
            create("a", f"{ns}/e1"),
            create("a", f"{ns}/c1/x"),
            Open(session="w"),
            set_watches(
                "w",
                lambda ctx: ctx.marks["z0"],
                data=[f"{ns}/d1", f"{ns}/d2", f"{ns}/d3", f"{ns}/never"],
                exist=[f"{ns}/e1", f"{ns}/e2"],
                child=[f"{ns}/c1", f"{ns}/c2", f"{ns}/c3"],
            ),
            set_data("a", f"{ns}/d3", b"later"),
            create("a", f"{ns}/e2"),
            create("a", f"{ns}/c2/x"),
            set_data("a", f"{ns}/d1", b"again"),
            Drain(session="w"),
        ]
    )


def test_edge_108_set_watches_same_path_in_data_and_exist(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/x"),
            Mark(name="z0"),
            Open(session="w"),
            set_watches(
                "w", lambda ctx: ctx.marks["z0"], data=[f"{ns}/x"], exist=[f"{ns}/x"], xid=77
            ),
            Drain(session="w"),
            set_data("a", f"{ns}/x", b"1"),
            Drain(session="w"),
        ]
    )


def test_edge_109_set_watches2_persistent_lists(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/p"),
            create("a", f"{ns}/r"),
            Mark(name="z0"),
            set_data("a", f"{ns}/p", b"before"),
            Open(session="w"),
            set_watches(
                "w",
                lambda ctx: ctx.marks["z0"],
                persistent=[f"{ns}/p"],
                recursive=[f"{ns}/r"],
            ),
            Drain(session="w"),
            set_data("a", f"{ns}/p", b"1"),
            create("a", f"{ns}/r/k"),
            create("a", f"{ns}/p/k"),
            Drain(session="w"),
        ]
    )


def test_edge_110_exists_watch_filtered_by_acl(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            auth("a", "digest", b"alice:pw-a"),
            exists("w", f"{ns}/x", watch=True),
            create("a", f"{ns}/x", acls=[acl(31, "digest", ALICE)]),
            Drain(session="w"),
            delete("a", f"{ns}/x"),
            create("a", f"{ns}/x"),
            Drain(session="w"),
        ]
    )


def test_edge_111_recursive_watch_filtered_by_acl(diff) -> None:
    ns = diff.ns
    r = f"{ns}/r"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            auth("a", "digest", b"alice:pw-a"),
            create("a", r),
            add_watch("w", r, RECURSIVE),
            create("a", f"{r}/secret", acls=[acl(31, "digest", ALICE)]),
            create("a", f"{r}/open"),
            set_data("a", f"{r}/secret", b"1"),
            Drain(session="w"),
        ]
    )


def test_edge_112_notification_zxid(diff) -> None:
    # 3.8 sends -1, corral the txn zxid (docs/compatibility.md); the runner accepts that
    # difference against corral and requires equality in self mode.
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            set_data("a", f"{ns}/x", b"1"),
            Drain(session="w"),
        ]
    )


def test_edge_113_own_notification_before_reply(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            exists("a", f"{ns}/x", watch=True),
            children("a", ns, watch=True),
            create("a", f"{ns}/x"),
            get_data("a", f"{ns}/x", watch=True),
            multi("a", m_set(f"{ns}/x", b"1"), m_create(f"{ns}/y"), m_check(f"{ns}/x", 1)),
        ]
    )


def test_edge_114_watches_die_with_the_connection(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/x"),
            get_data("w", f"{ns}/x", watch=True),
            children("w", ns, watch=True),
            Disconnect(session="w"),
            Open(session="w2", resume="w"),
            set_data("a", f"{ns}/x", b"1"),
            create("a", f"{ns}/y"),
            Drain(session="w2"),
        ]
    )


def test_edge_115_watch_lists_show_data_watches_only(diff) -> None:
    diff.run(
        [
            Open(session="w"),
            get_data("w", "/zookeeper", watch=True),
            children("w", "/zookeeper/quota", watch=True),
            exists("w", "/not-there", watch=True),
            Open(session="v"),
            children("v", "/", watch=True),
            add_watch("v", "/zookeeper/config", PERSISTENT),
            FourLetter(word="wchs"),
            FourLetter(word="wchc"),
            FourLetter(word="wchp"),
        ],
        pristine=True,
    )
