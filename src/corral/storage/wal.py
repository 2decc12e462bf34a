"""The write-ahead log: segment files of checksummed records; a consensus.LogStorage.

Files: `<log dir>/wal/<seq:016x>-<first index:016x>.wal`, `seq` counting up from 1.

    segment header  magic "CORRALW1" | first_index u64 | checksum (8 B, framing.checksum)
    records         framing.py records: ENTRY (term u64 | index u64 | kind u8 | data)
                    and HARD_STATE (term u64 | vote u32 | commit u64)
    zeros           the preallocated rest of the file

Rules:
* Writes and reads split by thread: `write(batch)` does the file IO (meant for a worker
  thread: it blocks on fsync), `written(batch)` then updates the in-memory log that the
  consensus core reads (on the caller's thread). Reads (`LogStorage`) never touch disk.
* Group commit is the caller's: one batch holds every entry and hard state that arrived
  while the previous batch was being written, and costs one fsync.
* A batch is written to the current segment with one pwrite at its end; it never grows
  the file while space remains: segments are preallocated (`segment_size_bytes`,
  zoo.cfg preAllocSize). A batch that does not fit starts a new segment, as does the
  first batch after `request_roll()` (after each snapshot, so purge can drop whole
  files). A new segment is made durable under a temporary name (preallocated, header and
  the current hard state written, fsync) and then renamed (fsync of the directory), so a
  crash during preallocation leaves only a `.tmp` file, removed at the next start.
* Every segment starts with the hard state of the moment, so the newest segment alone
  knows the hard state and older segments can be purged.
* An entry whose index is at or below the last one replaces the log from that index on
  (a new leader's log wins; committed entries are never replaced). On disk the new entry
  is appended; replay applies the same rule, so nothing is ever rewritten in place.
* Recovery (`open_wal`): segments are read from the one holding the entry after the
  snapshot. In the newest segment, whatever follows the last valid record (a torn write,
  or records of an unacknowledged batch behind a hole) is zeroed and logged, so that new
  records are never followed by stale bytes. Any other damage (framing.py tells torn
  from corrupt), damage in an older segment, a gap between segments, or a log that ends
  before the persisted commit index raises StorageError naming the file and offset,
  before anything is changed. Nothing is silently dropped. The one gap that is expected:
  an empty newest segment after a gap is the start of a snapshot install that a crash
  interrupted before the snapshot file was durable (`start_after_snapshot`); it is
  removed (logged), and the log before it is the state recovered.
* Installing a snapshot received from a leader: `start_after_snapshot` (new segment
  after the snapshot's index), then the snapshot file (storage/snapshots.py, atomic),
  then `installed` (memory). Recovery then finds either the old state (no snapshot file:
  the empty segment is removed) or the snapshot and the new segment after it.
* Write errors (OSError, including a failed fsync) propagate and stop the server: after
  a failed fsync the kernel may have dropped the data, and retrying proves nothing.
* `force_sync=False` (forceSync=no) skips the fsync of batches: for tests and benchmarks
  only, the server says so at start-up.
* Reading the log back is O(entries after the snapshot) in memory; `compact(index)`
  drops entries up to a snapshot from memory (files stay until purge).
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass, field

from corral.consensus.types import EMPTY_HARD_STATE, Entry, EntryKind, HardState, SnapshotMeta
from corral.storage.framing import (
    RecordKind,
    ScanEnd,
    checksum,
    encode_record,
    scan,
)
from corral.storage.fs import File, FileSystem

log = logging.getLogger("corral.storage")

WAL_DIR = "wal"
SEGMENT_MAGIC = b"CORRALW1"
_SEGMENT_HEAD = struct.Struct(">8sQ")
SEGMENT_HEADER_SIZE = _SEGMENT_HEAD.size + 8
_ENTRY_HEAD = struct.Struct(">QQB")
_HARD_STATE = struct.Struct(">QIQ")
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
SEGMENT_SIZE_DEFAULT = 64 * 1024 * 1024  # bytes; ZooKeeper's preAllocSize default


class StorageError(Exception):
    """The data on disk cannot be trusted or is incomplete; the server must not start.
    The message names the file and offset and says what an operator can do."""


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.wal"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    match = _SEGMENT_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def encode_segment_header(first_index: int) -> bytes:
    head = _SEGMENT_HEAD.pack(SEGMENT_MAGIC, first_index)
    return head + checksum(head)


def encode_entry(entry: Entry) -> bytes:
    head = _ENTRY_HEAD.pack(entry.term, entry.index, entry.kind)
    return encode_record(RecordKind.ENTRY, head, entry.data)


def decode_entry(payload: bytes) -> Entry:
    term, index, kind = _ENTRY_HEAD.unpack_from(payload)
    return Entry(term=term, index=index, kind=EntryKind(kind), data=payload[_ENTRY_HEAD.size :])


def encode_hard_state(hard_state: HardState) -> bytes:
    payload = _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit)
    return encode_record(RecordKind.HARD_STATE, payload)


def decode_hard_state(payload: bytes) -> HardState:
    term, vote, commit = _HARD_STATE.unpack(payload)
    return HardState(term=term, vote=vote, commit=commit)


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """What one persist writes: built on the caller's thread, written by `Wal.write`."""

    entries: tuple[Entry, ...]
    hard_state: HardState | None
    must_sync: bool
    data: bytes  # the encoded records


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentRecords:
    """One segment as read back: for recovery, `corral data inspect` and `dump`."""

    path: str
    seq: int
    first_index: int
    size_bytes: int
    entries: list[tuple[int, Entry]]  # (file offset, entry)
    hard_states: list[tuple[int, HardState]]
    end_offset: int
    end: ScanEnd
    reason: str


