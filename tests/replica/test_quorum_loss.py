"""A member that has lost its quorum: it stops serving, or serves read-only clients.

Three in-process replicas (tests/replica/test_cluster.py's Cluster); a replica cut off
from the others loses its leader, and after the grace period its quorum.
"""

from __future__ import annotations

from corral import limits
from corral.protocol.connection import Connected
from corral.protocol.constants import ErrorCode, OpCode, SpecialXid
from corral.protocol.records import (
    DeleteRequest,
    ExistsRequest,
    GetChildrenRequest,
    GetDataRequest,
    GetDataResponse,
    PathRecord,
    SetDataRequest,
)
from corral.replica.replica import ReplicaConfig
from tests.replica.harness import Harness
from tests.replica.test_cluster import IDS, Client, Cluster, create

# The cluster's tickTime is 500 ms, so the grace is the 2 s minimum; an election takes
# a few hundred ms more.
PAST_GRACE_MS = limits.QUORUM_LOST_GRACE_MIN_MS + 2_000


def isolate_a_follower(cluster: Cluster) -> tuple[int, int]:
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    cluster.cut.add(follower)
    return leader, follower


def connected(client: Client) -> Connected | None:
    return next((e for e in client.received if isinstance(e, Connected)), None)


def test_a_member_without_quorum_closes_its_clients_and_refuses_new_ones() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    client = cluster.connect(follower)
    assert connected(client) is not None and not client.closed
    cluster.cut.add(follower)
    cluster.advance(PAST_GRACE_MS)
    replica = cluster.replicas[follower]
    assert not replica.serving and not replica.read_only
    assert client.closed  # it moves to a server that can serve it
    # Read-only mode is off: even a client that would accept read-only is refused.
    for read_only in (False, True):
        late = cluster.connect(follower, read_only=read_only)
        assert late.closed and connected(late) is None
    # The majority goes on serving.
    assert cluster.replicas[leader].serving
    other = cluster.connect(leader)
    reply = cluster.send(other, OpCode.CREATE, create("/majority"))
    assert reply is not None and reply.err == ErrorCode.OK


def test_read_only_mode_serves_reads_and_refuses_writes_and_sync() -> None:
    cluster = Cluster(read_only_mode_enabled=True)
    leader = cluster.elect()
    writer = cluster.connect(leader)
    reply = cluster.send(writer, OpCode.CREATE, create("/config", b"v1"))
    assert reply is not None and reply.err == ErrorCode.OK
    cluster.advance(500)  # the followers apply it
    follower = next(rid for rid in IDS if rid != leader)
    cluster.cut.add(follower)
    cluster.advance(PAST_GRACE_MS)
    replica = cluster.replicas[follower]
    assert replica.serving and replica.read_only

    refused = cluster.connect(follower)  # does not allow a read-only server
    assert refused.closed and connected(refused) is None

    client = cluster.connect(follower, read_only=True)
    handshake = connected(client)
    assert handshake is not None and not client.closed
    assert handshake.response.read_only is True and handshake.response.session_id != 0

    got = cluster.send(client, OpCode.GET_DATA, GetDataRequest(path="/config", watch=True))
    assert got is not None and got.err == ErrorCode.OK
    assert isinstance(got.body, GetDataResponse) and got.body.data == b"v1"
    listed = cluster.send(client, OpCode.GET_CHILDREN, GetChildrenRequest(path="/", watch=False))
    assert listed is not None and listed.err == ErrorCode.OK
    exists = cluster.send(client, OpCode.EXISTS, ExistsRequest(path="/none", watch=False))
    assert exists is not None and exists.err == ErrorCode.NO_NODE
    cluster.send(client, OpCode.PING)  # answered with ZooKeeper's ping xid
    ping = client.replies()[-1]
    assert ping.xid == SpecialXid.PING and ping.err == ErrorCode.OK

    zxid_before = replica.last_zxid
    for opcode, record in (
        (OpCode.CREATE, create("/nope")),
        (OpCode.SET_DATA, SetDataRequest(path="/config", data=b"v2", version=-1)),
        (OpCode.DELETE, DeleteRequest(path="/config", version=-1)),
        (OpCode.SYNC, PathRecord(path="/")),
    ):
        answer = cluster.send(client, opcode, record)
        assert answer is not None and answer.err == ErrorCode.NOT_READ_ONLY, (opcode, answer)
    assert not client.closed
    assert replica.last_zxid == zxid_before  # nothing went into the log
    assert replica.tree.get("/nope") is None


