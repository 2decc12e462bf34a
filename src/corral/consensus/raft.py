"""Raft as a pure state machine (etcd-io/raft's RawNode shape), single voter for now.

Inputs: `tick()` (logical time), `campaign()`, `step(message)`, `propose(data)`.
Output: one `Ready` at a time (`has_ready()` / `ready()`), acknowledged by `advance(ready)`.

Rules:
* No IO, no clock, no global random: time is `tick()`, chance is the `rng` passed in.
* One Ready is outstanding at a time. The driver persists `ready.entries` and
  `ready.hard_state` to the LogStorage (fsync when `must_sync`), then sends
  `ready.messages`, applies `ready.committed_entries`, and calls `advance(ready)`.
* Entries count as stable only after `advance`; the commit index only counts stable
  entries, so an entry is never handed out as committed before it is durable.
  Committed entries handed out in a Ready count as applied after `advance`.
* Our own vote counts only once the hard state carrying it has been advanced (persisted),
  so a replica never leads a term whose vote a crash could forget.
* A new leader appends a NOOP entry of its term; an entry of an earlier term is committed
  only through a later entry of the current term (Raft §5.4.2).
* Role changes go through `_TRANSITIONS`; anything else is a bug.
* Only a single voter is implemented (standalone is a cluster of one). Replication,
  vote requests and learners arrive with multi-voter support; until then a cluster with
  more than one voter is refused at construction (NotImplementedError), and messages from
  replicas that are not voters are dropped (a non-member never affects a quorum).
"""

from __future__ import annotations

import random

from corral.consensus.log_storage import LogStorage
from corral.consensus.types import (
    REPLICA_ID_MAX,
    REPLICA_ID_MIN,
    Entry,
    EntryKind,
    HardState,
    Message,
    Ready,
    Role,
)

_TRANSITIONS: frozenset[tuple[Role, Role]] = frozenset(
    {
        (Role.FOLLOWER, Role.FOLLOWER),  # a new term seen, or a new leader
        (Role.FOLLOWER, Role.CANDIDATE),  # election timeout or campaign()
        (Role.CANDIDATE, Role.CANDIDATE),  # election timeout again: next term
        (Role.CANDIDATE, Role.LEADER),  # a quorum of (persisted) votes
        (Role.CANDIDATE, Role.FOLLOWER),  # a leader or a higher term seen
        (Role.LEADER, Role.FOLLOWER),  # a higher term seen
    }
)


