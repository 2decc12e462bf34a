"""Group commit and the log writer, in an in-process server: entries that arrive while
a batch is being written go to disk together in the next one (fewer fsyncs than
entries), and every write is acknowledged only once it is in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corral.protocol.constants import ErrorCode, OpCode
from corral.protocol.records import OPEN_ACL_UNSAFE, CreateRequest
from corral.storage.fs import OsFileSystem
from corral.storage.wal import open_wal
from tests.server.conftest import start_server, stop_server
from tests.storage.support import poke, wait_for_snapshots
from tests.support.raw_client import RawClient

WRITES = 300


def test_pipelined_writes_share_fsyncs_and_are_durable_when_acknowledged(tmp_path: Path) -> None:
    running, thread = start_server(tmp_path)
    try:
        wal = running.call(lambda: running.server._log.storage)
        fsyncs_before = running.call(lambda: wal.fsync_count)
        with RawClient(running.host, running.port) as client:
            assert client.connect() is not None
            xids = [
                client.send(
                    OpCode.CREATE,
                    CreateRequest(path=f"/n{i}", data=b"x", acl=OPEN_ACL_UNSAFE, flags=0),
                )
                for i in range(WRITES)
            ]
            zxids = []
            for xid in xids:
                reply = client.wait_reply(xid)
                assert reply.err == ErrorCode.OK
                zxids.append(reply.zxid)
                # Acknowledged: its entry is in the log already (written before replying).
        last_index = running.call(lambda: wal.last_index())
        assert last_index >= max(zxids)
        fsyncs = running.call(lambda: wal.fsync_count) - fsyncs_before
        assert 0 < fsyncs < WRITES, f"{fsyncs} fsyncs for {WRITES} pipelined writes"
    finally:
        stop_server(running, thread)
    # And they are all in the log files: a fresh read finds every one.
    again = open_wal(OsFileSystem(), str(tmp_path / "data"), snapshot=None)
    assert again.last_index() >= max(zxids)


def test_data_log_dir_holds_the_log_and_force_sync_no_is_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="corral.server")
    running, thread = start_server(
        tmp_path, dataLogDir=str(tmp_path / "log"), forceSync="no", snapCount="20"
    )
    try:
        with RawClient(running.host, running.port) as client:
            assert client.connect() is not None
            for i in range(60):
                request = CreateRequest(path=f"/n{i}", data=b"x", acl=OPEN_ACL_UNSAFE, flags=0)
                assert client.request(OpCode.CREATE, request).err == ErrorCode.OK
            wait_for_snapshots(tmp_path / "data", 1, poke(client))
        fsyncs = running.call(lambda: running.server._log.storage.fsync_count)
    finally:
        stop_server(running, thread)
    assert list((tmp_path / "log" / "wal").glob("*.wal"))
    assert not (tmp_path / "data" / "wal").exists()
    assert list((tmp_path / "data" / "snapshots").glob("snapshot.*"))
    assert any("forceSync=no" in record.getMessage() for record in caplog.records)
    # forceSync=no: batches are not fsynced (only new segments are made durable).
    assert fsyncs < 20
    running, thread = start_server(tmp_path, dataLogDir=str(tmp_path / "log"))
    try:
        with RawClient(running.host, running.port) as client:
            assert client.connect() is not None
            assert running.call(lambda: running.server.replica.tree.get("/n59")) is not None
    finally:
        stop_server(running, thread)
