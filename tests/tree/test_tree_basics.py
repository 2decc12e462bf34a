"""DataTree: the initial tree, Stats of every write, sequential names, paths, special nodes.

Tests named test_NN_* are server-semantics §27 edge case NN.
"""

from __future__ import annotations

import pytest

from corral.protocol.constants import ErrorCode, EventType, OpCode
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Create2Response,
    CreateResponse,
    DeleteRequest,
    GetACLResponse,
    GetAllChildrenNumberResponse,
    GetChildren2Response,
    GetChildrenResponse,
    GetDataResponse,
    SetACLRequest,
    Stat,
    StatResponse,
)
from corral.tree.tree import DataTree, TreeEvent
from corral.tree.txn import CloseSessionTxn
from corral.tree.znode import NO_CHILDREN, int32
from tests.tree.harness import IP, S1, Harness

OK = ErrorCode.OK


def zero_stat(**changes: int) -> Stat:
    fields = dict(
        czxid=0,
        mzxid=0,
        ctime_ms=0,
        mtime_ms=0,
        version=0,
        cversion=0,
        aversion=0,
        ephemeral_owner=0,
        data_length=0,
        num_children=0,
        pzxid=0,
    )
    fields.update(changes)
    return Stat(**fields)


# --------------------------------------------------------------------------- initial tree


def test_01_fresh_children() -> None:
    h = Harness()
    assert h.get_children("/") == (OK, GetChildrenResponse(children=("zookeeper",)))
    assert h.get_children("/zookeeper") == (OK, GetChildrenResponse(children=("config", "quota")))


def test_02_03_fresh_stats_and_acls() -> None:
    h = Harness()
    assert h.exists("/") == (OK, StatResponse(stat=zero_stat(num_children=1, cversion=-1)))
    assert h.stat("/zookeeper") == zero_stat(num_children=2, cversion=-2)
    assert h.stat("/zookeeper/quota") == zero_stat()
    assert h.stat("/zookeeper/config") == zero_stat(aversion=-1)
    assert h.get_acl("/zookeeper/config") == (
        OK,
        GetACLResponse(acl=READ_ACL_UNSAFE, stat=zero_stat(aversion=-1)),
    )
    assert h.get_acl("/")[1] == GetACLResponse(acl=OPEN_ACL_UNSAFE, stat=h.stat("/"))


def test_04_root_data_is_empty_not_null() -> None:
    assert Harness().get_data("/") == (
        OK,
        GetDataResponse(data=b"", stat=zero_stat(num_children=1, cversion=-1)),
    )


def test_fresh_gauges() -> None:
    tree = DataTree()
    assert tree.node_count == 5
    assert tree.ephemeral_count == 0
    # "", "/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config" path lengths.
    assert tree.approximate_data_size == 0 + 1 + 10 + 16 + 17
    assert tree.last_zxid == 0
    assert dict(tree.sessions) == {}


def test_approximate_data_size_follows_zookeeper() -> None:
    h = Harness()
    fresh = h.tree.approximate_data_size
    h.create("/abc", b"12345")
    assert h.tree.approximate_data_size == fresh + 4 + 5
    h.set_data("/abc", None)
    assert h.tree.approximate_data_size == fresh + 4
    # The root is in ZooKeeper's map twice ("/" and ""), so its data counts twice.
    h.set_data("/", b"xyz")
    assert h.tree.approximate_data_size == fresh + 4 + 2 * 3
    h.delete("/abc")
    assert h.tree.approximate_data_size == fresh + 2 * 3


def test_74_empty_path_answers_the_root() -> None:
    h = Harness()
    assert h.get_data("") == h.get_data("/")
    assert h.exists("") == h.exists("/")
    assert h.get_children("") == h.get_children("/")
    assert h.tree.get("") is h.tree.get("/")


def test_73_all_children_number() -> None:
    h = Harness()
    assert h.all_children_number("/") == (OK, GetAllChildrenNumberResponse(total_number=3))
    assert h.all_children_number("/zookeeper") == (
        OK,
        GetAllChildrenNumberResponse(total_number=2),
    )
    h.create("/a")
    h.create("/a/b")
    h.create("/a/b/c")
    h.create("/a/d")
    assert h.all_children_number("/a")[1] == GetAllChildrenNumberResponse(total_number=3)
    assert h.all_children_number("/a/d")[1] == GetAllChildrenNumberResponse(total_number=0)
    assert h.all_children_number("/")[1] == GetAllChildrenNumberResponse(total_number=7)
    assert h.all_children_number("/missing") == (ErrorCode.NO_NODE, None)


# --------------------------------------------------------------------------- create Stats


