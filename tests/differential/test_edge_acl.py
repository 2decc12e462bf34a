"""server-semantics §27 edge cases 48-76: delete/setData/setACL precedence, ACLs, auth, reads."""

from __future__ import annotations

import pytest

from corral.protocol.constants import OpCode
from corral.protocol.records import PathRecord
from tests.differential.ops import (
    acl,
    all_children_number,
    auth,
    children,
    children2,
    create,
    delete,
    digest_id,
    ephemerals,
    exists,
    get_acl,
    get_data,
    m_check,
    multi,
    set_acl,
    set_data,
    who_am_i,
)
from tests.support.scenario import Drain, ExpectClosed, Known, Op, Open
from tests.support.servers import SUPER_PASSWORD

ALICE = digest_id("alice", "pw-a")

pytestmark = pytest.mark.zookeeper


def login(s: str, user: str, password: str) -> Op:
    return auth(s, "digest", f"{user}:{password}".encode())


def test_edge_048_protected_paths_cannot_be_deleted(diff) -> None:
    steps = [Open(session="a"), Open(session="su"), login("su", "super", SUPER_PASSWORD)]
    for path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
        steps += [delete("a", path), delete("su", path)]
    diff.run(steps, pristine=True)


def test_edge_049_delete_no_auth_beats_no_node(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/p", acls=[acl(31 & ~8)]),
            delete("a", f"{ns}/p/missing"),
            delete("a", f"{ns}/missing/x"),
        ]
    )


def test_edge_050_bad_version_beats_not_empty(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/p"),
            create("a", f"{ns}/p/c"),
            delete("a", f"{ns}/p", 99),
            delete("a", f"{ns}/p", -1),
            delete("a", f"{ns}/p", 0),
        ]
    )


def test_edge_051_delete_path_forms(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            delete("a", f"{ns}/q/"),
            delete("a", "noslash"),
            delete("a", f"{ns}/q/../q"),
            delete("a", ""),
            exists("a", f"{ns}/q"),
        ]
    )


def test_edge_052_delete_child_with_perms_zero(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/c", acls=[acl(0)]),
            delete("a", f"{ns}/c"),
            exists("a", f"{ns}/c"),
        ]
    )


def test_edge_053_delete_other_sessions_ephemeral(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="b"),
            create("a", f"{ns}/e", flags=1),
            exists("b", f"{ns}/e"),
            delete("b", f"{ns}/e"),
            exists("a", f"{ns}/e"),
            ephemerals("a", "/"),
            create("a", f"{ns}/still-alive", flags=1),
        ]
    )


def test_edge_054_set_data_no_auth_beats_bad_version(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/r", acls=[acl(31 & ~2)]),
            set_data("a", f"{ns}/r", b"x", 99),
            set_data("a", f"{ns}/r", b"x"),
        ]
    )


def test_edge_055_set_data_versions_and_paths(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/q"),
            set_data("a", f"{ns}/q/", b"x"),
            set_data("a", f"{ns}/q", b"x", -2),
            set_data("a", f"{ns}/q", b"x", -1),
            set_data("a", f"{ns}/q", b"y", 1),
            set_data("a", f"{ns}/q", b"z", 1),
            set_data("a", f"{ns}/missing", b"x"),
        ]
    )


def test_edge_056_set_data_on_special_nodes(diff) -> None:
    # Changes / and /zookeeper: a fresh pair, so the shared tree stays as it was.
    from tests.support.servers import SHARED_SPEC

    diff.run(
        [
            Open(session="a"),
            set_data("a", "/", b"root"),
            set_data("a", "/zookeeper", b"zk"),
            set_data("a", "/zookeeper/config", b"cfg"),
            get_data("a", "/"),
            get_data("a", "/zookeeper"),
        ],
        spec=SHARED_SPEC,
    )


def test_edge_057_set_acl_invalid_acl_beats_no_node(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            set_acl("a", f"{ns}/missing", [acl(31, "world", "someone")]),
            set_acl("a", f"{ns}/missing", [acl(31)]),
            set_acl("a", f"{ns}/missing", []),
        ]
    )


