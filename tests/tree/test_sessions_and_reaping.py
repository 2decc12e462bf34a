"""DataTree: sessions table, ephemerals on close/expiry, container and TTL reaping.

Tests named test_NN_* are server-semantics §27 edge case NN.
"""

from __future__ import annotations

from corral.protocol.constants import ErrorCode, EventType, OpCode
from corral.protocol.records import ACL, OPEN_ACL_UNSAFE, Id
from corral.tree.tree import SessionInfo, TreeEvent
from tests.tree.harness import PASSWORD, S1, S2, Harness

OK = ErrorCode.OK
TTL_ON = {"extended_types_enabled": True}


def test_create_session_adds_to_the_table() -> None:
    h = Harness(sessions=())
    result = h.open_session(S1, timeout_ms=30_000)
    assert (result.err, result.body, result.events) == (OK, None, ())
    assert dict(h.tree.sessions) == {
        S1: SessionInfo(session_id=S1, timeout_ms=30_000, password=PASSWORD)
    }


def test_86_close_session_removes_ephemerals_in_one_txn() -> None:
    h = Harness(sessions=(S1, S2))
    h.create("/p")
    h.create("/p/e1", flags=1)
    h.create("/p/e2", flags=3)  # /p/e20000000001
    h.create("/e3", flags=1)
    h.create("/p/keep", flags=1, session=S2)
    h.create("/p/persistent")
    p_before = h.stat("/p")
    result = h.write(OpCode.CLOSE_SESSION, None)
    close_zxid = h.zxid
    assert (result.err, result.body) == (OK, None)
    assert S1 not in h.tree.sessions
    assert h.tree.ephemerals(S1) == frozenset()
    assert h.tree.ephemerals(S2) == frozenset({"/p/keep"})
    for path in ("/p/e1", "/p/e20000000001", "/e3"):
        assert h.tree.get(path) is None
    p_after = h.stat("/p")
    assert p_after.pzxid == h.stat("/").pzxid == close_zxid
    assert p_after.num_children == p_before.num_children - 2
    assert p_after.cversion == p_before.cversion + 2
    assert h.tree.ephemeral_count == 1
    h.tree.check_invariants()


def test_87_close_events_for_each_ephemeral() -> None:
    h = Harness()
    h.create("/p")
    h.create("/p/b", flags=1)
    h.create("/a", flags=1)
    result = h.expire(S1)
    assert result.err == OK
    # Sorted path order; per node: NodeDeleted then the parent's NodeChildrenChanged.
    assert result.events == (
        TreeEvent(type=EventType.NODE_DELETED, path="/a", acl=OPEN_ACL_UNSAFE),
        TreeEvent(type=EventType.NODE_CHILDREN_CHANGED, path="/", acl=OPEN_ACL_UNSAFE),
        TreeEvent(type=EventType.NODE_DELETED, path="/p/b", acl=OPEN_ACL_UNSAFE),
        TreeEvent(type=EventType.NODE_CHILDREN_CHANGED, path="/p", acl=OPEN_ACL_UNSAFE),
    )
    assert S1 not in h.tree.sessions


def test_closed_session_can_do_nothing_more() -> None:
    h = Harness()
    h.expire(S1)
    assert h.create("/x", flags=1).err == ErrorCode.SESSION_EXPIRED
    assert h.write(OpCode.CLOSE_SESSION, None).err == ErrorCode.SESSION_EXPIRED
    assert h.expire(S1).err == ErrorCode.SESSION_EXPIRED
    assert h.tree.get("/x") is None


def test_ephemeral_stat_shows_owner() -> None:
    h = Harness()
    result = h.create("/e", flags=1)
    assert result.body.stat.ephemeral_owner == S1  # type: ignore[union-attr]
    assert h.tree.ephemeral_count == 1


def test_deleting_an_ephemeral_updates_the_session_index() -> None:
    h = Harness()
    h.create("/e", flags=1)
    h.delete("/e")
    assert h.tree.ephemerals(S1) == frozenset()
    assert h.expire(S1).events == ()


# --------------------------------------------------------------------------- containers