def test_05_null_and_empty_data_are_distinct() -> None:
    h = Harness()
    h.create("/n1", None)
    h.create("/n2", b"")
    err, body = h.get_data("/n1")
    assert err == OK
    assert isinstance(body, GetDataResponse)
    assert body.data is None
    assert body.stat.data_length == 0
    err, body = h.get_data("/n2")
    assert isinstance(body, GetDataResponse)
    assert body.data == b""


def test_06_first_create_after_first_session_gets_zxid_2() -> None:
    h = Harness()  # the session took zxid 1
    result = h.create("/x")
    assert isinstance(result.body, Create2Response)
    assert result.body.stat.czxid == 2
    assert h.tree.last_zxid == 2


def test_create_stat_and_reply_shapes() -> None:
    h = Harness()
    result = h.create("/a", b"hello", opcode=OpCode.CREATE2)
    zxid, time_ms = h.zxid, h.time_ms
    expected = Stat(
        czxid=zxid,
        mzxid=zxid,
        ctime_ms=time_ms,
        mtime_ms=time_ms,
        version=0,
        cversion=0,
        aversion=0,
        ephemeral_owner=0,
        data_length=5,
        num_children=0,
        pzxid=zxid,
    )
    assert result.err == OK
    assert result.body == Create2Response(path="/a", stat=expected)
    assert result.events == (
        TreeEvent(type=EventType.NODE_CREATED, path="/a", acl=OPEN_ACL_UNSAFE),
        TreeEvent(type=EventType.NODE_CHILDREN_CHANGED, path="/", acl=OPEN_ACL_UNSAFE),
    )
    plain = h.create("/b", opcode=OpCode.CREATE)
    assert plain.body == CreateResponse(path="/b")


def test_07_create_child_updates_parent() -> None:
    h = Harness()
    h.create("/t", b"x")
    before = h.stat("/t")
    h.create("/t/a")
    after = h.stat("/t")
    assert after.cversion == 1
    assert after.num_children == 1
    assert after.pzxid == h.stat("/t/a").czxid == h.zxid
    assert (after.mzxid, after.mtime_ms, after.version) == (
        before.mzxid,
        before.mtime_ms,
        before.version,
    )


def test_08_delete_child_updates_parent() -> None:
    h = Harness()
    h.create("/t")
    h.create("/t/a")
    before = h.stat("/t")
    result = h.delete("/t/a")
    assert result.err == OK
    assert result.body is None
    assert result.events == (
        TreeEvent(type=EventType.NODE_DELETED, path="/t/a", acl=OPEN_ACL_UNSAFE),
        TreeEvent(type=EventType.NODE_CHILDREN_CHANGED, path="/t", acl=OPEN_ACL_UNSAFE),
    )
    after = h.stat("/t")
    assert after.cversion == before.cversion + 1
    assert after.num_children == 0
    assert after.pzxid == h.zxid
    assert after.mzxid == before.mzxid


def test_09_11_set_data_twice_with_identical_bytes() -> None:
    h = Harness()
    h.create("/t", b"same")
    created = h.stat("/t")
    first = h.set_data("/t", b"same")
    second = h.set_data("/t", b"same")
    assert (
        first.events
        == second.events
        == (TreeEvent(type=EventType.NODE_DATA_CHANGED, path="/t", acl=OPEN_ACL_UNSAFE),)
    )
    stat = h.stat("/t")
    assert second.body == StatResponse(stat=stat)
    assert stat.version == 2
    assert stat.mzxid == h.zxid
    assert stat.mtime_ms == h.time_ms > created.ctime_ms
    assert (stat.czxid, stat.ctime_ms, stat.pzxid, stat.cversion, stat.aversion) == (
        created.czxid,
        created.ctime_ms,
        created.pzxid,
        0,
        0,
    )


def test_10_set_acl_only_bumps_aversion() -> None:
    h = Harness()
    h.create("/t", b"x")
    before = h.stat("/t")
    result = h.set_acl("/t", READ_ACL_UNSAFE + OPEN_ACL_UNSAFE)
    after = h.stat("/t")
    assert result.body == StatResponse(stat=after)
    assert result.events == ()
    assert after.aversion == 1
    assert (after.mzxid, after.mtime_ms, after.version) == (
        before.mzxid,
        before.mtime_ms,
        before.version,
    )
    assert h.tree.get("/t").acl == READ_ACL_UNSAFE + OPEN_ACL_UNSAFE  # type: ignore[union-attr]


