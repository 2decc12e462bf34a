"""The captured byte vectors of wire-protocol.md §10 (ZooKeeper 3.8.0), both directions.

Client frames are decoded with ServerConnection and server frames with ClientConnection;
where corral must produce the same bytes, the re-encoding is compared byte for byte.
"""

from __future__ import annotations

import pytest

from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    BadRequest,
    ClientConnection,
    Connect,
    Connected,
    FourLetterWord,
    Notification,
    Reply,
    Request,
    ServerConnection,
    encode_connect_response,
    encode_notification,
    encode_reply,
)
from corral.protocol.constants import (
    AddWatchMode,
    CreateMode,
    ErrorCode,
    EventType,
    KeeperState,
    OpCode,
    SpecialXid,
    WatcherType,
)
from corral.protocol.errors import FrameError
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    AddWatchRequest,
    AuthPacket,
    CheckVersionRequest,
    ClientInfo,
    ConnectRequest,
    ConnectResponse,
    Create2Response,
    CreateRequest,
    CreateResponse,
    CreateTTLRequest,
    DeleteRequest,
    ErrorResponse,
    ExistsRequest,
    GetACLRequest,
    GetACLResponse,
    GetAllChildrenNumberResponse,
    GetChildrenRequest,
    GetDataRequest,
    GetDataResponse,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    Id,
    MultiRequest,
    MultiResponse,
    OpResult,
    PathRecord,
    ReconfigRequest,
    Record,
    SetDataRequest,
    SetWatches,
    Stat,
    StatResponse,
    WatcherEvent,
    WatchesRequest,
    WhoAmIResponse,
)

from .vectors_util import connected_client, connected_server, drain_client, h

# --------------------------------------------------------------------------- helpers


def decode_client_frame(data: bytes) -> Request | BadRequest:
    """The one event a connected server makes of one captured client frame."""
    server = connected_server()
    server.receive_data(data)
    event = server.next_event()
    assert isinstance(event, Request | BadRequest), event
    assert server.next_event() is NEED_DATA  # the frame was consumed exactly
    return event


def decode_replies(
    sent: list[tuple[int, int, Record | None]], data: bytes
) -> list[Reply | Notification]:
    """The events a connected client makes of captured server frames, after sending `sent`."""
    client = connected_client()
    for xid, opcode, request in sent:
        client.send_request(xid, opcode, request)
    client.receive_data(data)
    events = drain_client(client)
    assert events[-1] is NEED_DATA
    replies = events[:-1]
    for event in replies:
        assert isinstance(event, Reply | Notification), event
    return replies  # type: ignore[return-value]


def sent_bytes(xid: int, opcode: int, request: Record | None = None) -> bytes:
    return ClientConnection().send_request(xid, opcode, request)


def stat(**fields: int) -> Stat:
    values = dict.fromkeys(
        (
            "czxid mzxid ctime_ms mtime_ms version cversion aversion ephemeral_owner "
            "data_length num_children pzxid"
        ).split(),
        0,
    )
    values.update(fields)
    return Stat(**values)


# --------------------------------------------------------------------------- 10.1 handshake

NEW_REQUEST = h(
    "0000002d | 00000000 | 0000000000000000 | 00007530 | 0000000000000000 |"
    " 00000010 00000000000000000000000000000000 | 01"
)
NEW_RESPONSE = h(
    "00000025 | 00000000 | 00007530 | 0100000a8f490000 |"
    " 00000010 5d7d447526201c7b03a0e4eedf1b81d1 | 00"
)


def test_handshake_new_session_with_read_only_byte() -> None:
    server = ServerConnection()
    server.receive_data(NEW_REQUEST)
    event = server.next_event()
    expected = ConnectRequest(
        protocol_version=0,
        last_zxid_seen=0,
        timeout_ms=30_000,
        session_id=0,
        password=bytes(16),
        read_only=True,
    )
    assert event == Connect(request=expected)
    assert server.next_event() is NEED_DATA
    assert ClientConnection().connect(expected) == NEW_REQUEST

    response = ConnectResponse(
        protocol_version=0,
        timeout_ms=30_000,
        session_id=0x0100000A8F490000,
        password=bytes.fromhex("5d7d447526201c7b03a0e4eedf1b81d1"),
        read_only=False,
    )
    assert encode_connect_response(response) == NEW_RESPONSE
    client = ClientConnection()
    client.receive_data(NEW_RESPONSE)
    assert client.next_event() == Connected(response=response)
    assert client.next_event() is NEED_DATA


