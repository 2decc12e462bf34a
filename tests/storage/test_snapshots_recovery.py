"""Snapshot files, start-up recovery (fallback to older snapshots) and purge, on the
fault-injecting file system. The state machine here is opaque bytes: storage/ does not
know trees (the server tests cover a real DataTree)."""

from __future__ import annotations

import contextlib
import random

import pytest

from corral.consensus.types import Entry, EntryKind, HardState, SnapshotMeta
from corral.protocol.errors import DecodeError
from corral.storage.fs import CrashPoint, MemoryFileSystem
from corral.storage.recovery import Recovered, purge, recover
from corral.storage.snapshots import (
    SNAPSHOT_CHUNK_SIZE,
    SNAPSHOT_HEADER_SIZE,
    SnapshotCorrupt,
    list_snapshots,
    read_snapshot,
    write_snapshot,
)
from corral.storage.wal import StorageError, list_segments, open_wal

DATA_DIR = "/data"
LOG_DIR = "/log"
SEGMENT_SIZE = 2048


def entry(index: int) -> Entry:
    return Entry(term=1, index=index, kind=EntryKind.NORMAL, data=b"e%d" % index)


def state_at(index: int) -> bytes:
    return b"state@%d;" % index * 50


def decode(content: bytes) -> bytes:
    if not content.startswith(b"state@"):
        raise DecodeError("not a state")
    return content


def build(fs: MemoryFileSystem, last: int = 100, every: int = 30) -> None:
    """A log of `last` entries with a snapshot every `every` entries, as the server does:
    snapshot, compact, roll."""
    wal = open_wal(fs, LOG_DIR, snapshot=None, segment_size_bytes=SEGMENT_SIZE)
    for index in range(1, last + 1):
        wal.append_sync((entry(index),), HardState(term=1, vote=1, commit=index))
        if index % every == 0:
            meta = SnapshotMeta(index=index, term=1, voters=(1,))
            write_snapshot(fs, DATA_DIR, meta=meta, content=state_at(index))
            wal.compact(index, meta)
            wal.request_roll()
    wal.close()


def do_recover(fs: MemoryFileSystem) -> Recovered[bytes]:
    return recover(fs, DATA_DIR, LOG_DIR, decode=decode, segment_size_bytes=SEGMENT_SIZE)


def test_snapshot_round_trip() -> None:
    fs = MemoryFileSystem()
    meta = SnapshotMeta(index=7, term=3, voters=(1, 2, 3), learners=(9,))
    content = bytes(random.Random(1).randbytes(3 * SNAPSHOT_CHUNK_SIZE + 5))
    path = write_snapshot(fs, DATA_DIR, meta=meta, content=content)
    snapshot = read_snapshot(fs, path)
    assert (snapshot.meta, snapshot.content) == (meta, content)
    assert list_snapshots(fs, DATA_DIR) == [(7, path)]


@pytest.mark.parametrize("seed", range(10))
def test_any_flipped_bit_in_a_snapshot_is_detected(seed: int) -> None:
    rng = random.Random(seed)
    fs = MemoryFileSystem()
    content = rng.randbytes(2 * SNAPSHOT_CHUNK_SIZE + 100)
    path = write_snapshot(
        fs, DATA_DIR, meta=SnapshotMeta(index=5, term=1, voters=(1,)), content=content
    )
    bit = rng.randrange(fs.size(path) * 8)
    fs.flip_bit(path, bit)
    with pytest.raises(SnapshotCorrupt, match=path) as info:
        read_snapshot(fs, path)
    offset = int(str(info.value).split("offset ")[1].split(":")[0])
    # The offset names the damaged header or chunk: at or before the flipped byte.
    assert offset <= bit // 8, f"seed={seed}: {info.value}"
    if bit // 8 >= SNAPSHOT_HEADER_SIZE:
        assert bit // 8 - offset <= SNAPSHOT_CHUNK_SIZE + 64, f"seed={seed}: {info.value}"


def test_truncated_snapshot_is_detected() -> None:
    fs = MemoryFileSystem()
    path = write_snapshot(
        fs, DATA_DIR, meta=SnapshotMeta(index=5, term=1, voters=(1,)), content=state_at(5)
    )
    fs.write_raw(path, fs.read(path)[:-10])
    with pytest.raises(SnapshotCorrupt, match=path):
        read_snapshot(fs, path)


