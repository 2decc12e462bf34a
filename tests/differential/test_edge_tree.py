"""server-semantics §27 edge cases 1-20: the fresh tree, Stat changes, sequential names, zxids."""

from __future__ import annotations

import pytest

from corral.protocol.constants import OpCode
from corral.protocol.records import PathRecord
from tests.differential.ops import (
    acl,
    children,
    children2,
    create,
    create2,
    delete,
    exists,
    get_acl,
    get_data,
    m_create,
    m_set,
    multi,
    set_acl,
    set_data,
    sync,
)
from tests.support.scenario import Drain, Op, Open
from tests.support.servers import SHARED_SPEC

pytestmark = pytest.mark.zookeeper


def test_edge_001_fresh_children(diff) -> None:
    diff.run(
        [Open(session="a"), children("a", "/"), children("a", "/zookeeper"), children2("a", "/")],
        pristine=True,
    )


def test_edge_002_fresh_root_stat(diff) -> None:
    diff.run([Open(session="a"), exists("a", "/")], pristine=True)


def test_edge_003_fresh_zookeeper_nodes(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            exists("a", "/zookeeper"),
            exists("a", "/zookeeper/config"),
            get_acl("a", "/zookeeper/config"),
            get_acl("a", "/zookeeper/quota"),
            get_data("a", "/zookeeper/quota"),
        ],
        pristine=True,
    )


def test_edge_004_root_data_is_empty_not_null(diff) -> None:
    diff.run([Open(session="a"), get_data("a", "/"), get_data("a", "/zookeeper")], pristine=True)


def test_edge_005_null_and_empty_data(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/n1", None),
            get_data("a", f"{ns}/n1"),
            create("a", f"{ns}/n2", b""),
            get_data("a", f"{ns}/n2"),
            set_data("a", f"{ns}/n2", None),
            get_data("a", f"{ns}/n2"),
        ]
    )


def test_edge_006_first_create_after_first_session(diff) -> None:
    diff.run(
        [Open(session="a"), create2("a", "/first"), exists("a", "/first")],
        spec=SHARED_SPEC,
        literal_zxids=True,
    )


def test_edge_007_create_child_updates_parent(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create2("a", f"{ns}/t"),
            exists("a", f"{ns}/t"),
            create2("a", f"{ns}/t/a"),
            exists("a", f"{ns}/t"),
        ]
    )


def test_edge_008_delete_child_updates_parent(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/t"),
            create("a", f"{ns}/t/a"),
            exists("a", f"{ns}/t"),
            delete("a", f"{ns}/t/a"),
            exists("a", f"{ns}/t"),
        ]
    )


def test_edge_009_set_data_identical_bytes(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/t", b"same"),
            get_data("w", f"{ns}/t", watch=True),
            set_data("a", f"{ns}/t", b"same"),
            Drain(session="w"),
            get_data("w", f"{ns}/t", watch=True),
            set_data("a", f"{ns}/t", b"same"),
            Drain(session="w"),
            exists("a", f"{ns}/t"),
        ]
    )


def test_edge_010_set_acl_bumps_aversion_only(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/t", b"x"),
            exists("a", f"{ns}/t"),
            set_acl("a", f"{ns}/t", [acl(31)]),
            exists("a", f"{ns}/t"),
        ]
    )


def test_edge_011_set_data_keeps_ctime(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create2("a", f"{ns}/t", b"1"),
            set_data("a", f"{ns}/t", b"2"),
            get_data("a", f"{ns}/t"),
        ]
    )


def test_edge_012_sequence_suffix_survives_deletes(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            create("a", f"{ns}/q/a"),
            create("a", f"{ns}/q/b"),
            delete("a", f"{ns}/q/a"),
            create("a", f"{ns}/q/s-", flags=2),
            create("a", f"{ns}/q/s-", flags=2),
            delete("a", f"{ns}/q/s-0000000002"),
            create("a", f"{ns}/q/s-", flags=2),
            children("a", f"{ns}/q"),
        ]
    )


def test_edge_013_trailing_slash_only_when_sequential(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            create("a", f"{ns}/q/"),
            create("a", f"{ns}/q/", flags=2),
            create("a", f"{ns}/q/", flags=2),
            children("a", f"{ns}/q"),
        ]
    )


def test_edge_014_sequential_child_of_root(diff) -> None:
    diff.run(
        [Open(session="a"), create2("a", "/", flags=2), children("a", "/")],
        spec=SHARED_SPEC,
    )


def test_edge_015_two_sequentials_in_one_multi(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            multi("a", m_create(f"{ns}/q/x-", flags=2), m_create(f"{ns}/q/y-", flags=2)),
            children("a", f"{ns}/q"),
        ]
    )


def test_edge_016_failed_multi_does_not_advance_suffix(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            multi("a", m_create(f"{ns}/q/x-", flags=2), m_set(f"{ns}/q/missing", b"")),
            create("a", f"{ns}/q/y-", flags=2),
            children2("a", f"{ns}/q"),
        ]
    )


def test_edge_017_failed_create_consumes_a_zxid(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create2("a", f"{ns}/t"),
            create2("a", f"{ns}/t"),
            create2("a", f"{ns}/u"),
        ]
    )


def test_edge_018_reads_do_not_change_reply_zxid(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/t"),
            exists("a", f"{ns}/t"),
            get_data("a", f"{ns}/t"),
            children("a", f"{ns}/t"),
            exists("a", f"{ns}/missing"),
        ]
    )


def test_edge_019_sync_echoes_any_path(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            sync("a", f"{ns}/nonexistent"),
            sync("a", "noslash"),
            Op(session="a", opcode=OpCode.SYNC, record=PathRecord(path="")),
            exists("a", ns),
        ]
    )


def test_edge_020_empty_multi(diff) -> None:
    ns = diff.ns
    diff.run([Open(session="a"), multi("a"), create2("a", f"{ns}/after")])