def test_handshake_old_client_without_read_only_byte() -> None:
    request_bytes = h(
        "0000002c 00000000 0000000000000000 000003e8 0000000000000000"
        " 00000010 00000000000000000000000000000000"
    )
    response_bytes = h(
        "00000024 00000000 00000fa0 0100000a8f490002 00000010 373b5075e6885df1191a1698380a5837"
    )
    server = ServerConnection()
    server.receive_data(request_bytes)
    event = server.next_event()
    assert isinstance(event, Connect)
    assert event.request.read_only is None
    assert event.request.timeout_ms == 1000
    assert event.request.password == bytes(16)
    assert ClientConnection().connect(event.request) == request_bytes

    # The reply mirrors the absence of the byte: 36 bytes.
    response = ConnectResponse(
        protocol_version=0,
        timeout_ms=4000,
        session_id=0x0100000A8F490002,
        password=bytes.fromhex("373b5075e6885df1191a1698380a5837"),
        read_only=event.request.read_only,
    )
    assert encode_connect_response(response) == response_bytes
    client = ClientConnection()
    client.receive_data(response_bytes)
    assert client.next_event() == Connected(response=response)


def test_handshake_expired_session() -> None:
    request_bytes = h(
        "0000002d 00000000 0000000000000000 00007530 0100000a8f490000"
        " 00000010 5d7d447526201c7b03a0e4eedf1b81d1 01"
    )
    response_bytes = h(
        "00000025 | 00000000 | 00000000 | 0000000000000000 |"
        " 00000010 00000000000000000000000000000000 | 00"
    )
    server = ServerConnection()
    server.receive_data(request_bytes)
    event = server.next_event()
    assert isinstance(event, Connect)
    assert event.request.session_id == 0x0100000A8F490000
    assert event.request.password == bytes.fromhex("5d7d447526201c7b03a0e4eedf1b81d1")
    assert event.request.read_only is True
    invalid = ConnectResponse(
        protocol_version=0, timeout_ms=0, session_id=0, password=bytes(16), read_only=False
    )
    assert encode_connect_response(invalid) == response_bytes
    client = ClientConnection()
    client.receive_data(response_bytes)
    assert client.next_event() == Connected(response=invalid)


def test_handshake_java_zkcli() -> None:
    data = h(
        "0000002d000000000000000000000000000075300000000000000000000000100000000000000000000000000000000000"
    )
    server = ServerConnection()
    server.receive_data(data)
    event = server.next_event()
    assert isinstance(event, Connect)
    assert event.request.read_only is False
    assert event.request.timeout_ms == 30_000
    assert event.request.session_id == 0


# --------------------------------------------------------------------------- 10.2 create

CREATE_REQUEST = h(
    "00000038 | 00000001 00000001 | 00000007 2f636f7272616c | 00000002 6869 |"
    " 00000001 0000001f 00000005 776f726c64 00000006 616e796f6e65 | 00000000"
)
CREATE2_STAT = stat(
    czxid=3,
    mzxid=3,
    ctime_ms=0x1A216B0C4A7,
    mtime_ms=0x1A216B0C4A7,
    ephemeral_owner=0x0100000A8F490000,
    pzxid=3,
)


def test_create() -> None:
    request = CreateRequest(path="/corral", data=b"hi", acl=OPEN_ACL_UNSAFE, flags=0)
    assert decode_client_frame(CREATE_REQUEST) == Request(
        xid=1, opcode=OpCode.CREATE, request=request, size=len(CREATE_REQUEST) - 4
    )
    assert sent_bytes(1, OpCode.CREATE, request) == CREATE_REQUEST

    reply = h("0000001b | 00000001 0000000000000002 00000000 | 00000007 2f636f7272616c")
    body = CreateResponse(path="/corral")
    assert encode_reply(1, 2, 0, body) == reply
    assert decode_replies([(1, OpCode.CREATE, request)], reply) == [
        Reply(xid=1, opcode=OpCode.CREATE, zxid=2, err=0, body=body)
    ]


def test_create2_ephemeral_sequential_with_stat() -> None:
    data = h(
        "0000003b 00000002 0000000f 0000000c 2f636f7272616c2f7365712d 00000000 00000001"
        " 0000001f 00000005 776f726c64 00000006 616e796f6e65 00000003"
    )
    request = CreateRequest(
        path="/corral/seq-", data=b"", acl=OPEN_ACL_UNSAFE, flags=CreateMode.EPHEMERAL_SEQUENTIAL
    )
    event = decode_client_frame(data)
    assert event == Request(xid=2, opcode=OpCode.CREATE2, request=request, size=len(data) - 4)
    assert isinstance(event, Request)
    assert isinstance(event.request, CreateRequest)
    assert event.request.data == b""  # empty, not null
    assert sent_bytes(2, OpCode.CREATE2, request) == data

    reply = h(
        "0000006e | 00000002 0000000000000003 00000000 |"
        " 00000016 2f636f7272616c2f7365712d30303030303030303030 |"
        " 0000000000000003 0000000000000003 000001a216b0c4a7 000001a216b0c4a7 00000000 00000000"
        " 00000000 0100000a8f490000 00000000 00000000 0000000000000003"
    )
    body = Create2Response(path="/corral/seq-0000000000", stat=CREATE2_STAT)
    assert encode_reply(2, 3, 0, body) == reply
    assert decode_replies([(2, OpCode.CREATE2, request)], reply) == [
        Reply(xid=2, opcode=OpCode.CREATE2, zxid=3, err=0, body=body)
    ]


