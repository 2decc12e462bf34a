"""The server's storage: recovery at start, the log writer's IO thread, snapshots, purge.

Rules:
* Start-up (`open_durable`): recover the newest valid snapshot into a DataTree (an empty
  tree when there is none) and open the WAL after it; the Replica's Raft then replays
  the committed entries after the snapshot through the normal apply path.
* Every file operation of the running server happens on one IO thread (`io`: a single
  worker), so the event loop never blocks on the disk and file operations never race:
  log batches, segment creation, snapshot installs, purge. Two exceptions: reading a
  snapshot file to send it, read-only, on a thread of its own (`load_snapshot` says why
  that cannot race), and a quiet server's small log batch, written on the event loop
  while the IO thread has nothing in hand (`persist` says why). While a batch is being
  written and fsynced, new proposals accumulate in the consensus core and go out
  together in the next batch (group commit; the replica hands out one persist at a
  time).
* Snapshots are written by a separate process (server/snapshotter.py) that rebuilds the
  tree at the chosen index from the previous snapshot and the log, as recovery does, and
  writes it (temp, fsync, rename, fsync dir). The server only spawns it (vfork + exec,
  from a thread) and awaits its exit in a thread, so the event loop hardly notices,
  however large the tree (worst loop lag measured with a 1 GB heap: ~2 ms; fork() of
  the server instead: 30-70 ms, copying page tables). The price is CPU on the other
  core (`corral data bench-restart` reports it). The writer dies with the server, and a
  half-written snapshot is only ever a `.tmp` file.
* When to snapshot: after a random count of applied txns in [snapCount/2+1, snapCount]
  since the last one (ZooKeeper's randomisation, so replicas do not snapshot together);
  one snapshot at a time, at the index, term and membership Raft has in force there
  (`Replica.snapshot_meta`). After a snapshot, the replica tells Raft
  (`Replica.on_snapshot_durable`: Raft.compact), then the in-memory log drops the entries
  it covers and the WAL starts a new segment, so that purge can delete whole files. A
  peer that needs compacted entries gets the snapshot instead (chunks of the snapshot
  file's content, read on the IO thread: `DurableLog.load_snapshot`).
* A snapshot received from the leader is installed by `DurableLog.persist`: new WAL
  segment after it, the snapshot file, then the batch (wal.py says why a crash anywhere
  recovers the old state or the new one).
* Purge runs every autopurge.purgeInterval hours (0: never, ZooKeeper's default), first
  at start-up, keeping autopurge.snapRetainCount snapshots (at least 3), standalone or
  in an ensemble alike. It never removes the newest snapshot, which is the one a leader
  sends; a send whose file a purge removed meanwhile is skipped and Raft asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import corral
from corral.consensus.types import Snapshot, SnapshotMeta
from corral.protocol.errors import DecodeError
from corral.replica.outbox import Persist
from corral.server.config import ServerConfig
from corral.storage.fs import FileSystem, OsFileSystem
from corral.storage.recovery import install_snapshot, purge, recover
from corral.storage.snapshots import SnapshotCorrupt, list_snapshots, read_snapshot
from corral.storage.wal import Batch, Wal
from corral.tree.snapshot import decode_snapshot
from corral.tree.tree import DataTree

log = logging.getLogger("corral.server")

_T = TypeVar("_T")

# Quiet writes on the event loop (DurableLog.persist): at most this many entries, and
# only while the last write took less than this.
INLINE_WRITE_ENTRIES_MAX = 1
INLINE_WRITE_SLOW_S = 0.001


def same_snapshot(held: SnapshotMeta, wanted: SnapshotMeta) -> bool:
    """Whether a snapshot file's meta is `wanted`: the file stores the membership as sets
    (storage/snapshots.py), Raft keeps the order it was given."""
    return (held.index, held.term, sorted(held.voters), sorted(held.learners)) == (
        wanted.index,
        wanted.term,
        sorted(wanted.voters),
        sorted(wanted.learners),
    )


class DurableLog:
    """The replica's log and snapshots on disk: `persist` writes and fsyncs off the event
    loop (or, when the server is quiet, on it: `persist` says when); `load_snapshot`
    reads a snapshot file off the event loop too."""

    def __init__(
        self,
        wal: Wal,
        io: ThreadPoolExecutor,
        data_dir: str,
        *,
        inline_write_slow_s: float = INLINE_WRITE_SLOW_S,
    ) -> None:
        self.storage = wal
        self._io = io
        self._data_dir = data_dir
        self._inline_write_slow_s = inline_write_slow_s
        self._io_jobs = 0  # submitted to the IO thread and not finished
        # The batch `start` began: (persist token, batch, its write on the IO thread or
        # None when it was written on the loop).
        self._started: tuple[int, Batch, asyncio.Future[None] | None] | None = None
        self._last_write_s = 0.0  # how long the last batch took to write (and fsync)

    def _submit(self, job: Callable[[], _T]) -> asyncio.Future[_T]:
        self._io_jobs += 1
        future = asyncio.get_running_loop().run_in_executor(self._io, job)
        future.add_done_callback(self._io_job_done)
        return future

    def _io_job_done(self, _: asyncio.Future[Any]) -> None:
        self._io_jobs -= 1

    async def on_io_thread(self, job: Callable[[], _T]) -> _T:
        """Run `job` on the IO thread (every file operation but the quiet writes)."""
        return await self._submit(job)

    def start(self, persist: Persist, *, quiet: bool = False) -> None:
        """Begin writing `persist`'s batch now; `persist(persist)` then waits for it.
        The server calls it as soon as the replica hands the persist out (before the
        replica applies what the previous batch committed), so the disk and the event
        loop work at the same time. `quiet`: nothing else is waiting to be served.

        A quiet, small batch that appends to the current segment is written on the
        event loop: with one client waiting for one write, handing the fsync to the IO
        thread and back costs about 40 us of a ~300 us round trip (thread wake-up, the
        GIL, the loop's wake-up), and the loop has nothing else to do meanwhile. Under
        load (batches of several entries, or other requests arriving), and after a slow
        write (a disk whose fsync takes over INLINE_WRITE_SLOW_S), batches go to the IO
        thread so that reads are served during the fsync. A persist that installs a
        snapshot is written by `persist` itself (the snapshot file goes first).
        """
        assert self._started is None, "one batch at a time"
        if persist.snapshot is not None:
            return
        wal = self.storage
        batch = wal.make_batch(persist.entries, persist.hard_state, persist.must_sync)
        if (
            quiet
            and len(persist.entries) <= INLINE_WRITE_ENTRIES_MAX
            and self._io_jobs == 0  # file operations never race (module docstring)
            and self._last_write_s < self._inline_write_slow_s
            and wal.fits(batch)
        ):
            try:
                self._timed_write(batch)
            except OSError as e:
                # `start` runs inside the replica's call (a client's request, a peer's
                # message): the error must surface where a write on the IO thread's
                # would, in `persist`, which the log writer awaits (it stops the server).
                failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                failed.set_exception(e)
                self._started = (persist.token, batch, failed)
                return
            self._started = (persist.token, batch, None)
        else:
            self._started = (persist.token, batch, self._submit(lambda: self._timed_write(batch)))

    async def persist(self, persist: Persist, *, quiet: bool = False) -> None:
        """Write (and fsync) one batch, or wait for the write `start` began."""
        wal = self.storage
        snapshot = persist.snapshot
        if snapshot is not None:
            # The order makes a crash anywhere recover a consistent state (wal.py):
            # new segment after the snapshot, then the snapshot file, then memory.
            await self.on_io_thread(lambda: self._install_files(snapshot))
            wal.installed(snapshot.meta)
            batch = wal.make_batch(persist.entries, persist.hard_state, persist.must_sync)
            await self.on_io_thread(lambda: self._timed_write(batch))
            wal.written(batch)
            return
        if self._started is None:
            self.start(persist, quiet=quiet)
        assert self._started is not None
        token, batch, writing = self._started
        assert token == persist.token, (token, persist.token)
        try:
            if writing is not None:
                await writing
        finally:
            self._started = None
        wal.written(batch)

    def _timed_write(self, batch: Batch) -> None:
        started_s = time.monotonic()
        self.storage.write(batch)
        self._last_write_s = time.monotonic() - started_s

    def _install_files(self, snapshot: Snapshot) -> None:
        path = install_snapshot(
            self.storage, self._data_dir, meta=snapshot.meta, content=snapshot.data
        )
        log.info(
            "installed snapshot %s from the leader (index %d, term %d, %d bytes)",
            path,
            snapshot.meta.index,
            snapshot.meta.term,
            len(snapshot.data),
        )

    async def load_snapshot(self, meta: SnapshotMeta) -> bytes | None:
        """The content of the durable snapshot file for `meta`; None when it is gone
        (purged), damaged, or describes something else.

        Read on a thread of its own, not the IO thread: a large snapshot takes a while to
        read and check, and the leader's log writes must not wait behind it. Nothing
        races: the file is complete under its name, and a purge that removes it meanwhile
        makes the read fail (None)."""
        return await asyncio.to_thread(self._read_snapshot, meta)

    def _read_snapshot(self, meta: SnapshotMeta) -> bytes | None:
        fs = self.storage.fs
        for index, path in list_snapshots(fs, self._data_dir):
            if index != meta.index:
                continue
            try:
                snapshot = read_snapshot(fs, path)
            except (SnapshotCorrupt, OSError) as e:
                log.error("cannot send snapshot %s: %s", path, e)
                return None
            if not same_snapshot(snapshot.meta, meta):
                log.error("cannot send snapshot %s: it holds %s, not %s", path, snapshot.meta, meta)
                return None
            return snapshot.content
        return None


def open_durable(config: ServerConfig, fs: FileSystem | None = None) -> tuple[DataTree, Wal]:
    """Recover (tree, wal) from config's dataDir / dataLogDir.
    Raises storage.wal.StorageError when the data cannot be trusted."""
    fs = fs or OsFileSystem()

    def new_tree() -> DataTree:
        return DataTree(
            extended_types_enabled=config.extended_types_enabled,
            skip_acl=config.skip_acl,
            enforce_quota=config.enforce_quota,
        )

    def decode(content: bytes) -> DataTree:
        try:
            return decode_snapshot(
                content,
                extended_types_enabled=config.extended_types_enabled,
                skip_acl=config.skip_acl,
                enforce_quota=config.enforce_quota,
            )
        except (ValueError, AssertionError) as e:
            raise DecodeError(str(e)) from e

    if not config.force_sync:
        log.warning(
            "forceSync=no: log writes are NOT fsynced; acknowledged writes can be lost "
            "on power failure or kernel crash (for tests and benchmarks only)"
        )
    started = time.monotonic()
    recovered = recover(
        fs,
        config.data_dir,
        config.log_dir,
        decode=decode,
        segment_size_bytes=config.pre_alloc_size_kb * 1024,
        force_sync=config.force_sync,
    )
    tree = recovered.state if recovered.state is not None else new_tree()
    wal = recovered.wal
    log.info(
        "recovered in %.0f ms: snapshot %s (index %d, %d znodes, %d sessions), log %d..%d, "
        "commit %d",
        (time.monotonic() - started) * 1000,
        recovered.snapshot_path or "none",
        recovered.snapshot.index if recovered.snapshot is not None else 0,
        tree.node_count,
        len(tree.sessions),
        wal.first_index(),
        wal.last_index(),
        wal.initial_state().commit,
    )
    return tree, wal


def _writer_environment() -> dict[str, str]:
    """The server's environment, with this very corral package first on the path: the
    writer must run the same code, however the server found it."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(corral.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


class Snapshotter:
    """Decides when to snapshot and runs one snapshot writer process at a time."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        wal: Wal,
        rng: random.Random,
        on_durable: Callable[[SnapshotMeta], None],
    ) -> None:
        self._config = config
        self._wal = wal
        self._rng = rng
        self._on_durable = on_durable
        snapshot = wal.snapshot_meta()
        self._last_index = snapshot.index if snapshot is not None else 0  # or last attempt
        self._threshold = self._next_threshold()
        self._in_progress = False
        self._stopping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self.snapshots_written = 0

    def _next_threshold(self) -> int:
        snap_count = self._config.snap_count
        return self._rng.randint(snap_count // 2 + 1, snap_count)

    @property
    def in_progress(self) -> bool:
        return self._in_progress

    def note_installed(self, meta: SnapshotMeta) -> None:
        """A snapshot from the leader was installed: count the next threshold from it."""
        self._last_index = max(self._last_index, meta.index)

    def maybe_snapshot(self, meta: SnapshotMeta | None, tasks: asyncio.TaskGroup) -> None:
        """Call after applying entries with `Replica.snapshot_meta()` (the applied index,
        its term and the membership Raft has in force there); starts a snapshot writer
        when it is time."""
        if self._in_progress or self._stopping or meta is None:
            return
        index = meta.index
        if index - self._last_index < self._threshold:
            return
        if not self._wal.first_index() <= index <= self._wal.last_index():
            return  # not in the log (just installed, or compacted): wait for the next one
        config = self._config
        argv = [
            sys.executable,
            "-m",
            "corral.server.snapshotter",
            "--data-dir",
            config.data_dir,
            "--log-dir",
            config.log_dir,
            "--index",
            str(meta.index),
            "--term",
            str(meta.term),
            "--voters",
            ",".join(map(str, meta.voters)),
            "--learners",
            ",".join(map(str, meta.learners)),
            "--parent-pid",
            str(os.getpid()),
        ]
        if config.extended_types_enabled:
            argv.append("--extended-types")
        if config.skip_acl:
            argv.append("--skip-acl")
        if config.enforce_quota:
            argv.append("--enforce-quota")
        self._in_progress = True
        self._last_index = index
        self._threshold = self._next_threshold()
        self._task = tasks.create_task(self._run(argv, meta))

    async def _run(self, argv: list[str], meta: SnapshotMeta) -> None:
        started = time.monotonic()
        try:
            # Popen in a thread: the loop never waits, not even for the vfork + exec.
            process = await asyncio.to_thread(
                subprocess.Popen,
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=_writer_environment(),
            )
        except OSError as e:
            self._in_progress = False
            log.error("snapshot at index %d: cannot start the writer: %s", meta.index, e)
            return
        self._process = process
        if self._stopping:
            process.kill()
        log.info("snapshot at index %d: writer pid %d started", meta.index, process.pid)
        code = await asyncio.to_thread(process.wait)
        self._process = None
        self._in_progress = False
        if code != 0:
            log.error("snapshot at index %d failed (writer exit code %d)", meta.index, code)
            return
        self.snapshots_written += 1
        log.info(
            "snapshot at index %d written in %.0f ms",
            meta.index,
            (time.monotonic() - started) * 1000,
        )
        if not self._stopping:
            self._on_durable(meta)  # Raft compacts first, then the WAL

    async def stop(self) -> None:
        """Abandon a snapshot in progress (its .tmp file is removed at the next start)."""
        self._stopping = True
        process = self._process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        if self._task is not None:
            await self._task


async def purge_loop(config: ServerConfig, durable: DurableLog, stopping: asyncio.Event) -> None:
    """autopurge: at start-up and every purgeInterval hours (0 disables it)."""
    interval_s = config.autopurge_purge_interval_hours * 3600
    if interval_s <= 0:
        return
    fs = OsFileSystem()
    while not stopping.is_set():
        try:
            await durable.on_io_thread(
                lambda: purge(
                    fs,
                    config.data_dir,
                    config.log_dir,
                    retain_count=config.autopurge_snap_retain_count,
                ),
            )
        except OSError as e:
            log.error("autopurge failed: %s", e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
