"""Log compaction and snapshot transfer between Replicas (three in one process).

A follower cut off while the leader writes and compacts its log can only catch up by
receiving the leader's snapshot: it installs it (tree, sessions, ACLs, quotas), closes
its client connections, and then follows the log like any other follower.
"""

from __future__ import annotations

from corral import limits
from corral.consensus.types import SnapshotMeta, SnapshotSend
from corral.protocol.connection import Connected
from corral.protocol.constants import CreateMode, ErrorCode, OpCode, Perm
from corral.protocol.records import (
    ACL,
    AuthPacket,
    CreateRequest,
    GetDataRequest,
    Id,
    SetDataRequest,
)
from corral.replica.messages import encode_snapshot_chunks
from corral.tree.acl import digest
from corral.tree.snapshot import decode_snapshot, encode_snapshot
from corral.tree.tree import CONFIG_PATH
from tests.replica.test_cluster import IDS, Client, Cluster, create

CATCH_UP_MS_MAX = 10_000
STEP_MS = 100


def ok(cluster: Cluster, client: Client, opcode: int, record: object) -> int:
    reply = cluster.send(client, opcode, record)  # type: ignore[arg-type]
    assert reply is not None, (opcode, record)
    assert reply.err == ErrorCode.OK, (opcode, record, reply.err)
    return reply.zxid


