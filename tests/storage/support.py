"""Helpers shared by the storage tests."""

from __future__ import annotations

import time
from pathlib import Path

from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import list_snapshots

SNAPSHOT_WAIT_S = 20


def wait_for_snapshots(data_dir: Path, count: int) -> None:
    """Until `data_dir` holds at least `count` snapshots (the writer runs in the
    background); fails after SNAPSHOT_WAIT_S."""
    deadline = time.monotonic() + SNAPSHOT_WAIT_S
    while len(list_snapshots(OsFileSystem(), str(data_dir))) < count:
        assert time.monotonic() < deadline, f"fewer than {count} snapshots in {data_dir}"
        time.sleep(0.05)
