"""The server over the raw wire protocol: what kazoo cannot express, and bad input.

Each test talks to an in-process server through tests.support.raw_client.RawClient,
which uses corral's own codec so that nothing hides a byte.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.protocol.connection import Notification, Reply
from corral.protocol.constants import (
    AddWatchMode,
    CreateMode,
    ErrorCode,
    EventType,
    OpCode,
    WatcherType,
)
from corral.protocol.jute import Writer
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    AddWatchRequest,
    AuthPacket,
    ClientInfo,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetDataRequest,
    GetEphemeralsRequest,
    PathRecord,
    Record,
    SetDataRequest,
    SetWatches,
    WatchesRequest,
)
from tests.server.conftest import RunningServer, start_server, stop_server
from tests.support.raw_client import ConnectionClosed, RawClient

WAIT_MS = 10_000


@pytest.fixture
def client(corral: RunningServer) -> Iterator[RawClient]:
    raw = RawClient(corral.host, corral.port)
    assert raw.connect(timeout_ms=30_000) is not None
    try:
        yield raw
    finally:
        raw.close()


def create(raw: RawClient, path: str, data: bytes = b"", flags: int = 0) -> Reply:
    return raw.request(
        OpCode.CREATE, CreateRequest(path=path, data=data, acl=OPEN_ACL_UNSAFE, flags=flags)
    )


def test_handshake_negotiates_timeout(corral: RunningServer) -> None:
    for requested, negotiated in [
        (1, 4000),
        (0, 4000),
        (-5, 4000),
        (10_000, 10_000),
        (100_000, 40_000),
    ]:
        with RawClient(corral.host, corral.port) as raw:
            response = raw.connect(timeout_ms=requested)
            assert response is not None
            assert response.timeout_ms == negotiated
            assert response.session_id >> 56 == 1
            assert len(response.password) == 16


def test_old_client_without_read_only_byte(corral: RunningServer) -> None:
    with RawClient(corral.host, corral.port) as raw:
        response = raw.connect(read_only=None)
        assert response is not None
        assert response.read_only is None


def test_wrong_password_gets_expired_reply_and_close(
    corral: RunningServer, client: RawClient
) -> None:
    assert client.connect_response is not None
    with RawClient(corral.host, corral.port) as raw:
        response = raw.connect(session_id=client.connect_response.session_id, password=b"\x01" * 16)
        assert response is not None
        assert (response.timeout_ms, response.session_id, response.password) == (0, 0, bytes(16))
        assert raw.wait_closed(WAIT_MS)


def test_resume_closes_the_old_connection(corral: RunningServer, client: RawClient) -> None:
    first = client.connect_response
    assert first is not None
    with RawClient(corral.host, corral.port) as raw:
        response = raw.connect(
            session_id=first.session_id, password=first.password, timeout_ms=8000
        )
        assert response is not None
        assert response.session_id == first.session_id
        assert response.password == first.password
        assert response.timeout_ms == 8000
        assert client.wait_closed(WAIT_MS)


def test_client_ahead_of_server_is_refused(corral: RunningServer) -> None:
    with RawClient(corral.host, corral.port) as raw:
        assert raw.connect(last_zxid_seen=1 << 40) is None


def test_ping_reply_has_xid_minus_two(client: RawClient) -> None:
    xid = client.send(OpCode.PING, xid=-2)
    reply = client.wait_reply()
    assert xid == -2
    assert reply.xid == -2
    assert reply.err == 0


def test_unknown_opcode_and_top_level_check_close(corral: RunningServer) -> None:
    for opcode in (999, OpCode.CHECK):
        with RawClient(corral.host, corral.port) as raw:
            raw.connect()
            payload = struct.pack(">ii", 7, opcode) + (
                b"\x00\x00\x00\x01/\xff\xff\xff\xff" if opcode == 13 else b""
            )
            raw.send_raw(struct.pack(">i", len(payload)) + payload)
            assert raw.wait_closed(WAIT_MS)
            replies = [r for r in raw.received if isinstance(r, Reply)]
            assert replies == [] or replies[-1].err == ErrorCode.UNIMPLEMENTED


def test_oversized_frame_closes_only_that_connection(
    corral: RunningServer, client: RawClient
) -> None:
    with RawClient(corral.host, corral.port) as raw:
        raw.connect()
        raw.send_raw(struct.pack(">i", 0x100000) + b"\x00" * 16)
        assert raw.wait_closed(WAIT_MS)
    assert create(client, "/still-alive").err == 0


class _Truncated(Record):
    """A request body cut short: two bytes where a path length belongs."""

    def encode(self, w: Writer) -> None:
        w.raw(b"\x00\x00")


def test_undecodable_body_is_marshalling_error_and_connection_lives(client: RawClient) -> None:
    reply = client.request(OpCode.GET_DATA, _Truncated())
    assert reply.err == ErrorCode.MARSHALLING_ERROR
    assert create(client, "/after").err == 0


def test_max_data_size(corral: RunningServer, client: RawClient) -> None:
    assert create(client, "/big").err == 0
    fits = b"x" * (0xFFFFF - (8 + 4 + 4 + 4 + 4))
    reply = client.request(OpCode.SET_DATA, SetDataRequest(path="/big", data=fits, version=-1))
    assert reply.err == 0
    with RawClient(corral.host, corral.port) as raw:
        raw.connect()
        too_big = SetDataRequest(path="/big", data=fits + b"x", version=-1).to_bytes()
        payload = struct.pack(">ii", 9, OpCode.SET_DATA) + too_big
        assert len(payload) == 0xFFFFF + 1
        raw.send_raw(struct.pack(">i", len(payload)) + payload)
        assert raw.wait_closed(WAIT_MS)
    reply = client.request(OpCode.GET_DATA, GetDataRequest(path="/big", watch=False))
    assert reply.body.data == fits  # type: ignore[union-attr]


def test_ttl_node_is_reaped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    running, thread = start_server(tmp_path, **{"znode.container.checkIntervalMs": "100"})
    try:
        with RawClient(running.host, running.port) as raw:
            raw.connect()
            request = CreateTTLRequest(
                path="/ttl",
                data=b"",
                acl=OPEN_ACL_UNSAFE,
                flags=CreateMode.PERSISTENT_WITH_TTL,
                ttl_ms=300,
            )
            reply = raw.request(OpCode.CREATE_TTL, request)
            assert reply.err == 0
            assert reply.body.stat.ephemeral_owner == 0  # type: ignore[union-attr]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if (
                    raw.request(OpCode.EXISTS, ExistsRequest(path="/ttl", watch=False)).err
                    == ErrorCode.NO_NODE
                ):
                    break
                time.sleep(0.05)
            assert (
                raw.request(OpCode.EXISTS, ExistsRequest(path="/ttl", watch=False)).err
                == ErrorCode.NO_NODE
            )
    finally:
        stop_server(running, thread)


def test_container_is_reaped_after_its_last_child_goes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    running, thread = start_server(tmp_path, **{"znode.container.checkIntervalMs": "100"})
    try:
        with RawClient(running.host, running.port) as raw:
            raw.connect()
            container = CreateRequest(
                path="/box", data=b"", acl=OPEN_ACL_UNSAFE, flags=CreateMode.CONTAINER
            )
            assert raw.request(OpCode.CREATE_CONTAINER, container).err == 0
            never_used = CreateRequest(
                path="/unused", data=b"", acl=OPEN_ACL_UNSAFE, flags=CreateMode.CONTAINER
            )
            assert raw.request(OpCode.CREATE_CONTAINER, never_used).err == 0
            assert create(raw, "/box/item").err == 0
            assert raw.request(OpCode.DELETE, DeleteRequest(path="/box/item", version=-1)).err == 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if (
                    raw.request(OpCode.EXISTS, ExistsRequest(path="/box", watch=False)).err
                    == ErrorCode.NO_NODE
                ):
                    break
                time.sleep(0.05)
            assert (
                raw.request(OpCode.EXISTS, ExistsRequest(path="/box", watch=False)).err
                == ErrorCode.NO_NODE
            )
            assert raw.request(OpCode.EXISTS, ExistsRequest(path="/unused", watch=False)).err == 0
    finally:
        stop_server(running, thread)


def test_persistent_recursive_watch(client: RawClient, corral: RunningServer) -> None:
    reply = client.request(
        OpCode.ADD_WATCH, AddWatchRequest(path="/r", mode=AddWatchMode.PERSISTENT_RECURSIVE)
    )
    assert reply.err == 0
    assert reply.body.err == 0  # type: ignore[union-attr]
    with RawClient(corral.host, corral.port) as writer:
        writer.connect()
        create(writer, "/r")
        create(writer, "/r/a")
        writer.request(OpCode.SET_DATA, SetDataRequest(path="/r/a", data=b"1", version=-1))
        writer.request(OpCode.DELETE, DeleteRequest(path="/r/a", version=-1))
    events = client.wait_notifications(4, wait_ms=WAIT_MS)
    assert [(n.event.type, n.event.path) for n in events] == [
        (EventType.NODE_CREATED, "/r"),
        (EventType.NODE_CREATED, "/r/a"),
        (EventType.NODE_DATA_CHANGED, "/r/a"),
        (EventType.NODE_DELETED, "/r/a"),
    ]
    assert all(n.zxid > 0 for n in events)  # 3.9: the zxid of the txn that fired it


def test_persistent_watch_and_remove_watches(client: RawClient) -> None:
    assert create(client, "/p").err == 0
    assert (
        client.request(
            OpCode.ADD_WATCH, AddWatchRequest(path="/p", mode=AddWatchMode.PERSISTENT)
        ).err
        == 0
    )
    create(client, "/p/c")
    client.request(OpCode.SET_DATA, SetDataRequest(path="/p/c", data=b"", version=-1))
    client.request(OpCode.SET_DATA, SetDataRequest(path="/p", data=b"", version=-1))
    types = [(n.event.type, n.event.path) for n in client.notifications()]
    assert types == [(EventType.NODE_CHILDREN_CHANGED, "/p"), (EventType.NODE_DATA_CHANGED, "/p")]
    check = WatchesRequest(path="/p", type=WatcherType.PERSISTENT)
    assert client.request(OpCode.CHECK_WATCHES, check).err == 0
    assert client.request(OpCode.REMOVE_WATCHES, check).err == 0
    assert client.request(OpCode.REMOVE_WATCHES, check).err == ErrorCode.NO_WATCHER
    bad = WatchesRequest(path="/p", type=6)
    assert client.request(OpCode.REMOVE_WATCHES, bad).err == ErrorCode.MARSHALLING_ERROR
    assert (
        client.request(OpCode.ADD_WATCH, AddWatchRequest(path="/p", mode=7)).err
        == ErrorCode.MARSHALLING_ERROR
    )


def test_set_watches_fires_missed_changes(client: RawClient) -> None:
    create(client, "/sw", b"a")
    create(client, "/sw/child")
    before = client.request(OpCode.EXISTS, ExistsRequest(path="/sw", watch=False)).zxid
    client.request(OpCode.SET_DATA, SetDataRequest(path="/sw", data=b"b", version=-1))
    create(client, "/appeared")
    request = SetWatches(
        relative_zxid=before,
        data_watches=("/sw", "/gone"),
        exist_watches=("/appeared", "/notyet"),
        child_watches=("/sw",),
    )
    reply = client.request(OpCode.SET_WATCHES, request)
    assert reply.err == 0
    events = [(n.event.type, n.event.path, n.zxid) for n in client.notifications()]
    assert events == [
        (EventType.NODE_DATA_CHANGED, "/sw", -1),
        (EventType.NODE_DELETED, "/gone", -1),
        (EventType.NODE_CREATED, "/appeared", -1),
    ]
    # /notyet is armed and fires when created.
    create(client, "/notyet")
    assert (client.notifications()[-1].event.type, client.notifications()[-1].event.path) == (
        EventType.NODE_CREATED,
        "/notyet",
    )


def test_who_am_i_and_auth(client: RawClient) -> None:
    reply = client.request(OpCode.WHO_AM_I)
    assert reply.body.client_info == (ClientInfo(auth_scheme="ip", user="127.0.0.1"),)  # type: ignore[union-attr]
    auth = client.request(
        OpCode.AUTH, AuthPacket(type=0, scheme="digest", auth=b"alice:pw"), xid=-4
    )
    assert (auth.xid, auth.zxid, auth.err) == (-4, 0, 0)
    reply = client.request(OpCode.WHO_AM_I)
    infos = set(reply.body.client_info)  # type: ignore[union-attr]
    assert infos == {
        ClientInfo(auth_scheme="ip", user="127.0.0.1"),
        ClientInfo(auth_scheme="digest", user="alice"),
    }


def test_bad_auth_scheme_fails_and_closes(client: RawClient) -> None:
    reply = client.request(OpCode.AUTH, AuthPacket(type=0, scheme="nosuch", auth=b"x"), xid=-4)
    assert reply.err == ErrorCode.AUTH_FAILED
    assert client.wait_closed(WAIT_MS)


def test_get_ephemerals_and_all_children_number(client: RawClient) -> None:
    assert (
        client.request(OpCode.GET_ALL_CHILDREN_NUMBER, PathRecord(path="/")).body.total_number == 3
    )  # type: ignore[union-attr]
    create(client, "/x")
    create(client, "/x/eph1", flags=CreateMode.EPHEMERAL)
    create(client, "/x/eph2", flags=CreateMode.EPHEMERAL)
    reply = client.request(OpCode.GET_EPHEMERALS, GetEphemeralsRequest(prefix_path="/x/eph1"))
    assert reply.body.ephemerals == ("/x/eph1",)  # type: ignore[union-attr]
    reply = client.request(OpCode.GET_EPHEMERALS, GetEphemeralsRequest(prefix_path="/"))
    assert sorted(reply.body.ephemerals) == ["/x/eph1", "/x/eph2"]  # type: ignore[union-attr]
    assert (
        client.request(OpCode.GET_ALL_CHILDREN_NUMBER, PathRecord(path="/x")).body.total_number == 2
    )  # type: ignore[union-attr]


def test_close_session_deletes_ephemerals_then_closes(
    corral: RunningServer, client: RawClient
) -> None:
    with RawClient(corral.host, corral.port) as owner:
        owner.connect()
        create(owner, "/bye", flags=CreateMode.EPHEMERAL)
        assert client.request(OpCode.EXISTS, ExistsRequest(path="/bye", watch=True)).err == 0
        reply = owner.request(OpCode.CLOSE_SESSION)
        assert reply.err == 0
        assert owner.wait_closed(WAIT_MS)
    events = client.wait_notifications(1, wait_ms=WAIT_MS)
    assert (events[0].event.type, events[0].event.path) == (EventType.NODE_DELETED, "/bye")


def test_session_expiry_removes_ephemerals_and_closes(
    corral: RunningServer, client: RawClient
) -> None:
    silent = RawClient(corral.host, corral.port)
    try:
        assert silent.connect(timeout_ms=4000) is not None
        create(silent, "/expiring", flags=CreateMode.EPHEMERAL)
        assert client.request(OpCode.EXISTS, ExistsRequest(path="/expiring", watch=True)).err == 0
        started = time.monotonic()
        # No pings: the session must expire between 4 s and 6 s later (tick buckets).
        events = client.wait_notifications(1, wait_ms=15_000)
        assert (events[0].event.type, events[0].event.path) == (EventType.NODE_DELETED, "/expiring")
        assert time.monotonic() - started >= 3.5
        assert silent.wait_closed(WAIT_MS)
    finally:
        silent.close()


def test_max_client_connections_per_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    running, thread = start_server(tmp_path, maxClientCnxns="2")
    sockets: list[socket.socket] = []
    try:
        for _ in range(2):
            sockets.append(socket.create_connection((running.host, running.port), timeout=5))
        with RawClient(running.host, running.port) as third:
            assert third.connect() is None  # closed at accept
    finally:
        for sock in sockets:
            sock.close()
        stop_server(running, thread)


def test_handshake_pipelined_requests_are_answered_in_order(client: RawClient) -> None:
    xids = [
        client.send(
            OpCode.CREATE, CreateRequest(path=f"/pipe{i}", data=b"", acl=OPEN_ACL_UNSAFE, flags=0)
        )
        for i in range(50)
    ]
    xids.append(client.send(OpCode.GET_DATA, GetDataRequest(path="/pipe49", watch=False)))
    replies = [client.wait_reply() for _ in xids]
    assert [r.xid for r in replies] == xids
    assert all(r.err == 0 for r in replies)
    zxids = [r.zxid for r in replies[:-1]]
    assert zxids == sorted(zxids)
    assert replies[-1].zxid == zxids[-1]


def test_reads_sent_before_a_half_close_are_answered_then_closed(client: RawClient) -> None:
    # The requests and the end of the client's stream arrive together: the server
    # answers what came before the end, in order, then closes the connection.
    create(client, "/half")
    xids = [client.send(OpCode.EXISTS, ExistsRequest(path="/half", watch=False)) for _ in range(20)]
    client.shutdown_write()
    replies = [client.wait_reply() for _ in xids]
    assert [(r.xid, r.err) for r in replies] == [(xid, 0) for xid in xids]
    assert client.wait_closed(WAIT_MS)


def test_own_notification_precedes_own_reply(client: RawClient) -> None:
    create(client, "/self")
    client.request(OpCode.GET_DATA, GetDataRequest(path="/self", watch=True))
    client.send(OpCode.SET_DATA, SetDataRequest(path="/self", data=b"x", version=-1))
    client.wait_reply()
    kinds = [type(item).__name__ for item in client.received[-2:]]
    assert kinds == [Notification.__name__, Reply.__name__]


_fuzz_frames = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.tuples(
            st.integers(-3, 3),
            st.sampled_from([int(op) for op in OpCode] + [77]),
            st.binary(max_size=40),
        ).map(lambda t: struct.pack(">iii", 8 + len(t[2]), t[0], t[1]) + t[2]),
    ),
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=_fuzz_frames, handshake=st.booleans())
def test_random_bytes_over_tcp_never_hurt_the_server(
    corral: RunningServer, frames: list[bytes], handshake: bool
) -> None:
    with RawClient(corral.host, corral.port, read_timeout_ms=2_000) as raw:
        if handshake:
            raw.connect()
        with contextlib.suppress(ConnectionClosed):
            raw.send_raw(b"".join(frames))
        raw.poll(50)
    # The server still serves a well-behaved client, and its tree is intact.
    with RawClient(corral.host, corral.port) as probe:
        assert probe.connect() is not None
        reply = probe.request(OpCode.EXISTS, ExistsRequest(path="/zookeeper/config", watch=False))
        assert reply.err == 0