def test_error_reply_is_header_only() -> None:
    reply = h("00000010 00000003 0000000000000004 ffffff92")
    # Even when a body is passed, an error reply carries none.
    assert encode_reply(3, 4, ErrorCode.NODE_EXISTS, CreateResponse(path="/corral")) == reply
    assert encode_reply(3, 4, ErrorCode.NODE_EXISTS) == reply
    request = CreateRequest(path="/corral", data=b"hi", acl=OPEN_ACL_UNSAFE, flags=0)
    assert decode_replies([(3, OpCode.CREATE, request)], reply) == [
        Reply(xid=3, opcode=OpCode.CREATE, zxid=4, err=ErrorCode.NODE_EXISTS, body=None)
    ]


# --------------------------------------------------------------------------- 10.3 getData, ping

GET_DATA_STAT = stat(
    czxid=2,
    mzxid=2,
    ctime_ms=0x1A216B0C493,
    mtime_ms=0x1A216B0C493,
    cversion=1,
    data_length=2,
    num_children=1,
    pzxid=3,
)


def test_get_data_with_watch() -> None:
    data = h("00000014 | 00000004 00000004 | 00000007 2f636f7272616c | 01")
    request = GetDataRequest(path="/corral", watch=True)
    assert decode_client_frame(data) == Request(
        xid=4, opcode=OpCode.GET_DATA, request=request, size=len(data) - 4
    )
    assert sent_bytes(4, OpCode.GET_DATA, request) == data

    reply = h(
        "0000005a | 00000004 0000000000000004 00000000 | 00000002 6869 |"
        " 0000000000000002 0000000000000002 000001a216b0c493 000001a216b0c493 00000000 00000001"
        " 00000000 0000000000000000 00000002 00000001 0000000000000003"
    )
    body = GetDataResponse(data=b"hi", stat=GET_DATA_STAT)
    assert encode_reply(4, 4, 0, body) == reply
    assert decode_replies([(4, OpCode.GET_DATA, request)], reply) == [
        Reply(xid=4, opcode=OpCode.GET_DATA, zxid=4, err=0, body=body)
    ]


def test_get_data_null_data_is_length_minus_one() -> None:
    body = GetDataResponse(data=None, stat=GET_DATA_STAT)
    encoded = body.to_bytes()
    assert encoded[:4] == h("ffffffff")
    assert GetDataResponse.from_bytes(encoded).data is None
    assert GetDataResponse.from_bytes(h("00000000") + GET_DATA_STAT.to_bytes()).data == b""


def test_ping() -> None:
    data = h("00000008 fffffffe 0000000b")
    assert decode_client_frame(data) == Request(
        xid=SpecialXid.PING, opcode=OpCode.PING, request=None, size=len(data) - 4
    )
    assert sent_bytes(SpecialXid.PING, OpCode.PING) == data
    reply = h("00000010 fffffffe 0000000000000004 00000000")
    assert encode_reply(SpecialXid.PING, 4, 0) == reply
    assert decode_replies([(SpecialXid.PING, OpCode.PING, None)], reply) == [
        Reply(xid=SpecialXid.PING, opcode=OpCode.PING, zxid=4, err=0, body=None)
    ]


def test_ping_reply_xid_is_minus_two_whatever_the_request_xid() -> None:
    reply = h("00000010 fffffffe 0000000000000004 00000000")
    assert decode_replies([(77, OpCode.PING, None)], reply) == [
        Reply(xid=SpecialXid.PING, opcode=OpCode.PING, zxid=4, err=0, body=None)
    ]


def test_exists_no_node() -> None:
    reply = h("00000010 00000005 0000000000000004 ffffff9b")
    request = ExistsRequest(path="/missing", watch=True)
    assert encode_reply(5, 4, ErrorCode.NO_NODE) == reply
    assert decode_replies([(5, OpCode.EXISTS, request)], reply) == [
        Reply(xid=5, opcode=OpCode.EXISTS, zxid=4, err=ErrorCode.NO_NODE, body=None)
    ]


# --------------------------------------------------------------------------- 10.4 setData, event

CORRAL_CHANGED = h(
    "00000023 | ffffffff ffffffffffffffff 00000000 | 00000003 00000003 00000007 2f636f7272616c"
)


def test_set_data_and_notification() -> None:
    data = h("0000001e | 00000001 00000005 | 00000007 2f636f7272616c | 00000003 6e6577 | ffffffff")
    request = SetDataRequest(path="/corral", data=b"new", version=-1)
    assert decode_client_frame(data) == Request(
        xid=1, opcode=OpCode.SET_DATA, request=request, size=len(data) - 4
    )
    assert sent_bytes(1, OpCode.SET_DATA, request) == data

    reply = h(
        "00000054 | 00000001 0000000000000006 00000000 |"
        " 0000000000000002 0000000000000006 000001a216b0c493 000001a216b0c4cc 00000001 00000001"
        " 00000000 0000000000000000 00000003 00000001 0000000000000003"
    )
    body = StatResponse(
        stat=stat(
            czxid=2,
            mzxid=6,
            ctime_ms=0x1A216B0C493,
            mtime_ms=0x1A216B0C4CC,
            version=1,
            cversion=1,
            data_length=3,
            num_children=1,
            pzxid=3,
        )
    )
    assert encode_reply(1, 6, 0, body) == reply
    assert decode_replies([(1, OpCode.SET_DATA, request)], reply) == [
        Reply(xid=1, opcode=OpCode.SET_DATA, zxid=6, err=0, body=body)
    ]

    event = WatcherEvent(
        type=EventType.NODE_DATA_CHANGED, state=KeeperState.SYNC_CONNECTED, path="/corral"
    )
    assert encode_notification(event, -1) == CORRAL_CHANGED
    # A notification needs no request in flight and does not consume one.
    assert decode_replies([], CORRAL_CHANGED) == [Notification(zxid=-1, event=event)]