def test_visible_cversion_counts_creates_and_deletes() -> None:
    h = Harness()
    h.create("/p")
    for name in "abcde":
        h.create(f"/p/{name}")
    h.delete("/p/a")
    h.delete("/p/b")
    stat = h.stat("/p")
    assert (stat.num_children, stat.cversion) == (3, 7)  # wire-protocol §4.4 observation


def test_version_wraps_to_negative_and_through_minus_one() -> None:
    h = Harness()
    h.create("/v")
    h.tree.get("/v").version = 2**31 - 1  # type: ignore[union-attr]
    assert h.set_data("/v", b"").body == StatResponse(stat=h.stat("/v"))
    assert h.stat("/v").version == -(2**31)
    h.tree.get("/v").version = -2  # type: ignore[union-attr]
    h.set_data("/v", b"")
    assert h.stat("/v").version == -1  # 3.9 does not skip -1
    # -1 as the expected version means "any", so this still succeeds.
    assert h.set_data("/v", b"", version=-1).err == OK
    assert h.stat("/v").version == 0


def test_int32_helper() -> None:
    assert int32(2**31) == -(2**31)
    assert int32(-(2**31) - 1) == 2**31 - 1
    assert int32(5) == 5


# --------------------------------------------------------------------------- sequential


def test_12_sequential_suffix_counts_every_creation() -> None:
    h = Harness()
    h.create("/q")
    h.create("/q/a")
    h.create("/q/b")
    h.delete("/q/a")
    assert h.create("/q/s-", flags=2).body.path == "/q/s-0000000002"  # type: ignore[union-attr]
    assert h.create("/q/t-", flags=2).body.path == "/q/t-0000000003"  # type: ignore[union-attr]


def test_13_trailing_slash_only_for_sequential() -> None:
    h = Harness()
    h.create("/q")
    assert h.create("/q/").err == ErrorCode.BAD_ARGUMENTS
    assert h.create("/q/", flags=2).body.path == "/q/0000000000"  # type: ignore[union-attr]


def test_14_sequential_child_of_root() -> None:
    h = Harness()
    result = h.create("/", flags=2)
    # The root's persisted counter is 0 on a fresh tree (zookeeper was not "created").
    assert result.body.path == "/0000000000"  # type: ignore[union-attr]
    assert h.create("/", flags=2).body.path == "/0000000001"  # type: ignore[union-attr]


def test_failed_create_does_not_advance_the_sequence() -> None:
    h = Harness()
    h.create("/q")
    assert h.create("/q/x", acl=()).err == ErrorCode.INVALID_ACL
    h.create("/q/e", flags=1)
    assert h.create("/q/e/child", flags=2).err == ErrorCode.NO_CHILDREN_FOR_EPHEMERALS
    assert h.create("/q/n", flags=2).body.path == "/q/n0000000001"  # type: ignore[union-attr]


def test_negative_sequence_counter_formats_like_java() -> None:
    h = Harness()
    h.create("/q")
    h.tree.get("/q").cversion = 2**31 - 1  # type: ignore[union-attr]
    assert h.create("/q/a", flags=2).body.path == "/q/a2147483647"  # type: ignore[union-attr]
    assert h.create("/q/a", flags=2).body.path == "/q/a-2147483648"  # type: ignore[union-attr]
    h.tree.get("/q").cversion = -5  # type: ignore[union-attr]
    assert h.create("/q/b", flags=2).body.path == "/q/b-000000005"  # type: ignore[union-attr]


def test_sequential_name_already_taken_is_node_exists() -> None:
    h = Harness()
    h.create("/q")
    h.create("/q/n0000000001")  # counter is now 1, and that name exists
    assert h.create("/q/n", flags=2).err == ErrorCode.NODE_EXISTS


# --------------------------------------------------------------------------- zxids


def test_17_failed_create_consumes_a_zxid_but_changes_nothing() -> None:
    h = Harness()
    first = h.create("/a")
    size = h.tree.approximate_data_size
    failed = h.create("/a")
    assert failed.err == ErrorCode.NODE_EXISTS
    assert failed.body is None
    assert failed.events == ()
    assert h.tree.last_zxid == h.zxid
    assert h.tree.approximate_data_size == size
    later = h.create("/b")
    assert later.body.stat.czxid == first.body.stat.czxid + 2  # type: ignore[union-attr]


def test_apply_requires_increasing_zxids() -> None:
    h = Harness()
    with pytest.raises(AssertionError):
        h.tree.apply(CloseSessionTxn(session_id=S1, time_ms=0), h.zxid)
    assert S1 in h.tree.sessions


