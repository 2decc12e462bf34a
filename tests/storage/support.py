"""Helpers shared by the storage tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from corral.protocol.constants import ErrorCode, OpCode
from corral.protocol.records import SetDataRequest
from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import list_snapshots
from tests.support.raw_client import RawClient

SNAPSHOT_WAIT_S = 30
POKE_INTERVAL_S = 0.05


def wait_for_snapshots(data_dir: Path, count: int, poke: Callable[[], None]) -> None:
    """Until `data_dir` holds at least `count` snapshots; fails after SNAPSHOT_WAIT_S.

    The server starts a snapshot writer only when a write arrives past its threshold
    (ZooKeeper's rule too), and only one at a time, so `poke` (one write) is called
    between polls: a threshold crossed while a writer ran is noticed."""
    deadline = time.monotonic() + SNAPSHOT_WAIT_S
    while len(list_snapshots(OsFileSystem(), str(data_dir))) < count:
        assert time.monotonic() < deadline, f"fewer than {count} snapshots in {data_dir}"
        poke()
        time.sleep(POKE_INTERVAL_S)


def poke(client: RawClient) -> Callable[[], None]:
    """One write (setData of the root), to give the server a chance to start a writer."""

    def write() -> None:
        request = SetDataRequest(path="/", data=b"", version=-1)
        assert client.request(OpCode.SET_DATA, request).err == ErrorCode.OK

    return write
