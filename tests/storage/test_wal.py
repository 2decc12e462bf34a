"""The WAL on the fault-injecting file system: round trips, preallocation, torn tails,
corruption, gaps. Randomized tests print the seed that reproduces them."""

from __future__ import annotations

import random

import pytest

from corral.consensus.types import Entry, EntryKind, HardState, SnapshotMeta
from corral.storage.framing import HEADER_SIZE, RecordKind, ScanEnd, encode_record, scan
from corral.storage.fs import CrashPoint, MemoryFileSystem
from corral.storage.wal import StorageError, Wal, list_segments, open_wal, read_segment

LOG_DIR = "/log"
SEGMENT_SIZE = 4096


def entry(index: int, term: int = 1, size: int = 20) -> Entry:
    return Entry(term=term, index=index, kind=EntryKind.NORMAL, data=bytes([index % 251]) * size)


def fresh(fs: MemoryFileSystem, segment_size: int = SEGMENT_SIZE) -> Wal:
    return open_wal(fs, LOG_DIR, snapshot=None, segment_size_bytes=segment_size)


def reopen(fs: MemoryFileSystem, snapshot: SnapshotMeta | None = None) -> Wal:
    return open_wal(fs, LOG_DIR, snapshot=snapshot, segment_size_bytes=SEGMENT_SIZE)


def write_entries(wal: Wal, first: int, last: int, term: int = 1, per_batch: int = 3) -> None:
    for low in range(first, last + 1, per_batch):
        batch = tuple(entry(i, term) for i in range(low, min(low + per_batch, last + 1)))
        wal.append_sync(batch, HardState(term=term, vote=1, commit=batch[-1].index))


def test_round_trip_and_log_storage_reads() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    assert (wal.first_index(), wal.last_index(), wal.term(0)) == (1, 0, 0)
    write_entries(wal, 1, 50)
    wal.close()
    again = reopen(fs)
    assert again.initial_state() == HardState(term=1, vote=1, commit=50)
    assert again.entries(1, 51) == [entry(i) for i in range(1, 51)]
    assert [again.term(i) for i in (0, 1, 50)] == [0, 1, 1]
    assert again.snapshot_meta() is None


def test_segments_are_preallocated_and_roll_when_full() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 200)
    segments = list_segments(fs, LOG_DIR)
    assert len(segments) > 1
    # Appends never grow a segment: every one has exactly the preallocated size.
    assert {fs.size(path) for _, _, path in segments} == {SEGMENT_SIZE}
    assert [first for _, first, _ in segments] == sorted(first for _, first, _ in segments)
    assert reopen(fs).entries(1, 201) == [entry(i) for i in range(1, 201)]


def test_a_batch_larger_than_a_segment_gets_a_segment_of_its_own() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    big = Entry(term=1, index=1, kind=EntryKind.NORMAL, data=b"b" * (3 * SEGMENT_SIZE))
    wal.append_sync((big,), HardState(term=1, vote=1, commit=1))
    assert reopen(fs).entries(1, 2) == [big]


def test_overwritten_suffix_is_replaced_on_replay() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    wal.append_sync(tuple(entry(i, 1) for i in range(1, 6)), HardState(term=1, vote=1, commit=2))
    wal.append_sync(tuple(entry(i, 2) for i in range(4, 7)), HardState(term=2, vote=0, commit=2))
    expected = [entry(1), entry(2), entry(3), entry(4, 2), entry(5, 2), entry(6, 2)]
    assert wal.entries(1, 7) == expected
    assert reopen(fs).entries(1, 7) == expected


def test_compaction_and_recovery_after_a_snapshot() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 30)
    meta = SnapshotMeta(index=20, term=1, voters=(1,))
    wal.compact(20, meta)
    assert (wal.first_index(), wal.last_index(), wal.term(20)) == (21, 30, 1)
    assert wal.snapshot_meta() == meta
    wal.request_roll()
    write_entries(wal, 31, 40)
    again = reopen(fs, meta)
    assert (again.first_index(), again.last_index()) == (21, 40)
    assert again.entries(21, 41) == [entry(i) for i in range(21, 41)]


