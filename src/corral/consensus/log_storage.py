"""The read side of the replicated log that Raft needs, and an in-memory implementation.

Rules:
* `LogStorage` holds only what the driver made durable: Raft reads it, never writes it.
  The driver writes (here `MemoryLogStorage.append` / `set_hard_state` / `compact` /
  `apply_snapshot`; on disk, storage/'s WAL) before it calls `Raft.advance`.
* Indexes are 1-based and contiguous from `first_index()` to `last_index()`; an empty log
  has `last_index() == first_index() - 1`. `term(first_index() - 1)` is answerable too
  (0 for a log never compacted; the term of the last compacted entry otherwise).
* Compaction drops a prefix of the log that a durable snapshot covers; `snapshot_meta()`
  describes that snapshot (None if there is none), so that a restarted Raft can still
  send it to a peer that is too far behind.
* `entries(low, high)` is the half-open range [low, high), like a Python slice.
* Asking for an index outside the log is a caller bug (assert), not an expected outcome.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

from corral.consensus.types import EMPTY_HARD_STATE, Entry, HardState, SnapshotMeta


class LogStorage(Protocol):
    def initial_state(self) -> HardState:
        """The last persisted hard state (EMPTY_HARD_STATE for a fresh log)."""
        ...

    def snapshot_meta(self) -> SnapshotMeta | None:
        """The last durable snapshot; its index is at least first_index() - 1."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int:
        """Term of the entry at `index`, for first_index() - 1 <= index <= last_index()."""
        ...

    def entries(self, low: int, high: int) -> list[Entry]:
        """Entries [low, high), for first_index() <= low <= high <= last_index() + 1."""
        ...


class MemoryLogStorage:
    """Reference LogStorage in memory; standalone uses it until the WAL exists."""

    def __init__(self) -> None:
        self._hard_state = EMPTY_HARD_STATE
        self._snapshot: SnapshotMeta | None = None
        self._base_index = 0  # the entry before the first one held (compacted or none)
        self._base_term = 0
        self._entries: list[Entry] = []

    def initial_state(self) -> HardState:
        return self._hard_state

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot

    def first_index(self) -> int:
        return self._base_index + 1

    def last_index(self) -> int:
        return self._base_index + len(self._entries)

    def term(self, index: int) -> int:
        assert self._base_index <= index <= self.last_index(), (index, self._base_index)
        if index == self._base_index:
            return self._base_term
        return self._entries[index - self._base_index - 1].term

    def entries(self, low: int, high: int) -> list[Entry]:
        assert self.first_index() <= low <= high <= self.last_index() + 1, (
            low,
            high,
            self.first_index(),
            self.last_index(),
        )
        return self._entries[low - self._base_index - 1 : high - self._base_index - 1]

    def set_hard_state(self, hard_state: HardState) -> None:
        assert hard_state.term >= self._hard_state.term, (hard_state, self._hard_state)
        assert hard_state.commit <= self.last_index(), (hard_state, self.last_index())
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        """Append `entries`, first dropping the suffix of the log they overwrite.

        The entries must be contiguous and start at most one past the current end. Entries
        at or after the first new index are replaced (a new leader's log wins); committed
        entries are never replaced, which Raft guarantees and the assert checks.
        """
        if not entries:
            return
        first = entries[0].index
        assert self.first_index() <= first <= self.last_index() + 1, (first, self.last_index())
        for earlier, later in itertools.pairwise(entries):
            assert later.index == earlier.index + 1, (earlier.index, later.index)
            assert later.term >= earlier.term, (earlier.term, later.term)
        assert first > self._hard_state.commit, ("overwrites committed entry", first)
        assert entries[0].term >= self.term(first - 1), (entries[0].term, self.term(first - 1))
        del self._entries[first - self._base_index - 1 :]
        self._entries.extend(entries)

    def compact(self, index: int, snapshot: SnapshotMeta) -> None:
        """Drop entries up to `index`; `snapshot` (durable, index >= `index`) covers them.

        The snapshot holds applied (so committed) entries only, but the hard state here
        may lag: a driver may persist a commit-only change lazily (the replica does), and
        Raft recovers the commit index from the snapshot."""
        assert index <= snapshot.index <= self.last_index(), (index, snapshot)
        assert self._base_index <= index <= self.last_index(), (index, self._base_index)
        assert self.term(snapshot.index) == snapshot.term, snapshot
        base_term = self.term(index)
        del self._entries[: index - self._base_index]
        self._base_index = index
        self._base_term = base_term
        self._snapshot = snapshot

    def apply_snapshot(self, snapshot: SnapshotMeta) -> None:
        """Install a received snapshot: the whole log is replaced by the snapshot's end."""
        assert snapshot.index > self._hard_state.commit, (snapshot, self._hard_state)
        self._entries = []
        self._base_index = snapshot.index
        self._base_term = snapshot.term
        self._snapshot = snapshot