def test_18_reads_never_change_state() -> None:
    h = Harness()
    h.create("/a", b"x")
    zxid, size, count = h.tree.last_zxid, h.tree.approximate_data_size, h.tree.node_count
    stat = h.stat("/a")
    h.exists("/a")
    h.get_data("/a")
    h.get_children("/a")
    h.get_children2("/")
    h.get_acl("/a")
    h.all_children_number("/")
    assert (h.tree.last_zxid, h.tree.approximate_data_size, h.tree.node_count) == (
        zxid,
        size,
        count,
    )
    assert h.stat("/a") == stat


# --------------------------------------------------------------------------- paths


def test_42_create_root_and_slashless() -> None:
    h = Harness()
    assert h.create("/").err == ErrorCode.NODE_EXISTS
    assert h.create("").err == ErrorCode.BAD_ARGUMENTS
    assert h.create("noslash").err == ErrorCode.BAD_ARGUMENTS


def test_43_malformed_paths() -> None:
    h = Harness()
    h.create("/q")
    assert h.create("/q//x").err == ErrorCode.NO_NODE
    assert h.create("/q/./x").err == ErrorCode.NO_NODE
    assert h.create("/q/.").err == ErrorCode.BAD_ARGUMENTS
    assert h.create("/q/..").err == ErrorCode.BAD_ARGUMENTS


@pytest.mark.parametrize("name", ["...", ".hidden", "a b", "é", "\u00a0", "zookeeper"])
def test_44_unusual_but_valid_names(name: str) -> None:
    h = Harness()
    h.create("/q")
    assert h.create(f"/q/{name}").err == OK
    assert h.exists(f"/q/{name}")[0] == OK


@pytest.mark.parametrize(
    "char",
    ["\u0001", "\u001f", "\u007f", "\u0085", "\u009f", "\ue000", "\uf8ff", "\ufff0", "\uffff"],
)
def test_45_forbidden_characters(char: str) -> None:
    h = Harness()
    h.create("/q")
    assert h.create(f"/q/a{char}b").err == ErrorCode.BAD_ARGUMENTS


def test_45_nul_is_rejected_before_the_parent_lookup() -> None:
    h = Harness()
    assert h.create("/missing/a\u0000b").err == ErrorCode.BAD_ARGUMENTS


def test_46_supplementary_plane_character() -> None:
    h = Harness()
    assert h.create("/emoji\U0001f600").err == ErrorCode.BAD_ARGUMENTS


def test_75_nul_in_reads() -> None:
    h = Harness()
    assert h.exists("/a\u0000") == (ErrorCode.BAD_ARGUMENTS, None)
    assert h.get_data("/a\u0000") == (ErrorCode.NO_NODE, None)


def test_reads_do_not_validate_paths() -> None:
    h = Harness()
    assert h.get_data("noslash") == (ErrorCode.NO_NODE, None)
    assert h.get_children("/zookeeper/") == (ErrorCode.NO_NODE, None)
    assert h.exists("/a/../a") == (ErrorCode.NO_NODE, None)


def test_76_children_listing_is_a_set_of_names() -> None:
    h = Harness()
    h.create("/p", b"d")
    for name in ("c", "a", "b"):
        h.create(f"/p/{name}")
    err, body = h.get_children2("/p")
    assert err == OK
    assert isinstance(body, GetChildren2Response)
    assert set(body.children) == {"a", "b", "c"}
    assert body.stat == h.stat("/p")


# --------------------------------------------------------------------------- delete


def test_48_protected_paths_cannot_be_deleted_even_by_super() -> None:
    from tests.tree.harness import SUPER

    h = Harness()
    for path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
        assert h.delete(path).err == ErrorCode.BAD_ARGUMENTS
        assert h.delete(path, ids=(IP, SUPER)).err == ErrorCode.BAD_ARGUMENTS


def test_50_badversion_beats_notempty() -> None:
    h = Harness()
    h.create("/p")
    h.create("/p/c")
    assert h.delete("/p", 99).err == ErrorCode.BAD_VERSION
    assert h.delete("/p", -1).err == ErrorCode.NOT_EMPTY
    assert h.delete("/p", -2).err == ErrorCode.BAD_VERSION


def test_51_delete_path_forms() -> None:
    h = Harness()
    h.create("/q")
    assert h.delete("/q/").err == ErrorCode.NO_NODE
    assert h.delete("/q/../q").err == ErrorCode.NO_NODE
    assert h.delete("noslash").err == ErrorCode.BAD_ARGUMENTS
    assert h.delete("").err == ErrorCode.BAD_ARGUMENTS
    assert h.delete("/q\u0000").err == ErrorCode.BAD_ARGUMENTS
    assert h.delete("/missing/child").err == ErrorCode.NO_NODE