def test_116_container_reaped_after_its_last_child_goes() -> None:
    h = Harness()
    h.create("/c", opcode=OpCode.CREATE_CONTAINER)
    h.create("/fresh", opcode=OpCode.CREATE_CONTAINER)
    now = h.time_ms + 10**9
    assert h.tree.reap_candidates(now) == []  # never used: kept by default
    h.create("/c/x")
    assert h.tree.reap_candidates(now) == []
    h.delete("/c/x")
    assert h.tree.reap_candidates(now) == ["/c"]
    result = h.reap("/c", now)
    assert result.err == OK
    assert result.events == (
        TreeEvent(type=EventType.NODE_DELETED, path="/c", acl=OPEN_ACL_UNSAFE),
        TreeEvent(type=EventType.NODE_CHILDREN_CHANGED, path="/", acl=OPEN_ACL_UNSAFE),
    )
    assert h.tree.get("/c") is None
    assert h.stat("/").pzxid == h.zxid
    assert h.tree.reap_candidates(now) == []


def test_never_used_container_with_max_never_used() -> None:
    h = Harness()
    h.create("/fresh", opcode=OpCode.CREATE_CONTAINER)
    created_ms = h.time_ms
    assert h.tree.reap_candidates(created_ms + 500, max_never_used_ms=500) == []
    assert h.tree.reap_candidates(created_ms + 501, max_never_used_ms=500) == ["/fresh"]
    # The apply-time re-check honours the setting carried by the txn...
    assert h.reap("/fresh", created_ms + 501).err != OK
    assert h.reap("/fresh", created_ms + 501, max_never_used_ms=500).err == OK


def test_reap_rechecks_at_apply_time() -> None:
    h = Harness()
    h.create("/c", opcode=OpCode.CREATE_CONTAINER)
    h.create("/c/x")
    assert h.reap("/c", h.time_ms).err == ErrorCode.NOT_EMPTY
    h.create("/plain")
    h.create("/e", flags=1)
    for path in ("/plain", "/e"):
        result = h.reap(path, h.time_ms + 10**9)
        assert (result.err, result.events) == (ErrorCode.BAD_VERSION, ())
        assert h.tree.get(path) is not None
    assert h.reap("/missing", h.time_ms).err == ErrorCode.NO_NODE
    assert h.reap("/zookeeper", h.time_ms).err == ErrorCode.BAD_ARGUMENTS


def test_reap_needs_no_session_or_acl() -> None:
    h = Harness()
    closed = (ACL(perms=0, id=Id(scheme="world", id="anyone")),)
    h.create("/c", opcode=OpCode.CREATE_CONTAINER)
    h.create("/c/x")
    h.delete("/c/x")
    h.set_acl("/", closed)
    h.expire(S1)
    assert h.reap("/c", h.time_ms).err == OK


# --------------------------------------------------------------------------- TTL


def test_118_ttl_node_reaped_only_when_expired_and_childless() -> None:
    h = Harness(**TTL_ON)
    h.create("/t", opcode=OpCode.CREATE_TTL, flags=5, ttl_ms=1500)
    h.create("/busy", opcode=OpCode.CREATE_TTL, flags=5, ttl_ms=1500)
    h.create("/busy/child")
    mtime = h.stat("/t").mtime_ms
    assert h.tree.reap_candidates(mtime + 1500) == []
    assert h.tree.reap_candidates(mtime + 1501) == ["/t"]
    assert h.tree.reap_candidates(10**12) == ["/t"]  # /busy has a child
    assert h.reap("/t", mtime + 1500).err == ErrorCode.BAD_VERSION  # not expired yet
    assert h.reap("/t", mtime + 1501).err == OK
    assert h.reap("/busy", 10**12).err == ErrorCode.NOT_EMPTY


def test_118_set_data_keeps_a_ttl_node_alive_child_activity_does_not() -> None:
    h = Harness(**TTL_ON)
    h.create("/t", opcode=OpCode.CREATE_TTL, flags=5, ttl_ms=1000)
    created = h.stat("/t").mtime_ms
    h.create("/t/c")
    h.delete("/t/c")
    assert h.tree.reap_candidates(created + 1001) == ["/t"]
    h.set_data("/t", b"ping")
    refreshed = h.stat("/t").mtime_ms
    assert refreshed > created
    assert h.tree.reap_candidates(created + 1001) == []
    assert h.tree.reap_candidates(refreshed + 1001) == ["/t"]


def test_reap_candidates_are_sorted_and_mixed() -> None:
    h = Harness(**TTL_ON)
    for path in ("/z", "/a", "/m"):
        h.create(path, opcode=OpCode.CREATE_CONTAINER)
        h.create(path + "/x")
        h.delete(path + "/x")
    h.create("/b", opcode=OpCode.CREATE_TTL, flags=5, ttl_ms=1)
    assert h.tree.reap_candidates(h.time_ms + 2) == ["/a", "/b", "/m", "/z"]
    h.tree.check_invariants()
