"""`corral data inspect | dump | purge` on a directory written by a real server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.cli.launch import CorralServer
from corral.cli.main import main
from corral.protocol.constants import ErrorCode, OpCode
from corral.protocol.records import OPEN_ACL_UNSAFE, CreateRequest
from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import SNAPSHOT_HEADER_SIZE, list_snapshots
from corral.storage.wal import list_segments
from tests.storage.support import poke, wait_for_snapshots
from tests.support.raw_client import RawClient

NODES = 150


@pytest.fixture(scope="module")
def written() -> Iterator[Path]:
    """A data dir with several snapshots and segments, from a real server."""
    path = Path(tempfile.mkdtemp(prefix="corral-data-cli-"))
    server = CorralServer(
        config={"snapCount": "30", "preAllocSize": "8"},
        extra_args=["--data-dir", str(path / "data")],
    ).start()
    try:
        with RawClient(server.host, server.port) as client:
            assert client.connect() is not None
            for i in range(NODES):
                request = CreateRequest(
                    path=f"/node{i:03d}", data=b"value-%d" % i, acl=OPEN_ACL_UNSAFE, flags=0
                )
                assert client.request(OpCode.CREATE, request).err == ErrorCode.OK
                if i % 35 == 34:
                    wait_for_snapshots(path / "data", (i + 1) // 35, poke(client))
    finally:
        server.stop()
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir(written: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(written, copy)
    return copy


def test_inspect_lists_verified_snapshots_and_segments(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "inspect", str(data_dir)]) == 0
    out = capsys.readouterr().out
    fs = OsFileSystem()
    snapshots = list_snapshots(fs, str(data_dir))
    segments = list_segments(fs, str(data_dir))
    assert len(snapshots) >= 2 and len(segments) >= 2
    for _, path in snapshots:
        assert f"{Path(path).name}  index" in out
    for _, _, path in segments:
        assert Path(path).name in out
    assert "CORRUPT" not in out and out.count("checksums ok") == len(snapshots) + len(segments)


def test_inspect_reports_damage_and_fails(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = list_snapshots(OsFileSystem(), str(data_dir))[0]
    damaged = bytearray(Path(path).read_bytes())
    damaged[SNAPSHOT_HEADER_SIZE + 50] ^= 1
    Path(path).write_bytes(bytes(damaged))
    assert main(["data", "inspect", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT: {path} offset {SNAPSHOT_HEADER_SIZE}" in out


def test_dump_prints_every_znode(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "dump", str(data_dir)]) == 0
    out = capsys.readouterr().out
    for i in range(NODES):
        assert f"\n/node{i:03d}\n  data = b'value-{i}'\n" in out


def test_dump_log_range(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "dump", str(data_dir), "--log", "100..104"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert [int(line.split()[0]) for line in lines] == [100, 101, 102, 103, 104]
    assert all("CreateRequest(path='/node" in line for line in lines)


def test_purge_keeps_three_snapshots(data_dir: Path) -> None:
    fs = OsFileSystem()
    before = list_snapshots(fs, str(data_dir))
    assert len(before) > 3
    assert main(["data", "purge", str(data_dir), "-n", "2"]) == 2
    assert main(["data", "purge", str(data_dir), "-n", "3"]) == 0
    assert list_snapshots(fs, str(data_dir)) == before[:3]
    # What is left still loads: the oldest kept snapshot has its whole log.
    assert main(["data", "dump", str(data_dir)]) == 0
