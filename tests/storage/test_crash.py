"""kill -9 a real corral server under write load, restart it, check every acknowledged
write (and nothing half-applied).

The server runs with a tiny snapCount and preAllocSize, so snapshots (writer processes)
and new preallocated segments happen every few hundred milliseconds and random kill
points land during them too. Each writer sends one multi at a time — create
/w<k>/<i> and /m<k>/<i> together — so after a restart, for every writer: every
acknowledged multi is there with its data, both halves or neither of the unacknowledged
one, and nothing after it. Reproduce a failure with the printed seed:
CORRAL_CRASH_SEED=<seed> pytest tests/storage/test_crash.py
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.cli.launch import CorralServer
from corral.protocol.constants import ErrorCode, OpCode
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    CreateRequest,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    MultiRequest,
)
from tests.support.raw_client import RawClient

WRITERS = 4
WRITES_PER_WRITER_MAX = 5_000
SERVER_CONFIG = {
    "snapCount": "60",  # a snapshot every 31..60 txns
    "preAllocSize": "16",  # KiB: a new segment every ~100 txns
    "forceSync": "yes",
    "autopurge.snapRetainCount": "3",
    "autopurge.purgeInterval": "1",  # hours: runs once at each start
}


@dataclass
class Writer:
    number: int
    next_index: int = 0  # the first index this writer has not written yet
    acknowledged: list[int] = field(default_factory=list)
    last_zxid: int = 0


def data_for(writer: int, index: int) -> bytes:
    return b"w%d-i%d-" % (writer, index) + bytes([index % 251]) * (index % 300)


def start(data_dir: Path) -> CorralServer:
    server = CorralServer(config=SERVER_CONFIG, extra_args=["--data-dir", str(data_dir)])
    return server.start()


def write_until_killed(server: CorralServer, writer: Writer, deadline: float) -> None:
    try:
        client = RawClient(server.host, server.port, read_timeout_ms=5_000)
        if client.connect(timeout_ms=30_000) is None:
            return
        for _ in range(WRITES_PER_WRITER_MAX):
            if time.monotonic() > deadline:
                return
            i = writer.next_index
            ops = tuple(
                (
                    OpCode.CREATE,
                    CreateRequest(
                        path=f"/{prefix}{writer.number}/{i:06d}",
                        data=data_for(writer.number, i),
                        acl=OPEN_ACL_UNSAFE,
                        flags=0,
                    ),
                )
                for prefix in ("w", "m")
            )
            writer.next_index = i + 1  # sent: from now on it may or may not be applied
            reply = client.request(OpCode.MULTI, MultiRequest(ops=ops))
            assert reply.err == ErrorCode.OK, reply
            writer.acknowledged.append(i)
            writer.last_zxid = reply.zxid
    except Exception:
        return


def children(client: RawClient, path: str) -> list[str]:
    reply = client.request(OpCode.GET_CHILDREN, GetChildrenRequest(path=path, watch=False))
    assert reply.err == ErrorCode.OK, (path, reply)
    assert isinstance(reply.body, GetChildrenResponse)
    return sorted(reply.body.children)


def check(server: CorralServer, writers: list[Writer], seed: int) -> None:
    last_zxid = max(w.last_zxid for w in writers)
    with RawClient(server.host, server.port) as client:
        # A client that saw the last acknowledged zxid may connect (zxids kept growing).
        response = client.connect(last_zxid_seen=last_zxid)
        assert response is not None, f"seed={seed}: refused lastZxidSeen {last_zxid}"
        for writer in writers:
            k = writer.number
            present_w = [int(n) for n in children(client, f"/w{k}")]
            present_m = [int(n) for n in children(client, f"/m{k}")]
            assert present_w == present_m, f"seed={seed}: half-applied multi of writer {k}"
            assert present_w == list(range(len(present_w))), f"seed={seed}: writer {k} gaps"
            acknowledged = len(writer.acknowledged)
            assert writer.acknowledged == list(range(acknowledged)), f"seed={seed}"
            # Everything acknowledged is there; at most the one in flight beyond it.
            assert acknowledged <= len(present_w) <= writer.next_index, (
                f"seed={seed}: writer {k}: {acknowledged} acknowledged, "
                f"{len(present_w)} present, {writer.next_index} sent"
            )
            for i in present_w[-3:]:
                reply = client.request(
                    OpCode.GET_DATA, GetDataRequest(path=f"/w{k}/{i:06d}", watch=False)
                )
                assert isinstance(reply.body, GetDataResponse)
                assert reply.body.data == data_for(k, i), f"seed={seed}"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="corral-crash-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_kills(data_dir: Path, seed: int, kills: int) -> None:
    rng = random.Random(seed)
    print(f"reproduce: CORRAL_CRASH_SEED={seed}")
    writers = [Writer(number=k) for k in range(WRITERS)]
    server = start(data_dir)
    try:
        with RawClient(server.host, server.port) as client:
            assert client.connect() is not None
            for k in range(WRITERS):
                for prefix in ("w", "m"):
                    reply = client.request(
                        OpCode.CREATE,
                        CreateRequest(path=f"/{prefix}{k}", data=b"", acl=OPEN_ACL_UNSAFE, flags=0),
                    )
                    assert reply.err == ErrorCode.OK
        for round_number in range(kills):
            deadline = time.monotonic() + 20
            threads = [
                threading.Thread(target=write_until_killed, args=(server, w, deadline))
                for w in writers
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.3, 2.0))
            server.kill()
            for thread in threads:
                thread.join(timeout=30)
                assert not thread.is_alive(), "a writer did not notice the kill"
            log_tail = server.log_tail(20_000)
            server.stop(keep_workdir=False)
            print(
                f"round {round_number}: killed after "
                f"{sum(len(w.acknowledged) for w in writers)} acknowledged multis; "
                f"snapshot in progress: {_snapshot_in_progress(log_tail)}"
            )
            server = start(data_dir)
            restart_log = server.log_tail(20_000)
            print(
                f"  restart: interrupted segment creation: {'creation a crash' in restart_log}, "
                f"torn tail: {'unacknowledged write discarded' in restart_log}, "
                f"interrupted snapshot: {'writing a crash interrupted' in restart_log}"
            )
            check(server, writers, seed)
            # The next round continues from what is there (the unacknowledged one too).
            for writer in writers:
                with RawClient(server.host, server.port) as client:
                    assert client.connect() is not None
                    present = children(client, f"/w{writer.number}")
                writer.next_index = len(present)
                writer.acknowledged = list(range(len(present)))
    finally:
        server.stop()


def _snapshot_in_progress(log_tail: str) -> bool:
    forked = log_tail.rfind("writer pid")
    return forked != -1 and log_tail.find("written in", forked) == -1


def _seed() -> int:
    value = os.environ.get("CORRAL_CRASH_SEED")
    return int(value) if value else random.randrange(1 << 30)


def test_kill_9_loses_no_acknowledged_write(data_dir: Path) -> None:
    run_kills(data_dir, _seed(), kills=3)


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(5))
def test_kill_9_many_times(data_dir: Path, repeat: int) -> None:
    run_kills(data_dir, _seed() + repeat, kills=8)
