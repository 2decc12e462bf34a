"""The sans-IO session, byte for byte, with no network: a ServerConnection plays the server."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.client.session import (
    TRANSITIONS,
    XID_MAX,
    ClientState,
    Completed,
    ConnectionDead,
    Notice,
    Output,
    Session,
    SessionEvent,
    SessionInput,
    WatchEvent,
    WatchFired,
    WatchKind,
    parse_hosts,
)
from corral.protocol.connection import (
    NEED_DATA,
    Connect,
    Request,
    ServerConnection,
    encode_connect_response,
    encode_notification,
    encode_reply,
)
from corral.protocol.constants import ErrorCode, EventType, KeeperState, OpCode
from corral.protocol.errors import LocalProtocolError
from corral.protocol.records import (
    AuthPacket,
    ConnectResponse,
    CreateResponse,
    ExistsRequest,
    GetDataRequest,
    GetDataResponse,
    PathRecord,
    SetWatches,
    SetWatches2,
    Stat,
    WatcherEvent,
)

PASSWORD = bytes(range(16))
STAT = Stat(
    czxid=1, mzxid=1, ctime_ms=0, mtime_ms=0, version=0, cversion=0, aversion=0,
    ephemeral_owner=0, data_length=0, num_children=0, pzxid=1,
)  # fmt: skip


class FakeServer:
    """Decodes what the session sends, encodes what a server would answer."""

    def __init__(self) -> None:
        self.connection = ServerConnection()
        self.connect: Connect | None = None

    def receive(self, data: bytes) -> list[Request]:
        self.connection.receive_data(data)
        requests: list[Request] = []
        while True:
            event = self.connection.next_event()
            if event is NEED_DATA:
                return requests
            if isinstance(event, Connect):
                self.connect = event
            else:
                assert isinstance(event, Request), event
                requests.append(event)


def handshake(
    session: Session, now_ms: int = 0, timeout_ms: int = 6000, session_id: int = 0x55
) -> tuple[FakeServer, list[Output]]:
    server = FakeServer()
    server.receive(session.start_connection(now_ms, connect_timeout_ms=1000))
    response = ConnectResponse(
        protocol_version=0,
        timeout_ms=timeout_ms,
        session_id=session_id if timeout_ms > 0 else 0,
        password=PASSWORD if timeout_ms > 0 else bytes(16),
        read_only=False,
    )
    outputs = session.receive_data(encode_connect_response(response), now_ms)
    return server, outputs


def test_the_transition_table_rejects_what_it_does_not_list() -> None:
    session = Session(session_timeout_ms=6000)
    assert session.state is ClientState.CONNECTING
    with pytest.raises(LocalProtocolError):
        session._transition(SessionInput.NEW_SESSION)
    for state in ClientState:
        if state is not ClientState.CLOSED:
            assert TRANSITIONS[(state, SessionInput.CLOSE)] is ClientState.CLOSED
    assert not any(state is ClientState.CLOSED for state, _ in TRANSITIONS)


def test_handshake_sends_the_connect_request_and_reports_connected() -> None:
    session = Session(session_timeout_ms=6000, read_only_allowed=True)
    server, outputs = handshake(session)
    assert server.connect is not None
    request = server.connect.request
    assert (request.session_id, request.timeout_ms, request.last_zxid_seen) == (0, 6000, 0)
    assert request.read_only is True
    assert outputs == [Notice(event=SessionEvent.CONNECTED, state=ClientState.CONNECTED)]
    assert session.connected
    assert session.session_id == 0x55
    assert session.password == PASSWORD
    assert session.read_timeout_ms == 4000  # 2/3 of the negotiated 6000


def test_requests_are_pipelined_and_matched_by_xid() -> None:
    session = Session(session_timeout_ms=6000)
    server, _ = handshake(session)
    xids = [
        session.submit(OpCode.SYNC, PathRecord(path=f"/{i}"), token=f"t{i}", now_ms=1)
        for i in range(3)
    ]
    assert xids == [1, 2, 3]
    sent = server.receive(session.data_to_send())
    assert [(r.xid, r.opcode) for r in sent] == [
        (1, OpCode.SYNC),
        (2, OpCode.SYNC),
        (3, OpCode.SYNC),
    ]
    replies = b"".join(encode_reply(x, 10 + x, 0, PathRecord(path=f"/{x - 1}")) for x in xids)
    outputs: list[Output] = []
    for byte in replies:  # split-invariant: one byte at a time
        outputs += session.receive_data(bytes([byte]), 2)
    assert outputs == [
        Completed(token=f"t{i}", err=0, zxid=11 + i, body=PathRecord(path=f"/{i}"))
        for i in range(3)
    ]


def test_xids_wrap_to_one_after_the_largest() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    session._next_xid = XID_MAX
    assert session.submit(OpCode.SYNC, PathRecord(path="/"), token=1, now_ms=0) == XID_MAX
    assert session.submit(OpCode.SYNC, PathRecord(path="/"), token=2, now_ms=0) == 1


def test_last_zxid_seen_never_goes_back_and_is_sent_on_reconnect() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    for zxid in (10, 5):
        xid = session.submit(OpCode.SYNC, PathRecord(path="/"), token=zxid, now_ms=0)
        session.receive_data(encode_reply(xid, zxid, 0, PathRecord(path="/")), 0)
    session.receive_data(encode_notification(WatcherEvent(type=3, state=3, path="/x"), -1), 0)
    assert session.last_zxid_seen == 10
    session.connection_lost(0)
    server = FakeServer()
    server.receive(session.start_connection(0, connect_timeout_ms=1000))
    assert server.connect is not None
    assert server.connect.request.last_zxid_seen == 10
    assert server.connect.request.session_id == 0x55
    assert server.connect.request.password == PASSWORD


def test_pings_at_a_third_of_the_read_timeout_and_a_silent_connection_dies() -> None:
    session = Session(session_timeout_ms=6000)
    server, _ = handshake(session, now_ms=0)
    interval = session.ping_interval_ms
    assert interval == 4000 // 3
    assert session.next_timer_ms() == interval
    assert session.tick(interval - 1) == []
    assert session.data_to_send() == b""
    assert session.tick(interval) == []
    sent = server.receive(session.data_to_send())
    assert [(r.xid, r.opcode) for r in sent] == [(-2, OpCode.PING)]
    assert session.tick(2 * interval) == []  # one ping outstanding at a time
    assert session.data_to_send() == b""
    session.receive_data(encode_reply(-2, 7, 0), 2 * interval)
    assert session.last_zxid_seen == 7
    outputs = session.tick(2 * interval + session.read_timeout_ms)
    assert len(outputs) == 1
    assert isinstance(outputs[0], ConnectionDead)


def test_handshake_timeout_kills_the_connection() -> None:
    session = Session(session_timeout_ms=6000)
    session.start_connection(100, connect_timeout_ms=500)
    assert session.next_timer_ms() == 600
    assert session.tick(599) == []
    assert isinstance(session.tick(600)[0], ConnectionDead)


def test_connection_loss_fails_requests_in_flight_and_suspends() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    session.submit(OpCode.SYNC, PathRecord(path="/"), token="a", now_ms=0)
    outputs = session.connection_lost(5)
    assert outputs == [
        Completed(token="a", err=ErrorCode.CONNECTION_LOSS, zxid=0, body=None),
        Notice(event=SessionEvent.SUSPENDED, state=ClientState.SUSPENDED),
    ]
    with pytest.raises(LocalProtocolError):
        session.submit(OpCode.SYNC, PathRecord(path="/"), token="b", now_ms=0)


def _watch(session: Session, kind: WatchKind, path: str, watcher: object) -> None:
    session.add_watcher(kind, session.server_path(path), watcher)  # type: ignore[arg-type]


def test_reconnect_replays_auth_then_set_watches_with_relative_zxid() -> None:
    session = Session(session_timeout_ms=6000)
    server, _ = handshake(session)
    session.add_auth("digest", b"u:p", token="auth", now_ms=0)
    server.receive(session.data_to_send())
    session.receive_data(encode_reply(-4, 0, 0), 0)
    xid = session.submit(
        OpCode.GET_DATA,
        GetDataRequest(path="/d", watch=True),
        token="get",
        now_ms=0,
        path="/d",
        watch=(WatchKind.DATA, print),
    )
    session.receive_data(encode_reply(xid, 42, 0, GetDataResponse(data=b"", stat=STAT)), 0)
    _watch(session, WatchKind.CHILD, "/c", print)
    _watch(session, WatchKind.EXIST, "/e", print)
    session.connection_lost(1)
    server, outputs = handshake(session, now_ms=2)
    assert outputs == [Notice(event=SessionEvent.RECONNECTED, state=ClientState.CONNECTED)]
    sent = server.receive(session.data_to_send())
    assert [r.opcode for r in sent] == [OpCode.AUTH, OpCode.SET_WATCHES]
    assert sent[0].request == AuthPacket(type=0, scheme="digest", auth=b"u:p")
    assert sent[1].request == SetWatches(
        relative_zxid=42, data_watches=("/d",), exist_watches=("/e",), child_watches=("/c",)
    )


def test_persistent_watches_are_restored_with_set_watches2() -> None:
    session = Session(session_timeout_ms=6000, chroot="/app")
    handshake(session)
    _watch(session, WatchKind.PERSISTENT, "/p", print)
    _watch(session, WatchKind.PERSISTENT_RECURSIVE, "/", print)
    session.connection_lost(1)
    server, _ = handshake(session)
    sent = server.receive(session.data_to_send())
    assert [r.opcode for r in sent] == [OpCode.SET_WATCHES2]
    request = sent[0].request
    assert isinstance(request, SetWatches2)
    assert request.persistent_watches == ("/app/p",)
    assert request.persistent_recursive_watches == ("/app",)


def test_watches_fire_by_kind_and_one_shot_ones_are_consumed() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    seen: dict[str, list[WatchEvent]] = {"data": [], "child": [], "persistent": [], "tree": []}
    _watch(session, WatchKind.DATA, "/a/b", seen["data"].append)
    _watch(session, WatchKind.CHILD, "/a/b", seen["child"].append)
    _watch(session, WatchKind.PERSISTENT, "/a/b", seen["persistent"].append)
    _watch(session, WatchKind.PERSISTENT_RECURSIVE, "/a", seen["tree"].append)

    def notify(event_type: EventType, path: str) -> list[Output]:
        raw = WatcherEvent(type=event_type, state=KeeperState.SYNC_CONNECTED, path=path)
        outputs = session.receive_data(encode_notification(raw, -1), 0)
        for output in outputs:
            assert isinstance(output, WatchFired)
            for watcher in output.watchers:
                watcher(output.event)
        return outputs

    notify(EventType.NODE_DATA_CHANGED, "/a/b")
    notify(EventType.NODE_DATA_CHANGED, "/a/b")
    notify(EventType.NODE_CHILDREN_CHANGED, "/a/b")
    notify(EventType.NODE_CHILDREN_CHANGED, "/a")  # recursive watches never see these
    assert len(seen["data"]) == 1
    assert len(seen["child"]) == 1
    assert len(seen["persistent"]) == 3
    assert [e.type for e in seen["tree"]] == [EventType.NODE_DATA_CHANGED] * 2
    assert session.watched()[WatchKind.DATA] == []
    assert session.watched()[WatchKind.PERSISTENT] == ["/a/b"]


def test_exists_on_a_missing_node_arms_an_exist_watch() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    xid = session.submit(
        OpCode.EXISTS, ExistsRequest(path="/n", watch=True), token="x", now_ms=0, path="/n",
        watch=(WatchKind.DATA, print),
    )  # fmt: skip
    session.receive_data(encode_reply(xid, 3, ErrorCode.NO_NODE), 0)
    assert session.watched()[WatchKind.EXIST] == ["/n"]
    assert session.watched()[WatchKind.DATA] == []


def test_expiry_tells_every_watcher_and_the_next_connection_starts_a_new_session() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    events: list[WatchEvent] = []
    _watch(session, WatchKind.DATA, "/a", events.append)
    _watch(session, WatchKind.PERSISTENT, "/b", events.append)
    session.connection_lost(0)
    _, outputs = handshake(session, timeout_ms=0)
    assert session.state is ClientState.LOST
    assert outputs[0] == Notice(event=SessionEvent.EXPIRED, state=ClientState.LOST)
    fired = outputs[1]
    assert isinstance(fired, WatchFired)
    assert fired.watchers == (events.append,)  # one event per watcher
    assert fired.event.state is KeeperState.EXPIRED
    assert session.watched() == {kind: [] for kind in WatchKind}
    session.connection_lost(0)
    server, outputs = handshake(session, session_id=0x66)
    assert server.connect is not None
    assert server.connect.request.session_id == 0
    assert outputs == [Notice(event=SessionEvent.CONNECTED, state=ClientState.CONNECTED)]


def test_chroot_is_added_and_stripped() -> None:
    session = Session(session_timeout_ms=6000, chroot="/app")
    assert session.server_path("/") == "/app"
    assert session.server_path("/x") == "/app/x"
    assert session.client_path("/app") == "/"
    assert session.client_path("/app/x") == "/x"
    assert session.client_path("/apple") == "/apple"
    handshake(session)
    xid = session.submit(OpCode.CREATE, None, token="c", now_ms=0)
    outputs = session.receive_data(encode_reply(xid, 5, 0, CreateResponse(path="/app/x")), 0)
    assert outputs == [Completed(token="c", err=0, zxid=5, body=CreateResponse(path="/x"))]
    events: list[WatchEvent] = []
    _watch(session, WatchKind.DATA, "/", events.append)
    raw = WatcherEvent(type=EventType.NODE_DATA_CHANGED, state=3, path="/app")
    (fired,) = session.receive_data(encode_notification(raw, 9), 0)
    assert isinstance(fired, WatchFired)
    assert fired.event.path == "/"
    assert fired.event.zxid == 9


def test_a_rejected_credential_is_reported_forgotten_and_the_connection_given_up() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    session.add_auth("bad", b"x", token="a", now_ms=0)
    outputs = session.receive_data(encode_reply(-4, 0, ErrorCode.AUTH_FAILED), 0)
    assert outputs[0] == Notice(event=SessionEvent.AUTH_FAILED, state=ClientState.CONNECTED)
    assert outputs[1] == Completed(token="a", err=ErrorCode.AUTH_FAILED, zxid=0, body=None)
    assert isinstance(outputs[2], ConnectionDead)
    assert session.auth_credentials == ()


def test_close_fails_everything_and_is_final() -> None:
    session = Session(session_timeout_ms=6000)
    handshake(session)
    session.submit(OpCode.SYNC, PathRecord(path="/"), token="s", now_ms=0)
    outputs = session.close()
    assert outputs == [
        Completed(token="s", err=ErrorCode.CONNECTION_LOSS, zxid=0, body=None),
        Notice(event=SessionEvent.CLOSED, state=ClientState.CLOSED),
    ]
    assert session.close() == []
    with pytest.raises(LocalProtocolError):
        session.start_connection(0, connect_timeout_ms=1000)


@pytest.mark.parametrize(
    ("text", "hosts", "chroot"),
    [
        ("a:1", [("a", 1)], ""),
        ("a:1,b:2/app/x", [("a", 1), ("b", 2)], "/app/x"),
        ("a", [("a", 2181)], ""),
        ("[::1]:7/", [("::1", 7)], ""),
    ],
)
def test_parse_hosts(text: str, hosts: list[tuple[str, int]], chroot: str) -> None:
    assert parse_hosts(text) == (hosts, chroot)


@pytest.mark.parametrize("text", ["", "a:x", "a:1/bad/", "a:70000"])
def test_parse_hosts_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hosts(text)


# --------------------------------------------------------------------------- property

_STEP = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 0)),
    st.tuples(st.just("reply"), st.integers(-5, 1_000)),
    st.tuples(st.just("notify"), st.integers(-1, 1_000)),
    st.tuples(st.just("reconnect"), st.integers(0, 0)),
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(_STEP, max_size=60), chunk_size=st.integers(1, 40))
def test_every_request_completes_once_and_last_zxid_only_grows(
    steps: list[tuple[str, int]], chunk_size: int
) -> None:
    """Random submits, replies (fed in chunks), notifications and reconnects.
    Hypothesis prints the failing `steps`/`chunk_size`; rerun with them to reproduce."""
    session = Session(session_timeout_ms=6000)
    server, _ = handshake(session)
    outstanding: list[int] = []  # xids in flight, oldest first
    completed: dict[int, int] = {}  # token -> err
    submitted = 0
    highest = 0
    previous_last = 0

    def feed(data: bytes) -> None:
        for start in range(0, len(data), chunk_size):
            for output in session.receive_data(data[start : start + chunk_size], 0):
                if isinstance(output, Completed):
                    assert isinstance(output.token, int)
                    assert output.token not in completed, "completed twice"
                    completed[output.token] = output.err

    for kind, value in steps:
        if kind == "submit":
            xid = session.submit(OpCode.SYNC, PathRecord(path="/"), token=submitted, now_ms=0)
            outstanding.append(xid)
            submitted += 1
            server.receive(session.data_to_send())
        elif kind == "reply" and outstanding:
            xid = outstanding.pop(0)
            feed(encode_reply(xid, value, 0, PathRecord(path="/")))
            highest = max(highest, value)
        elif kind == "notify":
            raw = WatcherEvent(type=EventType.NODE_DATA_CHANGED, state=3, path="/x")
            feed(encode_notification(raw, value))
            highest = max(highest, value)
        elif kind == "reconnect":
            for output in session.connection_lost(0):
                if isinstance(output, Completed):
                    assert isinstance(output.token, int)
                    assert output.token not in completed, "completed twice"
                    assert output.err == ErrorCode.CONNECTION_LOSS
                    completed[output.token] = output.err
            outstanding.clear()
            server, _ = handshake(session)
            assert server.connect is not None
            assert server.connect.request.last_zxid_seen == session.last_zxid_seen
        assert session.last_zxid_seen >= previous_last
        previous_last = session.last_zxid_seen
    assert session.last_zxid_seen == max(0, highest)
    for output in session.connection_lost(0):
        if isinstance(output, Completed):
            assert isinstance(output.token, int)
            assert output.token not in completed
            completed[output.token] = output.err
    assert sorted(completed) == list(range(submitted))