def test_a_global_session_cannot_be_reattached_without_quorum() -> None:
    cluster = Cluster(read_only_mode_enabled=True)
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    first = cluster.connect(follower, read_only=True)
    handshake = connected(first)
    assert handshake is not None and handshake.response.read_only is False
    session = handshake.response
    cluster.cut.add(follower)
    cluster.advance(PAST_GRACE_MS)
    assert first.closed
    again = cluster.connect(
        follower,
        read_only=True,
        session_id=session.session_id,
        password=session.password,  # type: ignore[arg-type]
    )
    assert again.closed and connected(again) is None


def test_a_read_only_session_is_local_and_can_resume_then_close() -> None:
    cluster = Cluster(read_only_mode_enabled=True)
    _, follower = isolate_a_follower(cluster)
    cluster.advance(PAST_GRACE_MS)
    first = cluster.connect(follower, read_only=True)
    handshake = connected(first)
    assert handshake is not None
    session_id, password = handshake.response.session_id, handshake.response.password
    replica = cluster.replicas[follower]
    assert session_id not in replica.tree.sessions  # local: not in the log

    # Resuming with the wrong password is refused; with the right one it works and the
    # first connection is closed (the session moved).
    wrong = cluster.connect(
        follower,
        read_only=True,
        session_id=session_id,
        password=bytes(16),  # type: ignore[arg-type]
    )
    assert wrong.closed and connected(wrong) is None
    second = cluster.connect(
        follower,
        read_only=True,
        session_id=session_id,
        password=password,  # type: ignore[arg-type]
    )
    resumed = connected(second)
    assert resumed is not None and resumed.response.session_id == session_id
    assert first.closed and not second.closed

    closing = cluster.send(second, OpCode.CLOSE_SESSION)
    assert closing is not None and closing.err == ErrorCode.OK
    assert second.closed
    gone = cluster.connect(
        follower,
        read_only=True,
        session_id=session_id,
        password=password,  # type: ignore[arg-type]
    )
    assert gone.closed and connected(gone) is None


def test_a_silent_read_only_session_expires() -> None:
    cluster = Cluster(read_only_mode_enabled=True)
    _, follower = isolate_a_follower(cluster)
    cluster.advance(PAST_GRACE_MS)
    client = cluster.connect(follower, read_only=True, timeout_ms=2_000)
    handshake = connected(client)
    assert handshake is not None
    cluster.advance(handshake.response.timeout_ms + 2_000)  # no pings
    assert client.closed
    again = cluster.connect(
        follower,
        read_only=True,
        session_id=handshake.response.session_id,
        password=handshake.response.password,  # type: ignore[arg-type]
    )
    assert again.closed and connected(again) is None


def test_when_the_quorum_is_back_read_only_clients_are_closed_and_writes_work() -> None:
    cluster = Cluster(read_only_mode_enabled=True)
    leader, follower = isolate_a_follower(cluster)
    cluster.advance(PAST_GRACE_MS)
    read_only_client = cluster.connect(follower, read_only=True)
    assert connected(read_only_client) is not None
    # The majority writes meanwhile.
    writer = cluster.connect(leader)
    reply = cluster.send(writer, OpCode.CREATE, create("/while-apart", b"x"))
    assert reply is not None and reply.err == ErrorCode.OK

    cluster.cut.clear()
    for _ in range(100):
        cluster.advance(100)
        if cluster.replicas[follower].serving and not cluster.replicas[follower].read_only:
            break
    replica = cluster.replicas[follower]
    assert replica.serving and not replica.read_only
    assert read_only_client.closed  # its local session is gone with the mode
    client = cluster.connect(follower)
    handshake = connected(client)
    assert handshake is not None and handshake.response.read_only is False
    assert handshake.response.session_id in replica.tree.sessions
    written = cluster.send(client, OpCode.CREATE, create("/after", b"y"))
    assert written is not None and written.err == ErrorCode.OK
    assert replica.tree.get("/while-apart") is not None


def test_a_standalone_server_never_loses_its_quorum() -> None:
    harness = Harness(ReplicaConfig(read_only_mode_enabled=True))
    client = harness.session()
    harness.advance(10 * limits.QUORUM_LOST_GRACE_MIN_MS)
    assert harness.replica.serving and not harness.replica.read_only
    xid = harness.send(client, OpCode.CREATE, create("/still"))
    reply = next(r for r in harness.replies(client) if r.xid == xid)
    assert reply.err == ErrorCode.OK
