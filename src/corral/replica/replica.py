"""One server's brain, sans-IO: client requests, ticks and persistence in; Outboxes out.

Rules:
* No IO, no clock, no global random: `now_ms` (monotonic) and `wall_ms` (epoch) are
  arguments, session passwords come from the injected `random_bytes`.
* Every write (failed or not) becomes a log entry through the consensus core and is
  executed by the deterministic `DataTree.apply` when committed; only the replica that
  holds the client's connection replies. There is no second write path: standalone is
  a cluster of one.
* Per-connection FIFO: replies leave in the order requests arrived. Reads queued behind
  a write are evaluated only when that write has been applied (so a read sees the
  session's earlier writes). A write queued behind a sync is proposed only when it
  reaches the head (so the reads between them do not see it). Watch notifications
  caused by an applied write are queued before that write's reply.
* Decisions that are not a pure function of (tree, entry) — session ids, passwords,
  timestamps, expiry, reaping — are made here (on the leader) and written into the log.
* A member of an ensemble that has known no leader for QUORUM_LOST_GRACE (ZooKeeper's
  read-only start delay: max(2 s, tickTime)) has lost its quorum: it closes every client
  connection (so clients move to a server that can serve them) and stops serving. With
  read-only mode on it then accepts clients whose connect request allows a read-only
  server: their sessions are local (never in the log, gone when the quorum is back),
  reads and watches work, writes and sync answer NOTREADONLY. When a leader is known
  again every connection is closed once more and normal service resumes.
* Snapshots: the driver writes them (from the files) at `snapshot_meta()` and reports
  each durable one with `on_snapshot_durable`, which lets Raft compact its log. A
  snapshot received from the leader goes to the driver as `Persist.snapshot`; once it is
  durable (`on_persisted`) it replaces the tree, and everything that depended on the old
  tree is reset: every client connection is closed (as ZooKeeper does to a follower that
  resynchronises), so clients reconnect, resume their sessions and set their watches
  again; session expiry restarts from the new session table.

What it must not know: sockets, files, the asyncio loop, the four-letter word formats.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from corral import limits
from corral.consensus.log_storage import LogStorage
from corral.consensus.raft import Raft
from corral.consensus.types import (
    Entry,
    EntryKind,
    HardState,
    Message,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from corral.protocol.connection import (
    BadRequest,
    Request,
    encode_connect_response,
    encode_notification,
    encode_reply,
)
from corral.protocol.constants import (
    WRITE_OPS,
    AddWatchMode,
    ErrorCode,
    EventType,
    KeeperState,
    OpCode,
    Perm,
    SpecialXid,
    WatcherType,
)
from corral.protocol.errors import DecodeError
from corral.protocol.records import (
    AddWatchRequest,
    AuthPacket,
    ConnectRequest,
    ConnectResponse,
    ErrorResponse,
    ExistsRequest,
    GetChildrenRequest,
    GetDataRequest,
    Id,
    PathRecord,
    Record,
    SaslToken,
    SetWatches,
    SetWatches2,
    WatcherEvent,
    WatchesRequest,
    WhoAmIResponse,
    slot_constructor,
)
from corral.replica.expiry import ExpiryTracker
from corral.replica.messages import (
    Forward,
    ForwardRejected,
    Payload,
    RaftPayload,
    Touch,
    decode_payload,
    encode_payload,
)
from corral.replica.outbox import Outbox, Persist
from corral.tree.acl import authenticate, check_acl, who_am_i
from corral.tree.snapshot import decode_snapshot
from corral.tree.tree import DataTree, TreeEvent
from corral.tree.txn import (
    ClientTxn,
    CloseSessionTxn,
    CreateSessionTxn,
    Origin,
    ReapTxn,
    Txn,
    decode_origin,
    decode_txn,
    encode_entry_data,
    encode_identities,
    new_client_txn,
)
from corral.tree.watches import WatchKind, WatchTable

_INVALID_PASSWORD = bytes(limits.PASSWORD_SIZE)
# Origin(replica_id, token) through its slots: one per write (records.slot_constructor).
_new_origin = slot_constructor(Origin)

# Logging is the one output that is not in the Outbox: it changes no state and needs no order.
log = logging.getLogger("corral.replica")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaConfig:
    replica_id: int = 1
    tick_time_ms: int = limits.TICK_TIME_DEFAULT_MS
    min_session_timeout_ms: int = 0  # 0: 2 x tick_time_ms
    max_session_timeout_ms: int = 0  # 0: 20 x tick_time_ms
    max_client_cnxns: int = limits.MAX_CLIENT_CNXNS_DEFAULT  # per address; 0 = unlimited
    extended_types_enabled: bool = False
    skip_acl: bool = False
    enforce_quota: bool = False
    super_digest: str | None = None
    container_check_interval_ms: int = limits.CONTAINER_CHECK_INTERVAL_DEFAULT_MS
    container_max_per_minute: int = limits.CONTAINER_DELETES_PER_MINUTE_MAX
    container_max_never_used_ms: int = 0
    handshake_timeout_ms: int = limits.HANDSHAKE_TIMEOUT_MS
    voters: tuple[int, ...] = ()  # () = this replica alone (standalone)
    learners: tuple[int, ...] = ()  # non-voting replicas (ZooKeeper's observers)
    read_only_mode_enabled: bool = False  # serve read-only clients without a quorum
    # ZooKeeper's initLimit and syncLimit, in tickTimes (docs/deploy.md has the mapping).
    init_limit_ticks: int = limits.INIT_LIMIT_DEFAULT_TICKS
    sync_limit_ticks: int = limits.SYNC_LIMIT_DEFAULT_TICKS
    # The data of /zookeeper/config (an ensemble's membership text; b"" standalone): set
    # on the tree at start and after every snapshot install, never logged (ZooKeeper
    # sets it at start-up too).
    config_znode_data: bytes = b""

    @property
    def is_ensemble(self) -> bool:
        return self.voter_ids != (self.replica_id,) or bool(self.learners)

    @property
    def quorum_lost_grace_ms(self) -> int:
        """How long without a leader before the quorum counts as lost (ZooKeeper waits
        this long before starting its read-only server)."""
        return max(limits.QUORUM_LOST_GRACE_MIN_MS, self.tick_time_ms)

    @property
    def voter_ids(self) -> tuple[int, ...]:
        return self.voters or (self.replica_id,)

    @property
    def raft_tick_ms(self) -> int:
        """Consensus time unit: a tenth of tickTime, the leader's heartbeat interval."""
        return max(10, self.tick_time_ms // 10)

    @property
    def sync_timeout_ms(self) -> int:
        """syncLimit x tickTime: how long a follower hears nothing from its leader before it
        seeks an election (Raft's election timeout, randomised in [T, 2T)), and how long a
        leader goes without hearing from a quorum before it steps down (check-quorum)."""
        return self.sync_limit_ticks * self.tick_time_ms

    @property
    def init_timeout_ms(self) -> int:
        """initLimit x tickTime: how long a member being brought up to date (a snapshot
        transfer) may stall before the transfer is given up and started again."""
        return self.init_limit_ticks * self.tick_time_ms

    @property
    def snapshot_stall_ticks(self) -> int:
        """init_timeout_ms in consensus ticks (at least one)."""
        return max(1, -(-self.init_timeout_ms // self.raft_tick_ms))

    @property
    def election_ticks(self) -> int:
        """sync_timeout_ms in consensus ticks; at least two, so a heartbeat fits in it."""
        return max(2, -(-self.sync_timeout_ms // self.raft_tick_ms))

    @property
    def session_timeout_min_ms(self) -> int:
        return self.min_session_timeout_ms or 2 * self.tick_time_ms

    @property
    def session_timeout_max_ms(self) -> int:
        return self.max_session_timeout_ms or 20 * self.tick_time_ms

    def __post_init__(self) -> None:
        if not 1 <= self.replica_id <= 254:
            raise ValueError(f"replica id {self.replica_id} outside 1..254")
        if self.tick_time_ms <= 0:
            raise ValueError("tickTime must be positive")
        if self.init_limit_ticks < 1 or self.sync_limit_ticks < 1:
            raise ValueError("initLimit and syncLimit must be at least 1")
        if self.session_timeout_min_ms > self.session_timeout_max_ms:
            raise ValueError("minSessionTimeout must not exceed maxSessionTimeout")


def _event_frame(event_type: int, path: str, zxid: int) -> bytes:
    return encode_notification(
        WatcherEvent(type=event_type, state=KeeperState.SYNC_CONNECTED, path=path), zxid
    )


class _Phase(enum.Enum):
    """Where a queued request stands."""

    PROPOSED = "proposed"  # a write (or new session) waiting for its entry to apply
    HELD = "held"  # a write behind an unanswered sync: proposed when it reaches the head
    DEFERRED = "deferred"  # a read-like request, evaluated when it reaches the head
    DONE = "done"  # its frames are ready to go


# Not kw_only: one is built per request, positionally (a keyword call costs ~50% more).
@dataclass(slots=True)
class _Pending:
    xid: int
    opcode: int
    request: Record | None
    received_ms: int
    phase: _Phase
    frame: bytes = b""  # the answer, once DONE (every request has exactly one)
    close_after: bool = False
    txn: Txn | None = None  # a HELD write's txn


@dataclass(slots=True, kw_only=True)
class _LocalSession:
    """A session of a read-only client: known to this replica alone, never in the log."""

    password: bytes
    timeout_ms: int


# The common reads, answered from the tree before the chain of special requests is walked
# (none of these is special; the chain ends with the same tree read).
_PLAIN_TREE_READS: frozenset[int] = frozenset(
    {OpCode.EXISTS, OpCode.GET_DATA, OpCode.GET_CHILDREN, OpCode.GET_CHILDREN2}
)

# Refused by a replica without a quorum (read-only mode), as ZooKeeper does.
_READ_ONLY_REFUSED: frozenset[int] = (WRITE_OPS - {OpCode.CLOSE_SESSION}) | {
    OpCode.CHECK,
    OpCode.SYNC,
}


@dataclass(slots=True, kw_only=True)
class ConnectionInfo:
    """What the replica knows about one client connection (also shown by `cons`)."""

    connection_id: int
    address: str
    port: int
    opened_ms: int
    identities: tuple[Id, ...]  # replaced, never mutated: reads and txns share it
    # `identities` and their encoding in a txn (txn.encode_identities), for its writes.
    identities_encoded: tuple[tuple[Id, ...], bytes] = ((), b"")
    session_id: int = 0
    timeout_ms: int = 0
    handshake_done: bool = False
    read_only_byte: bool | None = None
    closing: bool = False
    output_paused: bool = False  # answered a batch; waits for the client to read it
    queue: deque[_Pending] = field(default_factory=deque)
    packets_received: int = 0
    packets_sent: int = 0
    last_opcode: int | None = None
    last_xid: int = 0
    last_zxid: int = 0
    last_response_ms: int = 0
    last_latency_ms: int = 0
    latency_min_ms: int = 0
    latency_max_ms: int = 0
    latency_total_ms: int = 0
    latency_count: int = 0
    established_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsembleFigures:
    quorum_size: int
    followers: int  # other members (voters and learners)
    synced_followers: int  # voters whose log matches the leader's (leader only)
    synced_observers: int
    pending_syncs: int
    proposal_size_last: int  # bytes
    proposal_size_min: int
    proposal_size_max: int


@dataclass(slots=True)
class ServerStats:
    packets_received: int = 0
    packets_sent: int = 0
    latency_min_ms: int = 0
    latency_max_ms: int = 0
    latency_total_ms: int = 0
    latency_count: int = 0
    auth_failed_count: int = 0
    last_response_size: int = 0
    min_response_size: int = 0
    max_response_size: int = 0

    # Compares, not min()/max(): these run once per reply.
    def record_latency(self, latency_ms: int) -> None:
        if self.latency_count == 0:
            self.latency_min_ms = self.latency_max_ms = latency_ms
        elif latency_ms < self.latency_min_ms:
            self.latency_min_ms = latency_ms
        elif latency_ms > self.latency_max_ms:
            self.latency_max_ms = latency_ms
        self.latency_total_ms += latency_ms
        self.latency_count += 1

    def record_response(self, size: int) -> None:
        self.packets_sent += 1
        self.last_response_size = size
        if self.min_response_size == 0 or size < self.min_response_size:
            self.min_response_size = size
        if size > self.max_response_size:
            self.max_response_size = size

    def reset(self) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, 0)


class Replica:
    """A corral server minus its IO. See the module docstring for the rules."""

    def __init__(
        self,
        *,
        config: ReplicaConfig,
        storage: LogStorage,
        tree: DataTree,
        random_bytes: Callable[[int], bytes],
        rng_seed: int,
        now_ms: int,
        wall_ms: int,
        check_invariants: bool = True,
    ) -> None:
        """`check_invariants`: whether Raft asserts its invariants after every input (tests
        and the simulation; the server turns it off, see `Raft`)."""
        self.config = config
        self._is_ensemble = config.is_ensemble  # asked per write; the config never changes
        self.tree = tree
        if config.config_znode_data:
            tree.set_config_data(config.config_znode_data)
        self.watches = WatchTable()
        self.stats = ServerStats()
        self.connections: dict[int, ConnectionInfo] = {}
        self._random_bytes = random_bytes
        self._expiry = ExpiryTracker(config.tick_time_ms)
        self._raft = Raft(
            replica_id=config.replica_id,
            voters=config.voter_ids,
            learners=config.learners,
            election_ticks=config.election_ticks,
            heartbeat_ticks=1,
            snapshot_stall_ticks=config.snapshot_stall_ticks,
            storage=storage,
            rng=random.Random(rng_seed),
            applied=tree.last_zxid,
            check_invariants=check_invariants,
        )
        if config.voter_ids == (config.replica_id,):
            self._raft.campaign()  # a cluster of one need not wait for an election timeout
        # Session ids: replica id in the top byte, a millisecond clock in bits 16..55 so
        # ids stay unique across restarts, a counter in the low bits.
        self._next_session_id = (config.replica_id << 56) | (
            (wall_ms << 16) & 0x00FF_FFFF_FFFF_0000
        )
        self._session_owner: dict[int, int] = {}  # session id -> connection id
        self._closing_sessions: set[int] = set()
        # Our own proposals by token (the origin tag in the entry): (connection, pending).
        self._proposals: dict[int, tuple[int, _Pending]] = {}
        # What this replica proposed as leader, by log index: the entry data, the token
        # of its origin tag, and the txn it encodes. Applying our own entry takes the txn
        # from here instead of decoding it again (one decode per write saved); an entry
        # whose data is not that very object (replaced after a leader change, read back
        # from disk) is decoded as usual.
        self._own_entries: dict[int, tuple[bytes, int, Txn]] = {}
        # Tokens name our proposals in their entries' origin tags (and read-index
        # requests). A restarted replica must not reuse its previous life's tokens: an
        # entry it proposed then may commit now and would answer a new request. So each
        # life starts at a random point of a 62-bit space (int64 on the wire, room to count).
        self._next_token = int.from_bytes(random_bytes(8), "big") >> 2
        self._leader_id = 0  # the leader as last seen, to notice a change
        self._touched: dict[int, int] = {}  # session -> timeout, heard from since the last Touch
        self._syncs: dict[int, tuple[int, _Pending]] = {}  # read-index request -> waiter
        self._sync_targets: list[tuple[int, int, _Pending]] = []  # (index, connection, pending)
        self._applied_index = tree.last_zxid
        self._persist_in_flight: tuple[int, Ready] | None = None
        # The driver's hook, called with each Persist as it is handed out, before the
        # replica applies what the previous persist committed: a driver that writes on
        # another thread starts the write there, so the disk works while the replica
        # applies (the Persist still comes in the Outbox as usual). None: no hook.
        self.persist_hook: Callable[[Persist], None] | None = None
        self._installing: DataTree | None = None  # decoded from the snapshot in flight
        self._lazy_hard_state: HardState | None = None  # a commit-only change not on disk yet
        self._proposal_sizes = (0, 0, 0)  # bytes of proposed entries: last, min, max
        self._persist_token = 0
        self._pending_reaps: set[str] = set()
        self._next_reap_ms = now_ms + config.container_check_interval_ms
        self._next_raft_tick_ms = now_ms + config.raft_tick_ms
        # Quorum loss (see the module rules): since when no leader is known, whether the
        # quorum counts as lost, and the local sessions of read-only clients meanwhile.
        self._leaderless_since_ms: int | None = now_ms if config.is_ensemble else None
        self._quorum_lost = False
        self._local_sessions: dict[int, _LocalSession] = {}
        # Sessions restored from a snapshot get a fresh full timeout to come back.
        for session in tree.sessions.values():
            self._expiry.touch(session.session_id, session.timeout_ms, now_ms)
        self._now_ms = now_ms
        self._wall_ms = wall_ms
        out = Outbox()
        self._pump(out)
        self._startup_outbox = out

    # ------------------------------------------------------------------ public inputs

    def take_startup_outbox(self) -> Outbox:
        """What the replica needs done before serving (e.g. persist its first term)."""
        out, self._startup_outbox = self._startup_outbox, Outbox()
        return out

    @property
    def last_zxid(self) -> int:
        return self.tree.last_zxid

    @property
    def is_leader(self) -> bool:
        return self._raft.role is Role.LEADER

    @property
    def serving(self) -> bool:
        """Whether the replica serves clients as a member of a working ensemble (a leader
        is known) or in read-only mode; False during an election and without a quorum
        (what the four-letter words report, as ZooKeeper does while it is LOOKING)."""
        return self.read_only or (self._leader_id != 0 and not self._quorum_lost)

    @property
    def read_only(self) -> bool:
        """Serving read-only clients only, for want of a quorum."""
        return self._quorum_lost and self.config.read_only_mode_enabled

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def applied_index(self) -> int:
        """The last log entry executed here (txns, no-ops and membership changes)."""
        return self._applied_index

    @property
    def outstanding_requests(self) -> int:
        return sum(len(c.queue) for c in self.connections.values())

    def on_connection_opened(
        self, connection_id: int, address: str, port: int, now_ms: int
    ) -> Outbox:
        out = Outbox()
        assert connection_id not in self.connections, connection_id
        limit = self.config.max_client_cnxns
        if limit > 0:
            same = sum(1 for c in self.connections.values() if c.address == address)
            if same >= limit:
                out.close.append(connection_id)
                return out
        self.connections[connection_id] = ConnectionInfo(
            connection_id=connection_id,
            address=address,
            port=port,
            opened_ms=now_ms,
            identities=(Id(scheme="ip", id=address),),
        )
        return out

    def on_connection_closed(self, connection_id: int) -> Outbox:
        """The peer went away (or the driver closed it). The session lives on until expiry."""
        connection = self.connections.pop(connection_id, None)
        if connection is None:
            return Outbox()
        self.watches.drop_connection(connection_id)
        if self._session_owner.get(connection.session_id) == connection_id:
            del self._session_owner[connection.session_id]
        # Proposals already in the log still apply; their replies have nowhere to go.
        return Outbox()

    def on_connect(
        self, connection_id: int, request: ConnectRequest, now_ms: int, wall_ms: int
    ) -> Outbox:
        out = Outbox()
        connection = self.connections.get(connection_id)
        if connection is None:
            return out
        self._now_ms, self._wall_ms = now_ms, wall_ms
        connection.read_only_byte = request.read_only
        if request.last_zxid_seen > self.last_zxid:
            # The client has seen a newer state than ours: it must try another server.
            self._close(connection, out)
            return out
        timeout_ms = min(
            max(request.timeout_ms, self.config.session_timeout_min_ms),
            self.config.session_timeout_max_ms,
        )
        connection.timeout_ms = timeout_ms
        if self._quorum_lost:
            self._connect_read_only(connection, request, timeout_ms, now_ms, out)
            return out
        if request.session_id == 0:
            session_id = self._new_session_id()
            password = self._random_bytes(limits.PASSWORD_SIZE)
            pending = _Pending(
                xid=0,
                opcode=OpCode.CREATE_SESSION,
                request=None,
                received_ms=now_ms,
                phase=_Phase.PROPOSED,
            )
            connection.queue.append(pending)
            connection.session_id = session_id
            self._session_owner[session_id] = connection_id
            self._expiry.touch(session_id, timeout_ms, now_ms)
            txn = CreateSessionTxn(
                session_id=session_id, password=password, timeout_ms=timeout_ms, time_ms=wall_ms
            )
            self._propose(connection, pending, txn, out)
            self._pump(out)
            return out
        session = self.tree.sessions.get(request.session_id)
        previous_owner = self._session_owner.get(request.session_id)
        if previous_owner is not None and previous_owner != connection_id:
            previous = self.connections.get(previous_owner)
            if previous is not None:
                self._close(previous, out)
        alive = (
            session is not None
            and request.session_id not in self._closing_sessions
            and session.password == request.password
        )
        if not alive:
            log.info(
                "refused to resume session 0x%x for %s:%d: %s",
                request.session_id & 0xFFFF_FFFF_FFFF_FFFF,
                connection.address,
                connection.port,
                "wrong password" if session is not None else "expired or unknown",
            )
            frame = encode_connect_response(
                ConnectResponse(
                    protocol_version=0,
                    timeout_ms=0,
                    session_id=0,
                    password=_INVALID_PASSWORD,
                    read_only=False if request.read_only is not None else None,
                )
            )
            out.reply.append((connection_id, frame))
            self._close(connection, out)
            return out
        assert session is not None
        log.info(
            "session 0x%x resumed by %s:%d", session.session_id, connection.address, connection.port
        )
        connection.session_id = session.session_id
        connection.handshake_done = True
        connection.established_ms = now_ms
        self._session_owner[session.session_id] = connection_id
        self._expiry.touch(session.session_id, timeout_ms, now_ms)
        frame = encode_connect_response(
            ConnectResponse(
                protocol_version=0,
                timeout_ms=timeout_ms,
                session_id=session.session_id,
                password=session.password,
                read_only=False if request.read_only is not None else None,
            )
        )
        out.reply.append((connection_id, frame))
        return out

    def _connect_read_only(
        self,
        connection: ConnectionInfo,
        request: ConnectRequest,
        timeout_ms: int,
        now_ms: int,
        out: Outbox,
    ) -> None:
        """The handshake without a quorum: only read-only clients, with local sessions."""
        if not (self.config.read_only_mode_enabled and request.read_only):
            # No reply, as ZooKeeper: the client tries another server.
            self._close(connection, out)
            return
        session_id = request.session_id
        if session_id == 0:
            session_id = self._new_session_id()
            local = _LocalSession(
                password=self._random_bytes(limits.PASSWORD_SIZE), timeout_ms=timeout_ms
            )
            self._local_sessions[session_id] = local
            log.info("read-only session 0x%x created for %s", session_id, connection.address)
        else:
            found = self._local_sessions.get(session_id)
            if found is None or found.password != request.password:
                # A global session cannot be re-attached without a quorum (nor can a
                # local one with the wrong password): refused like ZooKeeper, no reply.
                self._close(connection, out)
                return
            local = found
            local.timeout_ms = timeout_ms
            previous = self.connections.get(self._session_owner.get(session_id, -1))
            if previous is not None and previous is not connection:
                self._close(previous, out)
        connection.session_id = session_id
        connection.handshake_done = True
        connection.established_ms = now_ms
        self._session_owner[session_id] = connection.connection_id
        self._expiry.touch(session_id, timeout_ms, now_ms)
        frame = encode_connect_response(
            ConnectResponse(
                protocol_version=0,
                timeout_ms=timeout_ms,
                session_id=session_id,
                password=local.password,
                read_only=True,
            )
        )
        out.reply.append((connection.connection_id, frame))

    def on_request(self, connection_id: int, event: Request, now_ms: int, wall_ms: int) -> Outbox:
        return self.on_requests(connection_id, (event,), now_ms, wall_ms)

    def on_requests(
        self, connection_id: int, events: Sequence[Request], now_ms: int, wall_ms: int
    ) -> Outbox:
        """Requests read together from one connection, in order: the same answers, in the
        same order, as `on_request` for each in turn, in one Outbox. The consensus core is
        pumped once at the end, so the writes among them reach the log in one persist."""
        out = Outbox()
        connection = self.connections.get(connection_id)
        if connection is None:
            return out
        self._now_ms, self._wall_ms = now_ms, wall_ms
        pump = False
        for event in events:
            if connection.closing:
                break
            pump |= self._request(connection, event, now_ms, wall_ms, out)
        if pump:
            self._pump(out)
        return out

    def _request(
        self, connection: ConnectionInfo, event: Request, now_ms: int, wall_ms: int, out: Outbox
    ) -> bool:
        """Queue one request and answer what it unblocks; False if it closed the
        connection instead (too many pending), True if the consensus core needs a pump."""
        self.stats.packets_received += 1
        connection.packets_received += 1
        if len(connection.queue) >= limits.PENDING_REQUESTS_PER_CONNECTION_MAX:
            self._close(connection, out)
            return False
        session_id = connection.session_id
        if session_id and session_id not in self._closing_sessions:
            self._expiry.touch(session_id, connection.timeout_ms, now_ms)
            if self._leader_id != self.config.replica_id and not self._quorum_lost:
                # A follower tells the leader (which owns expiry) at its next tick.
                self._touched[session_id] = connection.timeout_ms
        opcode = event.opcode
        # xid, opcode, request, received_ms, phase
        pending = _Pending(event.xid, opcode, event.request, now_ms, _Phase.DEFERRED)
        connection.queue.append(pending)
        if opcode == OpCode.DELETE_CONTAINER:
            # Internal to the reaper; ZooKeeper 3.9 would run it without any check.
            self._finish(pending, ErrorCode.UNIMPLEMENTED, None, zxid=-1, close=True)
        elif session_id in self._closing_sessions:
            self._finish(pending, ErrorCode.SESSION_EXPIRED, None)
        elif session_id in self._local_sessions and opcode in _READ_ONLY_REFUSED:
            self._finish(pending, ErrorCode.NOT_READ_ONLY, None)
        elif session_id in self._local_sessions and opcode == OpCode.CLOSE_SESSION:
            self._drop_local_session(session_id)
            self._finish(pending, ErrorCode.OK, None, close=True)
        elif opcode in WRITE_OPS:
            pending.phase = _Phase.PROPOSED
            identities = connection.identities
            encoded = connection.identities_encoded
            if encoded[0] is not identities:  # new identities (an auth): encode them once
                encoded = connection.identities_encoded = (
                    identities,
                    encode_identities(identities),
                )
            txn = new_client_txn(
                session_id,
                opcode,
                event.request,
                identities,
                wall_ms,  # time_ms
                event.request_bytes,
                encoded[1],  # identities_bytes
            )
            if opcode == OpCode.CLOSE_SESSION:
                self._closing_sessions.add(session_id)
            if self._is_ensemble and any(
                p.phase is _Phase.HELD or (p.opcode == OpCode.SYNC and p.phase is not _Phase.DONE)
                for p in connection.queue
            ):
                # A sync waits for a read index, not for an entry of the log: proposed
                # now, this write could apply before the sync answers, and the reads
                # between them would see it. It waits until it reaches the head.
                pending.phase = _Phase.HELD
                pending.txn = txn
            else:
                self._propose(connection, pending, txn, out)
        self._drain(connection, out)
        return True

    def on_bad_request(self, connection_id: int, event: BadRequest, now_ms: int) -> Outbox:
        out = Outbox()
        connection = self.connections.get(connection_id)
        if connection is None or connection.closing:
            return out
        self.stats.packets_received += 1
        connection.packets_received += 1
        pending = _Pending(
            xid=event.xid,
            opcode=event.opcode,
            request=None,
            received_ms=now_ms,
            phase=_Phase.DEFERRED,
        )
        connection.queue.append(pending)
        zxid = -1 if event.err == ErrorCode.UNIMPLEMENTED else None
        self._finish(pending, event.err, None, zxid=zxid, close=event.close)
        self._drain(connection, out)
        return out

    def on_persisted(self, token: int, now_ms: int, wall_ms: int) -> Outbox:
        out = Outbox()
        assert self._persist_in_flight is not None, token
        expected, ready = self._persist_in_flight
        assert token == expected, (token, expected)
        self._now_ms, self._wall_ms = now_ms, wall_ms
        self._persist_in_flight = None
        if ready.snapshot is not None:
            self._install(ready.snapshot, out)
        self._raft.advance(ready)
        self._pump(out)
        return out

    def snapshot_meta(self) -> SnapshotMeta | None:
        """What a snapshot of the state machine taken now must describe (None: nothing
        applied yet): Raft's applied index, its term, and the membership in force there.
        The driver writes the snapshot at exactly this index (the tree may have applied
        a little further while a persist is in flight; the snapshot writer rebuilds the
        tree at the index from the files)."""
        if self._raft.applied_index < 1:
            return None
        return self._raft.snapshot_meta()

    def on_snapshot_durable(self, meta: SnapshotMeta) -> Outbox:
        """A snapshot taken at `meta` (from `snapshot_meta()`) is durable: Raft may drop its
        log up to `meta.index`. The driver then drops the same entries from its storage
        (`Wal.compact`). A no-op when a received snapshot has overtaken it meanwhile."""
        out = Outbox()
        if meta.index < self._raft.first_index - 1:
            return out  # already compacted past it (an installed snapshot overtook it)
        self._raft.compact(meta.index, meta)
        self._pump(out)
        return out

    def on_message(self, peer_id: int, data: bytes, now_ms: int, wall_ms: int) -> Outbox:
        """A payload from another replica (server/peers.py delivers it)."""
        out = Outbox()
        self._now_ms, self._wall_ms = now_ms, wall_ms
        try:
            payload = decode_payload(data)
        except DecodeError as e:
            log.warning("dropped a malformed payload from replica %d: %s", peer_id, e)
            return out
        match payload:
            case RaftPayload(message=message):
                if message.from_id == peer_id and message.to_id == self.config.replica_id:
                    self._raft.step(message)
            case Forward(origin_id=origin_id, token=token, txn=txn):
                if origin_id != peer_id:
                    log.warning("replica %d forwarded a write of replica %d", peer_id, origin_id)
                elif self._raft.role is not Role.LEADER or self._raft.propose(txn) is None:
                    self._send(peer_id, ForwardRejected(token=token), out)
                else:
                    self._record_proposal(len(txn))
            case ForwardRejected(token=token):
                origin = self._proposals.pop(token, None)
                if origin is not None:
                    connection = self.connections.get(origin[0])
                    if connection is not None:
                        self._close(connection, out)
            case Touch(sessions=sessions):
                if self._raft.role is Role.LEADER:
                    for session_id, timeout_ms in sessions:
                        if session_id in self.tree.sessions:
                            self._expiry.touch(session_id, timeout_ms, now_ms)
        self._pump(out)
        return out

    def on_peer_link_lost(self, peer_id: int, now_ms: int, wall_ms: int) -> Outbox:
        """The link from `peer_id` closed (server/peers.py): if it led us, its process
        may be gone, so seek an election now rather than after the election timeout
        (Raft's `leader_unreachable`; a hint, never a safety input)."""
        out = Outbox()
        self._now_ms, self._wall_ms = now_ms, wall_ms
        self._raft.leader_unreachable(peer_id)
        self._pump(out)
        return out

    def _release_syncs(self, out: Outbox) -> None:
        """Answer the syncs whose read index this replica has applied."""
        if not self._sync_targets:
            return
        waiting = []
        for index, connection_id, pending in self._sync_targets:
            connection = self.connections.get(connection_id)
            if connection is None:
                continue
            if index <= self._applied_index:
                pending.phase = _Phase.DONE
                self._drain(connection, out)
            else:
                waiting.append((index, connection_id, pending))
        self._sync_targets = waiting

    def on_tick(self, now_ms: int, wall_ms: int) -> Outbox:
        out = Outbox()
        self._now_ms, self._wall_ms = now_ms, wall_ms
        while now_ms >= self._next_raft_tick_ms:
            self._raft.tick()
            self._next_raft_tick_ms += self.config.raft_tick_ms
        since = self._leaderless_since_ms
        if (
            since is not None
            and not self._quorum_lost
            and now_ms - since >= self.config.quorum_lost_grace_ms
        ):
            self._lose_quorum(out)
        if self._local_sessions:
            for session_id in self._expiry.expired(now_ms):
                if session_id in self._local_sessions:
                    self._drop_local_session(session_id)
                    owner = self.connections.get(self._session_owner.get(session_id, -1))
                    if owner is not None:
                        self._close(owner, out)
        if self._raft.role is not Role.LEADER and (self._proposals or self._syncs):
            self._abandon_unanswered(now_ms, out)
        if self._touched and self._leader_id and self._leader_id != self.config.replica_id:
            sessions = tuple(self._touched.items())
            self._touched.clear()
            self._send(self._leader_id, Touch(sessions=sessions), out)
        # Connections that never completed a handshake.
        for connection in list(self.connections.values()):
            if (
                not connection.handshake_done
                and not connection.queue
                and now_ms - connection.opened_ms >= self.config.handshake_timeout_ms
            ):
                self._close(connection, out)
        if self._raft.role is Role.LEADER:
            for session_id in self._expiry.expired(now_ms):
                if session_id in self._closing_sessions or session_id not in self.tree.sessions:
                    continue
                self._closing_sessions.add(session_id)
                self._propose(
                    None, None, CloseSessionTxn(session_id=session_id, time_ms=wall_ms), out
                )
            if now_ms >= self._next_reap_ms:
                self._next_reap_ms = now_ms + self.config.container_check_interval_ms
                self._reap(wall_ms, out)
        self._pump(out)
        return out

    def _lose_quorum(self, out: Outbox) -> None:
        self._quorum_lost = True
        log.warning(
            "no leader for %d ms: the quorum is lost; %s",
            self.config.quorum_lost_grace_ms,
            "serving read-only clients only"
            if self.config.read_only_mode_enabled
            else "not serving clients",
        )
        self._close_all_connections(out)

    def _regain_quorum(self, out: Outbox) -> None:
        self._quorum_lost = False
        log.info("leader %d known: serving clients again", self._leader_id)
        # Read-only sessions were local: their clients reconnect and start new sessions.
        self._close_all_connections(out)
        for session_id in list(self._local_sessions):
            self._drop_local_session(session_id)

    def _close_all_connections(self, out: Outbox) -> None:
        for connection in list(self.connections.values()):
            self._close(connection, out)

    def _drop_local_session(self, session_id: int) -> None:
        del self._local_sessions[session_id]
        self._expiry.remove(session_id)
        self._touched.pop(session_id, None)

    def session_deadline_ms(self, session_id: int) -> int | None:
        """When the session expires unless it is heard from (monotonic ms), if tracked here."""
        return self._expiry.deadline_ms(session_id)

    def _record_proposal(self, size: int) -> None:
        _, low, high = self._proposal_sizes
        # Compares, not min()/max(): once per write.
        self._proposal_sizes = (
            size,
            size if not low or size < low else low,
            size if size > high else high,
        )

    def ensemble_figures(self) -> EnsembleFigures:
        """What `mntr`/`srvr` report about replication (ZooKeeper's leader metrics)."""
        voters = self.config.voter_ids
        learners = self.config.learners
        last = self._raft.last_index
        synced = {
            peer
            for peer in (*voters, *learners)
            if peer != self.config.replica_id and self._raft.peer_match_index(peer) == last
        }
        return EnsembleFigures(
            quorum_size=len(voters) // 2 + 1,
            followers=len(voters) - 1 + len(learners),
            synced_followers=len(synced - set(learners)),
            synced_observers=len(synced & set(learners)),
            pending_syncs=len(self._syncs) + len(self._sync_targets),
            proposal_size_last=self._proposal_sizes[0],
            proposal_size_min=self._proposal_sizes[1],
            proposal_size_max=self._proposal_sizes[2],
        )

    def on_shutdown(self, now_ms: int) -> Outbox:
        """A graceful stop: a leader hands leadership to its most up-to-date voter first,
        so the ensemble does not wait an election timeout (Raft's leader transfer)."""
        out = Outbox()
        self._now_ms = now_ms
        if not self.is_leader:
            return out
        peers = [v for v in self.config.voter_ids if v != self.config.replica_id]
        if not peers:
            return out
        target = max(peers, key=lambda peer: (self._raft.peer_match_index(peer) or 0, -peer))
        if self._raft.transfer_leadership(target):
            log.info("handing leadership to replica %d before stopping", target)
        self._pump(out)
        return out

    # ------------------------------------------------------------------ consensus plumbing

    def _propose(
        self, connection: ConnectionInfo | None, pending: _Pending | None, txn: Txn, out: Outbox
    ) -> None:
        token = self._next_token
        self._next_token += 1
        data = encode_entry_data(txn, _new_origin(self.config.replica_id, token))
        self._record_proposal(len(data))
        if self._raft.role is Role.LEADER:
            index = self._raft.propose(data)
            accepted = index is not None
            if index is not None:
                self._own_entries[index] = (data, token, txn)
        elif self._leader_id and connection is not None:
            # Followers forward client writes; the entry's origin tag brings the result
            # back here when it is applied.
            self._send(
                self._leader_id,
                Forward(origin_id=self.config.replica_id, token=token, txn=data),
                out,
            )
            accepted = True
        else:
            accepted = False  # no leader: the client tries again, on this or another server
        if not accepted:
            if connection is not None:
                self._close(connection, out)
            return
        if connection is not None and pending is not None:
            self._proposals[token] = (connection.connection_id, pending)

    def _pump(self, out: Outbox) -> None:
        """Move Ready batches out of the consensus core until one needs persisting."""
        while self._persist_in_flight is None and self._raft.has_ready():
            ready = self._raft.ready()
            hard_state = ready.hard_state or self._lazy_hard_state
            persist = None
            if (
                ready.entries
                or ready.snapshot is not None
                or (ready.hard_state is not None and ready.must_sync)
            ):
                if ready.snapshot is not None:
                    # Decoded before it is made durable: a snapshot we could not load must
                    # never replace our state on disk.
                    self._installing = self._decode(ready.snapshot)
                self._persist_token += 1
                assert out.persist is None
                persist = Persist(
                    token=self._persist_token,
                    entries=ready.entries,
                    hard_state=hard_state,
                    must_sync=ready.must_sync,
                    snapshot=ready.snapshot,
                )
                out.persist = persist
                self._persist_in_flight = (self._persist_token, ready)
                if self.persist_hook is not None:
                    # Before applying: the new entries do not depend on what is applied
                    # (committed entries are durable already), so the write can start now.
                    self.persist_hook(persist)
            for entry in ready.committed_entries:
                self._apply(entry, out)
            for read_state in ready.read_states:
                waiter = self._syncs.pop(read_state.request_id, None)
                if waiter is not None:
                    self._sync_targets.append((read_state.index, waiter[0], waiter[1]))
            self._release_syncs(out)
            out.snapshot_sends.extend(ready.snapshot_sends)
            if persist is not None:
                self._lazy_hard_state = None
                self._queue_messages(ready.messages, out)
                self._notice_leader(out)
                return
            # Only the commit index moved (must_sync is False): it need not be on disk
            # before we go on — after a restart the leader learns it again — so it rides
            # with the next persist instead of costing a log write and a round trip to
            # the IO thread per commit.
            self._lazy_hard_state = hard_state
            self._queue_messages(ready.messages, out)
            self._raft.advance(ready)
            self._notice_leader(out)
        if self._persist_in_flight is not None:
            # A persist is under way (a slow fsync): the messages that depend on nothing
            # unpersisted — a leader's heartbeats and appends, heartbeat answers, read
            # index traffic — go now, or a slow disk would look like a dead leader.
            for message in self._raft.take_messages():
                payload = encode_payload(RaftPayload(message=message))
                out.send_now.append((message.to_id, payload))
        self._notice_leader(out)

    def _decode(self, snapshot: Snapshot) -> DataTree:
        """The tree of a snapshot from the leader. The leader streams the content of a
        snapshot file it wrote and checked (checksums) over an authenticated link, so
        bytes that do not decode are a bug, not an input to survive: we stop rather than
        install state we cannot read (Raft has already given up our log for it)."""
        tree = self.tree
        try:
            installed = decode_snapshot(
                snapshot.data,
                extended_types_enabled=tree.extended_types_enabled,
                skip_acl=tree.skip_acl,
                enforce_quota=tree.enforce_quota,
            )
        except DecodeError as e:
            raise AssertionError(f"snapshot {snapshot.meta} does not decode: {e}") from e
        assert installed.last_zxid == snapshot.meta.index, (installed.last_zxid, snapshot.meta)
        return installed

    def _install(self, snapshot: Snapshot, out: Outbox) -> None:
        """The leader's snapshot is durable: it replaces the tree. Client connections are
        closed (ZooKeeper closes them on a follower that resynchronises): their watches,
        pending requests and syncs were about the old tree; clients reconnect, resume
        their sessions (if the new table has them) and set their watches again."""
        installed, self._installing = self._installing, None
        assert installed is not None
        log.info(
            "installed the leader's snapshot at index %d (term %d): %d znodes, %d sessions; "
            "closing %d client connections",
            snapshot.meta.index,
            snapshot.meta.term,
            installed.node_count,
            len(installed.sessions),
            len(self.connections),
        )
        self.tree = installed
        if self.config.config_znode_data:
            installed.set_config_data(self.config.config_znode_data)
        self._applied_index = snapshot.meta.index
        for connection in list(self.connections.values()):
            self._close(connection, out)
        self.watches = WatchTable()
        self._session_owner.clear()
        self._proposals.clear()
        self._own_entries.clear()  # none of them will be applied here now
        self._syncs.clear()
        self._sync_targets.clear()
        self._closing_sessions.clear()
        self._pending_reaps.clear()
        self._touched.clear()
        # Sessions get a fresh full timeout to come back (as after a restart).
        self._expiry = ExpiryTracker(self.config.tick_time_ms)
        for session in installed.sessions.values():
            self._expiry.touch(session.session_id, session.timeout_ms, self._now_ms)

    def _queue_messages(self, messages: tuple[Message, ...], out: Outbox) -> None:
        for message in messages:
            out.send.append((message.to_id, encode_payload(RaftPayload(message=message))))

    def _send(self, peer_id: int, payload: Payload, out: Outbox) -> None:
        """Forwards, rejections and touches depend on nothing unpersisted: they go at
        once, so a forward never waits behind (or is overtaken across) a persist."""
        out.send_now.append((peer_id, encode_payload(payload)))

    def _notice_leader(self, out: Outbox) -> None:
        """React to a change of leader: whatever we forwarded may be lost."""
        leader_id = self._raft.leader_id
        if leader_id == self._leader_id:
            return
        previous, self._leader_id = self._leader_id, leader_id
        if leader_id == 0:
            if self.config.is_ensemble and self._leaderless_since_ms is None:
                self._leaderless_since_ms = self._now_ms
        else:
            self._leaderless_since_ms = None
            if self._quorum_lost:
                self._regain_quorum(out)
        if previous == self.config.replica_id:
            # Entries we proposed and did not apply as leader may be replaced; those that
            # commit are decoded like anyone else's.
            self._own_entries.clear()
        if leader_id == self.config.replica_id:
            # A new leader gives every session a fresh timeout (it cannot know when the
            # old one last heard from them).
            for session_id, session in self.tree.sessions.items():
                self._expiry.touch(session_id, session.timeout_ms, self._now_ms)
        if previous:
            # Writes and syncs we handed to the old leader (or, if we led, proposed and
            # asked ourselves) may never come back: close those connections; their
            # clients retry, as with ZooKeeper's fail-over.
            waiting = {cid for cid, _ in self._proposals.values()}
            waiting |= {cid for cid, _ in self._syncs.values()}
            self._abandon(waiting, out)

    def _abandon(self, connection_ids: set[int], out: Outbox) -> None:
        """Close connections whose writes or syncs may never be answered; their clients
        retry (the outcome of such a write is unknown to them, as after any connection
        loss)."""
        for connection_id in connection_ids:
            connection = self.connections.get(connection_id)
            if connection is not None:
                self._close(connection, out)
        self._proposals = {
            token: entry
            for token, entry in self._proposals.items()
            if entry[0] not in connection_ids
        }
        self._syncs = {
            request: entry
            for request, entry in self._syncs.items()
            if entry[0] not in connection_ids
        }

    def _abandon_unanswered(self, now_ms: int, out: Outbox) -> None:
        """A follower that hears its leader may still be unable to reach it (links are
        one-way): writes and syncs handed to it that stay unanswered for two sync
        timeouts are given up, so their clients move on instead of waiting for ever."""
        limit_ms = 2 * self.config.sync_timeout_ms
        stale: set[int] = set()
        for waiting in (self._proposals.values(), self._syncs.values()):
            for connection_id, pending in waiting:  # oldest first (insertion order)
                if now_ms - pending.received_ms < limit_ms:
                    break
                stale.add(connection_id)
        if stale:
            log.warning(
                "closing %d connection(s) whose requests the leader left unanswered", len(stale)
            )
            self._abandon(stale, out)

    def _apply(self, entry: Entry, out: Outbox) -> None:
        self._applied_index = entry.index
        if entry.kind != EntryKind.NORMAL:
            self._release_syncs(out)
            return
        origin = None
        own = self._own_entries.pop(entry.index, None)
        if own is not None and own[0] is entry.data:
            _, token, txn = own
            origin = self._proposals.pop(token, None)
        else:
            tag = decode_origin(entry.data)
            if tag is not None and tag.replica_id == self.config.replica_id:
                origin = self._proposals.pop(tag.token, None)
            txn = decode_txn(entry.data)
        self._apply_txn(entry, txn, origin, out)
        self._release_syncs(out)

    def _apply_txn(
        self, entry: Entry, txn: Txn, origin: tuple[int, _Pending] | None, out: Outbox
    ) -> None:
        result = self.tree.apply(txn, entry.index)
        zxid = entry.index
        for event in result.events:
            self._notify(event, zxid, out)
        if isinstance(txn, CreateSessionTxn):
            self._session_created(txn, origin, out)
            return
        if isinstance(txn, CloseSessionTxn) or (
            isinstance(txn, ClientTxn) and txn.opcode == OpCode.CLOSE_SESSION
        ):
            self._session_closed(txn.session_id, origin, zxid, out)
            return
        if isinstance(txn, ReapTxn):
            self._pending_reaps.discard(txn.path)
        if origin is None:
            return
        connection_id, pending = origin
        connection = self.connections.get(connection_id)
        if connection is None:
            return
        self._finish(pending, result.err, result.body, zxid=zxid)
        self._drain(connection, out)

    def _session_created(
        self, txn: CreateSessionTxn, origin: tuple[int, _Pending] | None, out: Outbox
    ) -> None:
        if origin is None:
            # Replayed from the log at start-up: a fresh full timeout to come back, like
            # the sessions restored from a snapshot (ZooKeeper semantics).
            if txn.session_id in self.tree.sessions:
                self._expiry.touch(txn.session_id, txn.timeout_ms, self._now_ms)
            return
        connection_id, pending = origin
        connection = self.connections.get(connection_id)
        if connection is None:
            return
        connection.handshake_done = True
        connection.established_ms = self._now_ms
        # Debug, as in ZooKeeper 3.8: a line per session is a cost (and noise) under churn.
        log.debug(
            "session 0x%x established for %s:%d (timeout %d ms)",
            txn.session_id,
            connection.address,
            connection.port,
            txn.timeout_ms,
        )
        pending.frame = encode_connect_response(
            ConnectResponse(
                protocol_version=0,
                timeout_ms=txn.timeout_ms,
                session_id=txn.session_id,
                password=txn.password,
                read_only=False if connection.read_only_byte is not None else None,
            )
        )
        pending.phase = _Phase.DONE
        self._drain(connection, out)

    def _session_closed(
        self, session_id: int, origin: tuple[int, _Pending] | None, zxid: int, out: Outbox
    ) -> None:
        self._closing_sessions.discard(session_id)
        self._expiry.remove(session_id)
        log.debug("session 0x%x closed", session_id)
        owner = self._session_owner.pop(session_id, None)
        if origin is not None:
            connection_id, pending = origin
            connection = self.connections.get(connection_id)
            if connection is not None:
                self._finish(pending, ErrorCode.OK, None, zxid=zxid, close=True)
                self._drain(connection, out)
                return
        if owner is not None:
            connection = self.connections.get(owner)
            if connection is not None:
                self._close(connection, out)

    def _notify(self, event: TreeEvent, zxid: int, out: Outbox) -> None:
        frame = b""  # one event, one frame: encoded once however many connections watch
        for connection_id in self.watches.trigger(event.type, event.path):
            connection = self.connections.get(connection_id)
            if connection is None:
                continue
            if not check_acl(
                event.acl, Perm.READ, connection.identities, skip_acl=self.config.skip_acl
            ):
                continue  # ZooKeeper 3.9 delivers events only to readers (the watch is consumed)
            if not frame:
                frame = _event_frame(event.type, event.path, zxid)
            self._send_frame(connection, frame, out)

    def _send_event(
        self, connection: ConnectionInfo, event_type: int, path: str, zxid: int, out: Outbox
    ) -> None:
        self._send_frame(connection, _event_frame(event_type, path, zxid), out)

    def _send_frame(self, connection: ConnectionInfo, frame: bytes, out: Outbox) -> None:
        out.reply.append((connection.connection_id, frame))
        connection.packets_sent += 1
        self.stats.record_response(len(frame))

    def _reap(self, wall_ms: int, out: Outbox) -> None:
        budget = max(
            1,
            self.config.container_max_per_minute
            * self.config.container_check_interval_ms
            // 60_000,
        )
        candidates = self.tree.reap_candidates(
            wall_ms, max_never_used_ms=self.config.container_max_never_used_ms
        )
        for path in candidates:
            if budget <= 0:
                break
            if path in self._pending_reaps:
                continue
            self._pending_reaps.add(path)
            self._propose(
                None,
                None,
                ReapTxn(
                    path=path,
                    time_ms=wall_ms,
                    max_never_used_ms=self.config.container_max_never_used_ms,
                ),
                out,
            )
            budget -= 1

    def _new_session_id(self) -> int:
        while True:
            session_id = self._next_session_id
            self._next_session_id += 1
            if session_id not in self.tree.sessions and session_id not in self._local_sessions:
                return session_id

    # ------------------------------------------------------------------ per-connection queue

    def _finish(
        self,
        pending: _Pending,
        err: int,
        body: Record | None,
        *,
        zxid: int | None = None,
        close: bool = False,
    ) -> None:
        if zxid is None:
            zxid = self.last_zxid
        xid = SpecialXid.PING if pending.opcode == OpCode.PING else pending.xid
        pending.frame = encode_reply(xid, zxid, err, body)
        pending.close_after = close
        pending.phase = _Phase.DONE

    def on_output_drained(self, connection_id: int, now_ms: int) -> Outbox:
        """The client has read the batch it was sent: answer what waits for it."""
        out = Outbox()
        connection = self.connections.get(connection_id)
        if connection is None or not connection.output_paused:
            return out
        self._now_ms = now_ms
        connection.output_paused = False
        self._drain(connection, out)
        return out

    def _drain(self, connection: ConnectionInfo, out: Outbox) -> None:
        """Send what is ready at the head of the connection's queue, in order.

        At most about DRAIN_OUTPUT_BYTES_MAX per call: a client that pipelined many
        large reads gets them a batch at a time, as it reads them, instead of all of
        them being built in memory at once.
        """
        queue = connection.queue
        connection_id = connection.connection_id
        reply = out.reply
        stats = self.stats
        now_ms = self._now_ms
        produced_bytes = 0
        while queue and not connection.closing and not connection.output_paused:
            pending = queue[0]
            phase = pending.phase
            if phase is _Phase.HELD:
                self._propose_held(connection, out)
                continue
            if phase is _Phase.PROPOSED:
                return
            if produced_bytes >= limits.DRAIN_OUTPUT_BYTES_MAX:
                connection.output_paused = True
                out.paused.append(connection_id)
                return
            if phase is _Phase.DEFERRED:
                self._evaluate(connection, pending, out)
                if pending.phase is _Phase.PROPOSED:
                    return  # a follower's sync waits for its read index
                if connection.closing:
                    return  # a sync with no leader to ask closed it (and emptied the queue)
            assert pending.phase is _Phase.DONE
            queue.popleft()
            frame = pending.frame
            reply.append((connection_id, frame))
            connection.packets_sent += 1
            size = len(frame)
            produced_bytes += size
            stats.record_response(size)
            opcode = pending.opcode
            if opcode != OpCode.CREATE_SESSION:
                latency_ms = now_ms - pending.received_ms
                if latency_ms < 0:
                    latency_ms = 0
                stats.record_latency(latency_ms)
                connection.last_opcode = opcode
                connection.last_xid = pending.xid
                connection.last_zxid = self.tree.last_zxid
                connection.last_response_ms = now_ms
                connection.last_latency_ms = latency_ms
                # Per-connection figures (`cons`); compares, not min()/max(): once per reply.
                if connection.latency_count == 0:
                    connection.latency_min_ms = connection.latency_max_ms = latency_ms
                elif latency_ms < connection.latency_min_ms:
                    connection.latency_min_ms = latency_ms
                elif latency_ms > connection.latency_max_ms:
                    connection.latency_max_ms = latency_ms
                connection.latency_total_ms += latency_ms
                connection.latency_count += 1
            if pending.close_after:
                self._close(connection, out)

    def _propose_held(self, connection: ConnectionInfo, out: Outbox) -> None:
        """The head of the queue is a held write: propose it, and the writes held behind
        it up to the next unanswered sync (the log keeps their order)."""
        for pending in list(connection.queue):
            if connection.closing:
                return  # no leader to propose to: the queue is gone
            if pending.opcode == OpCode.SYNC and pending.phase is not _Phase.DONE:
                return
            if pending.phase is _Phase.HELD:
                assert pending.txn is not None
                txn, pending.txn = pending.txn, None
                pending.phase = _Phase.PROPOSED
                self._propose(connection, pending, txn, out)

    def _close(self, connection: ConnectionInfo, out: Outbox) -> None:
        if connection.closing:
            return
        connection.closing = True
        connection.queue.clear()
        out.close.append(connection.connection_id)

    def _evaluate(self, connection: ConnectionInfo, pending: _Pending, out: Outbox) -> None:
        """Answer a read-like request against the tree as it is now."""
        opcode = pending.opcode
        request = pending.request
        identities = connection.identities
        connection_id = connection.connection_id
        if opcode in _PLAIN_TREE_READS:
            err, body = self.tree.read_wire(opcode, request, identities, connection.session_id)
            self._arm_read_watch(connection_id, opcode, request, err)
            self._finish(pending, err, body)
        elif opcode == OpCode.PING:
            self._finish(pending, ErrorCode.OK, None)
        elif opcode == OpCode.SYNC:
            assert isinstance(request, PathRecord)
            self._finish(pending, ErrorCode.OK, PathRecord(path=request.path))
            if self.config.voter_ids != (self.config.replica_id,):
                # In an ensemble, sync answers once this replica has applied everything
                # the leader had committed when it got the question (a read index,
                # confirmed by the leader with a heartbeat round). The leader asks too:
                # it may have been deposed without knowing, or be new and not yet have
                # applied what its predecessor committed.
                request_id = self._next_token
                self._next_token += 1
                if not self._raft.read_index(request_id):
                    self._close(connection, out)
                    return
                pending.phase = _Phase.PROPOSED
                self._syncs[request_id] = (connection.connection_id, pending)
        elif opcode == OpCode.AUTH:
            assert isinstance(request, AuthPacket)
            ids = authenticate(request.scheme, request.auth, super_digest=self.config.super_digest)
            if ids is None:
                log.warning(
                    "auth with scheme %r failed for %s:%d",
                    request.scheme,
                    connection.address,
                    connection.port,
                )
                self.stats.auth_failed_count += 1
                self._finish(pending, ErrorCode.AUTH_FAILED, None, zxid=0, close=True)
                return
            for identity in ids:
                if identity not in connection.identities:
                    if len(connection.identities) >= limits.AUTH_IDS_PER_CONNECTION_MAX:
                        self._finish(pending, ErrorCode.AUTH_FAILED, None, zxid=0, close=True)
                        return
                    connection.identities = (*connection.identities, identity)
            self._finish(pending, ErrorCode.OK, None, zxid=0)
        elif opcode == OpCode.SASL:
            self._finish(pending, ErrorCode.OK, SaslToken(token=None), zxid=0)
        elif opcode == OpCode.WHO_AM_I:
            self._finish(pending, ErrorCode.OK, WhoAmIResponse(client_info=who_am_i(identities)))
        elif opcode in (OpCode.SET_WATCHES, OpCode.SET_WATCHES2):
            assert isinstance(request, SetWatches | SetWatches2)
            self._set_watches(connection, request, out)
            self._finish(pending, ErrorCode.OK, None)
        elif opcode == OpCode.ADD_WATCH:
            assert isinstance(request, AddWatchRequest)
            if request.mode == AddWatchMode.PERSISTENT:
                self.watches.add(connection_id, request.path, WatchKind.PERSISTENT)
            elif request.mode == AddWatchMode.PERSISTENT_RECURSIVE:
                self.watches.add(connection_id, request.path, WatchKind.PERSISTENT_RECURSIVE)
            else:
                self._finish(pending, ErrorCode.MARSHALLING_ERROR, None)
                return
            self._finish(pending, ErrorCode.OK, ErrorResponse(err=0))
        elif opcode in (OpCode.CHECK_WATCHES, OpCode.REMOVE_WATCHES):
            assert isinstance(request, WatchesRequest)
            if request.type not in WatcherType._value2member_map_:
                self._finish(pending, ErrorCode.MARSHALLING_ERROR, None)
                return
            watcher_type = WatcherType(request.type)
            if opcode == OpCode.CHECK_WATCHES:
                found = self.watches.check(connection_id, request.path, watcher_type)
            else:
                found = self.watches.remove(connection_id, request.path, watcher_type)
            self._finish(pending, ErrorCode.OK if found else ErrorCode.NO_WATCHER, None)
        else:
            err, body = self.tree.read(opcode, request, identities, connection.session_id)
            self._arm_read_watch(connection_id, opcode, request, err)
            self._finish(pending, err, body)

    def _arm_read_watch(
        self, connection_id: int, opcode: int, request: Record | None, err: int
    ) -> None:
        if opcode == OpCode.EXISTS:
            assert isinstance(request, ExistsRequest)
            if request.watch and err in (ErrorCode.OK, ErrorCode.NO_NODE):
                self.watches.add(connection_id, request.path, WatchKind.DATA)
        elif opcode == OpCode.GET_DATA:
            assert isinstance(request, GetDataRequest)
            if request.watch and err == ErrorCode.OK:
                self.watches.add(connection_id, request.path, WatchKind.DATA)
        elif opcode in (OpCode.GET_CHILDREN, OpCode.GET_CHILDREN2):
            assert isinstance(request, GetChildrenRequest)
            if request.watch and err == ErrorCode.OK:
                self.watches.add(connection_id, request.path, WatchKind.CHILD)

    def _set_watches(
        self, connection: ConnectionInfo, request: SetWatches | SetWatches2, out: Outbox
    ) -> None:
        """Re-arm watches after a reconnect; fire at once what changed meanwhile (§10.7)."""
        connection_id = connection.connection_id
        relative_zxid = request.relative_zxid
        for path in request.data_watches:
            znode = self.tree.get(path)
            if znode is None:
                self._send_event(connection, EventType.NODE_DELETED, path, -1, out)
            elif znode.mzxid > relative_zxid:
                self._send_event(connection, EventType.NODE_DATA_CHANGED, path, -1, out)
            else:
                self.watches.add(connection_id, path, WatchKind.DATA)
        for path in request.exist_watches:
            if self.tree.get(path) is not None:
                self._send_event(connection, EventType.NODE_CREATED, path, -1, out)
            else:
                self.watches.add(connection_id, path, WatchKind.DATA)
        for path in request.child_watches:
            znode = self.tree.get(path)
            if znode is None:
                self._send_event(connection, EventType.NODE_DELETED, path, -1, out)
            elif znode.pzxid > relative_zxid:
                self._send_event(connection, EventType.NODE_CHILDREN_CHANGED, path, -1, out)
            else:
                self.watches.add(connection_id, path, WatchKind.CHILD)
        if isinstance(request, SetWatches2):
            for path in request.persistent_watches:
                self.watches.add(connection_id, path, WatchKind.PERSISTENT)
            for path in request.persistent_recursive_watches:
                self.watches.add(connection_id, path, WatchKind.PERSISTENT_RECURSIVE)
