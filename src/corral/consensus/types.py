"""Consensus records: log entries, hard state, roles, messages and the Ready batch.

Rules:
* Records are frozen, slotted, keyword-only and checked on construction; a record that
  breaks its own rules is our bug, so the checks are asserts.
* Indexes are 1-based; index 0 and term 0 mean "none" (the empty log's last entry).
* This module knows nothing of znodes, txns or sockets: an entry's `data` is opaque bytes.
* `Ready` carries the ordering contract (etcd-io/raft's Ready): the driver appends
  `entries` and persists `hard_state` (fsync when `must_sync`), only then sends `messages`,
  applies `committed_entries` in order, and finally calls `Raft.advance(ready)`.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

REPLICA_ID_MIN = 1
REPLICA_ID_MAX = 255  # the `server.N` range of zoo.cfg


class EntryKind(enum.IntEnum):
    NORMAL = 0  # a txn for the state machine
    NOOP = 1  # appended by every new leader to commit the entries of earlier terms
    MEMBERSHIP = 2  # a cluster membership change (a later issue)


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


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"
    # LEARNER (a non-voting replica, ZooKeeper's observer) arrives with multi-voter support.


class MessageKind(enum.Enum):
    """Replica-to-replica consensus messages (Raft's RPCs split into request/response)."""

    VOTE = "vote"
    VOTE_RESPONSE = "vote_response"
    APPEND = "append"
    APPEND_RESPONSE = "append_response"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESPONSE = "heartbeat_response"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One consensus message; the fields a kind does not use keep their defaults.

    log_term/index: for APPEND the entry preceding `entries`; for VOTE the candidate's
    last entry; for responses the index acknowledged or rejected.
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

    def __post_init__(self) -> None:
        assert REPLICA_ID_MIN <= self.from_id <= REPLICA_ID_MAX, self.from_id
        assert REPLICA_ID_MIN <= self.to_id <= REPLICA_ID_MAX, self.to_id
        assert self.term >= 0, self.term
        assert self.index >= 0, self.index
        assert self.commit >= 0, self.commit


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """One batch of work for the driver; see the module rules for the order."""

    entries: tuple[Entry, ...]  # append to stable storage BEFORE sending messages
    hard_state: HardState | None  # persist if not None (changed since the last Ready)
    messages: tuple[Message, ...]  # send only after entries/hard_state are durable
    committed_entries: tuple[Entry, ...]  # apply in order (they are durable on a quorum)
    must_sync: bool  # entries or term/vote changed -> fsync needed

    def __post_init__(self) -> None:
        for earlier, later in itertools.pairwise(self.entries):
            assert later.index == earlier.index + 1, (earlier.index, later.index)
            assert later.term >= earlier.term, (earlier.term, later.term)
        for earlier, later in itertools.pairwise(self.committed_entries):
            assert later.index == earlier.index + 1, (earlier.index, later.index)
        assert self.must_sync or not self.entries, "new entries always need an fsync"

    @property
    def is_empty(self) -> bool:
        return (
            not self.entries
            and self.hard_state is None
            and not self.messages
            and not self.committed_entries
        )
