"""Deterministic simulation of whole ensembles: Replicas, their disks, network and clients.

3 or 5 voting `Replica`s (replica/replica.py, ensemble mode), sometimes with a learner
(ZooKeeper's observer), run in one process on a simulated millisecond clock, driven as
server/server.py drives one: every Outbox in contract order (client frames at once; a
persist goes to the simulated disk and its consensus messages wait for it;
`on_persisted` when the disk is done). Around them:

* disk: a `MemoryLogStorage` per replica is what survived; a persist lands after 1-5 ms
  (a slow disk: up to 80 ms). A crash loses the persist under way, or tears it (a prefix
  of its entries lands, without the hard state). A restarted replica starts as the server
  does (server/durability.py `open_durable`, no snapshots here): a fresh `DataTree` and
  the durable log, which Raft replays through the normal apply path.
* network between replicas: one FIFO stream per direction, as peers.py's TCP links are:
  random delay, never reordering or duplicating within a link; loss only as a link reset
  (everything in flight on it is gone). Faults: partitions into two sides, one-way cuts,
  link resets; a crash or a cut resets the links it touches. A crash or a reset is
  reported to the receiving replicas as peers.py does (`on_peer_link_lost`: a hint that
  the leader may be gone); a cut is silent.
* replicas: crashes and restarts, pauses (no ticks, no input, no disk progress) and
  resumes, slow disks.
* clients: each speaks the real wire protocol (records.py frames through
  `ClientConnection`; the replica's side decodes with `ServerConnection`) over a FIFO
  connection to one replica, with a session. Operations, up to 1-3 pipelined (chosen
  per client), on a few register znodes: getData, setData with an expected version
  (compare-and-set), create, delete, sync then getData; besides, ephemeral creates and
  closing the session. A client pings when idle, gives up on a connection it has not
  heard from for 2/3 of its session timeout (ZooKeeper's read timeout) and reconnects to
  a random replica with its session id, password and the last zxid it saw; an expired
  session makes it start a new one.

What is checked:

* after every step: at most one leader per term; every replica applies the same txn at
  each zxid (in increasing order; a restarted replica replays the same sequence);
* at the end, after the faults are healed and the ensemble has converged: every replica
  applied the same last zxid, and their trees are identical znode by znode (data and the
  whole stat) with the same sessions — an acknowledged write that one replica lost would
  show here; each tree's own invariants hold (an ephemeral's owner is a live session) and
  every acknowledged ephemeral of a session still alive is there;
* the client history of every register is linearizable (sim/linearizability.py), with
  these decisions about reads:
  - a plain getData is answered from the local tree of whichever replica the client is
    connected to, so it may be stale: ZooKeeper promises only sequential consistency,
    per session in FIFO order, never going back (a client reconnects only to a replica
    that has seen its last zxid). It is recorded `may_be_stale`: placed after the
    session's earlier operations, with no other lower bound;
  - sync followed by getData on the same connection (pipelined, as a client does) is
    recorded as one linearizable read from the sync's call to the getData's reply: the
    sync waits for the leader's read index (on the leader too);
  - writes (setData, create, delete) must be linearizable; a reply lost with the
    connection (or SESSION_EXPIRED) leaves the outcome unknown;
  - definite operations of one session take effect in the order it sent them
    (`check_history(session_order=True)`: ZooKeeper's per-session FIFO, which pipelining
    clients exercise);
  - the converged state is recorded as one final read of each register, so a write that
    was acknowledged and then lost everywhere fails the check too.

Planted bugs (`PlantedBug`, test-only) prove that the checks can fail: replica 1 skipping
an applied setData (its tree diverges), and clients that read without the sync but record
the read as linearizable (follower reads are stale).

Rules: no clock, no IO, no module-level random; one `random.Random(seed)` drives every
choice, so a seed reproduces a run exactly (`python -m corral.sim --replicas --seed N`).
Every loop is bounded by the configured simulated time.
"""

from __future__ import annotations

import enum
import random
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from corral.consensus.log_storage import MemoryLogStorage
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    BadRequest,
    ClientConnection,
    Connect,
    Connected,
    Notification,
    Reply,
    Request,
    ServerConnection,
)
from corral.protocol.constants import ANY_VERSION, CreateMode, ErrorCode, OpCode, SpecialXid
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    ConnectRequest,
    CreateRequest,
    DeleteRequest,
    GetDataRequest,
    GetDataResponse,
    PathRecord,
    SetDataRequest,
    SetDataResponse,
)
from corral.replica.outbox import Outbox, Persist
from corral.replica.replica import Replica, ReplicaConfig
from corral.sim import linearizability as lin
from corral.tree.tree import ApplyResult, DataTree
from corral.tree.txn import ClientTxn, Txn

WALL_EPOCH_MS = 1_700_000_000_000
VIOLATIONS_MAX = 10  # the first ones say enough
TRACE_LINES_MAX = 60  # the last events kept for a failure report
# A history the checker could not decide within its budgets is checked once more with
# budgets this many times larger (memory: a configuration is ~200 bytes).
UNKNOWN_RETRY_BUDGET_FACTOR = 10


