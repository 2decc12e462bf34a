"""DataTree multi (14) and multiRead (22): atomicity, result shapes, shared zxid/time.

Tests named test_NN_* are server-semantics §27 edge case NN.
"""

from __future__ import annotations

import pytest

from corral.protocol.constants import ErrorCode, EventType, OpCode
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    Create2Response,
    CreateResponse,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    MultiRequest,
    MultiResponse,
    OpResult,
    StatResponse,
)
from corral.tree.tree import TreeEvent
from tests.tree.harness import Harness, check_op, create_op, delete_op, set_data_op

OK = ErrorCode.OK
ROLLED_BACK = OpResult(type=-1, err=0)
INCONSISTENT = OpResult(type=-1, err=ErrorCode.RUNTIME_INCONSISTENCY)


def create(path: str, data: bytes = b"", flags: int = 0, opcode: int = OpCode.CREATE):  # type: ignore[no-untyped-def]
    return (opcode, create_op(path, data, flags=flags, opcode=opcode))


def results(result) -> tuple[OpResult, ...]:  # type: ignore[no-untyped-def]
    assert result.err == OK
    assert isinstance(result.body, MultiResponse)
    return result.body.results


def test_20_empty_multi() -> None:
    h = Harness()
    result = h.multi()
    assert (result.err, result.body, result.events) == (OK, MultiResponse(results=()), ())
    assert h.tree.last_zxid == h.zxid


def test_21_failure_in_the_middle_rolls_back_everything() -> None:
    h = Harness()
    h.create("/a", b"orig")
    before = h.stat("/a")
    result = h.multi(
        create("/c"),
        set_data_op("/a", b"new"),
        check_op("/a", 99),
        create("/d"),
        delete_op("/a"),
    )
    assert results(result) == (
        ROLLED_BACK,
        ROLLED_BACK,
        OpResult(type=-1, err=ErrorCode.BAD_VERSION),
        INCONSISTENT,
        INCONSISTENT,
    )
    assert result.events == ()
    assert h.tree.get("/c") is None
    assert h.stat("/a") == before
    assert h.get_data("/a")[1] == GetDataResponse(data=b"orig", stat=before)


def test_22_first_op_fails() -> None:
    h = Harness()
    h.create("/x")
    count = h.tree.node_count
    result = h.multi(create("/x"), create("/new"))
    assert results(result) == (OpResult(type=-1, err=ErrorCode.NODE_EXISTS), INCONSISTENT)
    assert h.tree.node_count == count


def test_23_ops_see_earlier_ops() -> None:
    h = Harness()
    result = h.multi(
        create("/P"),
        create("/P/c"),
        set_data_op("/P/c", b"v1"),
        check_op("/P/c", 1),
        delete_op("/P/c"),
        delete_op("/P"),
    )
    types = [r.type for r in results(result)]
    assert types == [1, 1, 5, 13, 2, 2]
    assert all(r.err == 0 for r in results(result))
    assert h.tree.get("/P") is None
    assert [(e.type, e.path) for e in result.events] == [
        (EventType.NODE_CREATED, "/P"),
        (EventType.NODE_CHILDREN_CHANGED, "/"),
        (EventType.NODE_CREATED, "/P/c"),
        (EventType.NODE_CHILDREN_CHANGED, "/P"),
        (EventType.NODE_DATA_CHANGED, "/P/c"),
        (EventType.NODE_DELETED, "/P/c"),
        (EventType.NODE_CHILDREN_CHANGED, "/P"),
        (EventType.NODE_DELETED, "/P"),
        (EventType.NODE_CHILDREN_CHANGED, "/"),
    ]


def test_24_delete_then_recreate() -> None:
    h = Harness()
    h.create("/X", b"old")
    old = h.stat("/X")
    result = h.multi(delete_op("/X"), create("/X", b"new"))
    assert [r.type for r in results(result)] == [2, 1]
    new = h.stat("/X")
    assert new.czxid == h.zxid != old.czxid
    assert h.get_data("/X")[1] == GetDataResponse(data=b"new", stat=new)


