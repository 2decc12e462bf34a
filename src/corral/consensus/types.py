"""Consensus records: log entries, hard state, roles, messages, snapshots and the Ready batch.

Rules:
* Records are frozen, slotted, keyword-only and checked on construction; a record that
  breaks its own rules is our bug, so the checks are asserts. A transport that decodes
  peer bytes into a `Message` checks peer input (limits.py) before it constructs one.
* Indexes are 1-based; index 0 and term 0 mean "none" (the empty log's last entry).
* This module knows nothing of znodes, txns or sockets: an entry's `data` and a snapshot's
  `data` are opaque bytes.
* `Ready` carries the ordering contract (etcd-io/raft's Ready): the driver installs
  `snapshot`, appends `entries` and persists `hard_state` (fsync when `must_sync`), only
  then sends `messages` and streams `snapshot_sends`, applies `committed_entries` in order,
  serves `read_states` once applied far enough, and finally calls `Raft.advance(ready)`.
  raft.py's module header has the details (and `Raft.take_messages`, the messages that
  need not wait for a persist).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from corral.limits import SNAPSHOT_CHUNK_SIZE_MAX

REPLICA_ID_MIN = 1
REPLICA_ID_MAX = 255  # the `server.N` range of zoo.cfg


class EntryKind(enum.IntEnum):
    NORMAL = 0  # a txn for the state machine
    NOOP = 1  # appended by every new leader to commit the entries of earlier terms
    MEMBERSHIP = 2  # data is `encode_membership(...)`; takes effect when applied


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    term: int
    index: int
    kind: EntryKind
    data: bytes

    def __post_init__(self) -> None:
        assert self.term >= 1, self.term
        assert self.index >= 1, self.index
        assert isinstance(self.kind, EntryKind), self.kind
        assert self.kind != EntryKind.NOOP or self.data == b"", "NOOP entries carry no data"


_new_object = object.__new__
_set_entry_term, _set_entry_index, _set_entry_kind, _set_entry_data = (
    getattr(Entry, name).__set__ for name in ("term", "index", "kind", "data")
)


def unchecked_entry(term: int, index: int, kind: EntryKind, data: bytes) -> Entry:
    """The Entry of these fields, set through its slots without `__post_init__`'s asserts
    (nor the frozen __init__'s object.__setattr__ per field): for Raft's append when its
    invariant checks are off, one per write; Raft's own values meet the asserts."""
    entry = _new_object(Entry)
    _set_entry_term(entry, term)
    _set_entry_index(entry, index)
    _set_entry_kind(entry, kind)
    _set_entry_data(entry, data)
    return entry


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What a replica must persist before it acts on it: term, vote and commit index."""

    term: int
    vote: int  # replica id voted for in `term`; 0 = none
    commit: int  # commit index

    def __post_init__(self) -> None:
        assert self.term >= 0, self.term
        assert self.vote >= 0, self.vote
        assert self.commit >= 0, self.commit


EMPTY_HARD_STATE = HardState(term=0, vote=0, commit=0)


def _check_membership(voters: tuple[int, ...], learners: tuple[int, ...]) -> None:
    for replica_id in (*voters, *learners):
        assert REPLICA_ID_MIN <= replica_id <= REPLICA_ID_MAX, replica_id
    assert len(set(voters)) == len(voters), voters
    assert len(set(learners)) == len(learners), learners
    assert not set(voters) & set(learners), (voters, learners)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    """What a snapshot holds: the state machine as of entry (index, term), and the
    membership in force at that index (a snapshot replaces the MEMBERSHIP entries it
    covers)."""

    index: int
    term: int
    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        assert self.index >= 1, self.index
        assert self.term >= 1, self.term
        assert self.voters, "a snapshot names at least one voter"
        _check_membership(self.voters, self.learners)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A complete received snapshot, handed to the driver to install (`Ready.snapshot`)."""

    meta: SnapshotMeta
    data: bytes


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"  # asking whether an election could be won (no term change)
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"  # a non-voting replica (ZooKeeper's observer): never campaigns


class MessageKind(enum.Enum):
    """Replica-to-replica consensus messages (Raft's RPCs split into request/response)."""

    PRE_VOTE = "pre_vote"  # term: the term the sender would campaign for
    PRE_VOTE_RESPONSE = "pre_vote_response"
    VOTE = "vote"
    VOTE_RESPONSE = "vote_response"
    APPEND = "append"
    APPEND_RESPONSE = "append_response"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESPONSE = "heartbeat_response"
    SNAPSHOT_CHUNK = "snapshot_chunk"  # built by the driver from a SnapshotSend
    SNAPSHOT_RESPONSE = "snapshot_response"  # index: snapshot index; offset: bytes held
    TIMEOUT_NOW = "timeout_now"  # leader transfer: campaign now, skipping pre-vote
    READ_INDEX = "read_index"  # follower -> leader: context is the follower's request id
    READ_INDEX_RESPONSE = "read_index_response"  # context: request id; index: read index


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One consensus message; the fields a kind does not use keep their defaults.

    log_term/index: for APPEND the entry preceding `entries`; for (PRE_)VOTE the candidate's
    last entry; for APPEND_RESPONSE the last index now matching the leader, or when
    `reject` the rejected preceding index, with `reject_hint` / `log_term` the follower's
    guess of the last entry that may match (fast back-tracking).
    snapshot/offset/data/done: a SNAPSHOT_CHUNK of the snapshot described by `snapshot`.
    leader_transfer: a VOTE caused by TIMEOUT_NOW; peers grant it even while they still
    hear from the current leader.
    context: READ_INDEX / READ_INDEX_RESPONSE: the request id; HEARTBEAT and its response:
    the leader's read sequence number the round confirms (0: none).
    """

    kind: MessageKind
    from_id: int
    to_id: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    leader_transfer: bool = False
    snapshot: SnapshotMeta | None = None
    offset: int = 0  # bytes
    data: bytes = b""
    done: bool = False
    context: int = 0

    def __post_init__(self) -> None:
        assert REPLICA_ID_MIN <= self.from_id <= REPLICA_ID_MAX, self.from_id
        assert self.context >= 0, self.context
        assert REPLICA_ID_MIN <= self.to_id <= REPLICA_ID_MAX, self.to_id
        assert self.term >= 0, self.term
        assert self.index >= 0, self.index
        assert self.commit >= 0, self.commit
        assert self.offset >= 0, self.offset
        assert (self.kind == MessageKind.SNAPSHOT_CHUNK) <= (self.snapshot is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotSend:
    """The leader asks its driver to stream snapshot `meta` to replica `to_id`.

    The driver loads the bytes of the snapshot it made durable for `meta` (the one it
    passed to `Raft.compact`) and sends `chunks(data)` in order, after the Ready's persist
    step like any message. If it no longer has that snapshot it sends nothing; the leader
    notices the stalled transfer and asks again with its current snapshot.
    """

    from_id: int
    to_id: int
    term: int
    meta: SnapshotMeta

    def chunks(self, data: bytes, chunk_size_bytes: int = SNAPSHOT_CHUNK_SIZE_MAX) -> list[Message]:
        return list(self.iter_chunks(data, chunk_size_bytes))

    def iter_chunks(
        self, data: bytes, chunk_size_bytes: int = SNAPSHOT_CHUNK_SIZE_MAX
    ) -> Iterator[Message]:
        """The chunks one at a time (each copies its slice of `data` when it is made)."""
        assert 1 <= chunk_size_bytes <= SNAPSHOT_CHUNK_SIZE_MAX, chunk_size_bytes
        offsets = range(0, max(len(data), 1), chunk_size_bytes)
        return (
            Message(
                kind=MessageKind.SNAPSHOT_CHUNK,
                from_id=self.from_id,
                to_id=self.to_id,
                term=self.term,
                snapshot=self.meta,
                offset=offset,
                data=data[offset : offset + chunk_size_bytes],
                done=offset + chunk_size_bytes >= len(data),
            )
            for offset in offsets
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadState:
    """A read index: once `applied_index >= index`, the state machine reflects every
    write committed before `Raft.read_index(request_id)` was called (linearizable)."""

    request_id: int
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """One batch of work for the driver; see the module rules for the order."""

    entries: tuple[Entry, ...]  # append to stable storage BEFORE sending messages
    hard_state: HardState | None  # persist if not None (changed since the last Ready)
    messages: tuple[Message, ...]  # send only after entries/hard_state are durable
    committed_entries: tuple[Entry, ...]  # apply in order (they are durable on a quorum)
    must_sync: bool  # entries, snapshot or term/vote changed -> fsync needed
    # Install first: make it durable, replace the state machine with it, and make the log
    # start after snapshot.meta.index (MemoryLogStorage.apply_snapshot).
    snapshot: Snapshot | None = None
    snapshot_sends: tuple[SnapshotSend, ...] = ()  # stream after the persist step
    read_states: tuple[ReadState, ...] = ()  # serve each once applied up to its index

    def __post_init__(self) -> None:
        for earlier, later in itertools.pairwise(self.entries):
            assert later.index == earlier.index + 1, (earlier.index, later.index)
            assert later.term >= earlier.term, (earlier.term, later.term)
        for earlier, later in itertools.pairwise(self.committed_entries):
            assert later.index == earlier.index + 1, (earlier.index, later.index)
        assert self.must_sync or not self.entries, "new entries always need an fsync"
        if self.snapshot is not None:
            assert self.must_sync, "a snapshot install needs an fsync"
            assert not self.committed_entries, "nothing applies before the install"
            assert not self.entries or self.entries[0].index > self.snapshot.meta.index

    @property
    def is_empty(self) -> bool:
        return (
            not self.entries
            and self.hard_state is None
            and not self.messages
            and not self.committed_entries
            and self.snapshot is None
            and not self.snapshot_sends
            and not self.read_states
        )


_READY_SETTERS = tuple(
    getattr(Ready, name).__set__
    for name in (
        "entries",
        "hard_state",
        "messages",
        "committed_entries",
        "must_sync",
        "snapshot",
        "snapshot_sends",
        "read_states",
    )
)


def unchecked_ready(
    *,
    entries: tuple[Entry, ...],
    hard_state: HardState | None,
    messages: tuple[Message, ...],
    committed_entries: tuple[Entry, ...],
    must_sync: bool,
    snapshot: Snapshot | None = None,
    snapshot_sends: tuple[SnapshotSend, ...] = (),
    read_states: tuple[ReadState, ...] = (),
) -> Ready:
    """The Ready of these fields, set through its slots without `__post_init__`'s asserts:
    for Raft when its invariant checks are off (one Ready per persist, its asserts
    O(entries))."""
    ready = _new_object(Ready)
    values = (
        entries,
        hard_state,
        messages,
        committed_entries,
        must_sync,
        snapshot,
        snapshot_sends,
        read_states,
    )
    for setter, value in zip(_READY_SETTERS, values, strict=True):
        setter(ready, value)
    return ready


def encode_membership(voters: tuple[int, ...], learners: tuple[int, ...]) -> bytes:
    """The data of a MEMBERSHIP entry: voter count, voter ids, learner ids (one byte each)."""
    _check_membership(voters, learners)
    assert voters, "a cluster has at least one voter"
    return bytes([len(voters), *voters, *learners])


def decode_membership(data: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Inverse of `encode_membership`; entries are ours, so bad data is a bug (assert)."""
    assert data, "empty membership"
    voter_count = data[0]
    assert 1 <= voter_count <= len(data) - 1, data
    voters = tuple(data[1 : 1 + voter_count])
    learners = tuple(data[1 + voter_count :])
    _check_membership(voters, learners)
    return voters, learners
