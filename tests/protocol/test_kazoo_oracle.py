"""kazoo's own serializer as a second oracle: what kazoo sends decodes to the records we
expect, and what corral sends kazoo reads back as the same values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.constants import OpCode
from corral.protocol.records import (
    ACL,
    AuthPacket,
    CheckVersionRequest,
    ConnectRequest,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    GetACLResponse,
    GetDataRequest,
    GetDataResponse,
    Id,
    MultiRequest,
    MultiResponse,
    OpResult,
    ReconfigRequest,
    SetDataRequest,
    Stat,
    StatResponse,
)

from .strategies import INT32, stats

kazoo_serialization = pytest.importorskip("kazoo.protocol.serialization")
kazoo_security = pytest.importorskip("kazoo.security")
k = kazoo_serialization

OPEN = [kazoo_security.ACL(31, kazoo_security.Id("world", "anyone"))]
CORRAL_OPEN = (ACL(perms=31, id=Id(scheme="world", id="anyone")),)


def test_connect() -> None:
    data = bytes(k.Connect(0, 7, 30_000, 0x0100000A8F490000, b"p" * 16, True).serialize())
    assert ConnectRequest.from_bytes(data) == ConnectRequest(
        protocol_version=0,
        last_zxid_seen=7,
        timeout_ms=30_000,
        session_id=0x0100000A8F490000,
        password=b"p" * 16,
        read_only=True,
    )


@settings(max_examples=40, deadline=None, print_blob=True)
@given(
    path=st.text(min_size=1, max_size=10).map(lambda s: "/" + s),
    data=st.binary(max_size=10),
    flags=st.integers(0, 6),
)
def test_create_and_set_data(path: str, data: bytes, flags: int) -> None:
    create = bytes(k.Create(path, data, OPEN, flags).serialize())
    assert CreateRequest.from_bytes(create) == CreateRequest(
        path=path, data=data, acl=CORRAL_OPEN, flags=flags
    )
    set_data = bytes(k.SetData(path, data, -1).serialize())
    assert SetDataRequest.from_bytes(set_data) == SetDataRequest(path=path, data=data, version=-1)


def test_kazoo_empty_strings_arrive_as_null_and_read_as_empty() -> None:
    acl = [kazoo_security.ACL(31, kazoo_security.Id("auth", ""))]
    request = CreateRequest.from_bytes(bytes(k.Create("/a", None, acl, 0).serialize()))
    assert request.acl == (ACL(perms=31, id=Id(scheme="auth", id="")),)
    assert request.data is None


def test_get_data_watch_flag() -> None:
    for watcher, watch in ((None, False), (print, True)):
        data = bytes(k.GetData("/a", watcher).serialize())
        assert GetDataRequest.from_bytes(data) == GetDataRequest(path="/a", watch=watch)


def test_transaction() -> None:
    data = bytes(
        k.Transaction(
            [
                k.Create("/t", b"v", OPEN, 0),
                k.Delete("/t", 3),
                k.SetData("/u", b"w", 1),
                k.CheckVersion("/u", 2),
            ]
        ).serialize()
    )
    assert MultiRequest.from_bytes(data) == MultiRequest(
        ops=(
            (OpCode.CREATE, CreateRequest(path="/t", data=b"v", acl=CORRAL_OPEN, flags=0)),
            (OpCode.DELETE, DeleteRequest(path="/t", version=3)),
            (OpCode.SET_DATA, SetDataRequest(path="/u", data=b"w", version=1)),
            (OpCode.CHECK, CheckVersionRequest(path="/u", version=2)),
        )
    )


def test_auth_and_reconfig() -> None:
    auth = bytes(k.Auth(0, "digest", "user:pass").serialize())
    assert AuthPacket.from_bytes(auth) == AuthPacket(type=0, scheme="digest", auth=b"user:pass")
    reconfig = bytes(k.Reconfig(None, None, "server.1=a:1:2;3", -1).serialize())
    assert ReconfigRequest.from_bytes(reconfig) == ReconfigRequest(
        joining_servers=None, leaving_servers=None, new_members="server.1=a:1:2;3", cur_config_id=-1
    )


@settings(max_examples=40, deadline=None, print_blob=True)
@given(stat=stats, data=st.none() | st.binary(max_size=10))
def test_kazoo_reads_our_get_data_and_stat(stat: Stat, data: bytes | None) -> None:
    value, znode_stat = k.GetData.deserialize(GetDataResponse(data=data, stat=stat).to_bytes(), 0)
    assert value == data
    assert tuple(znode_stat) == (
        stat.czxid,
        stat.mzxid,
        stat.ctime_ms,
        stat.mtime_ms,
        stat.version,
        stat.cversion,
        stat.aversion,
        stat.ephemeral_owner,
        stat.data_length,
        stat.num_children,
        stat.pzxid,
    )


@settings(max_examples=20, deadline=None, print_blob=True)
@given(stat=stats, err=INT32.filter(lambda e: e != 0))
def test_kazoo_reads_our_multi_response(stat: Stat, err: int) -> None:
    body = MultiResponse(
        results=(
            OpResult(type=OpCode.CREATE, body=CreateResponse(path="/t")),
            OpResult(type=OpCode.DELETE),
            OpResult(type=OpCode.SET_DATA, body=StatResponse(stat=stat)),
            OpResult(type=OpCode.CHECK),
        )
    )
    results = k.Transaction.deserialize(body.to_bytes(), 0)
    assert results[0] == "/t"
    assert results[1] is True
    assert results[2].mzxid == stat.mzxid
    assert results[3] is True
    failed = MultiResponse(results=(OpResult(type=-1, err=0), OpResult(type=-1, err=-103)))
    kinds = [type(r).__name__ for r in k.Transaction.deserialize(failed.to_bytes(), 0)]
    assert kinds == ["RolledBackError", "BadVersionError"]


def test_kazoo_reads_our_acl_reply() -> None:
    body = GetACLResponse(
        acl=(ACL(perms=31, id=Id(scheme="digest", id="user:x")),),
        stat=StatResponse.from_bytes(bytes(68)).stat,
    )
    acls, _ = k.GetACL.deserialize(body.to_bytes(), 0)
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [(31, "digest", "user:x")]