# --------------------------------------------------------------------------- 10.5-10.7 multi

FAILING_MULTI = h(
    "00000081 | 00000002 0000000e"
    " | 00000001 00 ffffffff | 0000000a 2f636f7272616c2f6d31 00000000 00000001 0000001f"
    "   00000005 776f726c64 00000006 616e796f6e65 00000000"
    " | 0000000d 00 ffffffff | 00000007 2f636f7272616c 00000063"
    " | 00000005 00 ffffffff | 00000007 2f636f7272616c 00000002 7a7a ffffffff"
    " | ffffffff 01 ffffffff"
)
FAILING_MULTI_OPS = MultiRequest(
    ops=(
        (OpCode.CREATE, CreateRequest(path="/corral/m1", data=b"", acl=OPEN_ACL_UNSAFE, flags=0)),
        (OpCode.CHECK, CheckVersionRequest(path="/corral", version=99)),
        (OpCode.SET_DATA, SetDataRequest(path="/corral", data=b"zz", version=-1)),
    )
)


def test_failing_multi() -> None:
    assert decode_client_frame(FAILING_MULTI) == Request(
        xid=2, opcode=OpCode.MULTI, request=FAILING_MULTI_OPS, size=len(FAILING_MULTI) - 4
    )
    assert sent_bytes(2, OpCode.MULTI, FAILING_MULTI_OPS) == FAILING_MULTI

    reply = h(
        "00000040 | 00000002 0000000000000007 00000000"
        " | ffffffff 00 00000000 | 00000000"
        " | ffffffff 00 ffffff99 | ffffff99"
        " | ffffffff 00 fffffffe | fffffffe"
        " | ffffffff 01 ffffffff"
    )
    body = MultiResponse(
        results=(
            OpResult(type=-1, err=ErrorCode.OK),
            OpResult(type=-1, err=ErrorCode.BAD_VERSION),
            OpResult(type=-1, err=ErrorCode.RUNTIME_INCONSISTENCY),
        )
    )
    assert encode_reply(2, 7, 0, body) == reply
    assert decode_replies([(2, OpCode.MULTI, FAILING_MULTI_OPS)], reply) == [
        Reply(xid=2, opcode=OpCode.MULTI, zxid=7, err=0, body=body)
    ]


M2_STAT = stat(
    czxid=8,
    mzxid=8,
    ctime_ms=0x1A216B0C4E0,
    mtime_ms=0x1A216B0C4E0,
    version=1,
    data_length=1,
    pzxid=8,
)
SUCCESSFUL_MULTI_REPLY = h(
    "000000a6 | 00000003 0000000000000008 00000000"
    " | 00000001 00 00000000 | 0000000a 2f636f7272616c2f6d32"
    " | 0000000d 00 00000000"
    " | 00000005 00 00000000 | 0000000000000008 0000000000000008 000001a216b0c4e0 000001a216b0c4e0"
    "   00000001 00000000 00000000 0000000000000000 00000001 00000000 0000000000000008"
    " | 00000001 00 00000000 | 0000000a 2f636f7272616c2f6d33"
    " | 00000002 00 00000000"
    " | ffffffff 01 ffffffff"
)


def test_successful_multi_as_captured_from_3_8() -> None:
    request = MultiRequest(
        ops=(
            (
                OpCode.CREATE,
                CreateRequest(path="/corral/m2", data=b"a", acl=OPEN_ACL_UNSAFE, flags=0),
            ),
            (OpCode.CHECK, CheckVersionRequest(path="/corral/m2", version=0)),
            (OpCode.SET_DATA, SetDataRequest(path="/corral/m2", data=b"b", version=0)),
            (
                OpCode.CREATE2,
                CreateRequest(path="/corral/m3", data=b"", acl=OPEN_ACL_UNSAFE, flags=0),
            ),
            (OpCode.DELETE, DeleteRequest(path="/corral/m3", version=-1)),
        )
    )
    # 3.8 answered the create2 op with a type-1 result; corral encodes what it is given.
    body = MultiResponse(
        results=(
            OpResult(type=OpCode.CREATE, body=CreateResponse(path="/corral/m2")),
            OpResult(type=OpCode.CHECK),
            OpResult(type=OpCode.SET_DATA, body=StatResponse(stat=M2_STAT)),
            OpResult(type=OpCode.CREATE, body=CreateResponse(path="/corral/m3")),
            OpResult(type=OpCode.DELETE),
        )
    )
    assert decode_replies([(3, OpCode.MULTI, request)], SUCCESSFUL_MULTI_REPLY) == [
        Reply(xid=3, opcode=OpCode.MULTI, zxid=8, err=0, body=body)
    ]
    assert encode_reply(3, 8, 0, body) == SUCCESSFUL_MULTI_REPLY


