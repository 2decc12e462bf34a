"""Three Replicas in one process: a fake clock, a network we control, sans-IO clients.

The replicas exchange the payloads of replica/messages.py through an in-memory network
that a test can cut; each persists into its own MemoryLogStorage and keeps its last
snapshot in memory (`compact` takes one; a snapshot received from the leader is
installed as the Outbox contract says). Clients attach to a chosen replica, as a
ZooKeeper client attaches to one server of an ensemble.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from corral import limits
from corral.consensus.log_storage import MemoryLogStorage
from corral.consensus.types import MessageKind, SnapshotMeta
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    ClientConnection,
    Connected,
    Notification,
    Reply,
    Request,
)
from corral.protocol.constants import CreateMode, ErrorCode, OpCode
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    ConnectRequest,
    CreateRequest,
    GetDataRequest,
    PathRecord,
    Record,
    SetDataRequest,
)
from corral.replica.messages import (
    Forward,
    RaftPayload,
    decode_payload,
    encode_snapshot_chunks,
)
from corral.replica.outbox import Outbox
from corral.replica.replica import Replica, ReplicaConfig
from corral.tree.snapshot import encode_snapshot
from corral.tree.tree import DataTree

WALL_EPOCH_MS = 1_700_000_000_000
STEP_MS = 50
IDS = (1, 2, 3)


@dataclass
class Client:
    replica_id: int
    connection_id: int
    codec: ClientConnection = field(default_factory=ClientConnection)
    received: list[Connected | Reply | Notification] = field(default_factory=list)
    closed: bool = False
    next_xid: int = 1

    def replies(self) -> list[Reply]:
        return [e for e in self.received if isinstance(e, Reply)]


class Cluster:
    def __init__(
        self,
        *,
        read_only_mode_enabled: bool = False,
        init_limit_ticks: int = limits.INIT_LIMIT_DEFAULT_TICKS,
        config_znode_data: bytes = b"",
    ) -> None:
        self.now_ms = 0
        self.storages = {rid: MemoryLogStorage() for rid in IDS}
        self.replicas: dict[int, Replica] = {}
        self.network: deque[tuple[int, int, bytes]] = deque()
        self.cut: set[int] = set()  # replicas whose traffic is dropped both ways
        self.cut_links: set[tuple[int, int]] = set()  # (sender, receiver) links that drop
        self.stalled: set[int] = set()  # replicas whose disk holds every persist
        self.held: dict[int, list[Outbox]] = {rid: [] for rid in IDS}  # (stalled disks)
        self.clients: dict[tuple[int, int], Client] = {}
        self.snapshots: dict[int, tuple[SnapshotMeta, bytes]] = {}  # the durable one
        self.installs: dict[int, int] = dict.fromkeys(IDS, 0)  # snapshots received
        self.snapshot_sends: dict[int, int] = dict.fromkeys(IDS, 0)  # transfers started
        self.lose_snapshots: set[int] = set()  # replicas the snapshot chunks never reach
        self._next_connection = 1
        for rid in IDS:
            self.replicas[rid] = Replica(
                config=ReplicaConfig(
                    replica_id=rid,
                    voters=IDS,
                    tick_time_ms=500,
                    read_only_mode_enabled=read_only_mode_enabled,
                    init_limit_ticks=init_limit_ticks,
                    config_znode_data=config_znode_data,
                ),
                storage=self.storages[rid],
                tree=DataTree(),
                random_bytes=lambda size, rid=rid: bytes([rid]) * size,
                rng_seed=rid,
                now_ms=0,
                wall_ms=WALL_EPOCH_MS,
            )
        for rid, replica in self.replicas.items():
            self.execute(rid, replica.take_startup_outbox())

    # ------------------------------------------------------------------ plumbing

    def execute(self, rid: int, out: Outbox) -> None:
        pending = [out]
        while pending:
            current = pending.pop(0)
            for peer_id, payload in current.send_now:  # forwards wait for no persist
                self.network.append((rid, peer_id, payload))
            for connection_id, frame in current.reply:
                client = self.clients.get((rid, connection_id))
                if client is None or client.closed:
                    continue
                client.codec.receive_data(frame)
                while True:
                    event = client.codec.next_event()
                    if event is NEED_DATA or event is PEER_CLOSED:
                        break
                    client.received.append(event)  # type: ignore[arg-type]
            for connection_id in current.close:
                client = self.clients.get((rid, connection_id))
                if client is not None and not client.closed:
                    client.closed = True
                    self.replicas[rid].on_connection_closed(connection_id)
            for connection_id in current.paused:
                pending.append(self.replicas[rid].on_output_drained(connection_id, self.now_ms))
            if current.persist is not None and rid in self.stalled:
                self.held[rid].append(current)  # its sends wait for the persist too
                continue
            if current.persist is not None:
                storage = self.storages[rid]
                snapshot = current.persist.snapshot
                if snapshot is not None:
                    self.snapshots[rid] = (snapshot.meta, snapshot.data)
                    storage.apply_snapshot(snapshot.meta)
                    self.installs[rid] += 1
                if current.persist.entries:
                    storage.append(current.persist.entries)
                if current.persist.hard_state is not None:
                    storage.set_hard_state(current.persist.hard_state)
                pending.insert(
                    0,
                    self.replicas[rid].on_persisted(
                        current.persist.token, self.now_ms, WALL_EPOCH_MS + self.now_ms
                    ),
                )
            # Messages go out after the persist above (the Outbox contract).
            for peer_id, payload in current.send:
                self.network.append((rid, peer_id, payload))
            for send in current.snapshot_sends:
                self.snapshot_sends[rid] += 1
                durable = self.snapshots.get(rid)
                if durable is None or durable[0] != send.meta:
                    continue  # gone: Raft asks again with its current snapshot
                if send.to_id in self.lose_snapshots:
                    continue
                for peer_id, payload in encode_snapshot_chunks(send, durable[1]):
                    self.network.append((rid, peer_id, payload))

    def compact(self, rid: int) -> SnapshotMeta:
        """Snapshot replica `rid`'s tree, make it "durable", compact Raft and the log."""
        replica = self.replicas[rid]
        meta = replica.snapshot_meta()
        assert meta is not None
        assert meta.index == replica.tree.last_zxid, (meta, replica.tree.last_zxid)
        self.snapshots[rid] = (meta, encode_snapshot(replica.tree))
        self.execute(rid, replica.on_snapshot_durable(meta))
        self.storages[rid].compact(meta.index, meta)
        return meta

    def unstall(self, rid: int) -> None:
        """The stalled disk of `rid` finishes what it holds."""
        self.stalled.discard(rid)
        held, self.held[rid] = self.held[rid], []
        for out in held:
            out.reply.clear()  # already delivered when it was held
            out.send_now.clear()
            out.close.clear()
            out.paused.clear()
            self.execute(rid, out)
        self.deliver()

    def deliver(self, rounds_max: int = 10_000) -> None:
        for _ in range(rounds_max):
            if not self.network:
                return
            sender, receiver, payload = self.network.popleft()
            if sender in self.cut or receiver in self.cut or (sender, receiver) in self.cut_links:
                continue
            out = self.replicas[receiver].on_message(
                sender, payload, self.now_ms, WALL_EPOCH_MS + self.now_ms
            )
            self.execute(receiver, out)
        raise AssertionError("the network did not go quiet")

    def advance(self, ms: int) -> None:
        for _ in range(ms // STEP_MS):
            self.now_ms += STEP_MS
            for rid, replica in self.replicas.items():
                self.execute(rid, replica.on_tick(self.now_ms, WALL_EPOCH_MS + self.now_ms))
            self.deliver()

    def leader(self) -> int:
        leaders = [rid for rid, r in self.replicas.items() if r.is_leader and rid not in self.cut]
        assert len(leaders) == 1, leaders
        return leaders[0]

    def elect(self) -> int:
        for _ in range(200):
            self.advance(STEP_MS)
            leaders = [
                rid for rid, r in self.replicas.items() if r.is_leader and rid not in self.cut
            ]
            if len(leaders) == 1:
                return leaders[0]
        raise AssertionError("no leader elected")

    # ------------------------------------------------------------------ clients

    def connect(self, rid: int, *, read_only: bool = False, **fields: int) -> Client:
        connection_id = self._next_connection
        self._next_connection += 1
        client = Client(replica_id=rid, connection_id=connection_id)
        self.clients[(rid, connection_id)] = client
        replica = self.replicas[rid]
        self.execute(
            rid, replica.on_connection_opened(connection_id, "127.0.0.1", 40000, self.now_ms)
        )
        request = ConnectRequest(
            protocol_version=0,
            last_zxid_seen=fields.get("last_zxid_seen", 0),
            timeout_ms=fields.get("timeout_ms", 10_000),
            session_id=fields.get("session_id", 0),
            password=bytes(16) if "password" not in fields else fields["password"],  # type: ignore[arg-type]
            read_only=read_only,
        )
        client.codec.connect(request)
        self.execute(
            rid,
            replica.on_connect(connection_id, request, self.now_ms, WALL_EPOCH_MS + self.now_ms),
        )
        self.deliver()
        return client

    def submit(self, client: Client, opcode: int, record: Record | None = None) -> int:
        """Hand a request to the client's replica (nothing delivered yet); its xid."""
        xid = client.next_xid
        client.next_xid += 1
        client.codec.send_request(xid, opcode, record)
        event = Request(xid=xid, opcode=opcode, request=record, size=0)
        replica = self.replicas[client.replica_id]
        self.execute(
            client.replica_id,
            replica.on_request(
                client.connection_id, event, self.now_ms, WALL_EPOCH_MS + self.now_ms
            ),
        )
        return xid

    def send(self, client: Client, opcode: int, record: Record | None = None) -> Reply | None:
        xid = self.submit(client, opcode, record)
        self.deliver()
        for reply in client.replies():
            if reply.xid == xid:
                return reply
        return None


def create(path: str, data: bytes = b"", flags: int = 0) -> CreateRequest:
    return CreateRequest(path=path, data=data, acl=OPEN_ACL_UNSAFE, flags=flags)


def test_a_write_on_a_follower_reaches_every_replica() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    client = cluster.connect(follower)
    assert isinstance(client.received[0], Connected)
    reply = cluster.send(client, OpCode.CREATE, create("/a", b"hello"))
    assert reply is not None
    assert reply.err == 0
    cluster.advance(500)  # heartbeats carry the commit index to everyone
    for rid in IDS:
        znode = cluster.replicas[rid].tree.get("/a")
        assert znode is not None, rid
        assert znode.data == b"hello"
        assert cluster.replicas[rid].tree.last_zxid == reply.zxid


def test_sync_on_a_follower_then_read_sees_the_latest_write() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    others = [rid for rid in IDS if rid != leader]
    writer = cluster.connect(others[0])
    reader = cluster.connect(others[1])
    reply = cluster.send(writer, OpCode.CREATE, create("/s", b"v1"))
    assert reply is not None and reply.err == 0
    synced = cluster.send(reader, OpCode.SYNC, PathRecord(path="/s"))
    assert synced is not None and synced.err == 0
    read = cluster.send(reader, OpCode.GET_DATA, GetDataRequest(path="/s", watch=False))
    assert read is not None and read.err == 0
    assert read.body.data == b"v1"  # type: ignore[union-attr]


def test_the_leader_fails_and_the_cluster_goes_on() -> None:
    cluster = Cluster()
    old_leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != old_leader)
    client = cluster.connect(follower, timeout_ms=20_000)
    session_id = client.received[0].response.session_id  # type: ignore[union-attr]
    assert cluster.send(client, OpCode.CREATE, create("/eph", flags=CreateMode.EPHEMERAL)).err == 0  # type: ignore[union-attr]
    cluster.cut.add(old_leader)
    new_leader = cluster.elect()
    assert new_leader != old_leader
    # The follower's client writes through the new leader; its session and ephemeral live.
    survivor = (
        client
        if not client.closed
        else cluster.connect(
            follower,
            session_id=session_id,
            password=client.received[0].response.password,  # type: ignore[union-attr]
        )
    )
    reply = cluster.send(
        survivor, OpCode.SET_DATA, SetDataRequest(path="/eph", data=b"x", version=-1)
    )
    assert reply is not None and reply.err == 0
    for rid in IDS:
        if rid == old_leader:
            continue
        znode = cluster.replicas[rid].tree.get("/eph")
        assert znode is not None
        assert znode.stat().ephemeral_owner == session_id