class Raft:
    def __init__(
        self,
        *,
        replica_id: int,
        voters: tuple[int, ...],
        storage: LogStorage,
        rng: random.Random,
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        applied: int = 0,
    ) -> None:
        """Load term, vote and commit index from `storage`; start as a follower.

        `applied` is the last index the state machine already holds (from a snapshot or
        because the tree survived); committed entries after it are handed out again.
        Bad configuration raises ValueError; more than one voter, NotImplementedError.
        """
        for voter_id in (replica_id, *voters):
            if not REPLICA_ID_MIN <= voter_id <= REPLICA_ID_MAX:
                raise ValueError(f"replica id {voter_id} is outside 1..255")
        if len(set(voters)) != len(voters):
            raise ValueError(f"duplicate voters in {voters}")
        if replica_id not in voters:
            raise ValueError(f"replica {replica_id} is not among the voters {voters}")
        if len(voters) > 1:
            raise NotImplementedError("clusters of more than one voter are not supported yet")
        if election_ticks < 1 or heartbeat_ticks < 1:
            raise ValueError(f"election_ticks {election_ticks}, heartbeat_ticks {heartbeat_ticks}")
        if heartbeat_ticks >= election_ticks and election_ticks > 1:
            raise ValueError("heartbeat_ticks must be smaller than election_ticks")

        self._replica_id = replica_id
        self._voters = voters
        self._storage = storage
        self._rng = rng
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks

        hard_state = storage.initial_state()
        stable_last = storage.last_index()
        assert storage.first_index() <= stable_last + 1, (storage.first_index(), stable_last)
        assert hard_state.commit <= stable_last, (hard_state.commit, stable_last)
        assert hard_state.vote == 0 or hard_state.vote in voters, hard_state.vote
        assert storage.term(stable_last) <= hard_state.term, (stable_last, hard_state.term)
        if not storage.first_index() - 1 <= applied <= hard_state.commit:
            raise ValueError(f"applied {applied} is outside the committed log {hard_state}")

        self._term = hard_state.term
        self._vote = hard_state.vote
        self._commit = hard_state.commit
        self._applied = applied
        self._role = Role.FOLLOWER
        self._leader_id = 0

        self._stable_last = stable_last  # the last entry the driver has made durable
        self._unstable: list[Entry] = []  # entries after _stable_last, not yet durable
        self._messages: list[Message] = []

        # The hard state last handed out (what storage will hold after the next advance)
        # and the one the driver has confirmed durable.
        self._handed_hard_state = hard_state
        self._persisted_hard_state = hard_state
        self._outstanding: Ready | None = None

        self._votes_granted: set[int] = set()
        self._match_index: dict[int, int] = {}  # leader only: durable last index per voter

        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._randomized_election_ticks = self._new_election_timeout()
        self._check_invariants()

    # -- properties -----------------------------------------------------------------------

    @property
    def replica_id(self) -> int:
        return self._replica_id

    @property
    def voters(self) -> tuple[int, ...]:
        return self._voters

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
    def last_index(self) -> int:
        return self._stable_last + len(self._unstable)

    @property
    def hard_state(self) -> HardState:
        return HardState(term=self._term, vote=self._vote, commit=self._commit)

    @property
    def quorum_size(self) -> int:
        return len(self._voters) // 2 + 1

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time: election timeout for followers, heartbeat for leaders."""
        if self._role == Role.LEADER:
            self._heartbeat_elapsed_ticks += 1
            if self._heartbeat_elapsed_ticks >= self._heartbeat_ticks:
                self._heartbeat_elapsed_ticks = 0
                # Heartbeats go to peers; a single voter has none (multi-voter: APPEND).
        else:
            self._election_elapsed_ticks += 1
            if self._election_elapsed_ticks >= self._randomized_election_ticks:
                self.campaign()
        self._check_invariants()

    def campaign(self) -> None:
        """Start an election for the next term now; a leader ignores it."""
        if self._role == Role.LEADER:
            return
        self._become(Role.CANDIDATE)
        self._term += 1
        self._vote = self._replica_id
        self._leader_id = 0
        self._votes_granted = set()
        # Our own vote is counted in advance(), once the hard state carrying it is durable.
        # Multi-voter: VOTE messages to every peer go here (sent after the same persist).
        self._check_invariants()

    def step(self, message: Message) -> None:
        """Feed one message from a peer."""
        assert message.to_id == self._replica_id, (message.to_id, self._replica_id)
        assert message.from_id != self._replica_id, "a replica does not message itself"
        if message.from_id not in self._voters:
            # A replica outside the cluster (removed, or misconfigured) never counts.
            return
        # Unreachable while voters == (replica_id,); multi-voter support replaces this.
        raise NotImplementedError(f"{message.kind.name} from a peer voter")

    def propose(self, data: bytes) -> int | None:
        """Append a NORMAL entry; its index, or None when not leader (the caller answers)."""
        if self._role != Role.LEADER:
            return None
        index = self._append(EntryKind.NORMAL, data)
        self._check_invariants()
        return index

    # -- output ---------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether `ready()` has something to hand out (always False while one is out)."""
        if self._outstanding is not None:
            return False
        return (
            bool(self._unstable)
            or self.hard_state != self._handed_hard_state
            or bool(self._messages)
            or self._applicable_last() > self._applied
        )

    def ready(self) -> Ready:
        """Hand out the next batch; call `advance(ready)` once it has been executed."""
        assert self._outstanding is None, "advance() the previous Ready first"
        hard_state = self.hard_state
        hard_state_changed = hard_state != self._handed_hard_state
        term_or_vote_changed = (hard_state.term, hard_state.vote) != (
            self._handed_hard_state.term,
            self._handed_hard_state.vote,
        )
        applicable_last = self._applicable_last()
        committed: tuple[Entry, ...] = ()
        if applicable_last > self._applied:
            committed = tuple(self._storage.entries(self._applied + 1, applicable_last + 1))
            assert len(committed) == applicable_last - self._applied, len(committed)
        ready = Ready(
            entries=tuple(self._unstable),
            hard_state=hard_state if hard_state_changed else None,
            messages=tuple(self._messages),
            committed_entries=committed,
            must_sync=bool(self._unstable) or term_or_vote_changed,
        )
        self._messages = []
        self._handed_hard_state = hard_state
        self._outstanding = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver has persisted, sent and applied `ready`: make it count."""
        assert ready is self._outstanding, "advance() takes the Ready last handed out"
        self._outstanding = None
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.entries:
            self._stable_to(ready.entries[-1])
        if ready.committed_entries:
            applied = ready.committed_entries[-1].index
            assert applied <= self._commit, (applied, self._commit)
            self._applied = applied
        if (
            self._role == Role.CANDIDATE
            and self._persisted_hard_state.term == self._term
            and self._persisted_hard_state.vote == self._replica_id
        ):
            self._count_vote(self._replica_id)
        if self._role == Role.LEADER:
            self._match_index[self._replica_id] = self._stable_last
            self._maybe_commit()
        self._check_invariants()

    # -- internals ------------------------------------------------------------------------

    def _become(self, role: Role) -> None:
        assert (self._role, role) in _TRANSITIONS, (self._role, role)
        self._role = role
        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._randomized_election_ticks = self._new_election_timeout()

    def _new_election_timeout(self) -> int:
        # Randomized so that peers rarely time out together (Raft §5.2).
        return self._election_ticks + self._rng.randrange(self._election_ticks)

    def _count_vote(self, voter_id: int) -> None:
        assert self._role == Role.CANDIDATE, self._role
        assert voter_id in self._voters, voter_id
        self._votes_granted.add(voter_id)
        if len(self._votes_granted) >= self.quorum_size:
            self._become_leader()

    def _become_leader(self) -> None:
        self._become(Role.LEADER)
        self._leader_id = self._replica_id
        self._match_index = dict.fromkeys(self._voters, 0)
        self._match_index[self._replica_id] = self._stable_last
        # Commits every earlier-term entry once this one commits (Raft §5.4.2, §8).
        # A leader with an empty log has no earlier-term entry to commit (leader
        # completeness: nothing was ever committed), so a fresh cluster skips it and its
        # first client txn gets index (zxid) 1 after the session, as in ZooKeeper.
        if self.last_index > 0:
            self._append(EntryKind.NOOP, b"")

    def _append(self, kind: EntryKind, data: bytes) -> int:
        assert self._role == Role.LEADER, self._role
        index = self.last_index + 1
        assert self._term_at(index - 1) <= self._term, (index, self._term)
        self._unstable.append(Entry(term=self._term, index=index, kind=kind, data=data))
        return index

    def _stable_to(self, last: Entry) -> None:
        """Entries up to `last` are durable: drop them from the unstable list."""
        count = last.index - self._stable_last
        assert 1 <= count <= len(self._unstable), (last.index, self._stable_last)
        assert self._unstable[count - 1] == last, (self._unstable[count - 1], last)
        # The driver's contract: persist before advance. Check it where we can.
        assert self._storage.last_index() >= last.index, (self._storage.last_index(), last)
        assert self._storage.term(last.index) == last.term, (last.index, last.term)
        del self._unstable[:count]
        self._stable_last = last.index

    def _maybe_commit(self) -> None:
        assert self._role == Role.LEADER, self._role
        matched = sorted(self._match_index.values(), reverse=True)
        quorum_index = matched[self.quorum_size - 1]
        # Only an entry of the current term is committed by counting replicas (§5.4.2).
        if quorum_index > self._commit and self._term_at(quorum_index) == self._term:
            self._commit = quorum_index

    def _applicable_last(self) -> int:
        """Committed entries that are also durable here may be handed out to apply."""
        return min(self._commit, self._stable_last)

    def _term_at(self, index: int) -> int:
        if index > self._stable_last:
            return self._unstable[index - self._stable_last - 1].term
        return self._storage.term(index)

    def _check_invariants(self) -> None:
        assert self._applied <= self._commit, (self._applied, self._commit)
        assert self._commit <= self.last_index, (self._commit, self.last_index)
        assert self._commit <= self._stable_last, (self._commit, self._stable_last)
        assert self._vote == 0 or self._vote in self._voters, self._vote
        assert self._term >= self._persisted_hard_state.term, self._term
        assert (self._role == Role.LEADER) == (self._leader_id == self._replica_id), (
            self._role,
            self._leader_id,
        )
        if self._unstable:
            # Contiguity and term order are checked entry by entry in _append; here only
            # the seam between the stable and the unstable part (O(1) on every input).
            first = self._unstable[0]
            assert first.index == self._stable_last + 1, (first.index, self._stable_last)
            assert first.term >= self._term_at(self._stable_last), first
            assert self._unstable[-1].term <= self._term, (self._unstable[-1], self._term)