def test_hard_state_alone_survives_in_a_new_segment() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 5)
    wal.request_roll()
    wal.append_sync((), HardState(term=7, vote=1, commit=5))
    assert reopen(fs).initial_state() == HardState(term=7, vote=1, commit=5)


@pytest.mark.parametrize("seed", range(40))
def test_crash_at_any_write_keeps_every_synced_entry(seed: int) -> None:
    """Stop the WAL at a random file operation, crash (unsynced sectors survive at
    random: torn writes), recover: every entry whose batch was fsynced is there, and
    the log is a contiguous prefix of what was written."""
    rng = random.Random(seed)
    fs = MemoryFileSystem()
    wal = fresh(fs, segment_size=rng.choice([8192, 32768, 65536]))
    fs.crash_after(rng.randrange(1, 120))
    acknowledged = 0
    index = 1
    try:
        for _ in range(200):
            count = rng.randrange(1, 6)
            batch = tuple(
                entry(i, size=rng.randrange(1, 1000)) for i in range(index, index + count)
            )
            wal.append_sync(batch, HardState(term=1, vote=1, commit=index - 1))
            index += count
            acknowledged = index - 1
    except CrashPoint:
        pass
    fs.crash(rng)
    again = open_wal(fs, LOG_DIR, snapshot=None)
    last = again.last_index()
    assert last >= acknowledged, f"lost acknowledged entries; reproduce with seed={seed}"
    for e in again.entries(1, last + 1):
        assert e.data == entry(e.index, size=len(e.data)).data, f"seed={seed}"
    assert [e.index for e in again.entries(1, last + 1)] == list(range(1, last + 1))
    # And the recovered log takes new writes that survive the next restart.
    again.append_sync((entry(last + 1),), HardState(term=1, vote=1, commit=last))
    assert open_wal(fs, LOG_DIR, snapshot=None).last_index() == last + 1, f"seed={seed}"


def test_torn_tail_is_truncated_and_zeroed() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 10)
    _, _, path = list_segments(fs, LOG_DIR)[-1]
    segment = read_segment(fs, path)
    end = segment.end_offset
    # A half-written record after the last good one: its second sector never made it.
    record = encode_record(RecordKind.ENTRY, b"\x01" * 1500)
    data = bytearray(fs.read(path))
    data[end : end + 600] = record[:600]
    fs.write_raw(path, bytes(data))
    again = reopen(fs)
    assert again.last_index() == 10
    assert fs.read(path)[end:].count(0) == SEGMENT_SIZE - end  # zeroed, not left behind


def test_flipped_bit_in_the_middle_stops_with_file_and_offset() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 10)
    _, _, path = list_segments(fs, LOG_DIR)[-1]
    segment = read_segment(fs, path)
    offset = segment.entries[3][0]
    fs.flip_bit(path, (offset + HEADER_SIZE + 5) * 8)
    with pytest.raises(StorageError) as info:
        reopen(fs)
    assert path in str(info.value)
    assert f"offset {offset}" in str(info.value)


def test_flipped_bit_in_the_last_record_is_not_taken_for_a_torn_write() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 10)
    _, _, path = list_segments(fs, LOG_DIR)[-1]
    last_offset = read_segment(fs, path).hard_states[-1][0]
    fs.flip_bit(path, (last_offset + HEADER_SIZE + 2) * 8 + 3)
    with pytest.raises(StorageError, match=f"offset {last_offset}"):
        reopen(fs)


def test_flipped_length_is_caught() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 10)
    _, _, path = list_segments(fs, LOG_DIR)[-1]
    offset = read_segment(fs, path).entries[2][0]
    fs.flip_bit(path, offset * 8 + 3)  # the length's top byte: it would run past the file
    with pytest.raises(StorageError, match=f"offset {offset}: corrupt"):
        reopen(fs)