def test_a_session_attached_to_a_follower_is_kept_alive_by_its_pings() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    client = cluster.connect(follower, timeout_ms=4000)
    assert (
        cluster.send(client, OpCode.CREATE, create("/alive", flags=CreateMode.EPHEMERAL)).err == 0
    )  # type: ignore[union-attr]
    for _ in range(20):  # 10 s of pings every 500 ms: the leader hears of them via Touch
        cluster.advance(500)
        cluster.send(client, OpCode.PING)
    assert not client.closed
    assert cluster.replicas[leader].tree.get("/alive") is not None
    # Silence: the leader expires it, every replica drops the ephemeral.
    cluster.advance(8000)
    for rid in IDS:
        assert cluster.replicas[rid].tree.get("/alive") is None, rid
    assert client.closed


def test_a_cut_off_minority_refuses_writes() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    client = cluster.connect(follower)
    cluster.cut.add(follower)
    reply = cluster.send(client, OpCode.CREATE, create("/lonely"))
    cluster.advance(3000)
    # No acknowledgement: the write did not commit (it was not answered OK).
    replies = [r for r in client.replies() if r.opcode == OpCode.CREATE]
    assert reply is None or reply.err != ErrorCode.OK
    assert not any(r.err == ErrorCode.OK for r in replies)
    assert all(cluster.replicas[rid].tree.get("/lonely") is None for rid in IDS if rid != follower)
    assert cluster.replicas[leader].is_leader


