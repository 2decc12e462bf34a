"""A real corral server restarted on its data directory: sessions survive (and expire
when their clients do not come back), zxids keep growing, a corrupt newest snapshot
falls back to an older one, a corrupt log record stops the server with file and offset.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.cli.launch import CorralServer, ServerStartError
from corral.protocol.constants import CreateMode, ErrorCode, OpCode
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    CreateRequest,
    ExistsRequest,
    GetDataRequest,
    GetDataResponse,
)
from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import SNAPSHOT_HEADER_SIZE, list_snapshots
from corral.storage.wal import list_segments, read_segment
from tests.storage.support import poke, wait_for_snapshots
from tests.support.raw_client import RawClient

EXPIRY_WAIT_S = 15


def start(data_dir: Path, **config: str) -> CorralServer:
    settings = {"tickTime": "200", **config}
    return CorralServer(
        tick_time_ms=200, config=settings, extra_args=["--data-dir", str(data_dir)]
    ).start()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="corral-restart-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def create(client: RawClient, path: str, data: bytes = b"", flags: int = 0) -> int:
    reply = client.request(
        OpCode.CREATE, CreateRequest(path=path, data=data, acl=OPEN_ACL_UNSAFE, flags=flags)
    )
    assert reply.err == ErrorCode.OK, (path, reply)
    return reply.zxid


def exists(client: RawClient, path: str) -> bool:
    reply = client.request(OpCode.EXISTS, ExistsRequest(path=path, watch=False))
    assert reply.err in (ErrorCode.OK, ErrorCode.NO_NODE), reply
    return reply.err == ErrorCode.OK


@pytest.mark.parametrize("how", ["kill", "sigterm"])
def test_sessions_survive_a_restart_and_zxids_keep_growing(data_dir: Path, how: str) -> None:
    server = start(data_dir)
    try:
        with RawClient(server.host, server.port) as client:
            response = client.connect(timeout_ms=8_000)
            assert response is not None
            zxid = create(client, "/owned", flags=CreateMode.EPHEMERAL)
        if how == "kill":
            server.kill()
        server.stop()
        server = start(data_dir)
        with RawClient(server.host, server.port) as client:
            resumed = client.connect(
                session_id=response.session_id,
                password=response.password,
                timeout_ms=8_000,
                last_zxid_seen=zxid,
            )
            assert resumed is not None and resumed.session_id == response.session_id
            assert resumed.timeout_ms > 0
            assert exists(client, "/owned")
            assert create(client, "/after") > zxid
    finally:
        server.stop()


def test_a_session_that_does_not_come_back_expires_after_the_restart(data_dir: Path) -> None:
    server = start(data_dir)
    try:
        with RawClient(server.host, server.port) as client:
            assert client.connect(timeout_ms=1_000) is not None
            create(client, "/gone", flags=CreateMode.EPHEMERAL)
        server.kill()
        server.stop()
        server = start(data_dir)
        with RawClient(server.host, server.port) as client:
            assert client.connect() is not None
            deadline = time.monotonic() + EXPIRY_WAIT_S
            while exists(client, "/gone") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not exists(client, "/gone"), "the session never expired after the restart"
    finally:
        server.stop()


def fill(server: CorralServer, count: int, data_dir: Path | None = None) -> None:
    """`count` znodes; with `data_dir`, a snapshot every 50 (waited for)."""
    with RawClient(server.host, server.port) as client:
        assert client.connect() is not None
        for i in range(count):
            create(client, f"/n{i:04d}", data=b"v%d" % i)
            if data_dir is not None and i % 50 == 49:
                wait_for_snapshots(data_dir, (i + 1) // 50, poke(client))


def test_corrupt_newest_snapshot_falls_back_to_an_older_one(data_dir: Path) -> None:
    server = start(data_dir, snapCount="40")
    try:
        fill(server, 200, data_dir)
        server.stop()
        fs = OsFileSystem()
        snapshots = list_snapshots(fs, str(data_dir))
        assert len(snapshots) >= 2
        newest = Path(snapshots[0][1])
        damaged = bytearray(newest.read_bytes())
        damaged[SNAPSHOT_HEADER_SIZE + 40] ^= 0x10
        newest.write_bytes(bytes(damaged))
        server = start(data_dir, snapCount="40")
        assert "trying an older one" in server.log_tail()
        with RawClient(server.host, server.port) as client:
            assert client.connect() is not None
            for i in (0, 123, 199):
                reply = client.request(
                    OpCode.GET_DATA, GetDataRequest(path=f"/n{i:04d}", watch=False)
                )
                assert isinstance(reply.body, GetDataResponse)
                assert reply.body.data == b"v%d" % i
    finally:
        server.stop()


def test_corrupt_log_record_stops_the_server_naming_file_and_offset(data_dir: Path) -> None:
    server = start(data_dir)
    try:
        fill(server, 50)
    finally:
        server.stop()
    fs = OsFileSystem()
    _, _, path = list_segments(fs, str(data_dir))[-1]
    offset = read_segment(fs, path).entries[10][0]
    damaged = bytearray(Path(path).read_bytes())
    damaged[offset + 30] ^= 0x01
    Path(path).write_bytes(bytes(damaged))
    server = CorralServer(tick_time_ms=200, extra_args=["--data-dir", str(data_dir)])
    with pytest.raises(ServerStartError) as info:
        server.start()
    message = str(info.value)
    assert "exited with code 1" in message
    assert f"{path} offset {offset}" in message


def test_autopurge_keeps_snap_retain_count_snapshots(data_dir: Path) -> None:
    server = start(data_dir, snapCount="40")
    try:
        fill(server, 300, data_dir)
    finally:
        server.stop()
    fs = OsFileSystem()
    before = list_snapshots(fs, str(data_dir))
    assert len(before) >= 5
    segments_before = list_segments(fs, str(data_dir))
    server = start(
        data_dir,
        snapCount="100000",
        **{"autopurge.snapRetainCount": "3", "autopurge.purgeInterval": "1"},
    )
    try:
        # Purge runs at start-up in the background; wait (bounded) for it.
        deadline = time.monotonic() + 10
        while len(list_snapshots(fs, str(data_dir))) > 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list_snapshots(fs, str(data_dir)) == before[:3]
        assert len(list_segments(fs, str(data_dir))) < len(segments_before)
        with RawClient(server.host, server.port) as client:
            assert client.connect() is not None
            assert exists(client, "/n0000") and exists(client, "/n0299")
    finally:
        server.stop()
    # And the purged directory still recovers.
    server = start(data_dir)
    try:
        with RawClient(server.host, server.port) as client:
            assert client.connect() is not None
            assert exists(client, "/n0150")
    finally:
        server.stop()
