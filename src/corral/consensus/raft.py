"""Raft as a pure state machine (etcd-io/raft's RawNode shape): voters, learners, snapshots.

Inputs: `tick()` (logical time), `campaign()`, `step(message)`, `propose(data)`,
`propose_membership(...)`, `transfer_leadership(peer_id)`, `read_index(request_id)`,
`compact(index, snapshot)`.
Output: one `Ready` at a time (`has_ready()` / `ready()`), acknowledged by `advance(ready)`;
optionally `take_messages()` between Readies (messages that wait for no persist).

Rules:
* No IO, no clock, no global random: time is `tick()`, chance is the `rng` passed in.
* One Ready is outstanding at a time. The driver executes it in this order:
  1. persist: install `ready.snapshot` if any (durable snapshot, state machine replaced,
     log restarted after it), append `ready.entries`, persist `ready.hard_state`; fsync
     when `must_sync`;
  2. send `ready.messages` and stream each of `ready.snapshot_sends` as SNAPSHOT_CHUNK
     messages (`SnapshotSend.chunks`) — only after step 1 is durable, because votes,
     acknowledgements and our own vote depend on it;
  3. apply `ready.committed_entries` in order; note `ready.read_states` and serve each
     read once the applied index reaches its index;
  4. call `advance(ready)`.
  Messages may be lost, duplicated, delayed or reordered; Raft copes with all four.
  A driver may also call `take_messages()` at any time and send what it returns at once
  (leader APPENDs and heartbeats, heartbeat answers, read-index traffic, of a durable
  term); what it does not take is in the next Ready's `messages`, first.
* Entries count as stable only after `advance`; the commit index only counts stable
  entries of the leader, so an entry is never handed out as committed before it is
  durable here. Committed entries handed out in a Ready count as applied after `advance`.
* Our own vote counts only once the hard state carrying it has been advanced (persisted),
  so a replica never leads a term whose vote a crash could forget.
* Elections use PRE-VOTE: a replica whose election timeout fires first asks (without
  changing its term) whether a quorum would vote for it, and only then campaigns. With
  CHECK-QUORUM a replica that heard from a leader within the election timeout refuses
  (pre-)votes, and a leader that has not heard from a quorum within an election timeout
  steps down. So a partitioned or paused replica that comes back cannot disrupt a
  healthy leader. A VOTE caused by leader transfer (TIMEOUT_NOW) bypasses the lease.
* A new leader appends a NOOP entry of its term (unless its log is empty: then nothing
  was ever committed, and a fresh cluster numbers its first txn 1 as ZooKeeper does); an
  entry of an earlier term is committed only through a later entry of the current term,
  counted over voters only (Raft §5.4.2).
* Replication per peer is a small state machine (`_ProgressState`): PROBE sends one
  APPEND and waits; REPLICATE pipelines up to INFLIGHT_APPENDS_PER_PEER_MAX APPENDs of at
  most APPEND_ENTRIES_MAX entries / APPEND_SIZE_MAX bytes; SNAPSHOT waits for a snapshot
  transfer. A rejection carries a hint (index, term) so the leader skips a whole term of
  conflicting entries per round trip. Lost APPENDs are noticed through heartbeats (the
  response carries the peer's last index; shorter than what was sent means a loss or a
  restart) and by time (no progress for an election timeout); the peer is then probed
  again. A lost probe is sent again on the next heartbeat response.
* Learners (ZooKeeper observers) are replicated to like voters but never counted in a
  quorum (commit, election, check-quorum) and never campaign. They answer a (pre-)vote
  request (only a candidate that counts them as voters sends one: they were promoted and
  have not applied it yet), else a promoted learner could deadlock the election.
* Snapshots: the driver snapshots its state machine at `applied_index` (`snapshot_meta()`
  gives the meta), makes it durable, calls `compact(index, meta)`, then drops the log up
  to `index` from its storage. A peer whose next entry is compacted gets a SnapshotSend;
  the receiver assembles the chunks (in any order, duplicates ignored) and, once
  complete, hands a `Snapshot` out in `Ready.snapshot`. A transfer that makes no progress
  for `snapshot_stall_ticks` (two election timeouts unless given) is started again.
* Membership is that of the last MEMBERSHIP entry in the log, committed or not (Raft
  §4.1: single-server changes take effect on append; a truncated entry takes its change
  back), else that of the snapshot the log starts from, else the constructor's. There is
  no joint consensus: the leader allows one uncommitted MEMBERSHIP entry at a time, only
  once an entry of its own term has committed, and only changes of one voter (or any
  learners) at a time. A leader that removes itself from the voters leads on without
  counting itself and hands leadership to the most caught-up voter (TIMEOUT_NOW),
  retrying every election timeout, until a new term makes it a learner.
  The simulation promotes learners and demotes voters (itself included) at random.
* Reads: `read_index(request_id)` yields a `ReadState` (Raft §6.4 ReadIndex): the leader
  records its commit index, confirms with one heartbeat round that a quorum still
  follows it (heartbeats carry a read sequence number that responses echo), and answers;
  a follower forwards the request (READ_INDEX) and gets the answer back. No lease reads.
* Leader lost: a driver whose link from the leader closed (its process died: the kernel
  closes its sockets) calls `leader_unreachable(leader_id)`. The follower forgets its
  leader — so it grants votes at once instead of honouring the lease — and campaigns
  after 1 + r ticks, r its rank by id among the other voters, so the survivors do not
  split the vote. Only liveness depends on the hint: a wrong one costs a refused
  pre-vote (the others still hear the leader) and the next heartbeat restores the leader.
* Role changes go through `_TRANSITIONS`; anything else is a bug.
* Messages from replicas that are neither voters nor learners are dropped (a non-member
  never affects a quorum), and so are malformed ones (`_well_formed`): peer input never
  trips an assert.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field

from corral.consensus.log_storage import LogStorage
from corral.consensus.types import (
    REPLICA_ID_MAX,
    REPLICA_ID_MIN,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SnapshotSend,
    decode_membership,
    encode_membership,
    unchecked_entry,
    unchecked_ready,
)
from corral.limits import (
    APPEND_ENTRIES_MAX,
    APPEND_SIZE_MAX,
    INFLIGHT_APPENDS_PER_PEER_MAX,
    READS_PENDING_MAX,
    SNAPSHOT_CHUNK_SIZE_MAX,
    SNAPSHOT_SIZE_MAX,
)

_TRANSITIONS: frozenset[tuple[Role, Role]] = frozenset(
    {
        (Role.FOLLOWER, Role.FOLLOWER),  # a new term seen, or a new leader
        (Role.FOLLOWER, Role.PRE_CANDIDATE),  # election timeout or campaign()
        (Role.FOLLOWER, Role.CANDIDATE),  # TIMEOUT_NOW: leader transfer skips pre-vote
        (Role.PRE_CANDIDATE, Role.PRE_CANDIDATE),  # election timeout again
        (Role.PRE_CANDIDATE, Role.CANDIDATE),  # a quorum of pre-votes
        (Role.PRE_CANDIDATE, Role.FOLLOWER),  # a leader, a higher term, or a quorum said no
        (Role.CANDIDATE, Role.PRE_CANDIDATE),  # election timeout: ask again first
        (Role.CANDIDATE, Role.CANDIDATE),  # TIMEOUT_NOW while campaigning
        (Role.CANDIDATE, Role.LEADER),  # a quorum of (persisted) votes
        (Role.CANDIDATE, Role.FOLLOWER),  # a leader, a higher term, or a quorum said no
        (Role.LEADER, Role.FOLLOWER),  # a higher term seen, or check-quorum failed
        (Role.LEARNER, Role.LEARNER),  # a new term or leader seen
        # Membership changes.
        (Role.FOLLOWER, Role.LEARNER),
        (Role.PRE_CANDIDATE, Role.LEARNER),
        (Role.CANDIDATE, Role.LEARNER),
        (Role.LEARNER, Role.FOLLOWER),
        (Role.LEADER, Role.LEARNER),  # the leader applied its own removal
    }
)

# Messages only a current leader sends: they make the receiver follow the sender.
_FROM_LEADER = frozenset(
    {MessageKind.APPEND, MessageKind.HEARTBEAT, MessageKind.SNAPSHOT_CHUNK, MessageKind.TIMEOUT_NOW}
)


def _well_formed(message: Message) -> bool:
    """What a peer's message must satisfy before Raft looks at it (the transport checks
    sizes against limits.py when it decodes; these are the structural rules)."""
    if len(message.entries) > APPEND_ENTRIES_MAX:
        return False
    if len(message.data) > SNAPSHOT_CHUNK_SIZE_MAX:
        return False
    for position, entry in enumerate(message.entries):
        if entry.index != message.index + 1 + position or entry.term > message.term:
            return False
        if position > 0 and entry.term < message.entries[position - 1].term:
            return False
    if message.entries and message.entries[0].term < message.log_term:
        return False
    return message.kind != MessageKind.SNAPSHOT_CHUNK or message.snapshot is not None


# Messages that make no promise about durable state: see `Raft.take_messages`. (An
# APPEND_RESPONSE acknowledges entries, a vote promises, TIMEOUT_NOW must follow the
# APPENDs that caught its target up: those wait for the Ready.)
_FREE_KINDS = frozenset(
    {
        MessageKind.APPEND,
        MessageKind.HEARTBEAT,
        MessageKind.HEARTBEAT_RESPONSE,
        MessageKind.READ_INDEX,
        MessageKind.READ_INDEX_RESPONSE,
    }
)


class _ProgressState(enum.Enum):
    PROBE = "probe"  # one APPEND at a time until the peer's log matches
    REPLICATE = "replicate"  # pipelined APPENDs
    SNAPSHOT = "snapshot"  # a snapshot transfer is under way


@dataclass(slots=True, kw_only=True)
class _Progress:
    """The leader's view of one peer's log (etcd-raft's Progress)."""

    match: int = 0  # highest index known to match the leader's log (durable there)
    next: int = 1  # next index to send
    state: _ProgressState = _ProgressState.PROBE
    probe_sent: bool = False  # PROBE: an APPEND is out, wait for its answer
    inflight: deque[int] = field(default_factory=deque)  # REPLICATE: last index per APPEND
    recent_active: bool = False  # heard from since the last check-quorum round
    stalled_ticks: int = 0  # REPLICATE: ticks with APPENDs out and no progress
    commit_sent: int = 0  # the highest commit index the peer may take from what we sent
    snapshot_index: int = 0  # SNAPSHOT: the index of the snapshot being sent
    snapshot_offset: int = 0  # SNAPSHOT: bytes the peer acknowledged
    snapshot_stalled_ticks: int = 0  # SNAPSHOT: ticks since the transfer last progressed
    inflight_max: int = INFLIGHT_APPENDS_PER_PEER_MAX

    def become_probe(self) -> None:
        self.state = _ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()
        self.stalled_ticks = 0

    def become_replicate(self) -> None:
        self.state = _ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = _ProgressState.SNAPSHOT
        self.probe_sent = False
        self.inflight.clear()
        self.snapshot_index = index
        self.snapshot_offset = 0
        self.snapshot_stalled_ticks = 0

    @property
    def paused(self) -> bool:
        if self.state == _ProgressState.PROBE:
            return self.probe_sent
        if self.state == _ProgressState.REPLICATE:
            return len(self.inflight) >= self.inflight_max
        return True


@dataclass(slots=True, kw_only=True)
class _PendingRead:
    """A read index waiting for a quorum to confirm that we still lead (leader only)."""

    sequence: int  # heartbeats carrying a context >= this confirm it
    origin_id: int  # the replica that asked (us, or a follower that forwarded it)
    request_id: int
    index: int  # the commit index when it was asked
    acks: set[int]


@dataclass(slots=True, kw_only=True)
class _IncomingSnapshot:
    """A snapshot being received chunk by chunk, in order."""

    from_id: int
    term: int
    meta: SnapshotMeta
    assembled: list[bytes] = field(default_factory=list)  # bytes [0, received_bytes)
    received_bytes: int = 0
    chunks: dict[int, bytes] = field(default_factory=dict)  # offset -> data, beyond it
    size_bytes: int = 0  # everything held, for the SNAPSHOT_SIZE_MAX bound
    end_bytes: int = -1  # the size, once the last chunk has arrived


class Raft:
    def __init__(
        self,
        *,
        replica_id: int,
        voters: tuple[int, ...],
        storage: LogStorage,
        rng: random.Random,
        learners: tuple[int, ...] = (),
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        applied: int = 0,
        append_entries_max: int = APPEND_ENTRIES_MAX,
        inflight_appends_max: int = INFLIGHT_APPENDS_PER_PEER_MAX,
        snapshot_stall_ticks: int = 0,
        check_invariants: bool = True,
    ) -> None:
        """Load term, vote, commit index and snapshot from `storage`; start as a follower
        (or learner).

        `check_invariants`: assert the state's invariants after every input (the tests
        and the simulation do; a production server turns it off: the checks are
        assert-only, and cost several percent of a write's CPU).

        `snapshot_stall_ticks`: how long a snapshot transfer may go without progress
        before the leader starts it again (0: two election timeouts; the replica passes
        ZooKeeper's initLimit).

        `voters`/`learners` is the membership the driver last applied; a durable snapshot
        with a later index overrides it. `applied` is the last index the state machine
        already holds (from a snapshot or because the tree survived); committed entries
        after it are handed out again. `append_entries_max` and `inflight_appends_max` may
        only lower the limits.py bounds (the simulation uses tiny ones to reach every
        batching boundary). Bad configuration raises ValueError.
        """
        for member_id in (replica_id, *voters, *learners):
            if not REPLICA_ID_MIN <= member_id <= REPLICA_ID_MAX:
                raise ValueError(f"replica id {member_id} is outside 1..255")
        if len(set(voters)) != len(voters) or len(set(learners)) != len(learners):
            raise ValueError(f"duplicate members in {voters} / {learners}")
        if set(voters) & set(learners):
            raise ValueError(f"{voters} and {learners} overlap")
        if not voters:
            raise ValueError("a cluster has at least one voter")
        if replica_id not in voters and replica_id not in learners:
            raise ValueError(f"replica {replica_id} is not among {voters} / {learners}")
        if election_ticks < 1 or heartbeat_ticks < 1:
            raise ValueError(f"election_ticks {election_ticks}, heartbeat_ticks {heartbeat_ticks}")
        if heartbeat_ticks >= election_ticks and election_ticks > 1:
            raise ValueError("heartbeat_ticks must be smaller than election_ticks")
        if not 1 <= append_entries_max <= APPEND_ENTRIES_MAX:
            raise ValueError(f"append_entries_max {append_entries_max}")
        if not 1 <= inflight_appends_max <= INFLIGHT_APPENDS_PER_PEER_MAX:
            raise ValueError(f"inflight_appends_max {inflight_appends_max}")
        if snapshot_stall_ticks < 0:
            raise ValueError(f"snapshot_stall_ticks {snapshot_stall_ticks}")
        self._snapshot_stall_ticks = snapshot_stall_ticks or 2 * election_ticks
        self._checked = check_invariants
        self._append_entries_max = append_entries_max
        self._inflight_appends_max = inflight_appends_max

        self._replica_id = replica_id
        self._storage = storage
        self._rng = rng
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks

        hard_state = storage.initial_state()
        snapshot = storage.snapshot_meta()
        first_index = storage.first_index()
        stable_last = storage.last_index()
        assert first_index <= stable_last + 1, (first_index, stable_last)
        if snapshot is not None:
            assert snapshot.index >= first_index - 1, (snapshot, first_index)
        else:
            assert first_index == 1, "a compacted log needs its snapshot"
        # A snapshot only ever holds committed entries.
        commit = max(min(hard_state.commit, stable_last), 0 if snapshot is None else snapshot.index)
        if not first_index - 1 <= applied <= commit:
            raise ValueError(f"applied {applied} is outside the committed log {hard_state}")

        self._voters = voters
        self._learners = learners
        # Membership as of the log's base (the snapshot's, else the configured one), and
        # the index of the MEMBERSHIP entry in force (0: the base's).
        self._base_membership = (
            (voters, learners) if snapshot is None else (snapshot.voters, snapshot.learners)
        )
        self._membership_index = 0

        # A crash may tear one Ready's persist: entries of a new term without the hard state
        # that raised the term, or a commit index without the entries it covers. Nothing
        # of that Ready was sent (messages leave after the whole persist), so recovering
        # the term from the log with no vote, and the commit index from the log and the
        # snapshot, is safe.
        self._term = max(hard_state.term, storage.term(stable_last))
        self._vote = hard_state.vote if self._term == hard_state.term else 0
        self._commit = commit
        self._applied = applied
        self._role = Role.FOLLOWER
        self._leader_id = 0

        # The log: storage holds (first_index - 1, stable_last]; `_unstable` follows it.
        self._base_index = first_index - 1  # last compacted (or installed) entry
        self._base_term = storage.term(first_index - 1)
        self._stable_last = stable_last  # the last entry the driver has made durable
        self._unstable: list[Entry] = []  # entries after _stable_last, not yet durable
        self._snapshot = snapshot  # the snapshot the driver holds, sent to lagging peers
        self._messages: list[Message] = []  # sent after the next Ready's persist
        self._messages_free: list[Message] = []  # depend on nothing unpersisted
        self._snapshot_sends: list[SnapshotSend] = []
        self._incoming: _IncomingSnapshot | None = None
        self._pending_install: Snapshot | None = None  # received, not yet handed out
        self._installing: Snapshot | None = None  # handed out, not yet advanced

        # The hard state last handed out (what storage will hold after the next advance)
        # and the one the driver has confirmed durable.
        self._handed_hard_state = hard_state
        self._persisted_hard_state = hard_state
        self._outstanding: Ready | None = None

        self._votes: dict[int, bool] = {}  # (pre-)candidate: peer voter -> granted
        self._progress: dict[int, _Progress] = {}  # leader only: every member but us
        self._transfer_target = 0  # leader only: the peer we hand leadership to
        self._transfer_elapsed_ticks = 0
        self._append_pending = False  # leader: proposals not yet sent to peers
        self._read_states: list[ReadState] = []  # answered reads, for the next Ready
        self._reads: deque[_PendingRead] = deque()  # leader: awaiting a quorum
        self._reads_before_commit: list[tuple[int, int]] = []  # leader: (origin, request id)
        self._read_sequence = 0  # leader: the last read registered
        self._read_round_pending = False  # leader: a heartbeat round is due at ready()

        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._randomized_election_ticks = self._new_election_timeout()
        self._reload_membership()  # the last MEMBERSHIP entry in the log wins
        if self._checked:
            self._check_invariants()

    # -- properties -----------------------------------------------------------------------

    @property
    def replica_id(self) -> int:
        return self._replica_id

    @property
    def voters(self) -> tuple[int, ...]:
        return self._voters

    @property
    def learners(self) -> tuple[int, ...]:
        return self._learners

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> int:
        return self._vote

    @property
    def leader_id(self) -> int:
        """The leader of the current term as far as known; 0 = none."""
        return self._leader_id

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def first_index(self) -> int:
        return self._base_index + 1

    @property
    def last_index(self) -> int:
        return self._stable_last + len(self._unstable)

    @property
    def hard_state(self) -> HardState:
        return HardState(term=self._term, vote=self._vote, commit=self._commit)

    @property
    def quorum_size(self) -> int:
        return len(self._voters) // 2 + 1

    @property
    def transfer_target(self) -> int:
        """Leader only: the peer leadership is being handed to; 0 = none."""
        return self._transfer_target

    def term_at(self, index: int) -> int:
        """Term of the entry at `index`, for first_index - 1 <= index <= last_index."""
        assert self._base_index <= index <= self.last_index, (index, self._base_index)
        if index == self._base_index:
            return self._base_term
        if index > self._stable_last:
            return self._unstable[index - self._stable_last - 1].term
        return self._storage.term(index)

    def snapshot_meta(self) -> SnapshotMeta:
        """The meta of a snapshot of the state machine as it is now (at `applied_index`)."""
        assert self._applied >= 1, "nothing applied, nothing to snapshot"
        voters, learners = self._membership_at(self._applied)
        return SnapshotMeta(
            index=self._applied,
            term=self.term_at(self._applied),
            voters=voters,
            learners=learners,
        )

    def peer_match_index(self, peer_id: int) -> int | None:
        """Leader only: the last index known to be durable on `peer_id`; None otherwise."""
        progress = self._progress.get(peer_id)
        return None if progress is None else progress.match

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time: election timeout for followers, heartbeat for leaders."""
        if self._role == Role.LEADER:
            self._tick_leader()
        elif self._role != Role.LEARNER:
            self._election_elapsed_ticks += 1
            if self._election_elapsed_ticks >= self._randomized_election_ticks:
                self._pre_campaign()
        else:
            self._election_elapsed_ticks += 1
        if self._checked:
            self._check_invariants()

    def campaign(self) -> None:
        """Start an election now (after a pre-vote round); leaders and learners ignore it."""
        if self._role in (Role.LEADER, Role.LEARNER):
            return
        self._pre_campaign()
        if self._checked:
            self._check_invariants()

    def leader_unreachable(self, peer_id: int) -> None:
        """The driver's link from `peer_id` is gone; if that is our leader, seek an
        election soon (see the module rules). Anything else is ignored."""
        if self._role != Role.FOLLOWER or peer_id == 0 or peer_id != self._leader_id:
            return
        others = sorted(v for v in self._voters if v != peer_id)
        if self._replica_id not in others:
            return
        self._leader_id = 0
        self._election_elapsed_ticks = 0
        self._randomized_election_ticks = 1 + others.index(self._replica_id)
        if self._checked:
            self._check_invariants()

    def step(self, message: Message) -> None:
        """Feed one message from a peer."""
        assert message.to_id == self._replica_id, (message.to_id, self._replica_id)
        assert message.from_id != self._replica_id, "a replica does not message itself"
        if message.from_id not in self._voters and message.from_id not in self._learners:
            # A replica outside the cluster (removed, or misconfigured) never counts.
            return
        if not _well_formed(message):
            return  # a broken peer: treated as a lost message
        if self._step_term(message):
            self._step_kind(message)
        if self._checked:
            self._check_invariants()

    def propose(self, data: bytes) -> int | None:
        """Append a NORMAL entry; its index, or None when not leader (the caller answers)."""
        if self._role != Role.LEADER or self._transfer_target != 0:
            return None
        index = self._append(EntryKind.NORMAL, data)
        # Sent at the next ready(): the proposals made until then travel in one APPEND.
        self._append_pending = True
        if self._checked:
            self._check_invariants()
        return index

    def propose_membership(self, voters: tuple[int, ...], learners: tuple[int, ...]) -> int | None:
        """Append a MEMBERSHIP entry; None when not leader or another change is unapplied.

        Without joint consensus only one voter may be added or removed at a time (learners
        freely); the caller checks that, here it is an assert.
        """
        if self._role != Role.LEADER or self._transfer_target != 0:
            return None
        if self._membership_pending():
            return None
        if self.term_at(self._commit) != self._term:
            # Not before an entry of our term commits: a change proposed earlier could
            # otherwise overlap one from a previous leader (the single-server change bug
            # Ongaro described on raft-dev in 2015).
            return None
        changed = set(voters) ^ set(self._voters)
        assert len(changed) <= 1, ("one voter at a time", self._voters, voters)
        index = self._append(EntryKind.MEMBERSHIP, encode_membership(voters, learners))
        self._append_pending = True
        if self._checked:
            self._check_invariants()
        return index

    def transfer_leadership(self, peer_id: int) -> bool:
        """Leader: hand leadership to voter `peer_id` (graceful shutdown). Proposals are
        refused until it completes or an election timeout passes. False if not possible."""
        if self._role != Role.LEADER or peer_id == self._replica_id or peer_id not in self._voters:
            return False
        self._transfer_target = peer_id
        self._transfer_elapsed_ticks = 0
        progress = self._progress[peer_id]
        if progress.match == self.last_index:
            self._send(MessageKind.TIMEOUT_NOW, peer_id)
        else:
            self._send_append(peer_id)
        if self._checked:
            self._check_invariants()
        return True

    def read_index(self, request_id: int) -> bool:
        """Ask for a read index (ZooKeeper's `sync`, linearizable reads).

        The answer is a `ReadState(request_id, index)` in a later Ready: once
        `applied_index >= index` the state machine holds every write committed before this
        call. The leader confirms with a heartbeat round that it still leads (and waits
        until an entry of its term has committed); a follower or learner forwards the
        request to its leader. False when no leader is known or too many reads are
        pending; an answer can also never come (leader change, lost message), so callers
        time out.
        """
        assert request_id >= 0, request_id
        if self._role == Role.LEADER:
            if len(self._reads) + len(self._reads_before_commit) >= READS_PENDING_MAX:
                return False
            self._leader_read(self._replica_id, request_id)
        elif self._leader_id != 0:
            self._emit(
                Message(
                    kind=MessageKind.READ_INDEX,
                    from_id=self._replica_id,
                    to_id=self._leader_id,
                    term=self._term,
                    context=request_id,
                )
            )
        else:
            return False
        if self._checked:
            self._check_invariants()
        return True

    def compact(self, index: int, snapshot: SnapshotMeta) -> None:
        """The driver holds `snapshot` durably: the log up to `index` may go.

        Call it before dropping the entries from storage. `snapshot` describes the state
        machine at an applied index (`snapshot_meta()` when it was taken); `index` is at
        most its index (a driver may keep a tail of entries for slow peers).
        """
        if not index <= snapshot.index <= self._applied:
            raise ValueError(f"compact({index}) with {snapshot}, applied {self._applied}")
        if snapshot.term != self.term_at(snapshot.index):
            raise ValueError(f"{snapshot} does not match the log")
        if self._snapshot is None or snapshot.index >= self._snapshot.index:
            self._snapshot = snapshot
        if index > self._base_index:
            self._base_membership = self._membership_at(index)
            self._base_term = self.term_at(index)
            self._base_index = index
        if self._checked:
            self._check_invariants()

    # -- output ---------------------------------------------------------------------------

    def take_messages(self) -> tuple[Message, ...]:
        """Messages that depend on nothing unpersisted, to send at once, even while a Ready
        is out: a leader's APPENDs and heartbeats (Raft §10.2.1: a leader may send entries
        before they are durable on its own disk; its term and vote are), heartbeat answers
        and read-index traffic, all of a term already durable here. Optional: whatever is
        not taken rides in the next Ready. Without it a slow fsync delays heartbeats."""
        messages = tuple(self._messages_free)
        self._messages_free = []
        return messages

    def has_ready(self) -> bool:
        """Whether `ready()` has something to hand out (always False while one is out)."""
        if self._outstanding is not None:
            return False
        return (
            bool(self._unstable)
            or self._hard_state_changed()
            or bool(self._messages)
            or bool(self._messages_free)
            or bool(self._snapshot_sends)
            or bool(self._read_states)
            or self._read_round_pending
            or self._pending_install is not None
            or self._applicable_last() > self._applied
        )

    def ready(self) -> Ready:
        """Hand out the next batch; call `advance(ready)` once it has been executed."""
        assert self._outstanding is None, "advance() the previous Ready first"
        if self._append_pending:
            self._append_pending = False
            if self._role == Role.LEADER:
                for peer_id in self._progress:
                    self._send_append(peer_id, allow_empty=False)
        if self._read_round_pending:
            self._read_round_pending = False
            if self._role == Role.LEADER:
                self._send_heartbeats()  # one round confirms every read asked since the last
        hard_state = self.hard_state
        hard_state_changed = hard_state != self._handed_hard_state
        term_or_vote_changed = (hard_state.term, hard_state.vote) != (
            self._handed_hard_state.term,
            self._handed_hard_state.vote,
        )
        install = self._pending_install
        committed: tuple[Entry, ...] = ()
        applicable_last = self._applicable_last()
        if install is None and applicable_last > self._applied:
            committed = tuple(self._storage.entries(self._applied + 1, applicable_last + 1))
            assert len(committed) == applicable_last - self._applied, len(committed)
        # Unchecked: the same Ready without __post_init__'s asserts (O(entries) each time).
        ready = (Ready if self._checked else unchecked_ready)(
            entries=tuple(self._unstable),
            hard_state=hard_state if hard_state_changed else None,
            messages=(*self._messages_free, *self._messages),
            committed_entries=committed,
            must_sync=bool(self._unstable) or term_or_vote_changed or install is not None,
            snapshot=install,
            snapshot_sends=tuple(self._snapshot_sends),
            read_states=tuple(self._read_states),
        )
        self._messages = []
        self._messages_free = []
        self._snapshot_sends = []
        self._read_states = []
        self._pending_install = None
        self._installing = install
        self._handed_hard_state = hard_state
        self._outstanding = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver has persisted, sent and applied `ready`: make it count."""
        assert ready is self._outstanding, "advance() takes the Ready last handed out"
        self._outstanding = None
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.snapshot is not None:
            meta = ready.snapshot.meta
            assert self._installing is ready.snapshot
            self._installing = None
            # The contract: storage now starts after the snapshot.
            assert self._storage.first_index() == meta.index + 1, self._storage.first_index()
            assert self._storage.term(meta.index) == meta.term, meta
            assert self._applied < meta.index, (self._applied, meta)
            self._applied = meta.index
            if self._snapshot is None or meta.index > self._snapshot.index:
                self._snapshot = meta
        if ready.entries:
            self._stable_to(ready.entries)
        if ready.committed_entries:
            applied = ready.committed_entries[-1].index
            assert applied <= self._commit, (applied, self._commit)
            assert ready.committed_entries[0].index == self._applied + 1, self._applied
            self._applied = applied
        if (
            self._role == Role.CANDIDATE
            and self._persisted_hard_state.term == self._term
            and self._persisted_hard_state.vote == self._replica_id
        ):
            self._tally_votes()
        if self._role == Role.LEADER and self._maybe_commit():
            self._broadcast_append()
        if self._checked:
            self._check_invariants()

    # -- elections ------------------------------------------------------------------------

    def _may_campaign(self) -> bool:
        """Voters campaign; so does a voter whose removal is in its log but not committed:
        it may still be needed to elect anyone (Raft thesis §4.2.2), though its own vote
        does not count."""
        if self._replica_id in self._voters:
            return True
        if self._membership_index <= self._commit:
            return False
        previous_voters, _ = self._membership_at(self._membership_index - 1)
        return self._replica_id in previous_voters

    def _pre_campaign(self) -> None:
        """Ask the voters whether they would vote for us at term + 1, without changing it."""
        if not self._may_campaign():
            return
        self._become(Role.PRE_CANDIDATE)
        self._leader_id = 0
        self._votes = {}
        self._votes[self._replica_id] = True  # a pre-vote changes nothing durable
        for voter_id in self._voters:
            if voter_id != self._replica_id:
                self._send_vote_request(MessageKind.PRE_VOTE, voter_id, self._term + 1, False)
        self._tally_votes()

    def _campaign(self, *, leader_transfer: bool) -> None:
        self._become(Role.CANDIDATE)
        self._term += 1
        self._vote = self._replica_id
        self._leader_id = 0
        # Our own vote is counted in advance(), once the hard state carrying it is durable;
        # the requests go out in the same Ready, after that persist.
        self._votes = {}
        for voter_id in self._voters:
            if voter_id != self._replica_id:
                self._send_vote_request(MessageKind.VOTE, voter_id, self._term, leader_transfer)

    def _send_vote_request(
        self, kind: MessageKind, to_id: int, term: int, leader_transfer: bool
    ) -> None:
        last = self.last_index
        self._emit(
            Message(
                kind=kind,
                from_id=self._replica_id,
                to_id=to_id,
                term=term,
                index=last,
                log_term=self.term_at(last),
                leader_transfer=leader_transfer,
            )
        )

    def _tally_votes(self) -> None:
        granted = sum(
            1 for voter_id, vote in self._votes.items() if vote and voter_id in self._voters
        )
        rejected = sum(1 for vote in self._votes.values() if not vote)
        if self._role == Role.CANDIDATE and self._replica_id in self._voters:
            own_durable = (
                self._persisted_hard_state.term == self._term
                and self._persisted_hard_state.vote == self._replica_id
            )
            granted += int(own_durable)
        if granted >= self.quorum_size:
            if self._role == Role.PRE_CANDIDATE:
                self._campaign(leader_transfer=False)
                self._tally_votes()  # a quorum of one: still waits for the persist
            else:
                self._become_leader()
        elif rejected > len(self._voters) - self.quorum_size:  # can no longer win
            self._become_follower(self._term, 0)

    def _in_lease(self) -> bool:
        """Heard from a live leader within the election timeout (check-quorum's lease)."""
        return self._leader_id != 0 and self._election_elapsed_ticks < self._election_ticks

    def _handle_vote_request(self, message: Message) -> None:
        # A learner answers too: a candidate asks only its voters, so it knows of our
        # promotion before we applied it (etcd-raft does the same). It never campaigns.
        up_to_date = (message.log_term, message.index) >= (
            self.term_at(self.last_index),
            self.last_index,
        )
        if message.kind == MessageKind.PRE_VOTE:
            # Granted when we would vote at that term: it is ahead of ours, and the log is
            # as complete as ours. A leader we hear from was checked in _step_term.
            grant = message.term > self._term and up_to_date
            response = MessageKind.PRE_VOTE_RESPONSE
            term = message.term if grant else self._term
        else:
            can_vote = self._vote == message.from_id or (self._vote == 0 and self._leader_id == 0)
            grant = can_vote and up_to_date
            response = MessageKind.VOTE_RESPONSE
            term = self._term
            if grant:
                self._vote = message.from_id
                self._election_elapsed_ticks = 0
        self._emit(
            Message(
                kind=response,
                from_id=self._replica_id,
                to_id=message.from_id,
                term=term,
                reject=not grant,
            )
        )

    def _become_follower(self, term: int, leader_id: int) -> None:
        assert term >= self._term, (term, self._term)
        if term > self._term:
            self._term = term
            self._vote = 0
        self._become(Role.FOLLOWER if self._may_campaign() else Role.LEARNER)
        self._leader_id = leader_id
        self._votes = {}
        self._progress = {}
        self._transfer_target = 0
        # Reads waiting for a quorum are dropped: their askers time out and ask again.
        self._reads.clear()
        self._reads_before_commit = []
        self._read_round_pending = False

    def _become_leader(self) -> None:
        self._become(Role.LEADER)
        self._leader_id = self._replica_id
        self._votes = {}
        self._progress = {}
        for peer_id in (*self._voters, *self._learners):
            if peer_id != self._replica_id:
                self._progress[peer_id] = _Progress(
                    next=self.last_index + 1, inflight_max=self._inflight_appends_max
                )
        # Commits every earlier-term entry once this one commits (Raft §5.4.2, §8).
        # A leader with an empty log has no earlier-term entry to commit (leader
        # completeness: nothing was ever committed), so a fresh cluster skips it and its
        # first client txn gets index (zxid) 1 after the session, as in ZooKeeper.
        if self.last_index > 0:
            self._append(EntryKind.NOOP, b"")
        self._broadcast_append()
        self._maybe_commit()

    def _become(self, role: Role) -> None:
        assert (self._role, role) in _TRANSITIONS, (self._role, role)
        self._role = role
        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._randomized_election_ticks = self._new_election_timeout()

    def _new_election_timeout(self) -> int:
        # Randomized so that peers rarely time out together (Raft §5.2).
        return self._election_ticks + self._rng.randrange(self._election_ticks)

    # -- message dispatch -----------------------------------------------------------------

    def _step_term(self, message: Message) -> bool:
        """Apply the term rules; False when the message is to be dropped."""
        kind = message.kind
        if message.term > self._term:
            if kind in (MessageKind.PRE_VOTE, MessageKind.VOTE):
                if self._in_lease() and not message.leader_transfer:
                    return False  # a healthy leader is not disrupted
                if kind == MessageKind.PRE_VOTE:
                    return True  # a pre-vote never changes our term
            if kind == MessageKind.PRE_VOTE_RESPONSE and not message.reject:
                return True  # granted at the term we would campaign for
            leader_id = message.from_id if kind in _FROM_LEADER else 0
            self._become_follower(message.term, leader_id)
            return True
        if message.term < self._term:
            if kind in (MessageKind.APPEND, MessageKind.HEARTBEAT):
                # A stale leader (or one cut off while we moved on) learns the new term and
                # steps down; with pre-vote our term only grows through real elections. A
                # rejection of index 0, so that it means nothing to a leader of our term.
                self._send(MessageKind.APPEND_RESPONSE, message.from_id, reject=True)
            elif kind == MessageKind.PRE_VOTE:
                self._emit(
                    Message(
                        kind=MessageKind.PRE_VOTE_RESPONSE,
                        from_id=self._replica_id,
                        to_id=message.from_id,
                        term=self._term,
                        reject=True,
                    )
                )
            return False
        return True

    def _step_kind(self, message: Message) -> None:
        kind = message.kind
        if kind in (MessageKind.PRE_VOTE, MessageKind.VOTE):
            self._handle_vote_request(message)
        elif kind in (MessageKind.PRE_VOTE_RESPONSE, MessageKind.VOTE_RESPONSE):
            expected = (
                Role.PRE_CANDIDATE if kind == MessageKind.PRE_VOTE_RESPONSE else Role.CANDIDATE
            )
            if self._role == expected and message.from_id in self._voters:
                self._votes[message.from_id] = not message.reject
                self._tally_votes()
        elif kind == MessageKind.READ_INDEX:
            if self._role == Role.LEADER and (
                len(self._reads) + len(self._reads_before_commit) < READS_PENDING_MAX
            ):
                self._leader_read(message.from_id, message.context)
        elif kind == MessageKind.READ_INDEX_RESPONSE:
            self._read_states.append(ReadState(request_id=message.context, index=message.index))
        elif kind in _FROM_LEADER:
            if self._role == Role.LEADER:
                # Same term, two leaders: impossible unless a peer is broken.
                raise AssertionError(f"{kind.name} from {message.from_id} in our term")
            if self._role in (Role.PRE_CANDIDATE, Role.CANDIDATE) or self._leader_id == 0:
                self._become_follower(self._term, message.from_id)
            assert self._leader_id == message.from_id, (self._leader_id, message.from_id)
            self._election_elapsed_ticks = 0
            if kind == MessageKind.APPEND:
                self._handle_append(message)
            elif kind == MessageKind.HEARTBEAT:
                self._commit_to(min(message.commit, self.last_index))
                self._emit(
                    Message(
                        kind=MessageKind.HEARTBEAT_RESPONSE,
                        from_id=self._replica_id,
                        to_id=message.from_id,
                        term=self._term,
                        index=self.last_index,
                        context=message.context,
                    )
                )
            elif kind == MessageKind.SNAPSHOT_CHUNK:
                self._handle_snapshot_chunk(message)
            else:
                if self._may_campaign():
                    self._campaign(leader_transfer=True)
        elif self._role == Role.LEADER:
            progress = self._progress.get(message.from_id)
            if progress is None:
                return
            progress.recent_active = True
            if kind == MessageKind.APPEND_RESPONSE:
                self._handle_append_response(message, progress)
            elif kind == MessageKind.HEARTBEAT_RESPONSE:
                self._handle_heartbeat_response(message, progress)
            elif kind == MessageKind.SNAPSHOT_RESPONSE:
                self._handle_snapshot_response(message, progress)

    # -- follower side of replication -----------------------------------------------------

    def _handle_append(self, message: Message) -> None:
        if message.index < self._commit:
            # Everything up to our commit index matches the leader already.
            self._send(MessageKind.APPEND_RESPONSE, message.from_id, index=self._commit)
            return
        if message.index <= self.last_index and self.term_at(message.index) == message.log_term:
            last_new = message.index + len(message.entries)
            for position, entry in enumerate(message.entries):
                if entry.index > self.last_index or self.term_at(entry.index) != entry.term:
                    self._truncate_and_append(message.entries[position:])
                    break
            self._commit_to(min(message.commit, last_new))
            self._send(MessageKind.APPEND_RESPONSE, message.from_id, index=last_new)
            return
        hint_index, hint_term = self._find_conflict_by_term(
            min(message.index, self.last_index), message.log_term
        )
        self._emit(
            Message(
                kind=MessageKind.APPEND_RESPONSE,
                from_id=self._replica_id,
                to_id=message.from_id,
                term=self._term,
                index=message.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _truncate_and_append(self, entries: tuple[Entry, ...]) -> None:
        first = entries[0].index
        assert first > self._commit, ("would overwrite a committed entry", first, self._commit)
        assert first <= self.last_index + 1, (first, self.last_index)
        if first <= self._stable_last:
            # Durable entries are overwritten: storage still holds them until the next
            # Ready's entries replace them, so they no longer count as ours.
            self._stable_last = first - 1
            self._unstable = list(entries)
        else:
            del self._unstable[first - self._stable_last - 1 :]
            self._unstable.extend(entries)
        if first <= self._membership_index or any(
            entry.kind == EntryKind.MEMBERSHIP for entry in entries
        ):
            self._reload_membership()

    def _find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last index <= `index` whose term is <= `term`, and that term (0: unknown)."""
        if index < self._base_index:
            return index, 0
        while index > self._base_index and self.term_at(index) > term:
            index -= 1
        return index, self.term_at(index)

    def _commit_to(self, index: int) -> None:
        if index > self._commit:
            assert index <= self.last_index, (index, self.last_index)
            self._commit = index
            if self._membership_index > 0 and self._replica_id not in self._voters:
                self._settle_role()  # our removal may just have committed

    def _handle_snapshot_chunk(self, message: Message) -> None:
        meta = message.snapshot
        assert meta is not None
        incoming = self._incoming
        if incoming is None or (incoming.from_id, incoming.term, incoming.meta) != (
            message.from_id,
            message.term,
            meta,
        ):
            if (
                incoming is not None
                and message.term == incoming.term
                and meta.index < incoming.meta.index
            ):
                return  # a delayed chunk of this leader's previous, older snapshot
            # A transfer from a newer leader (or of a newer snapshot) replaces the partial
            # one; keeping an abandoned transfer of an old leader would block every new one.
            incoming = _IncomingSnapshot(from_id=message.from_id, term=message.term, meta=meta)
            self._incoming = incoming
        # Chunks of one (leader, term, meta) are slices of the same bytes, whichever send
        # they came from; they may arrive in any order and more than once.
        if message.offset in incoming.chunks or message.offset < incoming.received_bytes:
            return
        if incoming.size_bytes + len(message.data) > SNAPSHOT_SIZE_MAX:
            self._incoming = None
            self._send(
                MessageKind.SNAPSHOT_RESPONSE, message.from_id, index=meta.index, reject=True
            )
            return
        incoming.chunks[message.offset] = message.data
        incoming.size_bytes += len(message.data)
        if message.done:
            incoming.end_bytes = message.offset + len(message.data)
        parts = []
        while incoming.received_bytes in incoming.chunks:
            data = incoming.chunks.pop(incoming.received_bytes)
            parts.append(data)
            incoming.received_bytes += len(data)
            if not data:
                break  # only the last chunk of an empty snapshot is empty
        incoming.assembled.extend(parts)
        if incoming.received_bytes != incoming.end_bytes:
            if parts:
                self._emit(
                    Message(
                        kind=MessageKind.SNAPSHOT_RESPONSE,
                        from_id=self._replica_id,
                        to_id=message.from_id,
                        term=self._term,
                        index=meta.index,
                        offset=incoming.received_bytes,
                    )
                )
            return
        self._incoming = None
        self._restore(Snapshot(meta=meta, data=b"".join(incoming.assembled)))
        self._send(MessageKind.APPEND_RESPONSE, message.from_id, index=self._commit)

    def _restore(self, snapshot: Snapshot) -> None:
        """A complete snapshot from the leader: fast-forward or replace the log."""
        meta = snapshot.meta
        if meta.index <= self._commit:
            return  # we have all of it already
        if (
            self._base_index <= meta.index <= self.last_index
            and self.term_at(meta.index) == meta.term
        ):
            # Our log holds the snapshot's last entry: commit up to it, apply as usual.
            self._commit_to(meta.index)
            return
        self._pending_install = snapshot
        self._base_index = meta.index
        self._base_term = meta.term
        self._stable_last = meta.index
        self._unstable = []
        self._commit = meta.index
        self._base_membership = (meta.voters, meta.learners)
        self._reload_membership()

    # -- leader side of replication -------------------------------------------------------

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed_ticks += 1
        self._election_elapsed_ticks += 1
        if self._election_elapsed_ticks >= self._election_ticks:
            self._election_elapsed_ticks = 0
            if not self._quorum_active():
                self._become_follower(self._term, 0)  # check-quorum: we lost the majority
                return
            for progress in self._progress.values():
                progress.recent_active = False
        if self._transfer_target != 0:
            self._transfer_elapsed_ticks += 1
            if self._transfer_elapsed_ticks >= self._election_ticks:
                self._transfer_target = 0  # the target did not take over: lead on
        if self._replica_id not in self._voters and self._transfer_target == 0:
            self._hand_over()  # still removed from the voters: try again
        for peer_id, progress in self._progress.items():
            if progress.state == _ProgressState.REPLICATE and progress.match < progress.next - 1:
                progress.stalled_ticks += 1
                if progress.stalled_ticks >= self._election_ticks:
                    # APPENDs went out and none was answered for an election timeout:
                    # some were lost. Probe again from what is known to match.
                    progress.become_probe()
                    self._send_append(peer_id)
            if progress.state == _ProgressState.SNAPSHOT:
                progress.snapshot_stalled_ticks += 1
                if progress.snapshot_stalled_ticks >= self._snapshot_stall_ticks:
                    progress.become_probe()
                    self._send_append(peer_id)
        if self._heartbeat_elapsed_ticks >= self._heartbeat_ticks:
            self._heartbeat_elapsed_ticks = 0
            self._send_heartbeats()

    def _send_heartbeats(self) -> None:
        for peer_id, progress in self._progress.items():
            commit = min(progress.match, self._commit)
            progress.commit_sent = max(progress.commit_sent, commit)
            self._emit(
                Message(
                    kind=MessageKind.HEARTBEAT,
                    from_id=self._replica_id,
                    to_id=peer_id,
                    term=self._term,
                    commit=commit,
                    context=self._read_sequence,
                )
            )

    def _leader_read(self, origin_id: int, request_id: int) -> None:
        if self.last_index > 0 and self.term_at(self._commit) != self._term:
            # Until an entry of our term commits, our commit index may lag what an
            # earlier leader committed (Raft §6.4): the read waits for it. (A leader whose
            # log is empty knows that nothing was ever committed.)
            self._reads_before_commit.append((origin_id, request_id))
            return
        # A leader that removed itself from the voters leads on without counting itself:
        # nor does it vouch for its own leadership in a read round.
        counts_itself = self._replica_id in self._voters
        if counts_itself and self.quorum_size == 1:
            self._answer_read(origin_id, request_id, self._commit)
            return
        self._read_sequence += 1
        self._reads.append(
            _PendingRead(
                sequence=self._read_sequence,
                origin_id=origin_id,
                request_id=request_id,
                index=self._commit,
                acks={self._replica_id} if counts_itself else set(),
            )
        )
        self._read_round_pending = True

    def _confirm_reads(self, voter_id: int, sequence: int) -> None:
        for read in self._reads:
            if read.sequence > sequence:
                break
            read.acks.add(voter_id)
        while self._reads and len(self._reads[0].acks) >= self.quorum_size:
            read = self._reads.popleft()
            self._answer_read(read.origin_id, read.request_id, read.index)

    def _answer_read(self, origin_id: int, request_id: int, index: int) -> None:
        if origin_id == self._replica_id:
            self._read_states.append(ReadState(request_id=request_id, index=index))
            return
        self._emit(
            Message(
                kind=MessageKind.READ_INDEX_RESPONSE,
                from_id=self._replica_id,
                to_id=origin_id,
                term=self._term,
                index=index,
                context=request_id,
            )
        )

    def _quorum_active(self) -> bool:
        active = sum(
            1
            for voter_id in self._voters
            if voter_id == self._replica_id or self._progress[voter_id].recent_active
        )
        return active >= self.quorum_size

    def _handle_append_response(self, message: Message, progress: _Progress) -> None:
        peer_id = message.from_id
        if message.reject:
            rejected = message.index
            if progress.state == _ProgressState.REPLICATE:
                if rejected <= progress.match:
                    return  # stale: answered an APPEND sent before a later success
                progress.become_probe()
            elif progress.state == _ProgressState.PROBE:
                if rejected != progress.next - 1:
                    return  # stale: not the answer to the probe in flight
            else:
                return  # a snapshot transfer decides what comes next
            hint = message.reject_hint
            if message.log_term > 0:
                hint, _ = self._find_conflict_by_term(min(hint, self.last_index), message.log_term)
            progress.next = max(min(rejected, hint + 1), progress.match + 1)
            progress.probe_sent = False
            self._send_append(peer_id)
            return
        advanced = message.index > progress.match
        if advanced:
            progress.match = message.index
            progress.stalled_ticks = 0
        progress.next = max(progress.next, message.index + 1)
        if progress.state == _ProgressState.PROBE:
            progress.become_replicate()
        elif progress.state == _ProgressState.SNAPSHOT:
            if progress.match >= progress.snapshot_index:
                progress.become_probe()
                progress.become_replicate()
        else:
            while progress.inflight and progress.inflight[0] <= message.index:
                progress.inflight.popleft()
        if advanced and self._maybe_commit():
            self._broadcast_append()
        else:
            self._send_append(peer_id, allow_empty=False)
        if min(progress.match, self._commit) > progress.commit_sent:
            self._send_append(peer_id)  # it caught up past what it knows is committed
        if peer_id == self._transfer_target and progress.match == self.last_index and advanced:
            self._send(MessageKind.TIMEOUT_NOW, peer_id)

    def _handle_heartbeat_response(self, message: Message, progress: _Progress) -> None:
        if message.context > 0 and message.from_id in self._voters:
            self._confirm_reads(message.from_id, message.context)
        if progress.state == _ProgressState.REPLICATE and message.index < progress.next - 1:
            # Its log is shorter than what we sent before this heartbeat (one stream per
            # link): APPENDs were lost, or it restarted without them. Probe again now.
            progress.become_probe()
        if progress.state == _ProgressState.PROBE:
            progress.probe_sent = False
        if progress.match < self.last_index:
            self._send_append(message.from_id, allow_empty=False)

    def _handle_snapshot_response(self, message: Message, progress: _Progress) -> None:
        if progress.state != _ProgressState.SNAPSHOT or message.index != progress.snapshot_index:
            return
        if message.reject:
            progress.become_probe()
            self._send_append(message.from_id)
            return
        if message.offset > progress.snapshot_offset:
            progress.snapshot_offset = message.offset
            progress.snapshot_stalled_ticks = 0

    def _broadcast_append(self) -> None:
        for peer_id in self._progress:
            self._send_append(peer_id)

    def _send_append(self, peer_id: int, *, allow_empty: bool = True) -> None:
        """Send what the peer's progress allows: a probe, pipelined batches, or a snapshot."""
        progress = self._progress[peer_id]
        for _ in range(self._inflight_appends_max):
            if progress.paused:
                return
            previous = progress.next - 1
            if previous < self._base_index:
                self._send_snapshot(peer_id, progress)
                return
            entries = self._entries_for(progress.next)
            if not entries and not allow_empty:
                return
            progress.commit_sent = max(
                progress.commit_sent, min(self._commit, previous + len(entries))
            )
            self._emit(
                Message(
                    kind=MessageKind.APPEND,
                    from_id=self._replica_id,
                    to_id=peer_id,
                    term=self._term,
                    index=previous,
                    log_term=self.term_at(previous),
                    entries=entries,
                    commit=self._commit,
                )
            )
            if progress.state == _ProgressState.PROBE:
                progress.probe_sent = True
                return
            if not entries:
                return
            progress.next = entries[-1].index + 1
            progress.inflight.append(entries[-1].index)
            allow_empty = False

    def _send_snapshot(self, peer_id: int, progress: _Progress) -> None:
        snapshot = self._snapshot
        assert snapshot is not None, "the log was compacted without a snapshot"
        assert snapshot.index >= self._base_index, (snapshot, self._base_index)
        progress.become_snapshot(snapshot.index)
        self._snapshot_sends.append(
            SnapshotSend(from_id=self._replica_id, to_id=peer_id, term=self._term, meta=snapshot)
        )

    def _entries_for(self, low: int) -> tuple[Entry, ...]:
        """Entries from `low` within one APPEND's bounds (at least one if any exist)."""
        high = min(self.last_index + 1, low + self._append_entries_max)
        if low >= high:
            return ()
        entries: list[Entry] = []
        if low <= self._stable_last:
            entries.extend(self._storage.entries(low, min(high, self._stable_last + 1)))
        if high > self._stable_last + 1:
            start = max(low, self._stable_last + 1) - self._stable_last - 1
            entries.extend(self._unstable[start : high - self._stable_last - 1])
        size_bytes = 0
        for count, entry in enumerate(entries):
            size_bytes += len(entry.data)
            if size_bytes > APPEND_SIZE_MAX and count > 0:
                return tuple(entries[:count])
        return tuple(entries)

    def _append(self, kind: EntryKind, data: bytes) -> int:
        assert self._role == Role.LEADER, self._role
        index = self._stable_last + len(self._unstable) + 1
        if self._checked:
            assert self.term_at(index - 1) <= self._term, (index, self._term)
            self._unstable.append(Entry(term=self._term, index=index, kind=kind, data=data))
        else:
            self._unstable.append(unchecked_entry(self._term, index, kind, data))
        if kind == EntryKind.MEMBERSHIP:
            self._reload_membership()
        return index

    def _maybe_commit(self) -> bool:
        assert self._role == Role.LEADER, self._role
        matched = sorted(
            (
                self._stable_last
                if voter_id == self._replica_id
                else self._progress[voter_id].match
                for voter_id in self._voters
            ),
            reverse=True,
        )
        quorum_index = matched[self.quorum_size - 1]
        # Only an entry of the current term is committed by counting replicas (§5.4.2).
        if quorum_index > self._commit and self.term_at(quorum_index) == self._term:
            self._commit = quorum_index
            waiting, self._reads_before_commit = self._reads_before_commit, []
            for origin_id, request_id in waiting:
                self._leader_read(origin_id, request_id)
            if self._replica_id not in self._voters and self._transfer_target == 0:
                self._hand_over()  # our removal is committed: hand over now
            return True
        return False

    def _emit(self, message: Message) -> None:
        if message.kind in _FREE_KINDS and self._term == self._persisted_hard_state.term:
            self._messages_free.append(message)
        else:
            self._messages.append(message)

    def _send(
        self,
        kind: MessageKind,
        to_id: int,
        *,
        index: int = 0,
        commit: int = 0,
        reject: bool = False,
    ) -> None:
        self._emit(
            Message(
                kind=kind,
                from_id=self._replica_id,
                to_id=to_id,
                term=self._term,
                index=index,
                commit=commit,
                reject=reject,
            )
        )

    # -- log bookkeeping ------------------------------------------------------------------

    def _stable_to(self, entries: tuple[Entry, ...]) -> None:
        """`entries` are durable now; those still in our log leave the unstable list.

        Entries overwritten by a newer leader (or replaced by a snapshot) while the Ready
        was out are durable but no longer ours; the next Ready's entries replace them.
        """
        # The driver's contract: persist before advance. Check it where we can.
        assert self._storage.last_index() >= entries[-1].index, self._storage.last_index()
        count = 0
        for entry in entries:
            if count >= len(self._unstable):
                break
            unstable = self._unstable[count]
            # Usually the very object handed out: `is` spares comparing every field.
            if unstable is not entry and unstable != entry:
                break
            count += 1
        if count == 0:
            return
        assert entries[0].index == self._stable_last + 1, (entries[0].index, self._stable_last)
        self._stable_last += count
        del self._unstable[:count]
        assert self._storage.term(self._stable_last) == entries[count - 1].term

    def _hard_state_changed(self) -> bool:
        """`self.hard_state != self._handed_hard_state`, without building a HardState
        (asked once per client request)."""
        handed = self._handed_hard_state
        return (
            self._commit != handed.commit or self._term != handed.term or self._vote != handed.vote
        )

    def _applicable_last(self) -> int:
        """Committed entries that are also durable here may be handed out to apply."""
        if self._installing is not None or self._pending_install is not None:
            return self._applied
        return min(self._commit, self._stable_last)

    def _membership_pending(self) -> bool:
        """Whether a MEMBERSHIP entry in the log is not committed yet."""
        return self._membership_index > self._commit

    def _entry_at(self, index: int) -> Entry:
        if index > self._stable_last:
            return self._unstable[index - self._stable_last - 1]
        (entry,) = self._storage.entries(index, index + 1)
        return entry

    def _membership_at(self, index: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The membership the log defines up to `index` (base_index <= index <= last)."""
        assert self._base_index <= index <= self.last_index, (index, self._base_index)
        if index >= self._membership_index > 0:
            return self._voters, self._learners
        if self._membership_index == 0:
            # No MEMBERSHIP entry in the log: the base's. (The server asks after every
            # persist; a walk back through the whole log there made each write O(log).)
            return self._base_membership
        for position in range(index, self._base_index, -1):
            entry = self._entry_at(position)
            if entry.kind == EntryKind.MEMBERSHIP:
                return decode_membership(entry.data)
        return self._base_membership

    def _reload_membership(self) -> None:
        """Take the membership of the last MEMBERSHIP entry in the log, committed or not
        (single-server changes take effect on append, Raft §4.1), else the base's."""
        for position in range(self.last_index, self._base_index, -1):
            entry = self._entry_at(position)
            if entry.kind == EntryKind.MEMBERSHIP:
                voters, learners = decode_membership(entry.data)
                self._set_membership(voters, learners, position)
                return
        self._set_membership(*self._base_membership, 0)

    def _set_membership(
        self, voters: tuple[int, ...], learners: tuple[int, ...], index: int
    ) -> None:
        self._voters = voters
        self._learners = learners
        self._membership_index = index
        if self._role == Role.LEADER:
            for peer_id in (*voters, *learners):
                if peer_id != self._replica_id and peer_id not in self._progress:
                    self._progress[peer_id] = _Progress(
                        next=self.last_index + 1, inflight_max=self._inflight_appends_max
                    )
            for peer_id in list(self._progress):
                if peer_id not in voters and peer_id not in learners:
                    del self._progress[peer_id]
            # No longer a voter: we lead on without counting ourselves and hand over once
            # the entry commits (_maybe_commit; retried in _tick_leader).
        else:
            self._settle_role()

    def _settle_role(self) -> None:
        """A non-leader's role follows whether it may campaign (membership, commit)."""
        if self._role == Role.LEARNER and self._may_campaign():
            self._become(Role.FOLLOWER)
        elif self._role not in (Role.LEARNER, Role.LEADER) and not self._may_campaign():
            self._become(Role.LEARNER)

    def _hand_over(self) -> None:
        """We lead but are no longer a voter: hand over to the most caught-up voter.

        Stepping down at once could leave nobody able to lead: voters without the entry
        still count us, and we no longer campaign. So we lead on, without counting
        ourselves, until a transfer to a voter holding the entry succeeds; then the new
        term makes us a learner.
        """
        assert self._role == Role.LEADER, self._role
        target = max(self._voters, key=lambda voter_id: self._progress[voter_id].match)
        self.transfer_leadership(target)

    def _check_invariants(self) -> None:
        assert self._applied <= self._commit, (self._applied, self._commit)
        assert self._commit <= self.last_index, (self._commit, self.last_index)
        assert self._base_index <= self._stable_last, (self._base_index, self._stable_last)
        assert self._term >= self._persisted_hard_state.term, self._term
        assert (self._role == Role.LEADER) == (self._leader_id == self._replica_id), (
            self._role,
            self._leader_id,
        )
        assert (self._role == Role.LEARNER) <= (self._replica_id not in self._voters)
        assert self._role in (Role.LEARNER, Role.LEADER) or self._may_campaign(), self._role
        if self._unstable:
            # Contiguity and term order are checked entry by entry in _append; here only
            # the seam between the stable and the unstable part (O(1) on every input).
            first = self._unstable[0]
            assert first.index == self._stable_last + 1, (first.index, self._stable_last)
            assert first.term >= self.term_at(self._stable_last), first
            assert self._unstable[-1].term <= self._term, (self._unstable[-1], self._term)
