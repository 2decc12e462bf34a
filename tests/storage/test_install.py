"""Installing a snapshot received from a leader, with a crash at every write.

The install is: a new WAL segment after the snapshot's index, the snapshot file, the
memory switch, then the Ready's batch (entries after the snapshot, hard state). Whatever
write the crash hits (and whatever unsynced sectors reach the disk), recovery must give
either the state before the install or the snapshot with (a prefix of) the batch after
it, and a consensus core must start on it.
"""

from __future__ import annotations

import random

import pytest

from corral.consensus.raft import Raft
from corral.consensus.types import Entry, EntryKind, HardState, SnapshotMeta
from corral.protocol.errors import DecodeError
from corral.storage.fs import CrashPoint, MemoryFileSystem
from corral.storage.recovery import Recovered, install_snapshot, recover
from corral.storage.snapshots import write_snapshot
from corral.storage.wal import Wal, open_wal

DATA_DIR = "/data"
LOG_DIR = "/log"
SEGMENT_SIZE = 2048
INSTALLED = SnapshotMeta(index=20, term=3, voters=(1, 2, 3))
OLD_SNAPSHOT = SnapshotMeta(index=4, term=1, voters=(1, 2, 3))
AFTER = tuple(Entry(term=3, index=i, kind=EntryKind.NORMAL, data=b"n%d" % i) for i in (21, 22, 23))
CRASH_POINTS = 24  # more than the writes of one install and its batch


def entry(index: int, term: int = 1) -> Entry:
    return Entry(term=term, index=index, kind=EntryKind.NORMAL, data=b"e%d" % index)


def state_at(index: int) -> bytes:
    return b"state@%d;" % index * 40


def decode(content: bytes) -> bytes:
    if not content.startswith(b"state@"):
        raise DecodeError("not a state")
    return content


def do_recover(fs: MemoryFileSystem) -> Recovered[bytes]:
    return recover(fs, DATA_DIR, LOG_DIR, decode=decode, segment_size_bytes=SEGMENT_SIZE)


def old_log(fs: MemoryFileSystem, shape: str) -> tuple[SnapshotMeta | None, list[Entry]]:
    """The follower before the install: its snapshot and log."""
    wal = open_wal(fs, LOG_DIR, snapshot=None, segment_size_bytes=SEGMENT_SIZE)
    snapshot = None
    if shape == "wiped":  # a fresh member: only its first term on disk
        wal.append_sync((), HardState(term=2, vote=0, commit=0))
        wal.close()
        return None, []
    last = 10 if shape == "behind" else 25
    entries = [entry(i) for i in range(1, last + 1)]
    wal.append_sync(tuple(entries[:4]), HardState(term=1, vote=1, commit=4))
    if shape == "diverged":
        # An old snapshot and a long uncommitted tail that the leader's log replaces.
        write_snapshot(fs, DATA_DIR, meta=OLD_SNAPSHOT, content=state_at(4))
        wal.compact(4, OLD_SNAPSHOT)
        wal.request_roll()
        snapshot = OLD_SNAPSHOT
    wal.append_sync(tuple(entries[4:]), HardState(term=2, vote=1, commit=5))
    wal.close()
    return snapshot, entries[snapshot.index if snapshot is not None else 0 :]


def install(wal: Wal) -> None:
    """What DurableLog.persist does for a Ready carrying a snapshot (on one thread)."""
    install_snapshot(wal, DATA_DIR, meta=INSTALLED, content=state_at(INSTALLED.index))
    wal.installed(INSTALLED)
    batch = wal.make_batch(AFTER, HardState(term=3, vote=0, commit=23), must_sync=True)
    wal.write(batch)
    wal.written(batch)


def check_raft_starts(recovered: Recovered[bytes]) -> None:
    applied = recovered.snapshot.index if recovered.snapshot is not None else 0
    raft = Raft(
        replica_id=1,
        voters=(1, 2, 3),
        storage=recovered.wal,
        rng=random.Random(0),
        applied=applied,
    )
    assert raft.first_index == applied + 1
    assert raft.last_index == recovered.wal.last_index()


@pytest.mark.parametrize("shape", ["behind", "diverged", "wiped"])
@pytest.mark.parametrize("crash_at", [*range(CRASH_POINTS), None])
def test_a_crash_during_an_install_recovers_the_old_state_or_the_new_one(
    shape: str, crash_at: int | None
) -> None:
    fs = MemoryFileSystem()
    old_snapshot, old_entries = old_log(fs, shape)
    recovered = do_recover(fs)
    assert recovered.snapshot == old_snapshot
    fs.crash_after(crash_at)
    crashed = False
    try:
        install(recovered.wal)
    except CrashPoint:
        crashed = True
    if crash_at is None or crash_at == CRASH_POINTS - 1:
        assert not crashed, "CRASH_POINTS must exceed the writes of an install"
    fs.crash(random.Random(crash_at or 0))
    again = do_recover(fs)
    wal = again.wal
    reproduce = f"shape={shape} crash_at={crash_at}"
    if again.snapshot == INSTALLED:
        assert again.state == state_at(INSTALLED.index), reproduce
        assert wal.first_index() == INSTALLED.index + 1, reproduce
        assert wal.entries(wal.first_index(), wal.last_index() + 1) == list(
            AFTER[: wal.last_index() - INSTALLED.index]
        ), reproduce
        assert wal.initial_state().commit >= INSTALLED.index, reproduce
    else:
        # The old state exactly: its snapshot and its whole log. (An empty segment the
        # install started may remain when it follows the old log without a gap: it holds
        # nothing, and what is written there later replays after the old log.)
        assert crashed, reproduce
        assert again.snapshot == old_snapshot, reproduce
        assert wal.entries(wal.first_index(), wal.last_index() + 1) == old_entries, reproduce
    if crash_at is None:
        assert again.snapshot == INSTALLED
        assert wal.last_index() == 23
    check_raft_starts(again)
    # The recovered log takes new writes — in the old state, a new leader's entry that
    # replaces the uncommitted tail — and says the same after another restart.
    commit = wal.initial_state().commit
    next_index = wal.last_index() + 1 if again.snapshot == INSTALLED else commit + 1
    wal.append_sync((entry(next_index, term=4),), HardState(term=4, vote=0, commit=commit))
    expected = (again.snapshot, wal.entries(wal.first_index(), wal.last_index() + 1))
    wal.close()
    last = do_recover(fs)
    assert (last.snapshot, last.wal.entries(last.wal.first_index(), last.wal.last_index() + 1)) == (
        expected
    ), reproduce