def read_segment(fs: FileSystem, path: str) -> SegmentRecords:
    """Parse one segment. A bad header raises StorageError; record damage is reported in
    `end`/`reason` for the caller to judge (only the newest segment may be torn)."""
    name = path.rpartition("/")[2]
    parsed = parse_segment_name(name)
    if parsed is None:
        raise StorageError(f"{path}: not a WAL segment name")
    seq, first_index = parsed
    data = fs.read(path)
    if len(data) < SEGMENT_HEADER_SIZE or data[:SEGMENT_HEADER_SIZE] != encode_segment_header(
        first_index
    ):
        raise StorageError(
            f"{path}: bad segment header at offset 0 (expected first index {first_index}); "
            "the file is damaged"
        )
    result = scan(data, SEGMENT_HEADER_SIZE)
    entries: list[tuple[int, Entry]] = []
    hard_states: list[tuple[int, HardState]] = []
    for record in result.records:
        try:
            if record.kind == RecordKind.ENTRY:
                entries.append((record.offset, decode_entry(record.payload)))
            elif record.kind == RecordKind.HARD_STATE:
                hard_states.append((record.offset, decode_hard_state(record.payload)))
            else:
                raise ValueError(f"record kind {record.kind.name} in a WAL segment")
        except (ValueError, struct.error, AssertionError) as e:
            # The checksum matched, so we wrote this: a bug or a foreign file.
            raise StorageError(f"{path}: undecodable record at offset {record.offset}: {e}") from e
    return SegmentRecords(
        path=path,
        seq=seq,
        first_index=first_index,
        size_bytes=len(data),
        entries=entries,
        hard_states=hard_states,
        end_offset=result.end_offset,
        end=result.end,
        reason=result.reason,
    )