def test_multi_create2_result_with_stat_3_9_style() -> None:
    # 3.9+ (corral's target) answers create2/createTTL/createContainer with type 15 + Stat.
    m3_stat = stat(czxid=8, mzxid=8, pzxid=8)
    body = MultiResponse(
        results=(
            OpResult(type=OpCode.CREATE2, body=Create2Response(path="/mt", stat=m3_stat)),
            OpResult(type=OpCode.CREATE2, body=Create2Response(path="/mc", stat=m3_stat)),
        )
    )
    expected = (
        h("0000000f 00 00000000 | 00000003 2f6d74")
        + m3_stat.to_bytes()
        + h("0000000f 00 00000000 | 00000003 2f6d63")
        + m3_stat.to_bytes()
        + h("ffffffff 01 ffffffff")
    )
    assert body.to_bytes() == expected
    assert MultiResponse.from_bytes(expected) == body
    request = MultiRequest(
        ops=(
            (
                OpCode.CREATE_TTL,
                CreateTTLRequest(
                    path="/mt",
                    data=b"",
                    acl=OPEN_ACL_UNSAFE,
                    flags=CreateMode.PERSISTENT_WITH_TTL,
                    ttl_ms=10_000,
                ),
            ),
            (
                OpCode.CREATE_CONTAINER,
                CreateRequest(
                    path="/mc", data=b"", acl=OPEN_ACL_UNSAFE, flags=CreateMode.CONTAINER
                ),
            ),
        )
    )
    frame_bytes = sent_bytes(9, OpCode.MULTI, request)
    assert decode_client_frame(frame_bytes) == Request(
        xid=9, opcode=OpCode.MULTI, request=request, size=len(frame_bytes) - 4
    )


def test_empty_multi() -> None:
    data = h("00000011 00000005 0000000e ffffffff01ffffffff")
    assert decode_client_frame(data) == Request(
        xid=5, opcode=OpCode.MULTI, request=MultiRequest(ops=()), size=len(data) - 4
    )
    assert sent_bytes(5, OpCode.MULTI, MultiRequest()) == data
    reply = h("00000019 00000005 0000000000000009 00000000 ffffffff01ffffffff")
    assert encode_reply(5, 9, 0, MultiResponse()) == reply
    assert decode_replies([(5, OpCode.MULTI, MultiRequest())], reply) == [
        Reply(xid=5, opcode=OpCode.MULTI, zxid=9, err=0, body=MultiResponse(results=()))
    ]


def test_multi_read() -> None:
    data = h(
        "0000003f | 00000004 00000016"
        " | 00000004 00 ffffffff 0000000a 2f636f7272616c2f6d32 00"
        " | 00000008 00 ffffffff 00000008 2f6d697373696e67 00"
        " | ffffffff 01 ffffffff"
    )
    request = MultiRequest(
        ops=(
            (OpCode.GET_DATA, GetDataRequest(path="/corral/m2", watch=False)),
            (OpCode.GET_CHILDREN, GetChildrenRequest(path="/missing", watch=False)),
        )
    )
    assert decode_client_frame(data) == Request(
        xid=4, opcode=OpCode.MULTI_READ, request=request, size=len(data) - 4
    )
    assert sent_bytes(4, OpCode.MULTI_READ, request) == data

    reply = h(
        "00000078 | 00000004 0000000000000008 00000000"
        " | 00000004 00 00000000 | 00000001 62 | 0000000000000008 0000000000000008"
        "   000001a216b0c4e0 000001a216b0c4e0 00000001 00000000 00000000 0000000000000000"
        "   00000001 00000000 0000000000000008"
        " | ffffffff 00 ffffff9b | ffffff9b"
        " | ffffffff 01 ffffffff"
    )
    body = MultiResponse(
        results=(
            OpResult(type=OpCode.GET_DATA, body=GetDataResponse(data=b"b", stat=M2_STAT)),
            OpResult(type=-1, err=ErrorCode.NO_NODE),
        )
    )
    assert encode_reply(4, 8, 0, body) == reply
    assert decode_replies([(4, OpCode.MULTI_READ, request)], reply) == [
        Reply(xid=4, opcode=OpCode.MULTI_READ, zxid=8, err=0, body=body)
    ]


# --------------------------------------------------------------------------- 10.8 SetWatches


