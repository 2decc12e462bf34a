"""The server's side of snapshot transfer: finding the snapshot file a leader streams.

Raft names the snapshot to send by its meta; the file must be that one (index, term and
membership — stored as sets, so in any order), read off the event loop; anything else
(gone, damaged, a different snapshot) sends nothing, and Raft asks again later.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corral.consensus.types import SnapshotMeta
from corral.server.durability import DurableLog
from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import list_snapshots, write_snapshot
from corral.storage.wal import open_wal

META = SnapshotMeta(index=42, term=3, voters=(3, 1, 2), learners=(9,))


def load(data_dir: Path, meta: SnapshotMeta) -> bytes | None:
    fs = OsFileSystem()
    wal = open_wal(fs, str(data_dir), snapshot=None, segment_size_bytes=4096)
    with ThreadPoolExecutor(max_workers=1) as io:
        durable = DurableLog(wal, io, str(data_dir))
        try:
            return asyncio.run(durable.load_snapshot(meta))
        finally:
            wal.close()


def test_the_snapshot_file_of_the_meta_is_loaded(tmp_path: Path) -> None:
    fs = OsFileSystem()
    write_snapshot(fs, str(tmp_path), meta=META, content=b"older" * 10)
    content = b"tree bytes " * 1000
    write_snapshot(
        fs,
        str(tmp_path),
        meta=SnapshotMeta(index=50, term=3, voters=(1, 2, 3), learners=(9,)),
        content=b"newer",
    )
    write_snapshot(fs, str(tmp_path), meta=META, content=content)  # replaces the first
    assert load(tmp_path, META) == content


def test_a_missing_damaged_or_different_snapshot_loads_nothing(tmp_path: Path) -> None:
    fs = OsFileSystem()
    assert load(tmp_path, META) is None  # no snapshot at all
    write_snapshot(fs, str(tmp_path), meta=META, content=b"x" * 100)
    assert load(tmp_path, SnapshotMeta(index=42, term=4, voters=(1, 2, 3))) is None
    assert load(tmp_path, SnapshotMeta(index=42, term=3, voters=(1, 2, 3))) is None  # learners
    assert load(tmp_path, SnapshotMeta(index=41, term=3, voters=(1, 2, 3), learners=(9,))) is None
    ((_, path),) = list_snapshots(fs, str(tmp_path))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-20] + bytes(20))  # damaged: the trailer is gone
    assert load(tmp_path, META) is None
