"""`corral data import`: a data directory written by Apache ZooKeeper 3.8 (Debian's
package; several snapshots and log files, so the log replay matters) becomes a corral
data directory; corral started on it answers exactly as the original server does for
every znode (data, ACL, Stat, children), resumes ZooKeeper's sessions, and numbers new
writes after ZooKeeper's last zxid."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.cli.launch import ApacheZooKeeper, CorralServer, zookeeper_available
from corral.cli.main import main
from corral.protocol.constants import CreateMode, ErrorCode, OpCode
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetACLRequest,
    GetACLResponse,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    Id,
    MultiRequest,
    SetACLRequest,
    SetDataRequest,
)
from corral.storage.fs import OsFileSystem
from corral.storage.zookeeper import list_zk_files, session_password
from tests.support.raw_client import RawClient

pytestmark = pytest.mark.skipif(not zookeeper_available(), reason="Apache ZooKeeper not installed")

NODES_WALK_MAX = 10_000
READ_ONLY_ACL = (ACL(perms=1, id=Id(scheme="world", id="anyone")),)


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="corral-import-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ok(client: RawClient, opcode: int, record: object) -> int:
    reply = client.request(opcode, record)  # type: ignore[arg-type]
    assert reply.err == ErrorCode.OK, (opcode, record, reply)
    return reply.zxid


def populate(client: RawClient) -> None:
    """Every kind of txn ZooKeeper logs, spread over several snapshots."""
    create = OpCode.CREATE

    def make(
        path: str, data: bytes = b"", flags: int = 0, acl: tuple[ACL, ...] = OPEN_ACL_UNSAFE
    ) -> None:
        ok(client, create, CreateRequest(path=path, data=data, acl=acl, flags=flags))

    make("/app", b"root")
    for i in range(80):
        make(f"/app/n{i:02d}", b"v%d" % i)
    for i in range(0, 80, 3):
        ok(client, OpCode.DELETE, DeleteRequest(path=f"/app/n{i:02d}", version=-1))
    for i in range(1, 80, 6):
        ok(
            client,
            OpCode.SET_DATA,
            SetDataRequest(path=f"/app/n{i:02d}", data=b"x" * i, version=-1),
        )
    make("/app/n01/deep", None)
    make("/eph", b"ephemeral", CreateMode.EPHEMERAL)
    for _ in range(3):
        make("/seq-", b"s", CreateMode.PERSISTENT_SEQUENTIAL)
    make("/ro", b"read only", acl=READ_ONLY_ACL)
    read_admin = (ACL(perms=1 | 16, id=Id(scheme="world", id="anyone")),)
    ok(client, OpCode.SET_ACL, SetACLRequest(path="/app", acl=read_admin, version=-1))
    ok(client, OpCode.SET_ACL, SetACLRequest(path="/app", acl=OPEN_ACL_UNSAFE, version=1))
    ok(
        client,
        OpCode.CREATE_CONTAINER,
        CreateRequest(path="/box", data=b"", acl=OPEN_ACL_UNSAFE, flags=CreateMode.CONTAINER),
    )
    make("/box/inside", b"i")
    ok(
        client,
        OpCode.CREATE_TTL,
        CreateTTLRequest(
            path="/ttl",
            data=b"t",
            acl=OPEN_ACL_UNSAFE,
            flags=CreateMode.PERSISTENT_WITH_TTL,
            ttl_ms=3_600_000,
        ),
    )
    multi_ok = MultiRequest(
        ops=(
            (create, CreateRequest(path="/m1", data=b"1", acl=OPEN_ACL_UNSAFE, flags=0)),
            (OpCode.SET_DATA, SetDataRequest(path="/m1", data=b"11", version=0)),
        )
    )
    ok(client, OpCode.MULTI, multi_ok)
    multi_failing = MultiRequest(
        ops=(
            (create, CreateRequest(path="/m2", data=b"2", acl=OPEN_ACL_UNSAFE, flags=0)),
            (create, CreateRequest(path="/m1", data=b"dup", acl=OPEN_ACL_UNSAFE, flags=0)),
        )
    )
    failed = client.request(OpCode.MULTI, multi_failing)
    assert failed.err == ErrorCode.NODE_EXISTS or failed.body is not None, failed
    for i in range(30):
        ok(client, OpCode.SET_DATA, SetDataRequest(path="/app/n01", data=b"r%d" % i, version=-1))


def snapshot_of(client: RawClient) -> dict[str, tuple[object, ...]]:
    """Every znode as the wire shows it: getData, getACL and (sorted) children."""
    seen: dict[str, tuple[object, ...]] = {}
    stack = ["/"]
    while stack and len(seen) < NODES_WALK_MAX:
        path = stack.pop()
        data = client.request(OpCode.GET_DATA, GetDataRequest(path=path, watch=False))
        acl = client.request(OpCode.GET_ACL, GetACLRequest(path=path))
        kids = client.request(OpCode.GET_CHILDREN, GetChildrenRequest(path=path, watch=False))
        assert isinstance(acl.body, GetACLResponse) and isinstance(kids.body, GetChildrenResponse)
        data_part: object = data.err
        if isinstance(data.body, GetDataResponse):
            data_part = (data.body.data, data.body.stat)
        children = sorted(kids.body.children)
        seen[path] = (data_part, acl.body.acl, acl.body.stat, children)
        prefix = "/" if path == "/" else path + "/"
        stack.extend(prefix + child for child in children)
    return seen


def test_import_reproduces_a_zookeeper_tree_exactly(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zk = ApacheZooKeeper(
        config={"snapCount": "20", "preAllocSize": "64", "maxSessionTimeout": "60000"}
    ).start()
    corral: CorralServer | None = None
    try:
        with RawClient(zk.host, zk.port) as client:
            session = client.connect(timeout_ms=30_000)
            assert session is not None
            populate(client)
            time.sleep(1)  # let ZooKeeper's snapshot thread finish its last snapshot
            zk_dir = work / "zk"
            shutil.copytree(zk.data_dir, zk_dir)
            expected = snapshot_of(client)
            last_zxid = client.request(OpCode.EXISTS, ExistsRequest(path="/", watch=False)).zxid
            snapshots, logs = list_zk_files(OsFileSystem(), str(zk_dir / "version-2"))
            assert len(snapshots) >= 3 and len(logs) >= 3, (snapshots, logs)
            assert main(["data", "import", str(zk_dir), str(work / "corral")]) == 0
            report = capsys.readouterr().out
            replayed = int(report.split(" + ")[1].split(" txns")[0])
            assert replayed > 0, f"the log replay was not exercised: {report}"
            corral = CorralServer(
                config={"maxSessionTimeout": "60000"},
                extra_args=["--data-dir", str(work / "corral")],
            ).start()
            assert session.password == session_password(session.session_id)
            with RawClient(corral.host, corral.port) as other:
                resumed = other.connect(
                    session_id=session.session_id,
                    password=session.password,
                    timeout_ms=30_000,
                    last_zxid_seen=last_zxid,
                )
                assert resumed is not None and resumed.session_id == session.session_id
                actual = snapshot_of(other)
                assert sorted(actual) == sorted(expected)
                for path in expected:
                    assert actual[path] == expected[path], path
                new_zxid = ok(
                    other,
                    OpCode.CREATE,
                    CreateRequest(path="/after", data=b"", acl=OPEN_ACL_UNSAFE, flags=0),
                )
                assert new_zxid > last_zxid
    finally:
        zk.stop()
        if corral is not None:
            corral.stop()
