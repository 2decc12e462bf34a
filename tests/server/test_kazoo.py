"""kazoo, a real ZooKeeper client, against an in-process corral server.

Every operation kazoo has, every node type it can create, ACL schemes, watches,
multi, session close / expiry / resume. Operations kazoo lacks (TTL, containers,
addWatch, removeWatches, whoAmI, getEphemerals...) are covered by test_raw.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
)
from kazoo.protocol.states import EventType
from kazoo.security import ACL, Id, make_digest_acl, make_digest_acl_credential

from tests.server.conftest import RunningServer

WAIT_S = 10


@pytest.fixture
def zk(corral: RunningServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=corral.hosts, timeout=10)
    client.start(timeout=WAIT_S)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def new_client(corral: RunningServer, **kwargs: object) -> KazooClient:
    client = KazooClient(hosts=corral.hosts, timeout=10, **kwargs)  # type: ignore[arg-type]
    client.start(timeout=WAIT_S)
    return client


def wait_for(predicate, timeout_s: float = WAIT_S) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_fresh_tree(zk: KazooClient) -> None:
    assert zk.get_children("/") == ["zookeeper"]
    assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]
    data, stat = zk.get("/")
    assert data == b""
    assert (stat.czxid, stat.mzxid, stat.version, stat.numChildren, stat.cversion) == (
        0,
        0,
        0,
        1,
        -1,
    )


def test_create_get_set_delete(zk: KazooClient) -> None:
    path = zk.create("/a", b"hello")
    assert path == "/a"
    data, stat = zk.get("/a")
    assert data == b"hello"
    assert stat.version == 0
    assert stat.dataLength == 5
    assert stat.czxid == stat.mzxid == stat.pzxid
    stat2 = zk.set("/a", b"world")
    assert stat2.version == 1
    assert stat2.mzxid > stat.mzxid
    assert stat2.czxid == stat.czxid
    assert zk.get("/a")[0] == b"world"
    with pytest.raises(BadVersionError):
        zk.set("/a", b"x", version=0)
    with pytest.raises(BadVersionError):
        zk.delete("/a", version=5)
    zk.delete("/a", version=1)
    assert zk.exists("/a") is None
    with pytest.raises(NoNodeError):
        zk.get("/a")


def test_errors_match_zookeeper(zk: KazooClient) -> None:
    zk.create("/p", b"")
    zk.create("/p/c", b"")
    with pytest.raises(NodeExistsError):
        zk.create("/p", b"")
    with pytest.raises(NoNodeError):
        zk.create("/missing/child", b"")
    with pytest.raises(NotEmptyError):
        zk.delete("/p")
    with pytest.raises(BadArgumentsError):
        zk.delete("/zookeeper")
    zk.create("/e", b"", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create("/e/child", b"")


def test_children_and_parent_stat(zk: KazooClient) -> None:
    zk.create("/t", b"")
    zk.create("/t/a", b"")
    zk.create("/t/b", b"")
    zk.delete("/t/a")
    children, stat = zk.get_children("/t", include_data=True)
    assert children == ["b"]
    assert stat.numChildren == 1
    assert stat.cversion == 3  # two creates and one delete
    assert stat.version == 0
    b_stat = zk.exists("/t/b")
    assert stat.pzxid > b_stat.czxid  # the delete came after


def test_sequential_numbering_never_reuses(zk: KazooClient) -> None:
    zk.create("/q", b"")
    zk.create("/q/a", b"")
    zk.create("/q/b", b"")
    zk.delete("/q/a")
    path = zk.create("/q/n-", b"", sequence=True)
    assert path == "/q/n-0000000002"
    path = zk.create("/q/n-", b"", sequence=True, ephemeral=True)
    assert path == "/q/n-0000000003"


def test_ephemerals_go_with_their_session(corral: RunningServer, zk: KazooClient) -> None:
    other = new_client(corral)
    other.create("/eph", b"x", ephemeral=True)
    stat = zk.exists("/eph")
    assert stat is not None
    assert stat.ephemeralOwner == other.client_id[0]
    seen = threading.Event()
    zk.exists("/eph", watch=lambda event: seen.set())
    other.stop()
    other.close()
    assert seen.wait(WAIT_S)
    assert zk.exists("/eph") is None


def test_data_watch_fires_once(zk: KazooClient) -> None:
    zk.create("/w", b"1")
    events: list[object] = []
    zk.get("/w", watch=events.append)
    zk.set("/w", b"2")
    zk.set("/w", b"3")
    assert wait_for(lambda: len(events) >= 1)
    time.sleep(0.2)
    assert len(events) == 1
    assert events[0].type == EventType.CHANGED  # type: ignore[attr-defined]
    assert events[0].path == "/w"  # type: ignore[attr-defined]


def test_child_and_exists_watches(zk: KazooClient) -> None:
    zk.create("/c", b"")
    child_events: list[object] = []
    exists_events: list[object] = []
    zk.get_children("/c", watch=child_events.append)
    assert zk.exists("/c/new", watch=exists_events.append) is None
    zk.create("/c/new", b"")
    assert wait_for(lambda: child_events and exists_events)
    assert child_events[0].type == EventType.CHILD  # type: ignore[attr-defined]
    assert exists_events[0].type == EventType.CREATED  # type: ignore[attr-defined]


def test_delete_fires_one_event_for_data_and_child_watch(zk: KazooClient) -> None:
    zk.create("/d", b"")
    events: list[object] = []
    zk.get("/d", watch=events.append)
    zk.get_children("/d", watch=events.append)
    zk.delete("/d")
    assert wait_for(lambda: len(events) >= 1)
    time.sleep(0.2)
    # kazoo dispatches the one NodeDeleted frame to both of its watchers.
    assert {e.type for e in events} == {EventType.DELETED}  # type: ignore[attr-defined]


def test_multi_commits_all_or_nothing(zk: KazooClient) -> None:
    zk.create("/m", b"0")
    tx = zk.transaction()
    tx.create("/m/a", b"")
    tx.set_data("/m", b"1")
    tx.check("/m", 1)
    tx.create("/m/b", b"")
    results = tx.commit()
    assert results[0] == "/m/a"
    assert results[1].version == 1
    assert results[2] is True
    assert results[3] == "/m/b"
    a = zk.exists("/m/a")
    b = zk.exists("/m/b")
    assert a.czxid == b.czxid  # one zxid for the whole multi

    tx = zk.transaction()
    tx.create("/m/c", b"")
    tx.check("/m", 99)
    tx.delete("/m/a")
    results = tx.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], BadVersionError)
    assert zk.exists("/m/c") is None
    assert zk.exists("/m/a") is not None


def test_digest_acl_and_auth(corral: RunningServer, zk: KazooClient) -> None:
    zk.add_auth("digest", "alice:secret")
    acl = make_digest_acl("alice", "secret", all=True)
    zk.create("/secret", b"s", acl=[acl])
    other = new_client(corral)
    try:
        with pytest.raises(NoAuthError):
            other.get("/secret")
        other.add_auth("digest", "alice:secret")
        assert other.get("/secret")[0] == b"s"
    finally:
        other.stop()
        other.close()
    acls, _ = zk.get_acls("/secret")
    assert acls[0].id.id == make_digest_acl_credential("alice", "secret")


def test_auth_scheme_acl_expands_to_identities(zk: KazooClient) -> None:
    with pytest.raises(InvalidACLError):
        zk.create("/creator", b"", acl=[ACL(31, Id("auth", ""))])
    zk.add_auth("digest", "user:pass")
    zk.create("/creator", b"", acl=[ACL(31, Id("auth", ""))])
    acls, _ = zk.get_acls("/creator")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [
        (31, "digest", "user:smGaoVKd/cQkjm7b88GyorAUz20=")
    ]


def test_ip_acl(zk: KazooClient) -> None:
    zk.create("/ip-ok", b"", acl=[ACL(31, Id("ip", "127.1.2.3/8"))])
    assert zk.get("/ip-ok")[0] == b""
    zk.create("/ip-no", b"", acl=[ACL(31, Id("ip", "10.0.0.0/8"))])
    with pytest.raises(NoAuthError):
        zk.get("/ip-no")


def test_set_acl_bumps_aversion(zk: KazooClient) -> None:
    zk.create("/acl", b"")
    stat = zk.set_acls("/acl", [ACL(31, Id("world", "anyone"))])
    assert stat.aversion == 1
    assert stat.version == 0
    with pytest.raises(BadVersionError):
        zk.set_acls("/acl", [ACL(31, Id("world", "anyone"))], version=0)


def test_sync_and_four_letter_words(zk: KazooClient) -> None:
    assert zk.sync("/anything") == "/anything"
    assert zk.command(b"ruok") == "imok"
    srvr = zk.command(b"srvr")
    assert "Mode: standalone" in srvr
    mntr = zk.command(b"mntr").splitlines()
    assert mntr[0].startswith("zk_version\t")
    assert mntr[1] == "zk_server_state\tstandalone"


def test_session_resume_keeps_ephemerals(corral: RunningServer) -> None:
    first = new_client(corral)
    first.create("/mine", b"", ephemeral=True)
    session_id, password = first.client_id
    # A second client takes over the session with its id and password.
    second = KazooClient(hosts=corral.hosts, timeout=10, client_id=(session_id, password))
    second.start(timeout=WAIT_S)
    try:
        assert second.client_id[0] == session_id
        assert second.exists("/mine").ephemeralOwner == session_id
    finally:
        second.stop()
        second.close()
        first.stop()
        first.close()


def test_large_value_roundtrip(zk: KazooClient) -> None:
    value = bytes(range(256)) * 2048  # 512 KiB
    zk.create("/big", value)
    assert zk.get("/big")[0] == value
