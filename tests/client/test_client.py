"""The asyncio client against a real server (see conftest: ZooKeeper today, corral later)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.client.aio import (
    JSON,
    STR,
    ChildrenOp,
    Client,
    DataOp,
    RetryPolicy,
    SessionEvent,
    WatchEvent,
    digest_acl,
)
from corral.client.exceptions import (
    AuthFailed,
    BadVersionError,
    ConnectionLoss,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeout,
    RuntimeInconsistencyError,
    SessionExpired,
    UnimplementedError,
    ZooKeeperError,
)
from corral.client.sync import SyncClient
from corral.protocol.constants import EventType, KeeperState, Perm, WatcherType
from corral.protocol.records import ACL, Id
from tests.client.conftest import run
from tests.client.proxy import Proxy


def test_create_get_set_delete_and_their_errors(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk:
            assert await zk.create("/a", b"one") == "/a"
            value, stat = await zk.get("/a")
            assert value == b"one"
            assert stat.version == 0
            assert stat.data_length == 3
            stat = await zk.set("/a", b"two", version=0)
            assert stat.version == 1
            with pytest.raises(BadVersionError):
                await zk.set("/a", b"three", version=0)
            with pytest.raises(NodeExistsError):
                await zk.create("/a")
            with pytest.raises(NoNodeError) as missing:
                await zk.get("/missing")
            assert missing.value.code == -101
            assert "/missing" in str(missing.value)
            await zk.create("/a/child")
            with pytest.raises(NotEmptyError):
                await zk.delete("/a")
            children, parent = await zk.get_children_stat("/a")
            assert children == ["child"]
            assert parent.num_children == 1
            await zk.delete("/a", recursive=True)
            assert await zk.exists("/a") is None
            await zk.create("/deep/er/path", b"x", make_parents=True)
            assert (await zk.get("/deep/er/path"))[0] == b"x"
            assert await zk.get_all_children_number("/deep") == 2
            assert await zk.sync("/deep") == "/deep"

    run(body())


def test_sequential_ephemeral_nodes_die_with_their_session(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as observer:
            await observer.create("/q")
            async with Client(hosts, timeout_s=10) as zk:
                first = await zk.create("/q/n-", ephemeral=True, sequential=True)
                second = await zk.create("/q/n-", ephemeral=True, sequential=True)
                assert first == "/q/n-0000000000"
                assert second == "/q/n-0000000001"
                stat = await observer.exists(first)
                assert stat is not None
                assert stat.ephemeral_owner == zk.session_id
                assert sorted(await zk.get_ephemerals("/q")) == [first, second]
            assert await observer.get_children("/q") == []

    run(body())


def test_chroot_is_added_to_requests_and_stripped_from_replies(server: Any, chroot: str) -> None:
    async def body() -> None:
        async with (
            Client(server.address, timeout_s=10) as plain,
            Client(f"{server.address}{chroot}", timeout_s=10) as rooted,
        ):
            assert await rooted.create("/x", b"1") == "/x"
            assert (await plain.get(f"{chroot}/x"))[0] == b"1"
            assert await rooted.get_children("/") == ["x"]
            results = await rooted.transaction().create("/s-", sequential=True).commit()
            assert results == ["/s-0000000001"]
            events: list[WatchEvent] = []
            await rooted.exists("/x", watch=events.append)
            await plain.set(f"{chroot}/x", b"2")
            await rooted.sync("/")
            assert [(e.type, e.path) for e in events] == [(EventType.NODE_DATA_CHANGED, "/x")]

    run(body())


def test_codecs_bytes_str_json_and_a_pluggable_one(hosts: str) -> None:
    class Upper:
        def encode(self, value: Any) -> bytes:
            return str(value).upper().encode()

        def decode(self, data: bytes) -> Any:
            return data.decode().lower()

    async def body() -> None:
        async with Client(hosts, timeout_s=10, codec=JSON) as zk:
            await zk.create("/j", {"port": 80, "tags": ["a"]})
            assert (await zk.get("/j"))[0] == {"port": 80, "tags": ["a"]}
            assert (await zk.get("/j", codec=STR))[0] == '{"port":80,"tags":["a"]}'
            await zk.create("/u", "Mixed", codec=Upper())
            assert (await zk.get("/u", codec=STR))[0] == "MIXED"
            assert (await zk.get("/u", codec=Upper()))[0] == "mixed"
        async with Client(hosts, timeout_s=10) as raw:
            with pytest.raises(TypeError):
                await raw.create("/bad", "not bytes")

    run(body())


def test_one_shot_watches_fire_once(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk, Client(hosts, timeout_s=10) as other:
            data_events: list[WatchEvent] = []
            exist_events: list[WatchEvent] = []
            child_events: list[WatchEvent] = []
            assert await zk.exists("/w", watch=exist_events.append) is None
            await other.create("/w")
            await zk.get("/w", watch=data_events.append)
            await zk.get_children("/w", watch=child_events.append)
            await other.set("/w", b"1")
            await other.set("/w", b"2")  # the data watch was consumed by the first set
            await other.create("/w/c")
            await zk.sync("/")
            assert [e.type for e in exist_events] == [EventType.NODE_CREATED]
            assert [e.type for e in data_events] == [EventType.NODE_DATA_CHANGED]
            assert [e.type for e in child_events] == [EventType.NODE_CHILDREN_CHANGED]
            waiter = zk.waiter()
            await zk.exists("/w/c", watch=waiter)
            await other.delete("/w/c")
            event = await waiter.wait(5)
            assert event is not None
            assert (event.type, event.path) == (EventType.NODE_DELETED, "/w/c")

    run(body())


def test_persistent_and_recursive_watches_as_async_iterators(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk, Client(hosts, timeout_s=10) as other:
            await zk.create("/p")
            async with zk.watch("/p", persistent=True) as events:
                await other.set("/p", b"1")
                await other.set("/p", b"2")
                await other.create("/p/kid")
                got = [await events.next(5) for _ in range(3)]
                assert [e.type for e in got if e] == [
                    EventType.NODE_DATA_CHANGED,
                    EventType.NODE_DATA_CHANGED,
                    EventType.NODE_CHILDREN_CHANGED,
                ]
                assert await zk.check_watches("/p", WatcherType.ANY)
            assert not await zk.check_watches("/p", WatcherType.ANY)
            async with zk.watch("/p", recursive=True) as tree:
                await other.create("/p/kid/grandkid")
                await other.set("/p/kid", b"x")
                first = await tree.next(5)
                second = await tree.next(5)
                assert first is not None
                assert second is not None
                assert (first.type, first.path) == (EventType.NODE_CREATED, "/p/kid/grandkid")
                assert (second.type, second.path) == (EventType.NODE_DATA_CHANGED, "/p/kid")
            async with zk.watch("/p/kid") as once:
                await other.set("/p/kid", b"y")
                seen = [event async for event in once]
                assert [e.type for e in seen] == [EventType.NODE_DATA_CHANGED]

    run(body())


def test_remove_watches_tells_the_watcher(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk:
            await zk.create("/r")
            events: list[WatchEvent] = []
            await zk.get("/r", watch=events.append)
            assert await zk.check_watches("/r", WatcherType.DATA)
            await zk.remove_watches("/r", WatcherType.DATA)
            assert [e.type for e in events] == [EventType.DATA_WATCH_REMOVED]
            assert not await zk.check_watches("/r", WatcherType.DATA)

    run(body())


def test_transactions_are_atomic_and_report_every_op(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk:
            await zk.create("/t", b"0")
            results = await (
                zk.transaction().create("/t/a", b"a").check("/t", 0).set("/t", b"1").commit()
            )
            assert results[0] == "/t/a"
            assert results[1] is None
            assert results[2].version == 1
            with pytest.raises(BadVersionError) as failed:
                async with zk.transaction() as txn:
                    txn.create("/t/b").check("/t", 0).delete("/t/a")
            outcomes = failed.value.results
            assert outcomes is not None
            assert outcomes[0] is None  # rolled back
            assert isinstance(outcomes[1], BadVersionError)
            assert isinstance(outcomes[2], RuntimeInconsistencyError)
            assert await zk.exists("/t/b") is None
            reads = await zk.multi_read(DataOp("/t"), ChildrenOp("/t"), DataOp("/none"))
            assert reads[0][0] == b"1"
            assert reads[1] == ["a"]
            assert isinstance(reads[2], NoNodeError)

    run(body())


def test_acls_digest_auth_and_whoami(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as owner, Client(hosts, timeout_s=10) as stranger:
            await owner.add_auth("digest", "alice:secret")
            acl = [
                digest_acl("alice", "secret"),
                ACL(perms=Perm.READ, id=Id(scheme="world", id="anyone")),
            ]
            await owner.create("/locked", b"v", acl=acl)
            assert (await stranger.get("/locked"))[0] == b"v"
            with pytest.raises(NoAuthError):
                await stranger.set("/locked", b"w")
            await owner.set("/locked", b"w")
            got, _ = await owner.get_acl("/locked")
            assert got[0].id.scheme == "digest"
            assert ("digest", "alice") in {(i.auth_scheme, i.user) for i in await owner.whoami()}

    run(body())


def test_auth_failure_is_reported_and_the_session_survives(hosts: str) -> None:
    async def body() -> None:
        seen: list[SessionEvent] = []
        async with Client(hosts, timeout_s=10) as zk:
            zk.add_listener(seen.append)
            session_id = zk.session_id
            with pytest.raises(AuthFailed):
                await zk.add_auth("no-such-scheme", b"x")
            await zk.create("/after")  # waits for the reconnect, same session
            assert zk.session_id == session_id
            assert SessionEvent.AUTH_FAILED in seen
            assert SessionEvent.RECONNECTED in seen

    run(body())


def test_container_and_ttl_nodes(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk:
            await zk.create("/box", container=True)
            await zk.create("/box/item")
            path = await zk.create("/ttl-", ttl_ms=60_000, sequential=True)
            assert path.startswith("/ttl-")
            assert await zk.exists(path) is not None
            with pytest.raises(ValueError):
                await zk.create("/x", ttl_ms=1000, ephemeral=True)

    run(body())


def test_many_requests_in_flight_are_matched_to_their_replies(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk:
            await asyncio.gather(*(zk.create(f"/n{i}", str(i).encode()) for i in range(200)))
            values = await asyncio.gather(*(zk.get(f"/n{i}") for i in range(200)))
            assert [v for v, _ in values] == [str(i).encode() for i in range(200)]

    run(body())


def test_failover_reconnect_and_watches_restored_with_relative_zxid(
    server: Any, chroot: str
) -> None:
    async def body() -> None:
        proxy = await Proxy(server.host, server.port).start()
        dead = await Proxy(server.host, server.port).start()
        dead.accepting = False
        try:
            hosts = f"{dead.address},{proxy.address}{chroot}"
            seen: list[SessionEvent] = []
            async with (
                Client(hosts, timeout_s=10) as zk,
                Client(f"{server.address}{chroot}", timeout_s=10) as other,
            ):
                zk.add_listener(seen.append)
                await zk.create("/v", b"0")
                session_id = zk.session_id
                data_events: list[WatchEvent] = []
                await zk.get("/v", watch=data_events.append)
                persistent = await zk.watch("/v", persistent=True).start()
                proxy.accepting = False
                proxy.cut()
                await other.set("/v", b"1")  # while zk is away
                proxy.accepting = True
                await zk.wait_connected(10)
                await zk.sync("/")
                assert dead.attempts_total >= 1  # the other host was tried too
                assert zk.session_id == session_id
                assert seen[:2] == [SessionEvent.SUSPENDED, SessionEvent.RECONNECTED]
                # setWatches with relativeZxid: the change made while away is reported now.
                assert [e.type for e in data_events] == [EventType.NODE_DATA_CHANGED]
                await other.set("/v", b"2")
                event = await persistent.next(5)
                assert event is not None
                assert event.type is EventType.NODE_DATA_CHANGED
                await persistent.close()
                assert zk.last_zxid_seen >= other.last_zxid_seen - 1
        finally:
            await proxy.stop()
            await dead.stop()

    run(body())


def test_only_idempotent_calls_are_retried_after_connection_loss(server: Any, chroot: str) -> None:
    async def body() -> None:
        proxy = await Proxy(server.host, server.port).start()
        try:
            async with Client(
                f"{proxy.address}{chroot}", timeout_s=10, retry=RetryPolicy(tries_max=3)
            ) as zk:
                await zk.create("/i", b"v")
                proxy.stalled = True
                write = asyncio.ensure_future(zk.create("/j"))
                read = asyncio.ensure_future(zk.get("/i"))
                await asyncio.sleep(0.2)  # both requests are written, held by the proxy
                proxy.cut()
                proxy.stalled = False
                with pytest.raises(ConnectionLoss):
                    await write
                assert (await read)[0] == b"v"  # re-sent on the new connection
        finally:
            await proxy.stop()

    run(body())


def test_per_call_timeout_while_disconnected(server: Any, chroot: str) -> None:
    async def body() -> None:
        proxy = await Proxy(server.host, server.port).start()
        try:
            async with Client(f"{proxy.address}{chroot}", timeout_s=10) as zk:
                proxy.accepting = False
                proxy.cut()
                with pytest.raises(OperationTimeout):
                    await zk.get("/", timeout_s=0.3)
                proxy.accepting = True
                await zk.get("/", timeout_s=10)
        finally:
            await proxy.stop()

    run(body())


async def _expire(zk: Client, proxy: Proxy, direct_hosts: str) -> None:
    """Expire zk's session for real: keep zk away, resume its session elsewhere, close it."""
    proxy.accepting = False
    proxy.cut()
    twin = Client(
        direct_hosts, timeout_s=10, session_id=zk.session_id, session_password=zk.session_password
    )
    await twin.start()
    await twin.close()
    proxy.accepting = True