def test_a_leader_with_a_slow_disk_keeps_its_followers() -> None:
    """While the leader's fsync takes longer than an election timeout, its heartbeats
    still go out (they depend on nothing unpersisted), so no follower starts an election."""
    cluster = Cluster()
    leader = cluster.elect()
    client = cluster.connect(leader)
    term_before = {rid: r._raft.term for rid, r in cluster.replicas.items()}
    cluster.stalled.add(leader)
    cluster.send(client, OpCode.CREATE, create("/slow"))  # its persist hangs
    assert cluster.held[leader], "the write's persist should be held by the stalled disk"
    cluster.advance(5 * 500)  # several tickTimes: elections would start after 1-2
    assert cluster.leader() == leader
    assert {rid: r._raft.term for rid, r in cluster.replicas.items()} == term_before
    cluster.unstall(leader)
    cluster.advance(500)
    assert all(r.tree.get("/slow") is not None for r in cluster.replicas.values())
    replies = [r for r in client.replies() if r.opcode == OpCode.CREATE]
    assert [r.err for r in replies] == [ErrorCode.OK]


def test_sync_on_a_replica_that_knows_no_leader_closes_the_connection() -> None:
    # Found by the replica simulation: the
    # refused read index closed the connection, and the drain loop then popped its
    # emptied queue (IndexError out of on_request).
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    client = cluster.connect(follower)
    cluster.cut.add(follower)
    # Its election timer runs out (it knows no leader), but it has not yet given up
    # serving (after 2 s without a leader it closes its clients).
    cluster.advance(1500)
    assert not cluster.replicas[follower].is_leader
    assert not client.closed
    reply = cluster.send(client, OpCode.SYNC, PathRecord(path="/"))
    assert reply is None
    assert client.closed