def catch_up(cluster: Cluster, rid: int, leader: int) -> None:
    """Advance time until `rid` has applied everything the leader has (bounded)."""
    for _ in range(CATCH_UP_MS_MAX // STEP_MS):
        cluster.advance(STEP_MS)
        if cluster.replicas[rid].tree.last_zxid == cluster.replicas[leader].tree.last_zxid:
            return
    raise AssertionError(
        f"replica {rid} at {cluster.replicas[rid].tree.last_zxid}, "
        f"leader at {cluster.replicas[leader].tree.last_zxid}"
    )


def assert_same_state(cluster: Cluster, rid: int, leader: int) -> None:
    """The whole tree and session table (the snapshot encoding covers every znode, Stat,
    ACL, session, counter and quota registration) are identical."""
    mine, theirs = cluster.replicas[rid].tree, cluster.replicas[leader].tree
    assert mine.last_zxid == theirs.last_zxid
    assert dict(mine.sessions) == dict(theirs.sessions)
    assert encode_snapshot(mine) == encode_snapshot(theirs)


def cut_off_and_compact(cluster: Cluster, writes: int) -> tuple[int, int]:
    """Elect, cut a follower off, write `writes` znodes through the leader and compact
    every connected replica; returns (leader, the cut-off follower)."""
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    writer = cluster.connect(leader)
    ok(cluster, writer, OpCode.CREATE, create("/before"))
    cluster.advance(500)
    cluster.cut.add(follower)
    for i in range(writes):
        ok(cluster, writer, OpCode.CREATE, create(f"/n{i}", b"v%d" % i))
    cluster.advance(500)
    for rid in IDS:
        if rid != follower:
            cluster.compact(rid)
    # The leader no longer holds what the follower needs next.
    assert cluster.storages[leader].first_index() > cluster.storages[follower].last_index() + 1
    return leader, follower


def test_a_cut_off_follower_catches_up_by_snapshot_and_its_clients_reconnect() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    # A client of the follower, with a session and a watch on the old tree.
    watcher = cluster.connect(follower, timeout_ms=20_000)
    connected = watcher.received[0]
    assert isinstance(connected, Connected)
    ok(cluster, watcher, OpCode.CREATE, create("/watched", b"old"))
    cluster.advance(500)
    ok(cluster, watcher, OpCode.GET_DATA, GetDataRequest(path="/watched", watch=True))

    cluster.cut.add(follower)
    writer = cluster.connect(leader)
    for i in range(40):
        ok(cluster, writer, OpCode.CREATE, create(f"/n{i}", b"v%d" % i))
    ok(cluster, writer, OpCode.SET_DATA, SetDataRequest(path="/watched", data=b"new", version=-1))
    cluster.advance(500)
    for rid in IDS:
        if rid != follower:
            cluster.compact(rid)
    assert cluster.storages[leader].first_index() > cluster.storages[follower].last_index() + 1
    assert not watcher.closed

    cluster.cut.discard(follower)
    catch_up(cluster, follower, leader)
    assert cluster.installs[follower] == 1
    assert cluster.installs[leader] == 0
    meta = cluster.storages[follower].snapshot_meta()
    assert meta is not None
    assert cluster.storages[follower].first_index() == meta.index + 1
    assert_same_state(cluster, follower, leader)
    # Its client was disconnected (its watch was about the old tree); it resumes its
    # session on the same replica and sees the new data.
    assert watcher.closed
    again = cluster.connect(
        follower,
        session_id=connected.response.session_id,
        password=connected.response.password,  # type: ignore[arg-type]
    )
    resumed = again.received[0]
    assert isinstance(resumed, Connected)
    assert resumed.response.session_id == connected.response.session_id
    read = cluster.send(again, OpCode.GET_DATA, GetDataRequest(path="/watched", watch=False))
    assert read is not None and read.err == ErrorCode.OK
    assert read.body.data == b"new"  # type: ignore[union-attr]

    # After the install it follows the log as usual, and writes through it work.
    ok(cluster, again, OpCode.CREATE, create("/after", b"x"))
    ok(cluster, writer, OpCode.CREATE, create("/after2", b"y"))
    catch_up(cluster, follower, leader)
    assert_same_state(cluster, follower, leader)
    assert cluster.installs[follower] == 1


def test_a_snapshot_with_sessions_ephemerals_acls_and_quotas_installs_correctly() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    cluster.cut.add(follower)
    owner = cluster.connect(leader, timeout_ms=30_000)
    owner_session = owner.received[0]
    assert isinstance(owner_session, Connected)
    ok(cluster, owner, OpCode.CREATE, create("/app"))
    ok(cluster, owner, OpCode.CREATE, create("/app/eph", b"e", flags=CreateMode.EPHEMERAL))
    ok(
        cluster,
        owner,
        OpCode.CREATE,
        create("/app/seq-", b"s", flags=CreateMode.EPHEMERAL_SEQUENTIAL),
    )
    ok(cluster, owner, OpCode.AUTH, AuthPacket(type=0, scheme="digest", auth=b"alice:secret"))
    alice = Id(scheme="digest", id=digest("alice:secret"))
    ok(
        cluster,
        owner,
        OpCode.CREATE,
        CreateRequest(
            path="/secret",
            data=b"hidden",
            acl=(ACL(perms=Perm.ALL, id=alice),),
            flags=0,
        ),
    )
    # A quota on /app: limits (written by the client) and stats (kept by the tree).
    for path, data in (
        ("/zookeeper/quota/app", b""),
        ("/zookeeper/quota/app/zookeeper_limits", b"count=10,bytes=-1"),
        ("/zookeeper/quota/app/zookeeper_stats", b"count=0,bytes=0"),
    ):
        ok(cluster, owner, OpCode.CREATE, create(path, data))
    other = cluster.connect(leader, timeout_ms=15_000)
    ok(cluster, other, OpCode.CREATE, create("/other-eph", flags=CreateMode.EPHEMERAL))
    cluster.advance(500)
    for rid in IDS:
        if rid != follower:
            cluster.compact(rid)
    assert cluster.storages[leader].first_index() > cluster.storages[follower].last_index() + 1

    cluster.cut.discard(follower)
    catch_up(cluster, follower, leader)
    assert cluster.installs[follower] == 1
    assert_same_state(cluster, follower, leader)
    tree = cluster.replicas[follower].tree
    session_id = owner_session.response.session_id
    assert tree.ephemerals(session_id) == cluster.replicas[leader].tree.ephemerals(session_id)
    assert len(tree.ephemerals(session_id)) == 2
    assert len(tree.sessions) == 2
    secret = tree.get("/secret")
    assert secret is not None
    assert secret.acl == (ACL(perms=Perm.ALL, id=alice),)

    # The installed state behaves: the ACL is enforced on the follower, the quota stats
    # follow the next write under /app, and the session resumes there.
    reader = cluster.connect(follower)
    denied = cluster.send(reader, OpCode.GET_DATA, GetDataRequest(path="/secret", watch=False))
    assert denied is not None and denied.err == ErrorCode.NO_AUTH
    ok(cluster, other, OpCode.CREATE, create("/app/more", b"12345"))
    catch_up(cluster, follower, leader)
    stats = "/zookeeper/quota/app/zookeeper_stats"
    assert cluster.replicas[follower].tree.get(stats) is not None
    assert (
        cluster.replicas[follower].tree.get(stats).data  # type: ignore[union-attr]
        == cluster.replicas[leader].tree.get(stats).data  # type: ignore[union-attr]
    )
    assert_same_state(cluster, follower, leader)
    resumed = cluster.connect(
        follower,
        session_id=session_id,
        password=owner_session.response.password,  # type: ignore[arg-type]
    )
    assert isinstance(resumed.received[0], Connected)
    assert resumed.received[0].response.session_id == session_id


def test_compaction_without_a_lagging_peer_sends_no_snapshot() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    writer = cluster.connect(leader)
    for i in range(10):
        ok(cluster, writer, OpCode.CREATE, create(f"/k{i}"))
    cluster.advance(500)
    for rid in IDS:
        cluster.compact(rid)
    ok(cluster, writer, OpCode.CREATE, create("/k-after"))
    cluster.advance(500)
    assert cluster.installs == dict.fromkeys(IDS, 0)
    for rid in IDS:
        assert_same_state(cluster, rid, leader)


def test_a_snapshot_older_than_the_last_install_is_ignored() -> None:
    """A snapshot writer that finishes after a newer snapshot was installed must not
    compact (the log already starts after the installed one)."""
    cluster = Cluster()
    leader, follower = cut_off_and_compact(cluster, writes=12)
    stale = cluster.replicas[follower].snapshot_meta()
    assert stale is not None
    cluster.cut.discard(follower)
    catch_up(cluster, follower, leader)
    first_index = cluster.storages[follower].first_index()
    cluster.execute(follower, cluster.replicas[follower].on_snapshot_durable(stale))
    assert cluster.storages[follower].first_index() == first_index
    assert_same_state(cluster, follower, leader)


def test_a_chunk_of_the_largest_size_fits_a_peer_frame() -> None:
    voters = tuple(range(1, 128))
    learners = tuple(range(128, 256))
    send = SnapshotSend(
        from_id=1,
        to_id=2,
        term=2**62,
        meta=SnapshotMeta(index=2**62, term=2**62, voters=voters, learners=learners),
    )
    content = bytes(limits.SNAPSHOT_CHUNK_SIZE_MAX * 2 + 1)
    payloads = encode_snapshot_chunks(send, content)
    assert len(payloads) == 3
    assert {peer for peer, _ in payloads} == {2}
    assert max(len(p) for _, p in payloads) <= limits.SNAPSHOT_CHUNK_MESSAGE_SIZE_MAX
    assert max(len(p) for _, p in payloads) > limits.SNAPSHOT_CHUNK_SIZE_MAX


def transfers_started(init_limit_ticks: int, duration_ms: int) -> int:
    """Snapshot transfers the leader starts to a follower whose chunks are all lost."""
    cluster = Cluster(init_limit_ticks=init_limit_ticks)
    leader, follower = cut_off_and_compact(cluster, writes=8)
    cluster.lose_snapshots.add(follower)
    cluster.cut.discard(follower)
    cluster.advance(duration_ms)
    assert cluster.installs[follower] == 0
    return cluster.snapshot_sends[leader]


def test_a_stalled_transfer_starts_again_after_init_limit() -> None:
    """initLimit x tickTime (ZooKeeper: the time a follower has to sync with its leader)
    is how long a snapshot transfer may go without progress before it starts again.
    The test cluster's tickTime is 500 ms."""
    short = transfers_started(init_limit_ticks=2, duration_ms=6_000)  # every 1 s
    long = transfers_started(init_limit_ticks=10, duration_ms=6_000)  # every 5 s
    assert 5 <= short <= 7, short
    assert 1 <= long <= 2, long


def test_the_config_znode_holds_the_membership_at_start_and_after_an_install() -> None:
    # /zookeeper/config is set by each replica (at start and after an install), never
    # logged: a snapshot written from the log alone (as the server's snapshot writer
    # does) has it empty, and the follower installing it still shows the membership.
    text = b"server.1=h1:1:2:participant\nserver.2=h2:1:2:participant\nversion=0"
    cluster = Cluster(config_znode_data=text)
    for replica in cluster.replicas.values():
        znode = replica.tree.get(CONFIG_PATH)
        assert znode is not None
        assert (znode.data, znode.version, znode.mzxid) == (text, -1, 0)
        replica.tree.check_invariants()
    leader, follower = cut_off_and_compact(cluster, writes=40)
    meta, content = cluster.snapshots[leader]
    from_the_log = decode_snapshot(content)
    from_the_log.set_config_data(b"")
    cluster.snapshots[leader] = (meta, encode_snapshot(from_the_log))
    cluster.cut.discard(follower)
    catch_up(cluster, follower, leader)
    assert cluster.installs[follower] == 1
    installed = cluster.replicas[follower].tree.get(CONFIG_PATH)
    assert installed is not None and installed.data == text
    assert_same_state(cluster, follower, leader)