def test_delete_with_matching_version() -> None:
    h = Harness()
    h.create("/a")
    h.set_data("/a", b"1")
    assert h.delete("/a", 0).err == ErrorCode.BAD_VERSION
    assert h.delete("/a", 1).err == OK
    assert h.tree.get("/a") is None


# --------------------------------------------------------------------------- setData


def test_55_set_data_path_and_version_rules() -> None:
    h = Harness()
    h.create("/q")
    assert h.set_data("/q/", b"").err == ErrorCode.BAD_ARGUMENTS
    assert h.set_data("/q", b"", version=-2).err == ErrorCode.BAD_VERSION
    assert h.set_data("/q", b"", version=-1).err == OK
    assert h.set_data("/q", b"", version=1).err == OK
    assert h.set_data("/missing", b"").err == ErrorCode.NO_NODE


def test_56_special_nodes_set_data() -> None:
    h = Harness()
    assert h.set_data("/", b"r").err == OK
    assert h.set_data("/zookeeper", b"z").err == OK
    assert h.stat("/zookeeper").version == 1
    assert h.set_data("/zookeeper/config", b"c").err == ErrorCode.NO_AUTH


def test_47_children_of_zookeeper() -> None:
    h = Harness()
    assert h.create("/zookeeper/x").err == OK
    assert h.create("/zookeeper/config/x").err == ErrorCode.NO_AUTH


def test_set_data_with_null_data() -> None:
    h = Harness()
    h.create("/a", b"abc")
    h.set_data("/a", None)
    assert h.get_data("/a")[1] == GetDataResponse(data=None, stat=h.stat("/a"))
    assert h.stat("/a").data_length == 0


# --------------------------------------------------------------------------- setACL


def test_57_invalidacl_beats_nonode() -> None:
    h = Harness()
    assert h.set_acl("/missing", ()).err == ErrorCode.INVALID_ACL
    assert h.set_acl("/missing", OPEN_ACL_UNSAFE).err == ErrorCode.NO_NODE
    assert h.set_acl("/bad/", OPEN_ACL_UNSAFE).err == ErrorCode.BAD_ARGUMENTS


def test_set_acl_checks_aversion() -> None:
    h = Harness()
    h.create("/a")
    assert h.set_acl("/a", OPEN_ACL_UNSAFE, version=1).err == ErrorCode.BAD_VERSION
    assert h.set_acl("/a", OPEN_ACL_UNSAFE, version=0).err == OK
    assert h.set_acl("/a", OPEN_ACL_UNSAFE, version=1).err == OK
    assert h.stat("/a").aversion == 2


# --------------------------------------------------------------------------- reconfig


def test_reconfig_is_disabled() -> None:
    from corral.protocol.records import ReconfigRequest

    h = Harness()
    request = ReconfigRequest(
        joining_servers="", leaving_servers="", new_members="", cur_config_id=-1
    )
    result = h.write(OpCode.RECONFIG, request)
    assert (result.err, result.body, result.events) == (ErrorCode.RECONFIG_DISABLED, None, ())


# --------------------------------------------------------------------------- memory layout


def test_equal_acl_lists_are_stored_once() -> None:
    h = Harness()
    # Each request carries its own decoded copy, as from the wire.
    for path in ("/a", "/b"):
        acl = tuple(ACL.from_bytes(entry.to_bytes()) for entry in OPEN_ACL_UNSAFE)
        assert h.create(path, acl=acl).err == OK
    a, b = h.tree.get("/a"), h.tree.get("/b")
    assert a is not None
    assert b is not None
    assert a.acl == OPEN_ACL_UNSAFE
    assert a.acl is b.acl
    assert (
        h.write(OpCode.SET_ACL, SetACLRequest(path="/a", acl=READ_ACL_UNSAFE, version=-1)).err == OK
    )
    assert a.acl == READ_ACL_UNSAFE
    assert b.acl == OPEN_ACL_UNSAFE
    h.tree.check_invariants()


def test_leaves_share_one_empty_children_set() -> None:
    h = Harness()
    assert h.create("/p").err == OK
    assert h.create("/p/c").err == OK
    parent, child = h.tree.get("/p"), h.tree.get("/p/c")
    assert parent is not None
    assert child is not None
    assert child.children is NO_CHILDREN
    assert parent.children == {"c"}
    assert h.write(OpCode.DELETE, DeleteRequest(path="/p/c", version=-1)).err == OK
    assert parent.children is NO_CHILDREN  # the emptied set is let go
    assert parent.stat().num_children == 0
    assert h.get_children("/p") == (OK, GetChildrenResponse(children=()))
    h.tree.check_invariants()