def test_sync_on_a_deposed_leader_waits_for_a_quorum() -> None:
    # Found by the replica simulation: a leader answered sync at once from its
    # own tree, so a leader that had lost its quorum (or a new one that had not yet
    # applied its predecessor's commits) let "sync then read" return a stale value.
    cluster = Cluster()
    old_leader = cluster.elect()
    old_client = cluster.connect(old_leader)
    assert cluster.send(old_client, OpCode.CREATE, create("/v", b"1")).err == 0  # type: ignore[union-attr]
    cluster.cut.add(old_leader)
    new_leader = cluster.elect()
    assert new_leader != old_leader
    new_client = cluster.connect(new_leader)
    reply = cluster.send(
        new_client, OpCode.SET_DATA, SetDataRequest(path="/v", data=b"2", version=-1)
    )
    assert reply is not None and reply.err == 0
    assert cluster.replicas[old_leader].is_leader  # it has not noticed yet
    # Its clients still reach it (they do not go through the cut network).
    synced = cluster.send(old_client, OpCode.SYNC, PathRecord(path="/v"))
    read = cluster.send(old_client, OpCode.GET_DATA, GetDataRequest(path="/v", watch=False))
    if synced is not None or read is not None:
        assert read is not None and read.err == 0
        assert read.body.data == b"2"  # type: ignore[union-attr]