def test_27_success_result_types() -> None:
    h = Harness(extended_types_enabled=True)
    h.create("/a")
    result = h.multi(
        create("/c1", opcode=OpCode.CREATE),
        create("/c2", opcode=OpCode.CREATE2),
        create("/c3", opcode=OpCode.CREATE_CONTAINER),
        (OpCode.CREATE_TTL, create_op("/c4", flags=5, opcode=OpCode.CREATE_TTL, ttl_ms=100)),
        set_data_op("/a", b"x"),
        check_op("/a", 1),
        delete_op("/c1"),
    )
    out = results(result)
    assert out[0] == OpResult(type=1, body=CreateResponse(path="/c1"))
    for index, path in ((1, "/c2"), (2, "/c3"), (3, "/c4")):
        assert out[index] == OpResult(type=15, body=Create2Response(path=path, stat=h.stat(path)))
    assert out[4] == OpResult(type=5, body=StatResponse(stat=h.stat("/a")))
    assert out[5] == OpResult(type=13)
    assert out[6] == OpResult(type=2)
    # The reply encodes and decodes as ZooKeeper's MultiResponse.
    assert MultiResponse.from_bytes(result.body.to_bytes()) == result.body  # type: ignore[union-attr]


def test_28_check_forms() -> None:
    h = Harness()
    h.create("/a")
    assert results(h.multi(check_op("/a", -1))) == (OpResult(type=13),)
    assert results(h.multi(check_op("/missing", -1))) == (OpResult(type=-1, err=ErrorCode.NO_NODE),)
    assert results(h.multi(check_op("noslash", -1))) == (
        OpResult(type=-1, err=ErrorCode.BAD_ARGUMENTS),
    )


def test_29_one_zxid_and_time_for_all_ops() -> None:
    h = Harness()
    h.multi(create("/a"), create("/b"), create("/a/c"))
    stats = [h.stat(p) for p in ("/a", "/b", "/a/c")]
    assert {s.czxid for s in stats} == {h.zxid}
    assert {s.ctime_ms for s in stats} == {h.time_ms}
    assert h.stat("/a").pzxid == h.zxid


def test_15_sequential_creates_in_one_multi_are_consecutive() -> None:
    h = Harness()
    h.create("/q")
    out = results(h.multi(create("/q/n", flags=2), create("/q/n", flags=2)))
    assert [r.body.path for r in out] == ["/q/n0000000000", "/q/n0000000001"]  # type: ignore[union-attr]


def test_16_failed_multi_does_not_advance_the_suffix() -> None:
    h = Harness()
    h.create("/q")
    failed = h.multi(create("/q/n", flags=2), create("/q/n", flags=2), check_op("/q", 5))
    assert results(failed)[2].err == ErrorCode.BAD_VERSION
    assert h.stat("/q").cversion == 0
    assert h.stat("/q").pzxid == h.stat("/q").czxid
    assert h.create("/q/n", flags=2).body.path == "/q/n0000000000"  # type: ignore[union-attr]


def test_30_failed_multi_fires_nothing_even_for_earlier_ops() -> None:
    h = Harness()
    h.create("/a")
    result = h.multi(set_data_op("/a", b"1"), delete_op("/a"), create("/a/x"))
    assert results(result)[2].err == ErrorCode.NO_NODE
    assert result.events == ()
    assert h.tree.get("/a") is not None


def test_rollback_restores_deleted_ephemerals_and_gauges() -> None:
    h = Harness()
    h.create("/e", b"data", flags=1)
    h.create("/p", b"12345")
    gauges = (h.tree.node_count, h.tree.ephemeral_count, h.tree.approximate_data_size)
    before = {p: h.stat(p) for p in ("/", "/e", "/p")}
    result = h.multi(
        delete_op("/e"), set_data_op("/p", b"x" * 50), create("/n", b"abc"), check_op("/", 9)
    )
    assert results(result)[3].err == ErrorCode.BAD_VERSION
    assert (h.tree.node_count, h.tree.ephemeral_count, h.tree.approximate_data_size) == gauges
    assert {p: h.stat(p) for p in ("/", "/e", "/p")} == before
    assert h.tree.ephemerals(h_session(h)) == frozenset({"/e"})