def list_segments(fs: FileSystem, log_dir: str) -> list[tuple[int, int, str]]:
    """(seq, first_index, path) of every segment, oldest first."""
    directory = f"{log_dir}/{WAL_DIR}"
    found = []
    for name in fs.listdir(directory):
        parsed = parse_segment_name(name)
        if parsed is not None:
            found.append((parsed[0], parsed[1], f"{directory}/{name}"))
    return sorted(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRead:
    """The log as replay would see it, read without changing any file."""

    entries: list[Entry]  # contiguous, from after_index + 1
    hard_state: HardState | None
    note: str  # where and why reading stopped early ("" if the log ended cleanly)


def read_log(fs: FileSystem, log_dir: str, after_index: int) -> LogRead:
    """Every entry after `after_index`, read-only (tools, the snapshot writer). The
    newest segment may be appended to meanwhile: what follows its last valid record is
    reported in `note`, not an error. A gap raises StorageError."""
    entries: list[Entry] = []
    hard_state = None
    note = ""
    segments = list_segments(fs, log_dir)
    start = 0
    for position, (_, first_index, _) in enumerate(segments):
        if first_index <= after_index + 1:
            start = position
    for _, _, path in segments[start:]:
        segment = read_segment(fs, path)
        for offset, entry in segment.entries:
            if entry.index <= after_index:
                continue
            last = entries[-1].index if entries else after_index
            if entry.index > last + 1:
                raise StorageError(f"{path} offset {offset}: entry {entry.index} follows {last}")
            del entries[entry.index - after_index - 1 :]
            entries.append(entry)
        if segment.hard_states:
            hard_state = segment.hard_states[-1][1]
        if segment.end is not ScanEnd.END:
            note = f"{path} offset {segment.end_offset}: {segment.end.value} ({segment.reason})"
    if entries and entries[0].index != after_index + 1:
        raise StorageError(f"{log_dir}/{WAL_DIR}: the log starts at {entries[0].index}")
    return LogRead(entries=entries, hard_state=hard_state, note=note)


@dataclass(slots=True)
class _Segment:
    seq: int
    first_index: int
    path: str
    file: File
    offset: int  # where the next record goes
    capacity: int  # preallocated size


@dataclass(slots=True)
class Wal:
    """The durable log. Build it with `open_wal`."""

    fs: FileSystem
    log_dir: str
    segment_size_bytes: int
    force_sync: bool
    # -- the in-memory log (caller's thread) --
    _snapshot: SnapshotMeta | None = None  # the last durable snapshot
    _snapshot_index: int = 0  # entries up to here are compacted: not in memory
    _snapshot_term: int = 0
    _entries: list[Entry] = field(default_factory=list)  # _snapshot_index + 1 onwards
    _hard_state: HardState = EMPTY_HARD_STATE
    # -- the files (writer's thread) --
    _segment: _Segment | None = None
    _next_seq: int = 1
    _written_hard_state: HardState = EMPTY_HARD_STATE
    _written_last: int = 0  # the last index written to disk (writer's thread)
    _roll_requested: bool = False
    fsync_count: int = 0  # for tests and `mntr`-style stats

    @property
    def directory(self) -> str:
        return f"{self.log_dir}/{WAL_DIR}"

    # -- LogStorage -----------------------------------------------------------------

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot

    def initial_state(self) -> HardState:
        hard_state = self._hard_state
        if hard_state.commit < self._snapshot_index or hard_state.term < self._snapshot_term:
            # A snapshot is committed by definition, whatever the log says.
            hard_state = HardState(
                term=max(hard_state.term, self._snapshot_term),
                vote=hard_state.vote if hard_state.term >= self._snapshot_term else 0,
                commit=max(hard_state.commit, self._snapshot_index),
            )
        return hard_state

    def first_index(self) -> int:
        return self._snapshot_index + 1

    def last_index(self) -> int:
        return self._snapshot_index + len(self._entries)

    def term(self, index: int) -> int:
        assert self._snapshot_index <= index <= self.last_index(), (index, self.first_index())
        if index == self._snapshot_index:
            return self._snapshot_term
        return self._entries[index - self._snapshot_index - 1].term

    def entries(self, low: int, high: int) -> list[Entry]:
        assert self.first_index() <= low <= high <= self.last_index() + 1, (low, high)
        base = self._snapshot_index + 1
        return self._entries[low - base : high - base]

    # -- writing --------------------------------------------------------------------

    def make_batch(
        self, entries: tuple[Entry, ...], hard_state: HardState | None, must_sync: bool
    ) -> Batch:
        parts = [encode_entry(entry) for entry in entries]
        if hard_state is not None:
            parts.append(encode_hard_state(hard_state))
        return Batch(
            entries=entries, hard_state=hard_state, must_sync=must_sync, data=b"".join(parts)
        )

    def fits(self, batch: Batch) -> bool:
        """Whether `write(batch)` only appends to the current segment (no new file)."""
        segment = self._segment
        return (
            segment is not None
            and not self._roll_requested
            and segment.offset + len(batch.data) <= segment.capacity
        )

    def write(self, batch: Batch) -> None:
        """Write (and fsync when asked and forceSync) one batch. Blocks: run it off the
        event loop. Only one write at a time."""
        segment = self._segment
        if segment is None or not self.fits(batch):
            first = batch.entries[0].index if batch.entries else self._written_last + 1
            segment = self._roll(first, len(batch.data))
        if batch.data:
            segment.file.pwrite(segment.offset, batch.data)
            segment.offset += len(batch.data)
        if batch.entries:
            self._written_last = batch.entries[-1].index
        if batch.hard_state is not None:
            self._written_hard_state = batch.hard_state
        if batch.must_sync and self.force_sync:
            segment.file.fsync()
            self.fsync_count += 1

    def written(self, batch: Batch) -> None:
        """The batch is on disk: make it visible to readers (the consensus core)."""
        self._append_memory(batch.entries)
        if batch.hard_state is not None:
            self._hard_state = batch.hard_state

    def append_sync(
        self, entries: tuple[Entry, ...], hard_state: HardState | None, must_sync: bool = True
    ) -> None:
        """write + written on one thread (tools and tests)."""
        batch = self.make_batch(entries, hard_state, must_sync)
        self.write(batch)
        self.written(batch)

    def request_roll(self) -> None:
        """Start a new segment with the next batch (called after a snapshot)."""
        self._roll_requested = True

    def start_after_snapshot(self, snapshot: SnapshotMeta) -> None:
        """The file half of installing a snapshot received from a leader: start a new
        segment whose first index follows the snapshot, so that, once the snapshot file
        is durable too, recovery never reads the replaced entries again. Blocks: call it
        where `write` runs, with no write in flight, BEFORE writing the snapshot file.

        Crash safety (see open_wal): until the snapshot file is durable, the new segment
        is empty and starts after a gap in the log, which recovery recognises as an
        install that did not finish: it removes the segment and recovers the state
        before the install. Once the snapshot file is durable, recovery starts from it
        and reads the new segment only."""
        assert snapshot.index > self._written_hard_state.commit, (
            snapshot,
            self._written_hard_state,
        )
        self._written_last = snapshot.index
        self._roll(snapshot.index + 1, 0)

    def installed(self, snapshot: SnapshotMeta) -> None:
        """The memory half (caller's thread, after `start_after_snapshot` and the snapshot
        file are durable): the whole log is replaced by the snapshot's end."""
        assert snapshot.index > self._hard_state.commit, (snapshot, self._hard_state)
        self._entries = []
        self._snapshot = snapshot
        self._snapshot_index, self._snapshot_term = snapshot.index, snapshot.term

    def apply_snapshot(self, snapshot: SnapshotMeta) -> None:
        """Both halves on one thread (tools and tests); the caller writes the snapshot file
        in between when it needs crash safety."""
        self.start_after_snapshot(snapshot)
        self.installed(snapshot)

    def compact(self, index: int, snapshot: SnapshotMeta) -> None:
        """`snapshot` is durable and covers entries up to `index`: drop them from memory."""
        assert index <= snapshot.index <= self.last_index(), (index, snapshot)
        assert self.term(snapshot.index) == snapshot.term, (snapshot, self.term(snapshot.index))
        if self._snapshot is None or snapshot.index >= self._snapshot.index:
            self._snapshot = snapshot
        if index <= self._snapshot_index:
            return
        term = self.term(index)
        del self._entries[: index - self._snapshot_index]
        self._snapshot_index, self._snapshot_term = index, term

    def close(self) -> None:
        if self._segment is not None:
            if self.force_sync:
                self._segment.file.fsync()
            self._segment.file.close()
            self._segment = None

    # -- internals ------------------------------------------------------------------

    def _append_memory(self, entries: tuple[Entry, ...]) -> None:
        if not entries:
            return
        first = entries[0].index
        assert self.first_index() <= first <= self.last_index() + 1, (first, self.last_index())
        assert first > self._hard_state.commit, ("overwrites committed entry", first)
        del self._entries[first - self._snapshot_index - 1 :]
        self._entries.extend(entries)

    def _roll(self, first_index: int, batch_size: int) -> _Segment:
        old = self._segment
        if old is not None:
            # Non-newest segments must be complete: only the newest may be torn.
            old.file.fsync()
            self.fsync_count += 1
        seq = self._next_seq
        name = segment_name(seq, first_index)
        path = f"{self.directory}/{name}"
        tmp = path + ".tmp"
        head = encode_segment_header(first_index) + encode_hard_state(self._written_hard_state)
        capacity = max(self.segment_size_bytes, len(head) + batch_size)
        file = self.fs.open(tmp, create=True)
        file.allocate(capacity)
        file.pwrite(0, head)
        file.fsync()
        self.fs.rename(tmp, path)
        self.fs.fsync_dir(self.directory)
        self.fsync_count += 2
        if old is not None:
            old.file.close()
        self._next_seq = seq + 1
        self._roll_requested = False
        self._segment = _Segment(
            seq=seq,
            first_index=first_index,
            path=path,
            file=file,
            offset=len(head),
            capacity=capacity,
        )
        log.info("WAL segment %s started (%d bytes preallocated)", path, capacity)
        return self._segment


def create_wal(
    fs: FileSystem,
    log_dir: str,
    *,
    snapshot: SnapshotMeta | None,
    segment_size_bytes: int = SEGMENT_SIZE_DEFAULT,
    force_sync: bool = True,
) -> Wal:
    """A new, empty log that continues after `snapshot` (tools: import). The directory
    must hold no segment."""
    directory = f"{log_dir}/{WAL_DIR}"
    fs.makedirs(directory)
    if list_segments(fs, log_dir):
        raise StorageError(f"{directory}: already holds a log")
    wal = Wal(fs=fs, log_dir=log_dir, segment_size_bytes=segment_size_bytes, force_sync=force_sync)
    if snapshot is not None:
        wal._snapshot = snapshot
        wal._snapshot_index, wal._snapshot_term = snapshot.index, snapshot.term
        wal._written_last = snapshot.index
    return wal


def open_wal(
    fs: FileSystem,
    log_dir: str,
    *,
    snapshot: SnapshotMeta | None,
    segment_size_bytes: int = SEGMENT_SIZE_DEFAULT,
    force_sync: bool = True,
) -> Wal:
    """Recover the log after `snapshot` (None: from index 1); see the module rules."""
    wal = Wal(fs=fs, log_dir=log_dir, segment_size_bytes=segment_size_bytes, force_sync=force_sync)
    snapshot_index = snapshot.index if snapshot is not None else 0
    snapshot_term = snapshot.term if snapshot is not None else 0
    wal._snapshot = snapshot
    wal._snapshot_index, wal._snapshot_term = snapshot_index, snapshot_term
    directory = wal.directory
    fs.makedirs(directory)
    for name in fs.listdir(directory):
        if name.endswith(".tmp"):
            log.warning(
                "removing %s/%s, a segment whose creation a crash interrupted", directory, name
            )
            fs.remove(f"{directory}/{name}")
    segments = list_segments(fs, log_dir)
    if not segments:
        if snapshot is not None:
            raise StorageError(
                f"{directory}: no WAL segment, but a snapshot at index {snapshot_index} exists: "
                "the log (dataLogDir) is missing, so writes after the snapshot may be lost. "
                "Restore the log, or move the snapshot away to start from it alone"
            )
        wal._written_last = snapshot_index
        return wal
    wal._next_seq = segments[-1][0] + 1
    # The segment holding the entry after the snapshot, and every later one.
    start = 0
    for position, (_, first_index, _) in enumerate(segments):
        if first_index <= snapshot_index + 1:
            start = position
    if segments[start][1] > snapshot_index + 1:
        raise StorageError(
            f"{segments[start][2]}: the log starts at index {segments[start][1]}, but the "
            f"snapshot ends at {snapshot_index}: entries in between are missing"
        )
    last_index = snapshot_index
    hard_state = EMPTY_HARD_STATE
    previous_end_offset, previous_end, previous_reason = 0, ScanEnd.END, ""
    newest = segments[-1][2]
    end_of_newest = 0
    newest_end, newest_reason = ScanEnd.END, ""
    for _, first_index, path in segments[start:]:
        segment = read_segment(fs, path)
        if first_index > last_index + 1 and path == newest and not segment.entries:
            # Wal.start_after_snapshot ran but the received snapshot it was for never
            # became durable (a crash in between): the install did not happen.
            log.warning(
                "removing %s: the install of a snapshot at index %d was interrupted; "
                "recovering the state before it",
                path,
                first_index - 1,
            )
            fs.remove(path)
            fs.fsync_dir(directory)
            segments.pop()
            newest = segments[-1][2]
            end_of_newest = previous_end_offset
            newest_end, newest_reason = previous_end, previous_reason
            break
        if first_index > last_index + 1:
            raise StorageError(
                f"{path}: starts at index {first_index} but the log before it ends at "
                f"{last_index}: a segment is missing"
            )
        for offset, entry in segment.entries:
            if entry.index <= snapshot_index:
                if entry.index == snapshot_index and entry.term != snapshot_term:
                    raise StorageError(
                        f"{path} offset {offset}: entry {entry.index} has term {entry.term}, "
                        f"the snapshot says {snapshot_term}: log and snapshot disagree"
                    )
                continue
            if entry.index > last_index + 1:
                raise StorageError(
                    f"{path} offset {offset}: entry {entry.index} follows {last_index}: gap"
                )
            del wal._entries[entry.index - snapshot_index - 1 :]
            wal._entries.append(entry)
            last_index = entry.index
        if segment.hard_states:
            hard_state = segment.hard_states[-1][1]
        if segment.end is ScanEnd.CORRUPT or (segment.end is ScanEnd.TORN and path != newest):
            raise StorageError(
                f"{path} offset {segment.end_offset}: corrupt WAL record ({segment.reason}); "
                "refusing to start rather than serve wrong data. Restore this file from a "
                "replica or backup"
            )
        if path == newest:
            end_of_newest = segment.end_offset
            newest_end, newest_reason = segment.end, segment.reason
        previous_end_offset = segment.end_offset
        previous_end, previous_reason = segment.end, segment.reason
    if hard_state.commit > last_index:
        raise StorageError(
            f"{newest}: the log ends at index {last_index} but index {hard_state.commit} was "
            "committed: acknowledged entries are missing from the log"
        )
    if wal._entries and hard_state.term < wal._entries[-1].term:
        raise StorageError(f"{newest}: hard state term {hard_state.term} is behind the log")
    # Whatever follows the last valid record of the newest segment is an unacknowledged
    # write a crash cut short (or left whole but after a hole): zero it, so that the
    # records we append there are never followed by stale bytes.
    data = fs.read(newest)
    dirty_end = len(data.rstrip(b"\0"))
    if dirty_end > end_of_newest:
        log.warning(
            "%s offset %d: %s; %d bytes of an unacknowledged write discarded (zeroed)",
            newest,
            end_of_newest,
            f"torn write ({newest_reason})" if newest_end is ScanEnd.TORN else "hole",
            dirty_end - end_of_newest,
        )
        file = fs.open(newest, create=False)
        file.pwrite(end_of_newest, bytes(dirty_end - end_of_newest))
        file.fsync()
        file.close()
    wal._hard_state = hard_state
    wal._written_hard_state = hard_state
    wal._written_last = last_index
    # Continue in the newest segment, after its last valid record.
    seq, first_index, path = segments[-1]
    file = fs.open(path, create=False)
    capacity = file.size()
    wal._segment = _Segment(
        seq=seq,
        first_index=first_index,
        path=path,
        file=file,
        offset=end_of_newest,
        capacity=capacity,
    )
    return wal