def test_session_resume_with_id_and_password_then_expiry(server: Any, chroot: str) -> None:
    async def body() -> None:
        proxy = await Proxy(server.host, server.port).start()
        direct = f"{server.address}{chroot}"
        seen: list[SessionEvent] = []
        try:
            async with Client(f"{proxy.address}{chroot}", timeout_s=10) as zk:
                zk.add_listener(seen.append)
                await zk.create("/e", ephemeral=True)
                watch_events: list[WatchEvent] = []
                await zk.exists("/e", watch=watch_events.append)
                old_id = zk.session_id
                proxy.accepting = False
                proxy.cut()  # zk is away; its session lives on in the server
                twin = Client(
                    direct, timeout_s=10, session_id=old_id, session_password=zk.session_password
                )
                await twin.start()
                assert twin.session_id == old_id
                assert await twin.exists("/e") is not None  # the same session's ephemeral
                await twin.close()  # closes the session: zk's next handshake says "expired"
                proxy.accepting = True
                await zk.wait_connected(10)
                assert seen[-2:] == [SessionEvent.EXPIRED, SessionEvent.CONNECTED]
                assert zk.session_id not in (0, old_id)
                assert [e.state for e in watch_events] == [KeeperState.EXPIRED]
                assert await zk.exists("/e") is None
        finally:
            await proxy.stop()

    run(body())