def test_set_watches_with_xid_minus_8() -> None:
    data = h(
        "00000054 | fffffff8 00000065 | 0000000000000000"
        " | 00000002 00000007 2f636f7272616c 00000005 2f676f6e65"
        " | 00000002 0000000a 2f636f7272616c2f6d32 00000007 2f6e6f74796574"
        " | 00000001 00000007 2f636f7272616c"
    )
    request = SetWatches(
        relative_zxid=0,
        data_watches=("/corral", "/gone"),
        exist_watches=("/corral/m2", "/notyet"),
        child_watches=("/corral",),
    )
    assert decode_client_frame(data) == Request(
        xid=SpecialXid.SET_WATCHES, opcode=OpCode.SET_WATCHES, request=request, size=len(data) - 4
    )
    assert sent_bytes(SpecialXid.SET_WATCHES, OpCode.SET_WATCHES, request) == data

    frames = [
        (CORRAL_CHANGED, EventType.NODE_DATA_CHANGED, "/corral"),
        (
            h("00000021 ffffffff ffffffffffffffff 00000000 00000002 00000003 00000005 2f676f6e65"),
            EventType.NODE_DELETED,
            "/gone",
        ),
        (
            h(
                "00000026 ffffffff ffffffffffffffff 00000000 00000001 00000003"
                " 0000000a 2f636f7272616c2f6d32"
            ),
            EventType.NODE_CREATED,
            "/corral/m2",
        ),
        (
            h(
                "00000023 ffffffff ffffffffffffffff 00000000 00000004 00000003"
                " 00000007 2f636f7272616c"
            ),
            EventType.NODE_CHILDREN_CHANGED,
            "/corral",
        ),
    ]
    expected: list[Reply | Notification] = []
    for frame_bytes, event_type, path in frames:
        event = WatcherEvent(type=event_type, state=KeeperState.SYNC_CONNECTED, path=path)
        assert encode_notification(event, -1) == frame_bytes
        expected.append(Notification(zxid=-1, event=event))
    reply = h("00000010 fffffff8 000000000000001a 00000000")
    assert encode_reply(SpecialXid.SET_WATCHES, 0x1A, 0) == reply
    expected.append(
        Reply(xid=SpecialXid.SET_WATCHES, opcode=OpCode.SET_WATCHES, zxid=0x1A, err=0, body=None)
    )
    stream = b"".join(f for f, _, _ in frames) + reply
    assert decode_replies([(SpecialXid.SET_WATCHES, OpCode.SET_WATCHES, request)], stream) == (
        expected
    )


# --------------------------------------------------------------------------- 10.9 auth, ACL

AUTH_REQUEST = h(
    "00000023 | fffffffc 00000064 | 00000000 | 00000006 646967657374 | 00000009 757365723a70617373"
)
AUTH_PACKET = AuthPacket(type=0, scheme="digest", auth=b"user:pass")


def test_auth() -> None:
    assert decode_client_frame(AUTH_REQUEST) == Request(
        xid=SpecialXid.AUTH, opcode=OpCode.AUTH, request=AUTH_PACKET, size=len(AUTH_REQUEST) - 4
    )
    assert sent_bytes(SpecialXid.AUTH, OpCode.AUTH, AUTH_PACKET) == AUTH_REQUEST
    ok = h("00000010 fffffffc 0000000000000000 00000000")
    failed = h("00000010 fffffffc 0000000000000000 ffffff8d")
    assert encode_reply(SpecialXid.AUTH, 0, 0) == ok
    assert encode_reply(SpecialXid.AUTH, 0, ErrorCode.AUTH_FAILED) == failed
    for data, err in ((ok, 0), (failed, ErrorCode.AUTH_FAILED)):
        assert decode_replies([(SpecialXid.AUTH, OpCode.AUTH, AUTH_PACKET)], data) == [
            Reply(xid=SpecialXid.AUTH, opcode=OpCode.AUTH, zxid=0, err=err, body=None)
        ]


def test_auth_reply_overtakes_queued_requests() -> None:
    # ZooKeeper answers auth on receipt, ahead of requests queued before it.
    ok = h("00000010 fffffffc 0000000000000000 00000000")
    ping = h("00000010 fffffffe 0000000000000004 00000000")
    sent: list[tuple[int, int, Record | None]] = [
        (SpecialXid.PING, OpCode.PING, None),
        (SpecialXid.AUTH, OpCode.AUTH, AUTH_PACKET),
    ]
    assert decode_replies(sent, ok + ping) == [
        Reply(xid=SpecialXid.AUTH, opcode=OpCode.AUTH, zxid=0, err=0, body=None),
        Reply(xid=SpecialXid.PING, opcode=OpCode.PING, zxid=4, err=0, body=None),
    ]


def test_who_am_i() -> None:
    data = h("00000008 0000001e 0000006b")
    assert decode_client_frame(data) == Request(
        xid=30, opcode=OpCode.WHO_AM_I, request=None, size=len(data) - 4
    )
    assert sent_bytes(30, OpCode.WHO_AM_I) == data
    reply = h(
        "00000039 | 0000001e 0000000000000019 00000000 | 00000002 |"
        " 00000002 6970 00000009 3132372e302e302e31 | 00000006 646967657374 00000004 75736572"
    )
    body = WhoAmIResponse(
        client_info=(
            ClientInfo(auth_scheme="ip", user="127.0.0.1"),
            ClientInfo(auth_scheme="digest", user="user"),
        )
    )
    assert encode_reply(30, 0x19, 0, body) == reply
    assert decode_replies([(30, OpCode.WHO_AM_I, None)], reply) == [
        Reply(xid=30, opcode=OpCode.WHO_AM_I, zxid=0x19, err=0, body=body)
    ]