def test_edge_058_set_acl_no_auth_beats_bad_version(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/n", acls=[acl(31 & ~16)]),
            set_acl("a", f"{ns}/n", [acl(31)], 5),
            create("a", f"{ns}/m"),
            set_acl("a", f"{ns}/m", [acl(31)], 5),
            set_acl("a", f"{ns}/m", [acl(31)], 0),
            set_acl("a", f"{ns}/m", [acl(31)], 0),
            get_acl("a", f"{ns}/m"),
        ]
    )


def test_edge_059_acl_validation(diff) -> None:
    ns = diff.ns
    bad = [
        [acl(31, "world", "someone")],
        [acl(31, "digest", "a:")],
        [acl(31, "digest", "a:b:c")],
        [acl(31, "ip", "10.0.0.0/33")],
        [acl(31, "ip", "localhost")],
        [acl(31, "super", "")],
        [acl(31, "x509", "CN=x")],
        [acl(31, "nosuchscheme", "x")],
        [],
    ]
    steps: list = [Open(session="a")]
    for i, acls in enumerate(bad):
        steps.append(create("a", f"{ns}/bad{i}", acls=acls))
    steps += [
        create("a", f"{ns}/ok1", acls=[acl(31, "digest", ":b")]),
        create("a", f"{ns}/ok2", acls=[acl(31, "ip", "10.0.0.0/8")]),
        get_acl("a", f"{ns}/ok2"),
        children("a", ns),
    ]
    diff.run(steps)


def test_edge_060_duplicate_acl_entries(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/d", acls=[acl(31), acl(31), acl(1), acl(31, "ip", "127.0.0.1")]),
            get_acl("a", f"{ns}/d"),
        ]
    )


def test_edge_061_perms_zero_and_0xff(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/z", acls=[acl(0), acl(17, "ip", "127.0.0.1")]),
            get_acl("a", f"{ns}/z"),
            create("a", f"{ns}/f", acls=[acl(0xFF)]),
            get_acl("a", f"{ns}/f"),
        ]
    )


def test_edge_062_auth_scheme_expansion(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/x", acls=[acl(31, "auth", "")]),
            login("a", "alice", "pw-a"),
            login("a", "bob", "pw-b"),
            create("a", f"{ns}/y", acls=[acl(13, "auth", "")]),
            get_acl("a", f"{ns}/y"),
        ]
    )


def test_edge_063_auth_plus_world(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            login("a", "alice", "pw-a"),
            create("a", f"{ns}/y", acls=[acl(1), acl(31, "auth", "")]),
            get_acl("a", f"{ns}/y"),
        ]
    )


def test_edge_064_ip_acl_masks(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/yes", b"y", acls=[acl(31, "ip", "127.1.2.3/8")]),
            create("a", f"{ns}/no", b"n", acls=[acl(31, "ip", "10.0.0.0/8")]),
            get_data("a", f"{ns}/yes"),
            get_data("a", f"{ns}/no"),
            create("a", f"{ns}/exact", b"e", acls=[acl(31, "ip", "127.0.0.1")]),
            get_data("a", f"{ns}/exact"),
        ]
    )


def test_edge_065_get_acl_masking(diff) -> None:
    ns = diff.ns
    entries = [acl(1), acl(31, "digest", ALICE)]
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/read-only", acls=entries),
            get_acl("a", f"{ns}/read-only"),
            create("a", f"{ns}/admin-only", acls=[acl(16), acl(31, "digest", ALICE)]),
            get_acl("a", f"{ns}/admin-only"),
            create("a", f"{ns}/write-only", acls=[acl(2), acl(31, "digest", ALICE)]),
            get_acl("a", f"{ns}/write-only"),
            login("a", "alice", "pw-a"),
            get_acl("a", f"{ns}/read-only"),
        ]
    )