class PlantedBug(enum.Enum):
    """Test-only faults that the checks must catch."""

    FORGETFUL_REPLICA = "forgetful-replica"  # replica 1 skips its third setData txn
    UNSYNCED_READS = "unsynced-reads"  # "sync then read" without the sync


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaSimConfig:
    """Everything a run depends on besides the seed's random stream."""

    seed: int
    replicas: int = 3  # voters
    learners: int = 0  # non-voting members (ZooKeeper's observers)
    clients: int = 4
    registers: int = 2
    steps_ms: int = 3_000  # simulated time with faults and client operations
    settle_ms: int = 6_000  # then faults heal; the ensemble must converge within this
    tick_time_ms: int = 100  # ZooKeeper's tickTime: elections take about 100-200 ms
    replica_tick_ms: int = 10  # how often the driver calls on_tick
    session_timeout_ms: int = 1_200
    delay_max_ms: int = 8  # one way, replica to replica and client to replica
    disk_delay_max_ms: int = 5
    slow_disk_delay_max_ms: int = 80
    fault_probability: float = 0.004  # per simulated ms
    operation_gap_max_ms: int = 25  # a client's think time between operations
    planted_bug: PlantedBug | None = None

    def __post_init__(self) -> None:
        if self.replicas not in (3, 5):
            raise ValueError(f"{self.replicas} voters: the simulation runs 3 or 5")
        if not 0 <= self.learners <= 2:
            raise ValueError(f"{self.learners} learners: the simulation runs 0-2")
        if not 1 <= self.clients <= 32 or not 1 <= self.registers <= 8:
            raise ValueError("1-32 clients on 1-8 registers")


@dataclass(slots=True, kw_only=True)
class ReplicaSimResult:
    config: ReplicaSimConfig
    violations: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    operations: int = 0  # register operations called
    operations_answered: int = 0  # with a definite reply
    crashes: int = 0
    partitions: int = 0
    pauses: int = 0
    sessions: int = 0
    ephemerals: int = 0  # acknowledged ephemeral creates
    leaders: int = 0  # distinct (term, leader) seen
    applied_max: int = 0
    linearizability: str = ""

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def reproduce(self) -> str:
        return f"reproduce: python -m corral.sim --replicas --seed {self.config.seed}"


class _SimTree(DataTree):
    """A DataTree that reports every applied txn to the simulation (and can forget one)."""

    def __init__(
        self, on_apply: Callable[[int, Txn, ApplyResult], None], *, forget_set_data: int
    ) -> None:
        super().__init__()
        self._on_apply = on_apply
        self._set_data_left = forget_set_data  # 0: never forget

    def apply(self, txn: Txn, zxid: int) -> ApplyResult:
        result = self._apply(txn, zxid)
        self._on_apply(zxid, txn, result)
        return result

    def _apply(self, txn: Txn, zxid: int) -> ApplyResult:
        if self._set_data_left and isinstance(txn, ClientTxn) and txn.opcode == OpCode.SET_DATA:
            request = txn.request
            assert isinstance(request, SetDataRequest)
            stat = self.stat(request.path)
            if stat is not None and request.version in (ANY_VERSION, stat.version):
                self._set_data_left -= 1
                if self._set_data_left == 0:
                    # The planted bug: a setData that succeeds changes nothing here.
                    self.last_zxid = zxid
                    body = SetDataResponse(stat=stat)
                    return ApplyResult(err=ErrorCode.OK, body=body, events=())
        return super().apply(txn, zxid)


_CLOSED = b""  # in a connection's queue to the client: the server closed it here


@dataclass(slots=True, kw_only=True)
class _Connection:
    """One client TCP connection to one replica: two FIFO byte streams."""

    connection_id: int
    replica_id: int
    client: _Client
    codec: ServerConnection = field(default_factory=ServerConnection)
    to_server: deque[tuple[int, bytes]] = field(default_factory=deque)  # (due ms, bytes)
    to_client: deque[tuple[int, bytes]] = field(default_factory=deque)
    open: bool = True  # False once either side closed it
    server_closed: bool = False  # the replica closed it: no more input for it


@dataclass(slots=True, kw_only=True)
class _Host:
    """One simulated server process: the replica (None while crashed) and its disk."""

    replica_id: int
    storage: MemoryLogStorage = field(default_factory=MemoryLogStorage)
    replica: Replica | None = None
    paused: bool = False
    slow_disk: bool = False
    persisting: tuple[int, Persist, list[tuple[int, bytes]]] | None = None  # due, persist, send
    deferred: list[Callable[[], None]] = field(default_factory=list)  # work that waited a pause
    connections: dict[int, _Connection] = field(default_factory=dict)
    next_tick_ms: int = 0
    restart_ms: int = 0  # while crashed: when it comes back
    resume_ms: int = 0  # while paused


class _Phase(enum.Enum):
    DISCONNECTED = "disconnected"
    HANDSHAKE = "handshake"
    CONNECTED = "connected"


@dataclass(slots=True, kw_only=True)
class _Operation:
    """A register operation in flight: its history id and the xids it waits for."""

    history_id: int | None  # None: not a register operation (close session, ephemeral)
    kind: lin.OpKind | None
    path: str
    xids: list[int]
    ephemeral: bool = False  # the create of an ephemeral znode (kind None)