def test_get_acl_digest() -> None:
    node_stat = stat(czxid=0x1A, mzxid=0x1A, pzxid=0x1A, ctime_ms=1, mtime_ms=1)
    reply = (
        h(
            "0000008b | 00000020 000000000000001a 00000000 | 00000001 0000001f"
            " 00000006 646967657374 00000021"
            " 757365723a736d47616f564b642f63516b6a6d3762383847796f7241557a32303d"
        )
        + node_stat.to_bytes()
    )
    body = GetACLResponse(
        acl=(ACL(perms=31, id=Id(scheme="digest", id="user:smGaoVKd/cQkjm7b88GyorAUz20=")),),
        stat=node_stat,
    )
    request = GetACLRequest(path="/corral/acl")
    assert encode_reply(0x20, 0x1A, 0, body) == reply
    assert decode_replies([(0x20, OpCode.GET_ACL, request)], reply) == [
        Reply(xid=0x20, opcode=OpCode.GET_ACL, zxid=0x1A, err=0, body=body)
    ]


# --------------------------------------------------------------------------- 10.10 watches & co


def test_add_watch() -> None:
    data = h("00000017 0000000c 0000006a 00000007 2f636f7272616c 00000001")
    request = AddWatchRequest(path="/corral", mode=AddWatchMode.PERSISTENT_RECURSIVE)
    assert decode_client_frame(data) == Request(
        xid=12, opcode=OpCode.ADD_WATCH, request=request, size=len(data) - 4
    )
    assert sent_bytes(12, OpCode.ADD_WATCH, request) == data
    reply = h("00000014 0000000c 000000000000000c 00000000 00000000")
    body = ErrorResponse(err=0)
    assert encode_reply(12, 12, 0, body) == reply
    assert decode_replies([(12, OpCode.ADD_WATCH, request)], reply) == [
        Reply(xid=12, opcode=OpCode.ADD_WATCH, zxid=12, err=0, body=body)
    ]


def test_remove_watches_no_watcher() -> None:
    data = h("00000015 0000000d 00000012 00000005 2f6e6f7065 00000002")
    request = WatchesRequest(path="/nope", type=WatcherType.DATA)
    assert decode_client_frame(data) == Request(
        xid=13, opcode=OpCode.REMOVE_WATCHES, request=request, size=len(data) - 4
    )
    assert sent_bytes(13, OpCode.REMOVE_WATCHES, request) == data
    reply = h("00000010 0000000d 000000000000000c ffffff87")
    assert encode_reply(13, 12, ErrorCode.NO_WATCHER) == reply
    assert decode_replies([(13, OpCode.REMOVE_WATCHES, request)], reply) == [
        Reply(xid=13, opcode=OpCode.REMOVE_WATCHES, zxid=12, err=ErrorCode.NO_WATCHER, body=None)
    ]


def test_get_ephemerals() -> None:
    data = h("0000000d 00000009 00000067 00000001 2f")
    request = GetEphemeralsRequest(prefix_path="/")
    assert decode_client_frame(data) == Request(
        xid=9, opcode=OpCode.GET_EPHEMERALS, request=request, size=len(data) - 4
    )
    assert sent_bytes(9, OpCode.GET_EPHEMERALS, request) == data
    reply = h(
        "0000002e 00000009 000000000000000c 00000000 00000001"
        " 00000016 2f636f7272616c2f7365712d30303030303030303030"
    )
    body = GetEphemeralsResponse(ephemerals=("/corral/seq-0000000000",))
    assert encode_reply(9, 12, 0, body) == reply
    assert decode_replies([(9, OpCode.GET_EPHEMERALS, request)], reply) == [
        Reply(xid=9, opcode=OpCode.GET_EPHEMERALS, zxid=12, err=0, body=body)
    ]


def test_get_ephemerals_null_prefix_reads_as_empty() -> None:
    data = h("0000000c 00000009 00000067 ffffffff")
    assert decode_client_frame(data) == Request(
        xid=9,
        opcode=OpCode.GET_EPHEMERALS,
        request=GetEphemeralsRequest(prefix_path=""),
        size=len(data) - 4,
    )


def test_get_all_children_number() -> None:
    data = h("0000000d 0000000a 00000068 00000001 2f")
    request = PathRecord(path="/")
    assert decode_client_frame(data) == Request(
        xid=10, opcode=OpCode.GET_ALL_CHILDREN_NUMBER, request=request, size=len(data) - 4
    )
    assert sent_bytes(10, OpCode.GET_ALL_CHILDREN_NUMBER, request) == data
    reply = h("00000014 0000000a 000000000000000c 00000000 00000006")
    body = GetAllChildrenNumberResponse(total_number=6)
    assert encode_reply(10, 12, 0, body) == reply
    assert decode_replies([(10, OpCode.GET_ALL_CHILDREN_NUMBER, request)], reply) == [
        Reply(xid=10, opcode=OpCode.GET_ALL_CHILDREN_NUMBER, zxid=12, err=0, body=body)
    ]