def test_a_restarted_replica_does_not_take_its_old_proposals_for_new_ones() -> None:
    # A follower forwards a write, then crashes before the write commits; the restarted
    # replica numbers its proposals from scratch, so when the old entry commits its
    # origin tag (replica, token) named a new client's request: that client got the old
    # write's answer instead of its own (here: a reply where a ConnectResponse belongs).
    cluster = Cluster()
    leader = cluster.elect()
    follower, third = (rid for rid in IDS if rid != leader)
    owner = cluster.connect(leader)
    session = owner.received[0].response  # type: ignore[union-attr]
    assert cluster.send(owner, OpCode.CREATE, create("/a", b"0")).err == 0  # type: ignore[union-attr]
    writer = cluster.connect(follower, session_id=session.session_id, password=session.password)  # type: ignore[arg-type]
    cluster.cut.add(third)  # the leader and the follower are the only quorum left
    # The follower forwards a setData; the leader appends it; then the follower crashes
    # before acknowledging it (nothing else in flight arrives).
    writer.codec.send_request(
        writer.next_xid, OpCode.SET_DATA, SetDataRequest(path="/a", data=b"old", version=-1)
    )
    event = Request(
        xid=writer.next_xid,
        opcode=OpCode.SET_DATA,
        request=SetDataRequest(path="/a", data=b"old", version=-1),
        size=0,
    )
    cluster.execute(
        follower,
        cluster.replicas[follower].on_request(
            writer.connection_id, event, cluster.now_ms, WALL_EPOCH_MS + cluster.now_ms
        ),
    )
    forward = [m for m in cluster.network if m[0] == follower and m[1] == leader]
    assert len(forward) == 1
    cluster.network.clear()
    cluster.execute(
        leader,
        cluster.replicas[leader].on_message(
            follower, forward[0][2], cluster.now_ms, WALL_EPOCH_MS + cluster.now_ms
        ),
    )
    cluster.network.clear()
    cluster.replicas[follower] = Replica(
        config=ReplicaConfig(replica_id=follower, voters=IDS, tick_time_ms=500),
        storage=cluster.storages[follower],
        tree=DataTree(),
        random_bytes=lambda size: bytes([9]) * size,  # a new life draws new randomness
        rng_seed=99,
        now_ms=cluster.now_ms,
        wall_ms=WALL_EPOCH_MS + cluster.now_ms,
    )
    cluster.execute(follower, cluster.replicas[follower].take_startup_outbox())
    for key in [k for k in cluster.clients if k[0] == follower]:
        cluster.clients[key].closed = True  # its connections died with it

    def acknowledgement(sender: int, payload: bytes) -> bool:
        decoded = decode_payload(payload)
        return (
            sender == follower
            and isinstance(decoded, RaftPayload)
            and decoded.message.kind == MessageKind.APPEND_RESPONSE
        )

    def deliver_but_acknowledgements() -> None:
        for _ in range(1_000):
            if not cluster.network:
                return
            sender, receiver, payload = cluster.network.popleft()
            if sender in cluster.cut or receiver in cluster.cut or acknowledgement(sender, payload):
                continue
            cluster.execute(
                receiver,
                cluster.replicas[receiver].on_message(
                    sender, payload, cluster.now_ms, WALL_EPOCH_MS + cluster.now_ms
                ),
            )

    # The restarted follower hears the leader (and gets the old entry) but its
    # acknowledgements are lost for now, so nothing new commits.
    for _ in range(4):
        cluster.now_ms += STEP_MS
        for rid, replica in cluster.replicas.items():
            cluster.execute(rid, replica.on_tick(cluster.now_ms, WALL_EPOCH_MS + cluster.now_ms))
        deliver_but_acknowledgements()
    newcomer = Client(replica_id=follower, connection_id=1_000)
    cluster.clients[(follower, 1_000)] = newcomer
    restarted = cluster.replicas[follower]
    cluster.execute(
        follower, restarted.on_connection_opened(1_000, "127.0.0.1", 40000, cluster.now_ms)
    )
    request = ConnectRequest(
        protocol_version=0,
        last_zxid_seen=0,
        timeout_ms=10_000,
        session_id=0,
        password=bytes(16),
        read_only=False,
    )
    newcomer.codec.connect(request)
    cluster.execute(
        follower,
        restarted.on_connect(1_000, request, cluster.now_ms, WALL_EPOCH_MS + cluster.now_ms),
    )
    deliver_but_acknowledgements()
    assert newcomer.received == []
    cluster.advance(1_000)  # acknowledgements flow again: both entries commit
    assert len(newcomer.received) == 1
    assert isinstance(newcomer.received[0], Connected)
    assert newcomer.received[0].response.timeout_ms == 10_000
    assert cluster.replicas[leader].tree.get("/a").data == b"old"  # type: ignore[union-attr]