def test_edge_066_exists_without_read(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/secret", acls=[acl(31 & ~1)]),
            exists("a", f"{ns}/secret", known=Known.EXISTS_WITHOUT_READ),
            exists("a", f"{ns}/missing"),
        ]
    )


def test_edge_067_reads_without_read(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/secret", acls=[acl(31 & ~1)]),
            create("a", f"{ns}/secret/child"),
            get_data("a", f"{ns}/secret"),
            children("a", f"{ns}/secret"),
            children2("a", f"{ns}/secret"),
            all_children_number("a", f"{ns}/secret"),
            multi("a", m_check(f"{ns}/secret", -1)),
        ]
    )


def test_edge_068_auth_unknown_scheme(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            auth("a", "nosuchscheme", b"x"),
            ExpectClosed(session="a"),
        ],
        pristine=True,
    )


def test_edge_069_digest_without_colon(diff) -> None:
    diff.run([Open(session="a"), auth("a", "digest", b"nocolon"), who_am_i("a")], pristine=True)


def test_edge_070_super_digest(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="su"),
            create("a", f"{ns}/locked", b"secret", acls=[acl(0)]),
            login("su", "super", SUPER_PASSWORD),
            who_am_i("su"),
            get_data("su", f"{ns}/locked"),
            set_data("su", f"{ns}/locked", b"changed"),
            get_acl("su", f"{ns}/locked"),
            login("a", "super", "wrong-password"),
            who_am_i("a"),
            get_data("a", f"{ns}/locked"),
        ]
    )


def test_edge_070b_super_writes_zookeeper_config(diff) -> None:
    from tests.support.servers import SHARED_SPEC

    diff.run(
        [
            Open(session="su"),
            login("su", "super", SUPER_PASSWORD),
            set_data("su", "/zookeeper/config", b"x"),
            get_data("su", "/zookeeper/config"),
        ],
        spec=SHARED_SPEC,
    )


def test_edge_071_who_am_i_and_ip_auth(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            who_am_i("a"),
            auth("a", "ip", b"127.0.0.1"),
            who_am_i("a"),
            login("a", "alice", "pw-a"),
            login("a", "bob", "pw-b"),
            login("a", "alice", "pw-a"),
            who_am_i("a"),
        ],
        pristine=True,
    )


def test_edge_072_get_ephemerals_prefixes(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="b"),
            create("a", f"{ns}/x"),
            create("a", f"{ns}/x/eph1", flags=1),
            create("a", f"{ns}/x/eph2", flags=3),
            create("a", f"{ns}/x/other", flags=1),
            create("b", f"{ns}/x/eph-b", flags=1),
            ephemerals("a", "/"),
            ephemerals("a", ""),
            ephemerals("a", f"{ns}/x/eph"),
            ephemerals("b", "/"),
            ephemerals("b", f"{ns}/nothing"),
        ]
    )


def test_edge_073_all_children_number(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            all_children_number("a", "/"),
            all_children_number("a", "/zookeeper/quota"),
            all_children_number("a", "/missing"),
        ],
        pristine=True,
    )


def test_edge_074_empty_path_is_root(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            get_data("a", ""),
            exists("a", ""),
            children("a", ""),
            get_data("a", "noslash"),
        ],
        pristine=True,
    )


def test_edge_075_nul_in_read_paths(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            exists("a", "/zoo\u0000keeper"),
            get_data("a", "/zoo\u0000keeper"),
            children("a", "/zoo\u0000keeper"),
            get_acl("a", "/zoo\u0000keeper"),
            Op(session="a", opcode=OpCode.SYNC, record=PathRecord(path="/a\u0000b")),
        ],
        pristine=True,
    )


def test_edge_076_children_compared_as_sets(diff) -> None:
    ns = diff.ns
    names = [f"c{i:02d}" for i in range(20)]
    diff.run(
        [
            Open(session="a"),
            *[create("a", f"{ns}/{n}") for n in names],
            children("a", ns),
            children2("a", ns),
            Drain(session="a"),
        ]
    )
