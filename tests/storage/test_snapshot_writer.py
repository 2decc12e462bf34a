"""The snapshot writer (a separate process replaying the log onto the previous snapshot)
produces the live tree: after a mixed workload, the newest snapshot plus the log after
it (what a restart loads) encodes to exactly the bytes of the live server's tree."""

from __future__ import annotations

import random
from pathlib import Path

from corral.consensus.types import EntryKind
from corral.protocol.constants import CreateMode, ErrorCode, OpCode
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    CreateRequest,
    DeleteRequest,
    MultiRequest,
    SetDataRequest,
)
from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import list_snapshots, read_snapshot
from corral.storage.wal import read_log
from corral.tree.snapshot import decode_snapshot, encode_snapshot
from corral.tree.txn import decode_txn
from tests.server.conftest import start_server, stop_server
from tests.storage.support import poke, wait_for_snapshots
from tests.support.raw_client import RawClient

OPS = 400


def workload(client: RawClient, rng: random.Random, ephemeral_client: RawClient) -> None:
    live: list[str] = []
    for i in range(OPS):
        choice = rng.random()
        if choice < 0.5 or not live:
            path = f"/n{i}"
            flags = CreateMode.PERSISTENT_SEQUENTIAL if rng.random() < 0.2 else 0
            reply = client.request(
                OpCode.CREATE,
                CreateRequest(path=path, data=rng.randbytes(8), acl=OPEN_ACL_UNSAFE, flags=flags),
            )
            assert reply.err == ErrorCode.OK
            live.append(reply.body.path)  # type: ignore[union-attr]
        elif choice < 0.75:
            path = rng.choice(live)
            request = SetDataRequest(path=path, data=rng.randbytes(4), version=-1)
            assert client.request(OpCode.SET_DATA, request).err == ErrorCode.OK
        elif choice < 0.9:
            path = live.pop(rng.randrange(len(live)))
            request = DeleteRequest(path=path, version=-1)
            assert client.request(OpCode.DELETE, request).err == ErrorCode.OK
        else:
            ops = (
                (
                    OpCode.CREATE,
                    CreateRequest(path=f"/m{i}", data=b"", acl=OPEN_ACL_UNSAFE, flags=0),
                ),
                (
                    OpCode.CREATE,
                    CreateRequest(path=f"/m{i}", data=b"", acl=OPEN_ACL_UNSAFE, flags=0),
                ),
            )
            client.request(OpCode.MULTI, MultiRequest(ops=ops))  # fails: nothing applied
        if i % 50 == 0:
            request = CreateRequest(
                path=f"/e{i}", data=b"", acl=OPEN_ACL_UNSAFE, flags=CreateMode.EPHEMERAL
            )
            assert ephemeral_client.request(OpCode.CREATE, request).err == ErrorCode.OK


def test_newest_snapshot_plus_log_is_the_live_tree(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    running, thread = start_server(tmp_path, snapCount="60")
    try:
        with (
            RawClient(running.host, running.port) as client,
            RawClient(running.host, running.port) as other,
        ):
            assert client.connect() is not None and other.connect() is not None
            workload(client, rng, other)
            wait_for_snapshots(tmp_path / "data", 3, poke(client))
        live = running.call(lambda: encode_snapshot(running.server.replica.tree))
    finally:
        stop_server(running, thread)
    fs = OsFileSystem()
    _, path = list_snapshots(fs, str(tmp_path / "data"))[0]
    tree = decode_snapshot(read_snapshot(fs, path).content, extended_types_enabled=True)
    for entry in read_log(fs, str(tmp_path / "data"), tree.last_zxid).entries:
        if entry.kind == EntryKind.NORMAL:
            tree.apply(decode_txn(entry.data), entry.index)
    assert encode_snapshot(tree) == live, f"reproduce with seed={seed}"