def test_expired_session_ends_watch_iterators(server: Any, chroot: str) -> None:
    async def body() -> None:
        proxy = await Proxy(server.host, server.port).start()
        try:
            async with Client(f"{proxy.address}{chroot}", timeout_s=10) as zk:
                watch = await zk.watch("/", persistent=True).start()
                await _expire(zk, proxy, f"{server.address}{chroot}")
                with pytest.raises(SessionExpired):
                    await watch.next(10)
        finally:
            await proxy.stop()

    run(body())


def test_the_connect_string_is_shuffled_by_seed() -> None:
    hosts = ",".join(f"h{i}:{2000 + i}" for i in range(6))
    orders = {tuple(Client(hosts, seed=seed).hosts) for seed in range(20)}
    assert len(orders) > 1
    assert all(sorted(order) == sorted(next(iter(orders))) for order in orders)
    assert Client(f"{hosts}/app").chroot == "/app"


def test_persistent_watch_falls_back_to_rearmed_one_shot_watches(
    hosts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk, Client(hosts, timeout_s=10) as other:

            async def no_add_watch(*args: Any, **kwargs: Any) -> None:
                raise UnimplementedError()  # what a server without addWatch answers

            monkeypatch.setattr(zk, "add_watch", no_add_watch)
            await zk.create("/f")
            async with zk.watch("/f", kind="children", persistent=True) as events:
                for i in range(3):
                    await other.create(f"/f/c{i}")
                    event = await events.next(5)
                    assert event is not None
                    assert event.type is EventType.NODE_CHILDREN_CHANGED
                    await zk.sync("/")  # the re-arm (a getChildren) is done before the next

    run(body())


def test_sync_facade(hosts: str) -> None:
    with SyncClient(hosts, timeout_s=10, codec=STR) as zk:
        zk.create("/s", "text")
        assert zk.get("/s")[0] == "text"
        zk.transaction().set("/s", "new").check("/s", 1).commit()
        assert zk.get("/s")[0] == "new"
        with pytest.raises(ZooKeeperError):
            zk.delete("/nothing")


def test_pings_keep_an_idle_session_alive(hosts: str) -> None:
    async def body() -> None:
        seen: list[SessionEvent] = []
        async with Client(hosts, timeout_s=4) as zk, Client(hosts, timeout_s=10) as other:
            zk.add_listener(seen.append)
            assert zk.negotiated_timeout_ms == 4000
            await zk.create("/alive", ephemeral=True)
            session_id = zk.session_id
            await asyncio.sleep(6)  # 1.5 session timeouts without a request of ours
            assert await other.exists("/alive") is not None
            assert zk.session_id == session_id
            assert seen == []  # never suspended

    run(body())


def test_sync_facade_callbacks_run_on_the_loop_thread(hosts: str) -> None:
    import threading

    threads: list[str] = []
    fired = threading.Event()

    def on_event(event: WatchEvent) -> None:
        threads.append(threading.current_thread().name)
        fired.set()

    with SyncClient(hosts, timeout_s=10) as zk, SyncClient(hosts, timeout_s=10) as other:
        zk.create("/cb")
        zk.get("/cb", watch=on_event)
        other.set("/cb", b"x")
        assert fired.wait(10)
        assert threads == ["corral-client-loop"]


def test_importing_the_sans_io_parts_does_not_import_asyncio() -> None:
    import subprocess
    import sys

    code = (
        "import sys, corral.client.session, corral.client.exceptions; "
        "assert 'asyncio' not in sys.modules, 'asyncio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
