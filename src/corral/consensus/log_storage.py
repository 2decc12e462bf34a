"""The read side of the replicated log that Raft needs, and an in-memory implementation.

Rules:
* `LogStorage` holds only what the driver made durable: Raft reads it, never writes it.
  The driver writes (here `MemoryLogStorage.append` / `set_hard_state`; on disk, storage/'s
  WAL) before it calls `Raft.advance`.
* Indexes are 1-based and contiguous from `first_index()` to `last_index()`; an empty log
  has `last_index() == first_index() - 1`. `term(first_index() - 1)` is answerable too
  (0 for the empty log; the snapshot's term once compaction exists).
* `entries(low, high)` is the half-open range [low, high), like a Python slice.
* Asking for an index outside the log is a caller bug (assert), not an expected outcome.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

from corral.consensus.types import EMPTY_HARD_STATE, Entry, HardState


class LogStorage(Protocol):
    def initial_state(self) -> HardState:
        """The last persisted hard state (EMPTY_HARD_STATE for a fresh log)."""
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
        # No compaction yet: the log always starts at index 1.
        self._entries: list[Entry] = []

    def initial_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return 1

    def last_index(self) -> int:
        return len(self._entries)

    def term(self, index: int) -> int:
        assert 0 <= index <= self.last_index(), (index, self.last_index())
        if index == 0:
            return 0
        return self._entries[index - 1].term

    def entries(self, low: int, high: int) -> list[Entry]:
        assert self.first_index() <= low <= high <= self.last_index() + 1, (
            low,
            high,
            self.last_index(),
        )
        return self._entries[low - 1 : high - 1]

    def set_hard_state(self, hard_state: HardState) -> None:
        assert hard_state.term >= self._hard_state.term, (hard_state, self._hard_state)
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
        del self._entries[first - 1 :]
        self._entries.extend(entries)