@dataclass(slots=True, kw_only=True)
class _Client:
    client_id: int
    history_id: int = 0  # the checker's client: one per session
    session_id: int = 0
    password: bytes = bytes(16)
    last_zxid_seen: int = 0
    phase: _Phase = _Phase.DISCONNECTED
    connection: _Connection | None = None
    codec: ClientConnection = field(default_factory=ClientConnection)
    next_xid: int = 1
    pipeline_max: int = 1  # operations in flight at once (ZooKeeper clients pipeline)
    operations: deque[_Operation] = field(default_factory=deque)  # in flight, FIFO
    next_action_ms: int = 0
    last_heard_ms: int = 0
    last_sent_ms: int = 0
    phase_since_ms: int = 0
    versions: dict[str, int] = field(default_factory=dict)  # last version seen per register
    ephemerals: set[str] = field(default_factory=set)  # created (acknowledged) in this session
    values_written: int = 0


class ReplicaSimulation:
    def __init__(self, config: ReplicaSimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.result = ReplicaSimResult(config=config)
        self.now_ms = 0
        self.voter_ids = tuple(range(1, config.replicas + 1))
        self.learner_ids = tuple(range(config.replicas + 1, config.replicas + 1 + config.learners))
        self.ids = self.voter_ids + self.learner_ids
        self.hosts = {rid: _Host(replica_id=rid) for rid in self.ids}
        # Replica-to-replica streams: (from, to) -> FIFO of (due ms, payload).
        self.links: dict[tuple[int, int], deque[tuple[int, bytes]]] = {
            (a, b): deque() for a in self.ids for b in self.ids if a != b
        }
        self.inbound = {
            b: [(a, queue) for (a, to), queue in self.links.items() if to == b] for b in self.ids
        }
        self.cut: set[tuple[int, int]] = set()  # directed links that drop everything
        self.registers = tuple(f"/r{i}" for i in range(config.registers))
        self.recorder = lin.HistoryRecorder()
        # zxid -> (first replica to apply it, (txn, error, body, events))
        self.applied: dict[int, tuple[int, tuple[Txn, int, object, object]]] = {}
        self.leaders: dict[int, int] = {}  # term -> leader
        self.clients = [
            _Client(client_id=i, pipeline_max=self.rng.choice((1, 1, 2, 3)))
            for i in range(1, config.clients + 1)
        ]
        self._next_connection_id = 1
        self._next_history_id = 1
        self._faults = True
        self._new_operations = True
        self._leaders_counted: set[int] = set()
        for host in self.hosts.values():
            self._start(host)
        for client in self.clients:
            client.next_action_ms = self.rng.randrange(50)

    # ------------------------------------------------------------------ bookkeeping

    def _trace(self, line: str) -> None:
        self.result.trace.append(f"{self.now_ms:6d} {line}")
        if len(self.result.trace) > 2 * TRACE_LINES_MAX:
            del self.result.trace[:TRACE_LINES_MAX]

    def _violation(self, message: str) -> None:
        if len(self.result.violations) < VIOLATIONS_MAX and message not in self.result.violations:
            self.result.violations.append(message)
            self._trace(f"VIOLATION {message}")

    @property
    def wall_ms(self) -> int:
        return WALL_EPOCH_MS + self.now_ms

    def _on_apply(self, replica_id: int, zxid: int, txn: Txn, result: ApplyResult) -> None:
        """Every replica applies the same txn at a zxid, with the same outcome."""
        outcome = (txn, result.err, result.body, result.events)
        first_id, known = self.applied.setdefault(zxid, (replica_id, outcome))
        if known[0] != txn:
            self._violation(
                f"zxid {zxid}: replica {replica_id} applied {txn}; "
                f"replica {first_id} applied {known[0]}"
            )
        elif known != outcome:
            self._violation(
                f"zxid {zxid} ({txn}): replica {replica_id} got {outcome[1:]}; "
                f"replica {first_id} got {known[1:]}"
            )
        self.result.applied_max = max(self.result.applied_max, zxid)

    # ------------------------------------------------------------------ replicas

    def _start(self, host: _Host) -> None:
        rid = host.replica_id
        forget = 3 if self.config.planted_bug is PlantedBug.FORGETFUL_REPLICA and rid == 1 else 0

        def on_apply(zxid: int, txn: Txn, result: ApplyResult) -> None:
            self._on_apply(rid, zxid, txn, result)

        tree = _SimTree(on_apply, forget_set_data=forget)
        host.replica = Replica(
            config=ReplicaConfig(
                replica_id=rid,
                voters=self.voter_ids,
                learners=self.learner_ids,
                tick_time_ms=self.config.tick_time_ms,
                max_client_cnxns=0,
            ),
            storage=host.storage,
            tree=tree,
            random_bytes=self.rng.randbytes,
            rng_seed=self.rng.getrandbits(32),
            now_ms=self.now_ms,
            wall_ms=self.wall_ms,
        )
        host.paused = False
        host.next_tick_ms = self.now_ms + self.config.replica_tick_ms
        self._execute(host, host.replica.take_startup_outbox())

    def _execute(self, host: _Host, out: Outbox) -> None:
        """Run an Outbox as server.py does: frames, closes and `send_now` at once, `send`
        after the persist."""
        self._send(host.replica_id, out.send_now)
        for connection_id, frame in out.reply:
            connection = host.connections.get(connection_id)
            if connection is not None and connection.open and not connection.server_closed:
                self._stream(connection.to_client, frame)
        for connection_id in out.close:
            self._server_close(host, connection_id)
        for connection_id in out.paused:
            # Simulated clients read everything at once.
            host.deferred.append(partial(self._drained, host, connection_id))
        # The simulation never reports a durable snapshot, so nothing is compacted and
        # no snapshot is sent or installed.
        assert not out.snapshot_sends
        if out.persist is not None:
            assert out.persist.snapshot is None
            assert host.persisting is None, "two persists in flight"
            delay_max = (
                self.config.slow_disk_delay_max_ms
                if host.slow_disk
                else self.config.disk_delay_max_ms
            )
            due = self.now_ms + self.rng.randint(1, delay_max)
            host.persisting = (due, out.persist, out.send)
        else:
            self._send(host.replica_id, out.send)

    def _drained(self, host: _Host, connection_id: int) -> None:
        if host.replica is not None:
            self._execute(host, host.replica.on_output_drained(connection_id, self.now_ms))

    def _stream(self, queue: deque[tuple[int, bytes]], data: bytes) -> None:
        """Append to a FIFO stream: a random delay, but never ahead of what is queued."""
        due = self.now_ms + self.rng.randint(0, self.config.delay_max_ms)
        if queue:
            due = max(due, queue[-1][0])
        queue.append((due, data))

    def _send(self, from_id: int, messages: list[tuple[int, bytes]]) -> None:
        for to_id, payload in messages:
            if (from_id, to_id) in self.cut:
                continue
            if self.hosts[to_id].replica is None:
                continue  # connection refused
            self._stream(self.links[(from_id, to_id)], payload)

    def _server_close(self, host: _Host, connection_id: int) -> None:
        connection = host.connections.pop(connection_id, None)
        if connection is None:
            return
        if connection.open:
            connection.server_closed = True
            self._stream(connection.to_client, _CLOSED)
        assert host.replica is not None
        self._execute(host, host.replica.on_connection_closed(connection_id))

    def _complete_persist(self, host: _Host) -> None:
        assert host.persisting is not None and host.replica is not None
        _, persist, send = host.persisting
        host.persisting = None
        if persist.entries:
            host.storage.append(persist.entries)
        if persist.hard_state is not None:
            host.storage.set_hard_state(persist.hard_state)
        self._send(host.replica_id, send)
        self._execute(host, host.replica.on_persisted(persist.token, self.now_ms, self.wall_ms))

    def _crash(self, host: _Host) -> None:
        self.result.crashes += 1
        torn = ""
        if host.persisting is not None:
            _, persist, _ = host.persisting
            if persist.entries and self.rng.random() < 0.5:
                kept = self.rng.randrange(len(persist.entries) + 1)
                host.storage.append(persist.entries[:kept])  # a torn write: no hard state
                torn = f", torn persist kept {kept}/{len(persist.entries)} entries"
        self._trace(f"crash {host.replica_id}{torn}")
        host.persisting = None
        host.replica = None
        host.paused = False
        host.deferred.clear()
        for connection in list(host.connections.values()):
            self._reset_connection(connection)
        host.connections.clear()
        for (a, b), queue in self.links.items():
            if host.replica_id in (a, b):
                queue.clear()
        for other in self.hosts.values():
            self._link_lost(other, host.replica_id)  # the kernel closed the dead one's links
        host.restart_ms = self.now_ms + self.rng.randint(20, 1_500)

    def _step_host(self, host: _Host) -> None:
        if host.replica is None:
            if self._faults and self.now_ms < host.restart_ms:
                return
            self._trace(f"restart {host.replica_id}")
            self._start(host)
            return
        if host.paused:
            if self._faults and self.now_ms < host.resume_ms:
                return
            self._trace(f"resume {host.replica_id}")
            host.paused = False
        replica = host.replica
        while host.deferred and not host.paused:
            host.deferred.pop(0)()
        if host.persisting is not None and host.persisting[0] <= self.now_ms:
            self._complete_persist(host)
        for a, queue in self.inbound[host.replica_id]:
            while queue and queue[0][0] <= self.now_ms and host.replica is replica:
                _, payload = queue.popleft()
                self._execute(host, replica.on_message(a, payload, self.now_ms, self.wall_ms))
        for connection in list(host.connections.values()):
            self._server_input(host, connection)
        if self.now_ms >= host.next_tick_ms:
            host.next_tick_ms += self.config.replica_tick_ms
            self._execute(host, replica.on_tick(self.now_ms, self.wall_ms))
        if replica.is_leader:
            leader = self.leaders.setdefault(replica.term, host.replica_id)
            if leader != host.replica_id:
                self._violation(
                    f"term {replica.term} has two leaders: {leader} and {host.replica_id}"
                )
            elif replica.term not in self._leaders_counted:
                self._leaders_counted.add(replica.term)
                self.result.leaders += 1
                self._trace(f"replica {host.replica_id} leads term {replica.term}")

    def _server_input(self, host: _Host, connection: _Connection) -> None:
        replica = host.replica
        assert replica is not None
        cid = connection.connection_id
        while connection.to_server and connection.to_server[0][0] <= self.now_ms:
            if connection.server_closed or not connection.open:
                connection.to_server.clear()
                return
            _, data = connection.to_server.popleft()
            connection.codec.receive_data(data)
            while not connection.server_closed:
                event = connection.codec.next_event()
                if event is NEED_DATA or event is PEER_CLOSED:
                    break
                if isinstance(event, Connect):
                    out = replica.on_connect(cid, event.request, self.now_ms, self.wall_ms)
                elif isinstance(event, Request):
                    out = replica.on_request(cid, event, self.now_ms, self.wall_ms)
                elif isinstance(event, BadRequest):
                    out = replica.on_bad_request(cid, event, self.now_ms)
                else:
                    raise AssertionError(f"unexpected {event}")
                self._execute(host, out)

    # ------------------------------------------------------------------ faults

    def _inject_fault(self) -> None:
        rng = self.rng
        hosts = list(self.hosts.values())
        choice = rng.randrange(9)
        if choice <= 1:
            up = [h for h in hosts if h.replica is not None]
            if up:
                self._crash(rng.choice(up))
        elif choice == 2:
            running = [h for h in hosts if h.replica is not None and not h.paused]
            if running:
                host = rng.choice(running)
                host.paused = True
                host.resume_ms = self.now_ms + rng.randint(20, 2_000)
                self.result.pauses += 1
                self._trace(f"pause {host.replica_id} until {host.resume_ms}")
        elif choice == 3:
            side = set(rng.sample(self.ids, rng.randint(1, len(self.ids) // 2)))
            self._heal()
            for a, b in self.links:
                if (a in side) != (b in side):
                    self._cut((a, b))
            self.result.partitions += 1
            self._trace(f"partition {sorted(side)} | rest")
        elif choice == 4:
            link = rng.choice(sorted(self.links))
            self._cut(link)
            self._trace(f"cut one way {link[0]} -> {link[1]}")
        elif choice == 5:
            self._heal()
            self._trace("heal the network")
        elif choice == 6:
            link = rng.choice(sorted(self.links))
            self.links[link].clear()
            self._trace(f"reset link {link[0]} -> {link[1]}")
            self._link_lost(self.hosts[link[1]], link[0])
        elif choice == 7:
            host = rng.choice(hosts)
            host.slow_disk = not host.slow_disk
            self._trace(f"disk of {host.replica_id} {'slow' if host.slow_disk else 'fast'}")
        else:
            connected = [c for c in self.clients if c.connection is not None]
            if connected:
                client = rng.choice(connected)
                assert client.connection is not None
                self._trace(f"client {client.client_id} connection reset")
                self._reset_connection(client.connection)

    def _link_lost(self, host: _Host, peer_id: int) -> None:
        """server/peers.py reports an inbound link that closed: a hint to the replica."""
        if host.replica is None or host.replica_id == peer_id:
            return
        replica = host.replica

        def lost() -> None:
            if host.replica is replica:
                self._execute(host, replica.on_peer_link_lost(peer_id, self.now_ms, self.wall_ms))

        if host.paused:
            host.deferred.append(lost)
        else:
            lost()

    def _cut(self, link: tuple[int, int]) -> None:
        self.cut.add(link)
        self.links[link].clear()  # TCP: what was in flight on a broken link is gone

    def _heal(self) -> None:
        self.cut.clear()

    def _reset_connection(self, connection: _Connection) -> None:
        """A connection broke: both sides see it closed, nothing in flight arrives."""
        if not connection.open:
            return
        connection.open = False
        connection.to_server.clear()
        connection.to_client.clear()
        host = self.hosts[connection.replica_id]
        if host.connections.pop(connection.connection_id, None) is not None:
            cid = connection.connection_id

            def closed() -> None:
                if host.replica is not None:
                    self._execute(host, host.replica.on_connection_closed(cid))

            if host.paused:
                host.deferred.append(closed)
            else:
                closed()
        self._client_lost_connection(connection.client)

    # ------------------------------------------------------------------ clients

    def _new_history_id(self) -> int:
        history_id = self._next_history_id
        self._next_history_id += 1
        return history_id

    def _client_send(self, client: _Client, data: bytes) -> None:
        assert client.connection is not None
        self._stream(client.connection.to_server, data)
        client.last_sent_ms = self.now_ms

    def _client_lost_connection(self, client: _Client) -> None:
        connection = client.connection
        if connection is not None:
            connection.open = False
        client.connection = None
        client.phase = _Phase.DISCONNECTED
        client.phase_since_ms = self.now_ms
        client.next_action_ms = self.now_ms + self.rng.randint(1, 50)
        self._lose_operation(client)

    def _lose_operation(self, client: _Client) -> None:
        while client.operations:
            operation = client.operations.popleft()
            if operation.history_id is not None:
                self.recorder.returned(
                    operation.history_id,
                    lin.Reply(error=ErrorCode.CONNECTION_LOSS),
                    now_ms=self.now_ms,
                )

    def _client_connect(self, client: _Client) -> None:
        rid = self.rng.choice(self.ids)
        host = self.hosts[rid]
        client.next_action_ms = self.now_ms + self.rng.randint(10, 100)
        if host.replica is None:
            return  # connection refused
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        connection = _Connection(connection_id=connection_id, replica_id=rid, client=client)
        host.connections[connection_id] = connection
        client.connection = connection
        client.codec = ClientConnection()
        client.phase = _Phase.HANDSHAKE
        client.phase_since_ms = self.now_ms
        client.last_heard_ms = self.now_ms
        if client.session_id == 0:
            client.history_id = self._new_history_id()
            self.result.sessions += 1
        request = ConnectRequest(
            protocol_version=0,
            last_zxid_seen=client.last_zxid_seen,
            timeout_ms=self.config.session_timeout_ms,
            session_id=client.session_id,
            password=client.password,
            read_only=False,
        )

        def opened() -> None:
            if host.replica is not None and connection.open:
                self._execute(
                    host,
                    host.replica.on_connection_opened(
                        connection_id, "127.0.0.1", 40_000 + connection_id, self.now_ms
                    ),
                )

        if host.paused:
            host.deferred.append(opened)
        else:
            opened()
        self._client_send(client, client.codec.connect(request))

    def _step_client(self, client: _Client) -> None:
        connection = client.connection
        if connection is not None:
            while connection.to_client and connection.to_client[0][0] <= self.now_ms:
                _, data = connection.to_client.popleft()
                client.last_heard_ms = self.now_ms
                if data == _CLOSED:
                    connection.open = False
                    self._client_lost_connection(client)
                    return
                client.codec.receive_data(data)
                while client.connection is connection:
                    event = client.codec.next_event()
                    if event is NEED_DATA or event is PEER_CLOSED:
                        break
                    self._client_event(client, event)  # type: ignore[arg-type]
            if client.connection is not connection:
                return
            timeout_ms = self.config.session_timeout_ms
            if self.now_ms - client.last_heard_ms >= timeout_ms * 2 // 3:
                self._trace(f"client {client.client_id} read timeout")
                self._reset_connection(connection)
                return
            if (
                client.phase is _Phase.CONNECTED
                and not client.operations
                and self.now_ms - client.last_sent_ms >= timeout_ms // 3
            ):
                self._client_send(client, client.codec.send_request(SpecialXid.PING, OpCode.PING))
        if self.now_ms < client.next_action_ms:
            return
        if client.phase is _Phase.DISCONNECTED:
            if self._new_operations or client.session_id:
                self._client_connect(client)
        elif (
            client.phase is _Phase.CONNECTED
            and len(client.operations) < client.pipeline_max
            and self._new_operations
            and not any(o.kind is None and not o.ephemeral for o in client.operations)
        ):
            self._start_operation(client)
            client.next_action_ms = self.now_ms + self.rng.randint(0, 5)

    def _client_event(self, client: _Client, event: Connected | Reply | Notification) -> None:
        if isinstance(event, Notification):
            return
        if isinstance(event, Connected):
            response = event.response
            if response.timeout_ms == 0:
                self._trace(f"client {client.client_id} session expired")
                self._forget_session(client)
                assert client.connection is not None
                self._reset_connection(client.connection)
                return
            if client.session_id == 0:
                self._trace(
                    f"client {client.client_id} session 0x{response.session_id:x} "
                    f"on replica {client.connection.replica_id if client.connection else 0}"
                )
            client.session_id = response.session_id
            client.password = response.password
            client.phase = _Phase.CONNECTED
            client.phase_since_ms = self.now_ms
            client.next_action_ms = self.now_ms + self.rng.randint(0, 10)
            return
        if event.zxid > client.last_zxid_seen:
            client.last_zxid_seen = event.zxid
        if event.xid == SpecialXid.PING:
            return
        assert client.operations, (client.client_id, event)
        operation = client.operations[0]
        assert event.xid == operation.xids[0], (event.xid, operation.xids)
        operation.xids.pop(0)
        if operation.ephemeral:
            client.operations.popleft()
            client.next_action_ms = self.now_ms + self.rng.randint(0, 10)
            if event.err == ErrorCode.OK:
                client.ephemerals.add(operation.path)
                self.result.ephemerals += 1
            elif event.err == ErrorCode.SESSION_EXPIRED:
                self._forget_session(client)
            return
        if operation.kind is None:  # close session
            self._forget_session(client)
            client.operations.popleft()
            assert client.connection is not None
            self._reset_connection(client.connection)
            return
        if operation.xids:
            return  # the sync of a sync-then-read: the read's reply decides
        client.operations.popleft()
        client.next_action_ms = self.now_ms + self.rng.randint(0, self.config.operation_gap_max_ms)
        reply = self._history_reply(client, operation, event)
        assert operation.history_id is not None
        self.recorder.returned(operation.history_id, reply, now_ms=self.now_ms)
        if reply.error not in lin.INDEFINITE_ERRORS:
            self.result.operations_answered += 1
        if reply.error == ErrorCode.SESSION_EXPIRED:
            self._forget_session(client)

    def _forget_session(self, client: _Client) -> None:
        client.session_id = 0
        client.password = bytes(16)
        client.ephemerals.clear()

    def _history_reply(self, client: _Client, operation: _Operation, event: Reply) -> lin.Reply:
        if event.err != ErrorCode.OK:
            return lin.Reply(error=ErrorCode(event.err))
        body = event.body
        if operation.kind is lin.OpKind.READ:
            assert isinstance(body, GetDataResponse), body
            client.versions[operation.path] = body.stat.version
            return lin.Reply(value=body.data or b"", version=body.stat.version)
        if operation.kind is lin.OpKind.WRITE:
            assert isinstance(body, SetDataResponse), body
            client.versions[operation.path] = body.stat.version
            return lin.Reply(version=body.stat.version)
        if operation.kind is lin.OpKind.CREATE:
            client.versions[operation.path] = 0
        return lin.Reply()

    def _start_operation(self, client: _Client) -> None:
        rng = self.rng
        path = rng.choice(self.registers)
        roll = rng.random()
        xid = client.next_xid
        client.next_xid += 2
        if roll < 0.01:
            if client.operations:
                return  # closes only with nothing in flight
            self._trace(f"client {client.client_id} closes its session")
            client.operations.append(_Operation(history_id=None, kind=None, path="", xids=[xid]))
            self._client_send(client, client.codec.send_request(xid, OpCode.CLOSE_SESSION))
            return
        if roll < 0.04:
            client.values_written += 1
            ephemeral = f"/e{client.client_id}.{client.values_written}"
            client.operations.append(
                _Operation(history_id=None, kind=None, path=ephemeral, xids=[xid], ephemeral=True)
            )
            create = CreateRequest(
                path=ephemeral, data=b"", acl=OPEN_ACL_UNSAFE, flags=CreateMode.EPHEMERAL
            )
            self._client_send(client, client.codec.send_request(xid, OpCode.CREATE, create))
            return
        self.result.operations += 1
        if roll < 0.30:
            request = GetDataRequest(path=path, watch=False)
            self._call(client, xid, OpCode.GET_DATA, request, lin.OpKind.READ, may_be_stale=True)
        elif roll < 0.50:
            unsynced = self.config.planted_bug is PlantedBug.UNSYNCED_READS
            history_id = self.recorder.call(
                client_id=client.history_id, path=path, kind=lin.OpKind.READ, now_ms=self.now_ms
            )
            xids = [xid + 1] if unsynced else [xid, xid + 1]
            client.operations.append(
                _Operation(history_id=history_id, kind=lin.OpKind.READ, path=path, xids=xids)
            )
            if not unsynced:
                sync = PathRecord(path=path)
                self._client_send(client, client.codec.send_request(xid, OpCode.SYNC, sync))
            request = GetDataRequest(path=path, watch=False)
            self._client_send(client, client.codec.send_request(xid + 1, OpCode.GET_DATA, request))
        elif roll < 0.80:
            value = self._value(client)
            expected = client.versions.get(path, 0) if rng.random() < 0.95 else ANY_VERSION
            set_data = SetDataRequest(path=path, data=value, version=expected)
            self._call(
                client,
                xid,
                OpCode.SET_DATA,
                set_data,
                lin.OpKind.WRITE,
                value=value,
                expected_version=expected,
            )
        elif roll < 0.92:
            value = self._value(client)
            create = CreateRequest(
                path=path, data=value, acl=OPEN_ACL_UNSAFE, flags=CreateMode.PERSISTENT
            )
            self._call(client, xid, OpCode.CREATE, create, lin.OpKind.CREATE, value=value)
        else:
            expected = client.versions.get(path, 0) if rng.random() < 0.9 else ANY_VERSION
            delete = DeleteRequest(path=path, version=expected)
            self._call(
                client, xid, OpCode.DELETE, delete, lin.OpKind.DELETE, expected_version=expected
            )

    def _call(
        self,
        client: _Client,
        xid: int,
        opcode: OpCode,
        request: GetDataRequest | SetDataRequest | CreateRequest | DeleteRequest,
        kind: lin.OpKind,
        *,
        value: bytes = b"",
        expected_version: int = ANY_VERSION,
        may_be_stale: bool = False,
    ) -> None:
        """Record the call of a one-request operation on a register, and send it."""
        history_id = self.recorder.call(
            client_id=client.history_id,
            path=request.path,
            kind=kind,
            now_ms=self.now_ms,
            value=value,
            expected_version=expected_version,
            may_be_stale=may_be_stale,
        )
        client.operations.append(
            _Operation(history_id=history_id, kind=kind, path=request.path, xids=[xid])
        )
        self._client_send(client, client.codec.send_request(xid, opcode, request))

    def _value(self, client: _Client) -> bytes:
        client.values_written += 1
        return f"c{client.client_id}.{client.values_written}".encode()

    # ------------------------------------------------------------------ the run

    def run(self) -> ReplicaSimResult:
        config = self.config
        try:
            for _ in range(config.steps_ms):
                self._step()
                if self.rng.random() < config.fault_probability:
                    self._inject_fault()
            self._faults = False
            self._heal()
            self._trace("faults end: heal, restart, resume")
            self._settle()
        except Exception:  # a replica's assert: report it with the seed and the trace
            self._violation("exception:\n" + traceback.format_exc())
        return self.result

    def _step(self) -> None:
        self.now_ms += 1
        for host in self.hosts.values():
            self._step_host(host)
        for client in self.clients:
            self._step_client(client)

    def _settle(self) -> None:
        """Heal, let operations finish, converge, then compare the replicas."""
        deadline_ms = self.now_ms + self.config.settle_ms
        # Clients go on for a while (750 ms by default) against a healthy ensemble, then
        # stop starting work.
        work_until_ms = self.now_ms + self.config.settle_ms // 8
        while self.now_ms < deadline_ms:
            self._step()
            if self.now_ms >= work_until_ms:
                self._new_operations = False
                if self._converged():
                    break
        else:
            self._violation(f"no convergence within {self.config.settle_ms} ms of healing")
            return
        self._compare_replicas()
        self._check_history()

    def _converged(self) -> bool:
        if any(c.operations for c in self.clients):
            return False
        replicas = [h.replica for h in self.hosts.values()]
        if any(r is None for r in replicas):
            return False
        if any(h.persisting is not None for h in self.hosts.values()):
            return False
        leaders = [r for r in replicas if r is not None and r.is_leader]
        if len(leaders) != 1:
            return False
        leader = leaders[0]
        # The leader's own no-op (or later) is applied everywhere: nothing more to come.
        storage = self.hosts[leader.config.replica_id].storage
        last = storage.last_index()
        if storage.term(last) != leader.term:
            return False
        return all(r is not None and r.applied_index == last for r in replicas)

    def _compare_replicas(self) -> None:
        views = {}
        for rid, host in self.hosts.items():
            assert host.replica is not None
            tree = host.replica.tree
            tree.check_invariants()  # an ephemeral's owner is a live session, indexes agree
            for client in self.clients:
                if client.session_id not in tree.sessions:
                    continue  # expired or closed: check_invariants saw its ephemerals go
                for path in sorted(client.ephemerals):
                    znode = tree.get(path)
                    if znode is None or znode.ephemeral_owner != client.session_id:
                        self._violation(
                            f"replica {rid} lost ephemeral {path} of live session "
                            f"0x{client.session_id:x}"
                        )
            nodes = [(path, znode.data, tree.stat(path)) for path, znode in tree.walk()]
            views[rid] = (tree.last_zxid, nodes, dict(tree.sessions))
        first_id = self.ids[0]
        for rid in self.ids[1:]:
            if views[rid][0] != views[first_id][0]:
                self._violation(
                    f"replicas {first_id} and {rid} applied up to zxid "
                    f"{views[first_id][0]} and {views[rid][0]}"
                )
            if views[rid][1] != views[first_id][1]:
                mine = dict((p, (d, s)) for p, d, s in views[first_id][1])
                theirs = dict((p, (d, s)) for p, d, s in views[rid][1])
                differ = sorted(
                    p for p in mine.keys() | theirs.keys() if mine.get(p) != theirs.get(p)
                )
                self._violation(
                    f"replicas {first_id} and {rid} differ at {differ[:5]}: "
                    f"{[mine.get(p) for p in differ[:2]]} vs {[theirs.get(p) for p in differ[:2]]}"
                )
            if views[rid][2] != views[first_id][2]:
                self._violation(f"replicas {first_id} and {rid} hold different sessions")

    def _check_history(self) -> None:
        # The converged state, read once per register (every replica holds it).
        tree = next(iter(self.hosts.values())).replica
        assert tree is not None
        final_id = self._new_history_id()
        for path in self.registers:
            znode = tree.tree.get(path)
            op = self.recorder.call(
                client_id=final_id, path=path, kind=lin.OpKind.READ, now_ms=self.now_ms
            )
            if znode is None:
                reply = lin.Reply(error=ErrorCode.NO_NODE)
            else:
                reply = lin.Reply(value=znode.data or b"", version=znode.version)
            self.recorder.returned(op, reply, now_ms=self.now_ms)
        history = self.recorder.history()
        result = lin.check_history(history, session_order=True)
        if result.verdict is lin.Verdict.UNKNOWN:
            # The search ran out of budget, which proves nothing either way: one more
            # try with a larger one (rare: slow seeds with many lost operations).
            result = lin.check_history(
                history,
                session_order=True,
                steps_max=lin.SEARCH_STEPS_MAX * UNKNOWN_RETRY_BUDGET_FACTOR,
                configurations_max=lin.SEARCH_CONFIGURATIONS_MAX * UNKNOWN_RETRY_BUDGET_FACTOR,
            )
        self.result.linearizability = result.verdict.value
        if not result.ok:
            self._violation("client history: " + result.explain())


def run_replica_simulation(
    seed: int, *, planted_bug: PlantedBug | None = None, **overrides: int
) -> ReplicaSimResult:
    """One run from `seed`: the fault schedule and its size are drawn from the seed too."""
    rng = random.Random(seed)
    options: dict[str, int] = {
        "replicas": 5 if rng.random() < 0.25 else 3,
        "learners": 1 if rng.random() < 0.2 else 0,
        "clients": rng.randint(2, 6),
        "registers": rng.randint(1, 3),
    }
    # Many pipelining clients on one register lose many operations to faults, and each
    # lost write multiplies the checker's search: at most three clients per register.
    options["registers"] = max(options["registers"], (options["clients"] + 2) // 3)
    options.update(overrides)
    config = ReplicaSimConfig(
        seed=seed,
        planted_bug=planted_bug,
        replicas=options["replicas"],
        learners=options["learners"],
        clients=options["clients"],
        registers=options["registers"],
        steps_ms=options.get("steps_ms", 3_000),
    )
    return ReplicaSimulation(config).run()