def test_a_leader_that_steps_down_closes_the_connections_it_owes_answers() -> None:
    # Its pending writes may be replaced by the new leader's log and its read-index
    # requests are dropped: those clients would wait for ever (their pings queue behind
    # the request), so their connections close and they retry, as on a follower.
    cluster = Cluster()
    old_leader = cluster.elect()
    writer = cluster.connect(old_leader)
    reader = cluster.connect(old_leader)
    bystander = cluster.connect(old_leader)
    cluster.cut.add(old_leader)
    new_leader = cluster.elect()
    assert cluster.replicas[old_leader].is_leader
    assert cluster.send(writer, OpCode.CREATE, create("/lost")) is None
    assert cluster.send(reader, OpCode.SYNC, PathRecord(path="/")) is None
    cluster.cut.discard(old_leader)
    cluster.advance(STEP_MS)  # it hears the new term and steps down
    assert not cluster.replicas[old_leader].is_leader
    assert cluster.leader() == new_leader
    assert writer.closed
    assert reader.closed
    assert not bystander.closed


def test_followers_that_lose_their_link_from_the_leader_elect_at_once() -> None:
    cluster = Cluster()
    leader = cluster.elect()
    followers = [rid for rid in IDS if rid != leader]
    cluster.cut.add(leader)  # its process died: the kernel closed its links
    for rid in followers:
        out = cluster.replicas[rid].on_peer_link_lost(
            leader, cluster.now_ms, WALL_EPOCH_MS + cluster.now_ms
        )
        cluster.execute(rid, out)
    # The election timeout is at least syncLimit x tickTime (here 500 ms); with the hint a
    # consensus tick or two (50 ms each) is enough.
    cluster.advance(300)
    new_leader = cluster.leader()
    assert new_leader in followers
    client = cluster.connect(followers[0])
    reply = cluster.send(client, OpCode.CREATE, create("/after-failover"))
    assert reply is not None and reply.err == ErrorCode.OK


def test_a_follower_that_cannot_reach_its_leader_gives_up_on_forwarded_writes() -> None:
    """Links are one-way: a follower may hear its leader (so it never seeks another) and
    still be unable to reach it. Its forwarded writes and syncs are then lost; after two
    sync timeouts their connections close, so the clients retry elsewhere."""
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    writer = cluster.connect(follower)
    syncer = cluster.connect(follower)
    idle = cluster.connect(follower)
    cluster.cut_links.add((follower, leader))
    assert cluster.send(writer, OpCode.CREATE, create("/lost")) is None
    assert cluster.send(syncer, OpCode.SYNC, PathRecord(path="/")) is None
    timeout_ms = cluster.replicas[follower].config.sync_timeout_ms
    cluster.advance(timeout_ms)
    assert not writer.closed and not syncer.closed  # not yet: the leader may be slow
    cluster.advance(timeout_ms + 200)
    assert writer.closed and syncer.closed
    assert not idle.closed
    assert cluster.replicas[follower].tree.get("/lost") is None
    assert cluster.leader() == leader  # it still hears the leader: no election


