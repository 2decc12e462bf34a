"""The Replica alone: no sockets, a fake clock, persists held back at will."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.consensus.types import EntryKind
from corral.protocol.connection import Connected, Notification, Reply, ServerConnection
from corral.protocol.constants import CreateMode, ErrorCode, EventType, OpCode
from corral.protocol.errors import ProtocolError
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    ConnectRequest,
    CreateRequest,
    GetDataRequest,
    SetDataRequest,
    Stat,
)
from corral.replica import replica as replica_module
from corral.replica.replica import ReplicaConfig
from corral.tree.tree import DataTree
from corral.tree.txn import Txn, decode_txn
from tests.replica.harness import Harness


def create_request(path: str, data: bytes = b"", flags: int = 0) -> CreateRequest:
    return CreateRequest(path=path, data=data, acl=OPEN_ACL_UNSAFE, flags=flags)


def test_new_session_is_answered_only_once_durable() -> None:
    harness = Harness()
    harness.auto_persist = False
    client = harness.open()
    harness.connect(client)
    assert client.received == []
    assert harness.held, "the createSession entry must be persisted first"
    harness.release()
    assert len(client.received) == 1
    connected = client.received[0]
    assert isinstance(connected, Connected)
    assert connected.response.session_id >> 56 == 1
    assert connected.response.timeout_ms == 30_000


def test_a_read_behind_a_write_waits_for_it() -> None:
    harness = Harness()
    client = harness.session()
    harness.auto_persist = False
    write_xid = harness.send(client, OpCode.CREATE, create_request("/a", b"v"))
    read_xid = harness.send(client, OpCode.GET_DATA, GetDataRequest(path="/a", watch=False))
    assert harness.replies(client) == []  # nothing before the write is durable
    harness.auto_persist = True
    harness.release()
    replies = harness.replies(client)
    assert [r.xid for r in replies] == [write_xid, read_xid]
    assert replies[0].err == 0
    assert replies[1].err == 0
    assert replies[1].body.data == b"v"  # type: ignore[union-attr]
    assert replies[1].zxid == replies[0].zxid


def test_reads_of_other_connections_are_not_held_up() -> None:
    harness = Harness()
    writer = harness.session()
    reader = harness.session()
    harness.auto_persist = False
    harness.send(writer, OpCode.CREATE, create_request("/slow"))
    harness.send(reader, OpCode.GET_DATA, GetDataRequest(path="/slow", watch=False))
    replies = harness.replies(reader)
    assert len(replies) == 1
    assert replies[0].err == ErrorCode.NO_NODE  # the create is not applied yet
    harness.auto_persist = True
    harness.release()


def test_writes_in_flight_are_committed_together() -> None:
    harness = Harness()
    client = harness.session()
    harness.auto_persist = False
    for i in range(5):
        harness.send(client, OpCode.CREATE, create_request(f"/g{i}"))
    # The first create went out alone; the other four wait and go in one batch.
    assert len(harness.held) == 1
    harness.auto_persist = True
    harness.release()
    replies = harness.replies(client)
    assert [r.err for r in replies] == [0] * 5
    assert [r.zxid for r in replies] == sorted({r.zxid for r in replies})


def test_own_event_precedes_own_reply() -> None:
    harness = Harness()
    client = harness.session()
    harness.send(client, OpCode.CREATE, create_request("/w"))
    harness.send(client, OpCode.GET_DATA, GetDataRequest(path="/w", watch=True))
    harness.send(client, OpCode.SET_DATA, SetDataRequest(path="/w", data=b"x", version=-1))
    last_two = client.received[-2:]
    assert isinstance(last_two[0], Notification)
    assert last_two[0].event.type == EventType.NODE_DATA_CHANGED
    assert isinstance(last_two[1], Reply)
    assert last_two[0].zxid == last_two[1].zxid  # 3.9: the zxid of the txn


def test_large_pipelined_reads_are_answered_a_batch_at_a_time() -> None:
    harness = Harness()
    client = harness.session()
    harness.auto_drain = False
    harness.auto_persist = False
    # The reads queue behind the create; when it applies, they are all ready at once.
    harness.send(client, OpCode.CREATE, create_request("/big", b"x" * 300_000))
    read = GetDataRequest(path="/big", watch=False)
    xids = [harness.send(client, OpCode.GET_DATA, read) for _ in range(20)]
    harness.auto_persist = True
    harness.release()
    answered = sum(1 for r in harness.replies(client) if r.opcode == OpCode.GET_DATA)
    # About 1 MiB of answers, then the connection waits for the client to read them.
    assert 1 <= answered < 20
    assert harness.paused == [client.connection_id]
    while harness.paused:
        connection_id = harness.paused.pop()
        harness.execute(harness.replica.on_output_drained(connection_id, harness.now_ms))
    replies = [r for r in harness.replies(client) if r.opcode == OpCode.GET_DATA]
    assert [r.xid for r in replies] == xids
    assert all(r.body.data == b"x" * 300_000 for r in replies)  # type: ignore[union-attr]


def test_idle_session_expires_and_its_ephemerals_go() -> None:
    harness = Harness()
    owner = harness.open()
    harness.connect(owner, timeout_ms=4000)
    harness.send(owner, OpCode.CREATE, create_request("/e", flags=CreateMode.EPHEMERAL))
    watcher = harness.session()
    harness.send(watcher, OpCode.GET_DATA, GetDataRequest(path="/e", watch=True))
    for _ in range(7):  # 3.5 s: still alive (deadline is between 4 s and 6 s)
        harness.advance(500)
    assert not owner.closed
    # The watcher keeps its own session alive while the owner stays silent.
    for _ in range(6):
        harness.advance(500)
        harness.send(watcher, OpCode.PING, xid=-2)
    assert owner.closed
    events = harness.notifications(watcher)
    assert [(n.event.type, n.event.path) for n in events] == [(EventType.NODE_DELETED, "/e")]
    assert harness.tree.get("/e") is None


def test_pings_keep_a_session_alive() -> None:
    harness = Harness()
    client = harness.open()
    harness.connect(client, timeout_ms=4000)
    for _ in range(20):  # 20 s of pings every second
        harness.advance(1000)
        harness.send(client, OpCode.PING, xid=-2)
    assert not client.closed
    assert all(r.xid == -2 for r in harness.replies(client))


def test_connection_without_handshake_is_dropped() -> None:
    harness = Harness()
    client = harness.open()
    harness.advance(9_000)
    assert not client.closed
    harness.advance(2_000)
    assert client.closed


def test_client_ahead_of_the_server_is_closed_without_reply() -> None:
    harness = Harness()
    client = harness.open()
    harness.connect(client, last_zxid_seen=1_000)
    assert client.closed
    assert client.received == []


def test_max_client_connections_per_address() -> None:
    harness = Harness(ReplicaConfig(max_client_cnxns=2))
    first, second, third = harness.open(), harness.open(), harness.open()
    assert not first.closed
    assert not second.closed
    assert third.closed
    other_address = harness.open("127.0.0.2")
    assert not other_address.closed


def test_close_session_replies_then_closes() -> None:
    harness = Harness()
    client = harness.session()
    harness.send(client, OpCode.CREATE, create_request("/mine", flags=CreateMode.EPHEMERAL))
    xid = harness.send(client, OpCode.CLOSE_SESSION)
    reply = harness.replies(client)[-1]
    assert (reply.xid, reply.err) == (xid, 0)
    assert client.closed
    assert harness.tree.get("/mine") is None
    assert harness.tree.sessions == {}


def test_failed_writes_consume_a_zxid() -> None:
    harness = Harness()
    client = harness.session()
    ok = harness.send(client, OpCode.CREATE, create_request("/z"))
    harness.send(client, OpCode.CREATE, create_request("/z"))
    harness.send(client, OpCode.CREATE, create_request("/y"))
    replies = harness.replies(client)
    assert [r.err for r in replies] == [0, ErrorCode.NODE_EXISTS, 0]
    assert [r.zxid for r in replies] == [replies[0].zxid, replies[0].zxid + 1, replies[0].zxid + 2]
    assert ok == replies[0].xid


def test_own_writes_apply_without_decoding_and_match_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[bytes] = []

    def counting_decode_txn(data: bytes) -> Txn:
        decoded.append(data)
        return decode_txn(data)

    monkeypatch.setattr(replica_module, "decode_txn", counting_decode_txn)
    harness = Harness()
    client = harness.session()
    harness.send(
        client, OpCode.CREATE, create_request("/e-", b"v", flags=CreateMode.EPHEMERAL_SEQUENTIAL)
    )
    harness.send(
        client, OpCode.SET_DATA, SetDataRequest(path="/e-0000000000", data=b"w", version=0)
    )
    harness.send(client, OpCode.CREATE, create_request("/e-0000000000"))  # fails: exists
    replies = harness.replies(client)
    assert [r.err for r in replies] == [0, 0, ErrorCode.NODE_EXISTS]
    assert decoded == []  # the leader applied the txns it had encoded itself
    # The log holds what was applied: replaying it from scratch gives the same tree.
    replayed = DataTree(extended_types_enabled=True)
    storage = harness.storage
    entries = storage.entries(storage.first_index(), storage.last_index() + 1)
    for entry in entries:
        if entry.kind == EntryKind.NORMAL:
            replayed.apply(decode_txn(entry.data), entry.index)
    assert replayed.last_zxid == harness.tree.last_zxid
    assert _tree_state(replayed) == _tree_state(harness.tree)
    written = harness.tree.get("/e-0000000000")
    assert written is not None
    assert written.data == b"w"


def _tree_state(tree: DataTree) -> list[tuple[str, Stat, bytes | None, tuple[ACL, ...]]]:
    return [(path, znode.stat(), znode.data, znode.acl) for path, znode in tree.walk()]


def _valid_handshake() -> bytes:
    request = ConnectRequest(
        protocol_version=0,
        last_zxid_seen=0,
        timeout_ms=10_000,
        session_id=0,
        password=bytes(16),
        read_only=False,
    )
    payload = request.to_bytes()
    return struct.pack(">i", len(payload)) + payload


_frame = st.binary(max_size=64).map(lambda body: struct.pack(">i", len(body)) + body)
_request_frame = st.tuples(
    st.integers(-10, 10),
    st.sampled_from([int(op) for op in OpCode] + [999]),
    st.binary(max_size=48),
).map(lambda t: struct.pack(">iii", 8 + len(t[2]), t[0], t[1]) + t[2])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.one_of(_frame, _request_frame, st.binary(max_size=32)), max_size=12))
def test_nothing_a_client_sends_breaks_the_replica(chunks: list[bytes]) -> None:
    harness = Harness()
    client = harness.open()
    codec = ServerConnection()
    try:
        harness.feed_bytes(client, codec, _valid_handshake() + b"".join(chunks))
    except ProtocolError:
        harness.execute(harness.replica.on_connection_closed(client.connection_id))
    # The tree is intact and the server still serves a fresh client.
    for path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
        assert harness.tree.get(path) is not None
    fresh = harness.session()
    harness.send(fresh, OpCode.CREATE, create_request("/after-fuzz"))
    assert harness.replies(fresh)[-1].err in (0, ErrorCode.NODE_EXISTS)
    znode = harness.tree.get("/")
    assert znode is not None
    stat = harness.tree.stat("/")
    assert stat is not None
    assert stat.num_children == len(znode.children)