def h_session(h: Harness) -> int:
    (session_id,) = h.tree.sessions
    return session_id


def test_rollback_restores_acl_free_multi_state_and_later_ops_still_work() -> None:
    h = Harness()
    h.multi(create("/a"), create("/a"))  # fails on the 2nd
    assert h.tree.get("/a") is None
    assert h.multi(create("/a"), create("/a/b")).events != ()
    assert h.stat("/a").num_children == 1


@pytest.mark.parametrize("flags", [7, -1])
def test_invalid_create_flags_fail_the_whole_multi(flags: int) -> None:
    h = Harness()
    result = h.multi(create("/ok"), create("/bad", flags=flags))
    assert (result.err, result.body, result.events) == (ErrorCode.MARSHALLING_ERROR, None, ())
    assert h.tree.get("/ok") is None


def test_ttl_disabled_inside_multi_is_a_per_op_error() -> None:
    h = Harness()
    ttl = (OpCode.CREATE_TTL, create_op("/t", flags=5, opcode=OpCode.CREATE_TTL, ttl_ms=10))
    assert results(h.multi(create("/a"), ttl)) == (
        ROLLED_BACK,
        OpResult(type=-1, err=ErrorCode.UNIMPLEMENTED),
    )


def test_25_read_op_inside_multi_is_marshalling_error() -> None:
    h = Harness()
    get = (OpCode.GET_DATA, GetDataRequest(path="/", watch=False))
    result = h.multi(create("/a"), get)
    assert (result.err, result.body, result.events) == (ErrorCode.MARSHALLING_ERROR, None, ())
    assert h.tree.get("/a") is None
    write_in_read = MultiRequest(ops=(get, create("/a")))
    assert h.read(OpCode.MULTI_READ, write_in_read) == (ErrorCode.MARSHALLING_ERROR, None)


def test_26_multi_read_is_not_atomic() -> None:
    h = Harness()
    h.create("/a", b"data")
    h.create("/a/k")
    request = MultiRequest(
        ops=(
            (OpCode.GET_DATA, GetDataRequest(path="/a", watch=True)),
            (OpCode.GET_CHILDREN, GetChildrenRequest(path="/a", watch=True)),
            (OpCode.GET_DATA, GetDataRequest(path="/missing", watch=False)),
            (OpCode.GET_CHILDREN, GetChildrenRequest(path="/missing", watch=False)),
        )
    )
    zxid = h.tree.last_zxid
    err, body = h.read(OpCode.MULTI_READ, request)
    assert err == OK
    assert body == MultiResponse(
        results=(
            OpResult(type=4, body=GetDataResponse(data=b"data", stat=h.stat("/a"))),
            OpResult(type=8, body=GetChildrenResponse(children=("k",))),
            OpResult(type=-1, err=ErrorCode.NO_NODE),
            OpResult(type=-1, err=ErrorCode.NO_NODE),
        )
    )
    assert h.tree.last_zxid == zxid


def test_multi_read_permissions_per_op() -> None:
    from corral.protocol.records import ACL, Id

    h = Harness()
    h.create("/open", b"o")
    h.create("/closed", acl=(ACL(perms=0, id=Id(scheme="world", id="anyone")),))
    request = MultiRequest(
        ops=(
            (OpCode.GET_DATA, GetDataRequest(path="/closed", watch=False)),
            (OpCode.GET_DATA, GetDataRequest(path="/open", watch=False)),
        )
    )
    _, body = h.read(OpCode.MULTI_READ, request)
    assert isinstance(body, MultiResponse)
    assert body.results[0] == OpResult(type=-1, err=ErrorCode.NO_AUTH)
    assert body.results[1].type == 4


def test_multi_events_carry_acls() -> None:
    h = Harness()
    result = h.multi(create("/a"), set_data_op("/a", b"x"))
    assert result.events[-1] == TreeEvent(
        type=EventType.NODE_DATA_CHANGED, path="/a", acl=OPEN_ACL_UNSAFE
    )