@pytest.mark.parametrize("crash_at", range(8))
def test_crash_while_writing_a_snapshot_leaves_the_previous_one(crash_at: int) -> None:
    fs = MemoryFileSystem()
    build(fs, last=40, every=30)
    fs.crash_after(crash_at)
    with contextlib.suppress(CrashPoint):
        write_snapshot(
            fs, DATA_DIR, meta=SnapshotMeta(index=40, term=1, voters=(1,)), content=state_at(40)
        )
    fs.crash(random.Random(crash_at))
    recovered = do_recover(fs)
    assert recovered.snapshot is not None
    assert recovered.state == state_at(recovered.snapshot.index)
    assert recovered.snapshot.index in (30, 40)
    assert recovered.wal.last_index() == 40
    assert not [n for n in fs.listdir(f"{DATA_DIR}/snapshots") if n.endswith(".tmp")]


def test_recovery_uses_the_newest_snapshot_and_the_log_after_it() -> None:
    fs = MemoryFileSystem()
    build(fs)
    recovered = do_recover(fs)
    assert recovered.snapshot == SnapshotMeta(index=90, term=1, voters=(1,))
    assert recovered.state == state_at(90)
    wal = recovered.wal
    assert (wal.first_index(), wal.last_index()) == (91, 100)
    assert wal.entries(91, 101) == [entry(i) for i in range(91, 101)]
    assert wal.initial_state().commit == 100


def test_corrupt_newest_snapshot_falls_back_to_an_older_one() -> None:
    fs = MemoryFileSystem()
    build(fs)
    newest = list_snapshots(fs, DATA_DIR)[0][1]
    fs.flip_bit(newest, (SNAPSHOT_HEADER_SIZE + 30) * 8)
    recovered = do_recover(fs)
    assert recovered.snapshot is not None and recovered.snapshot.index == 60
    assert recovered.state == state_at(60)
    assert recovered.wal.entries(61, 101) == [entry(i) for i in range(61, 101)]
    assert newest in recovered.skipped[0]


def test_undecodable_snapshot_content_falls_back_too() -> None:
    fs = MemoryFileSystem()
    build(fs)
    write_snapshot(
        fs, DATA_DIR, meta=SnapshotMeta(index=95, term=1, voters=(1,)), content=b"garbage"
    )
    recovered = do_recover(fs)
    assert recovered.snapshot is not None and recovered.snapshot.index == 90


def test_every_snapshot_corrupt_replays_the_whole_log_when_it_is_all_there() -> None:
    fs = MemoryFileSystem()
    build(fs)
    for _, path in list_snapshots(fs, DATA_DIR):
        fs.flip_bit(path, 3)
    recovered = do_recover(fs)
    assert recovered.state is None and recovered.snapshot is None
    assert recovered.wal.entries(1, 101) == [entry(i) for i in range(1, 101)]
    assert len(recovered.skipped) == 3


def test_every_snapshot_corrupt_and_log_purged_stops_naming_the_files() -> None:
    fs = MemoryFileSystem()
    build(fs, last=200, every=30)
    purge(fs, DATA_DIR, LOG_DIR, retain_count=3)
    snapshots = list_snapshots(fs, DATA_DIR)
    for _, path in snapshots:
        fs.flip_bit(path, 3)
    with pytest.raises(StorageError) as info:
        do_recover(fs)
    for _, path in snapshots:
        assert path in str(info.value)


def test_purge_keeps_retained_snapshots_and_the_log_they_need() -> None:
    fs = MemoryFileSystem()
    build(fs, last=300, every=30)
    segments_before = list_segments(fs, LOG_DIR)
    removed = purge(fs, DATA_DIR, LOG_DIR, retain_count=3)
    assert [index for index, _ in list_snapshots(fs, DATA_DIR)] == [300, 270, 240]
    assert removed and len(list_segments(fs, LOG_DIR)) < len(segments_before)
    assert list_segments(fs, LOG_DIR)[-1] == segments_before[-1]
    # Each retained snapshot still recovers, with its whole log tail.
    for index, path in list_snapshots(fs, DATA_DIR):
        wal = open_wal(
            fs, LOG_DIR, snapshot=read_snapshot(fs, path).meta, segment_size_bytes=SEGMENT_SIZE
        )
        assert wal.entries(index + 1, 301) == [entry(i) for i in range(index + 1, 301)]
    assert purge(fs, DATA_DIR, LOG_DIR, retain_count=3) == []


def test_snapshot_without_any_log_is_refused() -> None:
    fs = MemoryFileSystem()
    build(fs)
    for _, _, path in list_segments(fs, LOG_DIR):
        fs.remove(path)
    with pytest.raises(StorageError, match="log"):
        do_recover(fs)