def test_a_read_behind_a_sync_does_not_see_a_write_sent_after_it() -> None:
    # Found by the replica simulation (pipelining clients): a write pipelined behind
    # "sync, getData" was proposed at once and could apply while the sync waited for
    # its read index; the getData, evaluated when it reached the head of the queue,
    # then saw a write its client sent after it (per-session FIFO order broken).
    cluster = Cluster()
    leader = cluster.elect()
    client = cluster.connect(leader)
    assert cluster.send(client, OpCode.CREATE, create("/x", b"old")).err == 0  # type: ignore[union-attr]
    requests: list[tuple[int, Record]] = [
        (OpCode.SYNC, PathRecord(path="/x")),
        (OpCode.GET_DATA, GetDataRequest(path="/x", watch=False)),
        (OpCode.SET_DATA, SetDataRequest(path="/x", data=b"new", version=-1)),
    ]
    for opcode, record in requests:
        cluster.submit(client, opcode, record)
    # The heartbeat round that would confirm the read index is lost; appends get through.
    for _ in range(1_000):
        if not cluster.network:
            break
        sender, receiver, payload = cluster.network.popleft()
        decoded = decode_payload(payload)
        if (
            isinstance(decoded, RaftPayload)
            and decoded.message.kind == MessageKind.HEARTBEAT_RESPONSE
        ):
            continue
        cluster.execute(
            receiver,
            cluster.replicas[receiver].on_message(sender, payload, cluster.now_ms, WALL_EPOCH_MS),
        )
    cluster.advance(1_000)  # later heartbeats confirm it
    replies = {r.opcode: r for r in client.replies()}
    assert replies[OpCode.SET_DATA].err == 0
    read = replies[OpCode.GET_DATA]
    assert read.err == 0
    assert read.body.data == b"old"  # type: ignore[union-attr]


def test_forwarded_writes_never_wait_for_a_persist() -> None:
    # Found by the replica simulation (pipelining clients, a slow disk): a forward in
    # the Outbox of a persist waited for that persist while a later forward, in an
    # Outbox without one, went at once and overtook it; the leader then applied the
    # client's two writes in the wrong order. Forwards go in `send_now`.
    cluster = Cluster()
    leader = cluster.elect()
    follower = next(rid for rid in IDS if rid != leader)
    client = cluster.connect(follower)
    assert cluster.send(client, OpCode.CREATE, create("/x", b"0")).err == 0  # type: ignore[union-attr]
    outboxes: list[Outbox] = []
    execute = cluster.execute

    def recording_execute(rid: int, out: Outbox) -> None:
        if rid == follower:
            outboxes.append(out)
        execute(rid, out)

    cluster.execute = recording_execute  # type: ignore[method-assign]
    requests: list[tuple[int, Record]] = [
        (OpCode.SYNC, PathRecord(path="/x")),
        (OpCode.GET_DATA, GetDataRequest(path="/x", watch=False)),
        (OpCode.SET_DATA, SetDataRequest(path="/x", data=b"1", version=0)),
        (OpCode.SET_DATA, SetDataRequest(path="/x", data=b"2", version=1)),
    ]
    for opcode, record in requests:
        cluster.submit(client, opcode, record)
    cluster.deliver()
    cluster.advance(500)
    forwards = 0
    for out in outboxes:
        for _, payload in out.send:
            assert isinstance(decode_payload(payload), RaftPayload)
        forwards += sum(isinstance(decode_payload(p), Forward) for _, p in out.send_now)
    assert forwards == 2
    replies = [r for r in client.replies() if r.opcode == OpCode.SET_DATA]
    assert [r.err for r in replies] == [0, 0]
    assert cluster.replicas[leader].tree.get("/x").data == b"2"  # type: ignore[union-attr]