def test_sync() -> None:
    request = PathRecord(path="/corral")
    data = sent_bytes(7, OpCode.SYNC, request)
    assert data == h("00000013 00000007 00000009 00000007 2f636f7272616c")
    assert decode_client_frame(data) == Request(
        xid=7, opcode=OpCode.SYNC, request=request, size=len(data) - 4
    )
    reply = h("0000001b 00000007 000000000000000a 00000000 00000007 2f636f7272616c")
    assert encode_reply(7, 10, 0, request) == reply
    assert decode_replies([(7, OpCode.SYNC, request)], reply) == [
        Reply(xid=7, opcode=OpCode.SYNC, zxid=10, err=0, body=request)
    ]


def test_reconfig_disabled() -> None:
    data = h(
        "0000003e 00000010 00000010 ffffffff ffffffff 00000022"
        " 7365727665722e313d3132372e302e302e313a323838383a333838383b3231383130 ffffffffffffffff"
    )
    request = ReconfigRequest(
        joining_servers=None,
        leaving_servers=None,
        new_members="server.1=127.0.0.1:2888:3888;21810",
        cur_config_id=-1,
    )
    # Was lossy: null strings read as "" and re-encoded with length 0, which ZooKeeper
    # would parse as an (invalid) server list.
    assert decode_client_frame(data) == Request(
        xid=16, opcode=OpCode.RECONFIG, request=request, size=len(data) - 4
    )
    assert sent_bytes(16, OpCode.RECONFIG, request) == data
    reply = h("00000010 00000010 000000000000000d ffffff85")
    assert encode_reply(16, 13, ErrorCode.RECONFIG_DISABLED) == reply
    assert decode_replies([(16, OpCode.RECONFIG, request)], reply) == [
        Reply(xid=16, opcode=OpCode.RECONFIG, zxid=13, err=ErrorCode.RECONFIG_DISABLED, body=None)
    ]


# --------------------------------------------------------------------------- 10.11 close, unknown


def test_close_session() -> None:
    data = h("00000008 00000021 fffffff5")
    assert decode_client_frame(data) == Request(
        xid=0x21, opcode=OpCode.CLOSE_SESSION, request=None, size=len(data) - 4
    )
    assert sent_bytes(0x21, OpCode.CLOSE_SESSION) == data
    deleted = h(
        "00000032 ffffffff ffffffffffffffff 00000000 00000002 00000003"
        " 00000016 2f636f7272616c2f7365712d30303030303030303030"
    )
    reply = h("00000010 00000021 000000000000001c 00000000")
    event = WatcherEvent(
        type=EventType.NODE_DELETED,
        state=KeeperState.SYNC_CONNECTED,
        path="/corral/seq-0000000000",
    )
    assert encode_notification(event, -1) == deleted
    assert encode_reply(0x21, 0x1C, 0) == reply

    client = connected_client()
    client.send_request(0x21, OpCode.CLOSE_SESSION)
    client.receive_data(deleted + reply)
    client.receive_data(b"")  # then EOF
    assert drain_client(client) == [
        Notification(zxid=-1, event=event),
        Reply(xid=0x21, opcode=OpCode.CLOSE_SESSION, zxid=0x1C, err=0, body=None),
        PEER_CLOSED,
    ]


def test_unknown_opcode() -> None:
    data = h("00000008 0000000e 000003e7")
    assert decode_client_frame(data) == BadRequest(
        xid=14, opcode=999, err=ErrorCode.UNIMPLEMENTED, close=True, reason="unknown opcode 999"
    )
    reply = h("00000010 0000000e ffffffffffffffff fffffffa")
    assert encode_reply(14, -1, ErrorCode.UNIMPLEMENTED) == reply


# --------------------------------------------------------------------------- 10.12 4lw


@pytest.mark.parametrize("word", ["ruok", "srvr", "conf", "mntr", "isro", "hash"])
def test_four_letter_word(word: str) -> None:
    server = ServerConnection()
    server.receive_data(word.encode("ascii"))
    assert server.next_event() == FourLetterWord(word=word)
    assert server.next_event() is NEED_DATA


def test_ruok_bytes() -> None:
    server = ServerConnection()
    server.receive_data(h("72756f6b"))
    assert server.next_event() == FourLetterWord(word="ruok")


def test_stmk_reads_its_trace_mask() -> None:
    server = ServerConnection()
    server.receive_data(b"stmk" + (0x332).to_bytes(8, "big"))
    assert server.next_event() == FourLetterWord(word="stmk", argument=818)


def test_abcd_is_a_frame_length_not_a_word() -> None:
    server = ServerConnection()
    server.receive_data(b"abcd")
    with pytest.raises(FrameError):
        server.next_event()
