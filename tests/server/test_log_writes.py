"""Where the server writes its log batches: on the IO thread, or on the event loop when quiet.

A quiet server (the only requests since the last batch are this batch's writes) writes a
batch of at most one entry on the event loop, saving the hand-off to the IO thread and
back. Everything else goes to the IO thread: a larger batch, a busy server, a write
that needs a new segment, a moment when the IO thread has a job in hand, and every
write after one that was slow. Either way the batch is durable (fsynced) and readable
from the log before `persist` returns.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from corral.consensus.types import Entry, EntryKind, HardState
from corral.replica.outbox import Persist
from corral.server.durability import DurableLog
from corral.storage.fs import File, MemoryFileSystem
from corral.storage.wal import open_wal

# A slow disk, for these tests: far above scheduling noise, so no test depends on timing.
SLOW_S = 0.05


class _RecordingFile:
    """A file that records which thread fsynced it (and can be a slow disk)."""

    def __init__(self, inner: File, fs: RecordingFileSystem) -> None:
        self._inner = inner
        self._fs = fs

    def pwrite(self, offset: int, data: bytes) -> None:
        self._inner.pwrite(offset, data)

    def fsync(self) -> None:
        self._fs.fsync_threads.append(threading.get_ident())
        if self._fs.on_fsync is not None:
            self._fs.on_fsync()
        if self._fs.slow_fsyncs > 0:
            self._fs.slow_fsyncs -= 1
            time.sleep(SLOW_S * 2)
        self._inner.fsync()

    def allocate(self, size: int) -> None:
        self._inner.allocate(size)

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def size(self) -> int:
        return self._inner.size()

    def close(self) -> None:
        self._inner.close()


class RecordingFileSystem(MemoryFileSystem):
    def __init__(self) -> None:
        super().__init__()
        self.fsync_threads: list[int] = []
        self.slow_fsyncs = 0
        self.on_fsync: Callable[[], None] | None = None

    def open(self, path: str, *, create: bool) -> File:
        return _RecordingFile(super().open(path, create=create), self)


def _persist(first: int, count: int) -> Persist:
    entries = tuple(
        Entry(term=1, index=i, kind=EntryKind.NORMAL, data=b"txn %d" % i)
        for i in range(first, first + count)
    )
    return Persist(
        token=first,
        entries=entries,
        hard_state=HardState(term=1, vote=1, commit=first - 1),
        must_sync=True,
    )


def _write_threads(
    steps: list[tuple[int, bool]], *, slow_fsyncs: int = 0, segment_size_bytes: int = 1 << 20
) -> tuple[list[str], RecordingFileSystem]:
    """Persist batches of (entry count, quiet) in order; where each batch was fsynced:
    "loop" or "io". The log must hold every entry afterwards."""
    fs = RecordingFileSystem()
    fs.makedirs("/data")
    wal = open_wal(fs, "/data", snapshot=None, segment_size_bytes=segment_size_bytes)
    wal.append_sync((), HardState(term=1, vote=1, commit=0))  # the first segment exists
    fs.slow_fsyncs = slow_fsyncs
    fs.fsync_threads.clear()
    places: list[str] = []

    async def run() -> None:
        loop_thread = threading.get_ident()
        with ThreadPoolExecutor(max_workers=1) as io:
            durable = DurableLog(wal, io, "/data", inline_write_slow_s=SLOW_S)
            index = 1
            for count, quiet in steps:
                before = len(fs.fsync_threads)
                await durable.persist(_persist(index, count), quiet=quiet)
                index += count
                assert wal.last_index() == index - 1
                new = fs.fsync_threads[before:]
                assert new, "the batch was fsynced"
                places.append("loop" if new[-1] == loop_thread else "io")

    asyncio.run(run())
    total = sum(count for count, _ in steps)
    assert [e.index for e in wal.entries(1, total + 1)] == list(range(1, total + 1))
    wal.close()
    return places, fs


def test_a_quiet_single_entry_batch_is_written_on_the_event_loop() -> None:
    places, _ = _write_threads([(1, True), (1, True), (0, True)])
    assert places == ["loop", "loop", "loop"]


def test_busy_or_larger_batches_go_to_the_io_thread() -> None:
    places, _ = _write_threads([(1, False), (2, True), (5, False), (1, True)])
    assert places == ["io", "io", "io", "loop"]


def test_after_a_slow_write_batches_go_to_the_io_thread_until_one_is_fast() -> None:
    # The first write is slow (on the loop, since nothing was slow before it); the next
    # goes to the IO thread and is fast again, so the one after is back on the loop.
    places, _ = _write_threads([(1, True), (1, True), (1, True)], slow_fsyncs=1)
    assert places == ["loop", "io", "loop"]


def test_a_write_that_needs_a_new_segment_goes_to_the_io_thread() -> None:
    # Segments of 4 KiB and entries of 1.5 KiB: every few writes start a new segment.
    fs = RecordingFileSystem()
    fs.makedirs("/data")
    wal = open_wal(fs, "/data", snapshot=None, segment_size_bytes=4096)
    wal.append_sync((), HardState(term=1, vote=1, commit=0))
    places: list[tuple[bool, str]] = []

    async def run() -> None:
        loop_thread = threading.get_ident()
        with ThreadPoolExecutor(max_workers=1) as io:
            durable = DurableLog(wal, io, "/data", inline_write_slow_s=SLOW_S)
            for index in range(1, 9):
                entry = Entry(term=1, index=index, kind=EntryKind.NORMAL, data=bytes(1500))
                persist = Persist(token=index, entries=(entry,), hard_state=None, must_sync=True)
                segments = len(fs.listdir("/data/wal"))
                await durable.persist(persist, quiet=True)
                rolled = len(fs.listdir("/data/wal")) > segments
                place = "loop" if fs.fsync_threads[-1] == loop_thread else "io"
                places.append((rolled, place))

    asyncio.run(run())
    assert wal.last_index() == 8
    wal.close()
    assert {place for rolled, place in places if rolled} == {"io"}
    assert {place for rolled, place in places if not rolled} == {"loop"}


def test_no_quiet_write_while_the_io_thread_has_a_job() -> None:
    fs = RecordingFileSystem()
    fs.makedirs("/data")
    wal = open_wal(fs, "/data", snapshot=None, segment_size_bytes=1 << 20)
    wal.append_sync((), HardState(term=1, vote=1, commit=0))
    release = threading.Event()
    places: list[str] = []

    async def run() -> None:
        loop_thread = threading.get_ident()
        with ThreadPoolExecutor(max_workers=1) as io:
            durable = DurableLog(wal, io, "/data", inline_write_slow_s=SLOW_S)
            blocker = asyncio.ensure_future(durable.on_io_thread(lambda: release.wait(10)))
            await asyncio.sleep(0)  # the blocking job is submitted
            persist = asyncio.ensure_future(durable.persist(_persist(1, 1), quiet=True))
            await asyncio.sleep(0.05)
            assert not persist.done(), "the write waits behind the IO thread's job"
            release.set()
            await blocker
            await persist
            places.append("loop" if fs.fsync_threads[-1] == loop_thread else "io")
            await durable.persist(_persist(2, 1), quiet=True)
            places.append("loop" if fs.fsync_threads[-1] == loop_thread else "io")

    asyncio.run(run())
    assert wal.last_index() == 2
    wal.close()
    assert places == ["io", "loop"]


def test_start_begins_the_write_before_persist_waits_for_it() -> None:
    # The server starts a batch as the replica hands it out, then applies the previous
    # batch's entries while the disk works; persist() only waits for the write.
    fs = RecordingFileSystem()
    fs.makedirs("/data")
    wal = open_wal(fs, "/data", snapshot=None, segment_size_bytes=1 << 20)
    wal.append_sync((), HardState(term=1, vote=1, commit=0))
    in_fsync = threading.Event()
    release = threading.Event()
    blocking = _BlockingFsync(fs, in_fsync, release)

    async def run() -> None:
        with ThreadPoolExecutor(max_workers=1) as io:
            durable = DurableLog(wal, io, "/data", inline_write_slow_s=SLOW_S)
            persist = _persist(1, 3)
            blocking.armed = True
            durable.start(persist)
            # The IO thread is in the batch's fsync while the event loop goes on.
            assert await asyncio.to_thread(in_fsync.wait, 10)
            assert wal.last_index() == 0  # not visible before it is durable
            release.set()
            await durable.persist(persist)
            assert wal.last_index() == 3

    asyncio.run(run())
    wal.close()


class _BlockingFsync:
    """Makes the next fsync of `fs` (once armed) wait for `release`."""

    def __init__(
        self, fs: RecordingFileSystem, entered: threading.Event, release: threading.Event
    ) -> None:
        self.armed = False
        self._entered = entered
        self._release = release
        fs.on_fsync = self._on_fsync

    def _on_fsync(self) -> None:
        if self.armed:
            self.armed = False
            self._entered.set()
            self._release.wait(10)


def test_a_failed_write_on_the_loop_surfaces_in_persist_not_in_start() -> None:
    # start() runs inside the replica's call for a client or a peer; a disk error there
    # must reach the log writer (persist), as one on the IO thread does.
    fs = RecordingFileSystem()
    fs.makedirs("/data")
    wal = open_wal(fs, "/data", snapshot=None, segment_size_bytes=1 << 20)
    wal.append_sync((), HardState(term=1, vote=1, commit=0))

    def failing_fsync() -> None:
        raise OSError(5, "Input/output error")

    async def run() -> None:
        loop_thread = threading.get_ident()
        with ThreadPoolExecutor(max_workers=1) as io:
            durable = DurableLog(wal, io, "/data", inline_write_slow_s=SLOW_S)
            fs.on_fsync = failing_fsync
            persist = _persist(1, 1)
            durable.start(persist, quiet=True)  # written on the loop: the error is kept
            assert fs.fsync_threads[-1] == loop_thread
            with pytest.raises(OSError, match="Input/output error"):
                await durable.persist(persist)
            assert wal.last_index() == 0  # never made visible

    asyncio.run(run())