def test_damage_in_an_older_segment_stops_even_if_it_looks_torn() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs, segment_size=1024)
    write_entries(wal, 1, 100)
    segments = list_segments(fs, LOG_DIR)
    assert len(segments) >= 3
    _, _, path = segments[0]
    offset = read_segment(fs, path).entries[-1][0]
    data = bytearray(fs.read(path))
    data[offset + HEADER_SIZE : offset + HEADER_SIZE + 10] = bytes(10)
    fs.write_raw(path, bytes(data))
    with pytest.raises(StorageError, match=path):
        reopen(fs)


def test_missing_segment_is_a_gap() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs, segment_size=1024)
    write_entries(wal, 1, 100)
    segments = list_segments(fs, LOG_DIR)
    fs.remove(segments[1][2])
    with pytest.raises(StorageError, match="missing"):
        reopen(fs)


def test_log_missing_behind_a_snapshot_is_refused() -> None:
    fs = MemoryFileSystem()
    with pytest.raises(StorageError, match="dataLogDir"):
        open_wal(fs, LOG_DIR, snapshot=SnapshotMeta(index=5, term=1, voters=(1,)))


def test_log_ending_before_commit_is_refused() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    write_entries(wal, 1, 10)
    wal.append_sync((), HardState(term=1, vote=1, commit=12))  # a hard state we never write
    with pytest.raises(StorageError, match="committed"):
        reopen(fs)


def test_segment_creation_interrupted_leaves_only_a_temporary_file() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs, segment_size=1024)
    write_entries(wal, 1, 20)
    wal.request_roll()
    fs.crash_after(2)  # create + allocate, then the crash: mid-preallocation
    with pytest.raises(CrashPoint):
        wal.append_sync((entry(21),), HardState(term=1, vote=1, commit=20))
    fs.crash(random.Random(1))
    again = open_wal(fs, LOG_DIR, snapshot=None, segment_size_bytes=1024)
    assert again.last_index() == 20
    assert not [n for n in fs.listdir(f"{LOG_DIR}/wal") if n.endswith(".tmp")]


def test_scan_classifies_zeros_torn_and_corrupt() -> None:
    good = encode_record(RecordKind.ENTRY, b"x" * 100)
    assert scan(good + bytes(1000), 0).end is ScanEnd.END
    long = encode_record(RecordKind.ENTRY, b"y" * 2000)
    torn = good + long[:520] + bytes(2000)
    assert scan(torn, 0).end is ScanEnd.TORN
    flipped = bytearray(good + long + bytes(100))
    flipped[len(good) + 1000] ^= 4
    result = scan(bytes(flipped), 0)
    assert (result.end, result.end_offset, len(result.records)) == (ScanEnd.CORRUPT, len(good), 1)


def test_installed_snapshot_replaces_the_log_even_across_a_crash() -> None:
    fs = MemoryFileSystem()
    wal = fresh(fs)
    wal.append_sync(tuple(entry(i) for i in range(1, 11)), HardState(term=1, vote=1, commit=5))
    meta = SnapshotMeta(index=20, term=3, voters=(1, 2, 3))
    wal.apply_snapshot(meta)
    assert (wal.first_index(), wal.last_index(), wal.term(20)) == (21, 20, 3)
    assert wal.snapshot_meta() == meta
    # A crash now: the stale entries 6..10 must not come back after the snapshot.
    fs.crash(random.Random(0))
    again = open_wal(fs, LOG_DIR, snapshot=meta, segment_size_bytes=SEGMENT_SIZE)
    assert (again.first_index(), again.last_index()) == (21, 20)
    assert again.initial_state().commit == 20
    again.append_sync(
        tuple(entry(i, 3) for i in range(21, 24)), HardState(term=3, vote=0, commit=23)
    )
    assert reopen(fs, meta).entries(21, 24) == [entry(i, 3) for i in range(21, 24)]


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 3])
def test_a_record_in_two_parts_is_the_record_of_their_join(data: bytes) -> None:
    head = b"\x00\x01head"
    joined = encode_record(RecordKind.ENTRY, head + data)
    assert encode_record(RecordKind.ENTRY, head, data) == joined
    result = scan(joined + bytes(64), 0)
    assert [record.payload for record in result.records] == [head + data]
