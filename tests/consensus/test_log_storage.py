"""MemoryLogStorage: the reference LogStorage."""

from __future__ import annotations

import pytest

from corral.consensus.log_storage import LogStorage, MemoryLogStorage
from corral.consensus.types import EMPTY_HARD_STATE, Entry, EntryKind, HardState


def _entry(term: int, index: int, data: bytes = b"x") -> Entry:
    return Entry(term=term, index=index, kind=EntryKind.NORMAL, data=data)


def test_empty_log() -> None:
    storage: LogStorage = MemoryLogStorage()
    assert storage.initial_state() == EMPTY_HARD_STATE
    assert storage.first_index() == 1
    assert storage.last_index() == 0
    assert storage.term(0) == 0
    assert storage.entries(1, 1) == []


def test_append_and_read_half_open_ranges() -> None:
    storage = MemoryLogStorage()
    storage.append([_entry(1, 1, b"a"), _entry(1, 2, b"b"), _entry(2, 3, b"c")])
    assert storage.last_index() == 3
    assert [storage.term(i) for i in range(4)] == [0, 1, 1, 2]
    assert [e.data for e in storage.entries(2, 4)] == [b"b", b"c"]
    assert storage.entries(3, 3) == []


def test_append_truncates_the_conflicting_suffix() -> None:
    storage = MemoryLogStorage()
    storage.append([_entry(1, 1, b"a"), _entry(1, 2, b"b"), _entry(1, 3, b"c")])
    storage.append([_entry(2, 2, b"B")])
    assert storage.last_index() == 2
    assert [(e.term, e.data) for e in storage.entries(1, 3)] == [(1, b"a"), (2, b"B")]


def test_append_refuses_gaps_and_committed_overwrites() -> None:
    storage = MemoryLogStorage()
    storage.append([_entry(1, 1)])
    with pytest.raises(AssertionError):
        storage.append([_entry(1, 3)])
    storage.set_hard_state(HardState(term=1, vote=1, commit=1))
    with pytest.raises(AssertionError):
        storage.append([_entry(2, 1)])


def test_hard_state_round_trips_and_term_never_goes_back() -> None:
    storage = MemoryLogStorage()
    storage.set_hard_state(HardState(term=3, vote=1, commit=0))
    assert storage.initial_state() == HardState(term=3, vote=1, commit=0)
    with pytest.raises(AssertionError):
        storage.set_hard_state(HardState(term=2, vote=1, commit=0))
