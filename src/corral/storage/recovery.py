"""Start-up recovery and purge: which snapshot to load, which log to replay, what to drop.

Rules:
* Recovery loads the newest snapshot that passes every check and decodes, then opens the
  log after it (wal.open_wal); replaying the log is the consensus core's job (Raft
  re-delivers the committed entries after the snapshot, and they are applied by the
  same code as in normal operation). A corrupt snapshot is logged with its file and
  offset and the next older one is tried, which works when the log still reaches back
  to it (purge keeps the log of every retained snapshot). When nothing usable remains,
  StorageError says why, file by file.
* The state machine's decoding is passed in (`decode`): storage/ does not know trees.
  A decoder signals bad content with protocol.errors.DecodeError.
* Installing a snapshot received from a leader (`install_snapshot`): a new WAL segment
  that starts after the snapshot's index, then the snapshot file, then (caller's thread)
  `Wal.installed`. A crash before the snapshot file is durable leaves an empty segment
  after a gap, which open_wal removes: the state before the install is recovered. After
  it, recovery starts from the snapshot and reads only the new segment.
* Purge (zoo.cfg autopurge.snapRetainCount, `corral data purge`) keeps the newest
  `retain_count` snapshots and every segment that holds an entry after the oldest of
  them; never the newest segment. It only deletes, so running it beside a live server is
  safe (ZooKeeper's PurgeTxnLog makes the same promise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from corral.consensus.types import SnapshotMeta
from corral.protocol.errors import DecodeError
from corral.storage.fs import FileSystem
from corral.storage.snapshots import (
    SnapshotCorrupt,
    SnapshotFile,
    list_snapshots,
    read_snapshot,
    remove_temporaries,
    write_snapshot,
)
from corral.storage.wal import SEGMENT_SIZE_DEFAULT, StorageError, Wal, list_segments, open_wal

log = logging.getLogger("corral.storage")

State = TypeVar("State")


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered(Generic[State]):
    state: State | None  # None: no snapshot, start from an empty state machine
    snapshot: SnapshotMeta | None
    snapshot_path: str | None
    wal: Wal
    skipped: tuple[str, ...]  # why newer snapshots were not used


def recover(
    fs: FileSystem,
    data_dir: str,
    log_dir: str,
    *,
    decode: Callable[[bytes], State],
    segment_size_bytes: int = SEGMENT_SIZE_DEFAULT,
    force_sync: bool = True,
) -> Recovered[State]:
    fs.makedirs(data_dir)
    fs.makedirs(log_dir)
    for path in remove_temporaries(fs, data_dir):
        log.warning("removed %s, a snapshot whose writing a crash interrupted", path)
    skipped: list[str] = []
    for index, path in list_snapshots(fs, data_dir):
        try:
            snapshot: SnapshotFile = read_snapshot(fs, path)
            if snapshot.meta.index != index:
                raise SnapshotCorrupt(f"{path} offset 12: header says index {snapshot.meta.index}")
            state = decode(snapshot.content)
        except SnapshotCorrupt as e:
            skipped.append(str(e))
            log.error("snapshot unusable: %s; trying an older one", e)
            continue
        except DecodeError as e:
            skipped.append(f"{path}: content does not decode: {e}")
            log.error("snapshot unusable: %s: content does not decode: %s", path, e)
            continue
        try:
            wal = open_wal(
                fs,
                log_dir,
                snapshot=snapshot.meta,
                segment_size_bytes=segment_size_bytes,
                force_sync=force_sync,
            )
        except StorageError as e:
            if skipped:
                raise StorageError(
                    "no usable snapshot: " + "; ".join(skipped) + f"; and for {path}: {e}"
                ) from e
            raise
        if skipped:
            log.warning("recovering from the older snapshot %s and a longer log replay", path)
        return Recovered(
            state=state,
            snapshot=snapshot.meta,
            snapshot_path=path,
            wal=wal,
            skipped=tuple(skipped),
        )
    try:
        wal = open_wal(
            fs,
            log_dir,
            snapshot=None,
            segment_size_bytes=segment_size_bytes,
            force_sync=force_sync,
        )
    except StorageError as e:
        if skipped:
            raise StorageError("no usable snapshot: " + "; ".join(skipped) + f"; {e}") from e
        raise
    if skipped:
        log.warning("every snapshot is unusable; replaying the whole log from index 1")
    return Recovered(
        state=None,
        snapshot=None,
        snapshot_path=None,
        wal=wal,
        skipped=tuple(skipped),
    )


def install_snapshot(wal: Wal, data_dir: str, *, meta: SnapshotMeta, content: bytes) -> str:
    """The file half of installing a leader's snapshot (see the module rules); returns the
    snapshot's path. Blocks (fsyncs): run it where `Wal.write` runs, no write in flight;
    then call `wal.installed(meta)` on the caller's thread."""
    wal.start_after_snapshot(meta)
    return write_snapshot(wal.fs, data_dir, meta=meta, content=content)


def purge(fs: FileSystem, data_dir: str, log_dir: str, *, retain_count: int) -> list[str]:
    """Delete snapshots beyond the newest `retain_count` and the segments only they need;
    returns the deleted paths."""
    assert retain_count >= 1, retain_count
    snapshots = list_snapshots(fs, data_dir)
    if len(snapshots) == 0:
        return []
    kept = snapshots[:retain_count]
    oldest_kept_index = kept[-1][0]
    removed = []
    for _, path in snapshots[retain_count:]:
        fs.remove(path)
        removed.append(path)
    segments = list_segments(fs, log_dir)
    for position in range(len(segments) - 1):
        next_first_index = segments[position + 1][1]
        if next_first_index <= oldest_kept_index + 1:
            path = segments[position][2]
            fs.remove(path)
            removed.append(path)
    for path in removed:
        log.info("purged %s", path)
    return removed
