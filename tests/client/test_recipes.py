"""Recipes in one process, several clients each (see test_recipes_processes.py for
the kill -9 tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from corral.client.aio import Client
from corral.client.recipes import (
    Barrier,
    Counter,
    DoubleBarrier,
    LeaderElection,
    Lock,
    Party,
    Queue,
    ReadWriteLock,
    Semaphore,
    ServiceRegistry,
)
from tests.client.conftest import run
from tests.client.proxy import Proxy, expire_session


def _watched_paths(server: Any) -> dict[str, set[str]]:
    """`wchp`: watched path -> sessions watching it."""
    result: dict[str, set[str]] = {}
    current = ""
    for line in server.four_letter_word("wchp").splitlines():
        if line.startswith("/"):
            current = line.strip()
            result[current] = set()
        elif line.strip().startswith("0x"):
            result[current].add(line.strip())
    return result


def test_lock_is_fair_and_waiters_do_not_herd(server: Any, hosts: str, chroot: str) -> None:
    async def body() -> None:
        clients = [Client(hosts, timeout_s=10) for _ in range(5)]
        for client in clients:
            await client.start()
        try:
            locks = [Lock(c, "/lock", str(i).encode()) for i, c in enumerate(clients)]
            assert await locks[0].acquire(timeout_s=5)
            order: list[int] = []

            async def contend(index: int) -> None:
                await locks[index].acquire()
                order.append(index)
                await locks[index].release()

            tasks = []
            for index in range(1, 5):
                tasks.append(asyncio.ensure_future(contend(index)))
                # Arrival order is creation order: wait until this contender is in line.
                for _ in range(200):
                    if len(await locks[0].contenders()) == index + 1:
                        break
                    await asyncio.sleep(0.01)
            assert await locks[0].contenders() == [b"0", b"1", b"2", b"3", b"4"]
            # No herd: every waiter watches exactly one node, its own predecessor.
            watched = {
                path: sessions
                for path, sessions in _watched_paths(server).items()
                if path.startswith(f"{chroot}/lock")
            }
            assert f"{chroot}/lock" not in watched  # nobody watches the children list
            assert len(watched) == 4
            assert all(len(sessions) == 1 for sessions in watched.values())
            await locks[0].release()
            await asyncio.gather(*tasks)
            assert order == [1, 2, 3, 4]
        finally:
            for client in clients:
                await client.close()

    run(body())


def test_lock_try_and_timeout(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as a, Client(hosts, timeout_s=10) as b:
            first, second = Lock(a, "/l"), Lock(b, "/l")
            assert await first.acquire()
            assert not await second.acquire(blocking=False)
            assert not await second.acquire(timeout_s=0.2)
            assert first.node is not None
            assert await a.get_children("/l") == [first.node.rsplit("/", 1)[1]]
            await first.release()
            assert await second.acquire(timeout_s=5)
            assert second.is_held
            await second.release()

    run(body())


def test_lock_is_lost_when_the_session_expires(server: Any, chroot: str) -> None:
    async def body() -> None:
        proxy = await Proxy(server.host, server.port).start()
        lost: list[bool] = []
        try:
            async with (
                Client(f"{proxy.address}{chroot}", timeout_s=10) as zk,
                Client(f"{server.address}{chroot}", timeout_s=10) as other,
            ):
                lock = Lock(zk, "/x", on_lost=lambda: lost.append(True))
                await lock.acquire()
                assert lock.is_held
                await expire_session(zk, proxy, f"{server.address}{chroot}")
                assert await lock.lost.wait(10)
                assert lost == [True]
                assert not lock.is_held
                assert await Lock(other, "/x").acquire(timeout_s=5)
        finally:
            await proxy.stop()

    run(body())


def test_read_write_lock(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as a, Client(hosts, timeout_s=10) as b:
            rw_a, rw_b = ReadWriteLock(a, "/rw"), ReadWriteLock(b, "/rw")
            assert await rw_a.read_lock.acquire(timeout_s=5)
            assert await rw_b.read_lock.acquire(timeout_s=5)  # readers share
            writer = ReadWriteLock(a, "/rw").write_lock
            assert not await writer.acquire(timeout_s=0.2)
            pending = asyncio.ensure_future(writer.acquire())
            await asyncio.sleep(0.1)
            late_reader = ReadWriteLock(b, "/rw").read_lock
            assert not await late_reader.acquire(timeout_s=0.2)  # queued behind the writer
            await rw_a.read_lock.release()
            await rw_b.read_lock.release()
            assert await pending
            await writer.release()
            assert await late_reader.acquire(timeout_s=5)

    run(body())


def test_semaphore(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk:
            leases = [Semaphore(zk, "/sem", 2) for _ in range(3)]
            assert await leases[0].acquire(timeout_s=5)
            assert await leases[1].acquire(timeout_s=5)
            assert not await leases[2].acquire(timeout_s=0.2)
            waiting = asyncio.ensure_future(leases[2].acquire(timeout_s=10))
            await asyncio.sleep(0.1)
            await leases[0].release()
            assert await waiting
            assert await leases[1].holders() == 2

    run(body())


def test_leader_election_callbacks_and_resign(hosts: str) -> None:
    async def body() -> None:
        events: list[str] = []
        async with Client(hosts, timeout_s=10) as a, Client(hosts, timeout_s=10) as b:
            first = LeaderElection(a, "/e", b"a", on_elected=lambda: events.append("a"))
            second = LeaderElection(b, "/e", b"b", on_elected=lambda: events.append("b"))
            first.start()
            assert await first.wait_elected(5)
            second.start()
            assert not await second.wait_elected(0.3)
            assert await second.leader() == b"a"
            await first.resign()
            assert await second.wait_elected(5)
            assert second.is_leader
            assert events == ["a", "b"]
            await second.resign()

    run(body())


def test_leader_loses_on_expiry_and_runs_again(server: Any, chroot: str) -> None:
    async def body() -> None:
        proxy = await Proxy(server.host, server.port).start()
        events: list[str] = []
        try:
            async with Client(f"{proxy.address}{chroot}", timeout_s=10) as zk:
                election = LeaderElection(
                    zk,
                    "/e",
                    b"me",
                    on_elected=lambda: events.append("elected"),
                    on_lost=lambda: events.append("lost"),
                )
                election.start()
                assert await election.wait_elected(5)
                await expire_session(zk, proxy, f"{server.address}{chroot}")
                for _ in range(200):
                    if events == ["elected", "lost", "elected"]:
                        break
                    await asyncio.sleep(0.05)
                assert events == ["elected", "lost", "elected"]
                await election.resign()
        finally:
            await proxy.stop()

    run(body())


def test_barrier_and_double_barrier(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as zk:
            barrier = Barrier(zk, "/gate")
            assert await barrier.create()
            assert not await barrier.wait(timeout_s=0.2)
            waiting = asyncio.ensure_future(barrier.wait(timeout_s=10))
            await barrier.remove()
            assert await waiting
            members = [DoubleBarrier(zk, "/db", 3, f"m{i}") for i in range(3)]
            assert not await members[0].enter(timeout_s=0.2)  # alone: times out, leaves
            entered = await asyncio.gather(*(m.enter(timeout_s=10) for m in members))
            assert entered == [True, True, True]
            left = await asyncio.gather(*(m.leave(timeout_s=10) for m in members))
            assert left == [True, True, True]

    run(body())


def test_queue_is_fifo_and_each_item_is_taken_once(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as a, Client(hosts, timeout_s=10) as b:
            producer = Queue(a, "/q")
            for i in range(6):
                await producer.put(str(i).encode())
            assert await producer.size() == 6
            assert await producer.get(timeout_s=5) == b"0"
            consumers = [Queue(a, "/q"), Queue(b, "/q")]
            got = await asyncio.gather(*(consumers[i % 2].get(timeout_s=5) for i in range(5)))
            assert sorted(got) == [b"1", b"2", b"3", b"4", b"5"]
            assert await producer.get(timeout_s=0.2) is None
            later = asyncio.ensure_future(consumers[1].get(timeout_s=10))
            await asyncio.sleep(0.1)
            await producer.put(b"late")
            assert await later == b"late"

    run(body())


def test_counter_cas_under_contention(hosts: str) -> None:
    async def body() -> None:
        clients = [Client(hosts, timeout_s=10) for _ in range(4)]
        for client in clients:
            await client.start()
        try:
            counters = [Counter(c, "/count") for c in clients]

            async def bump(counter: Counter) -> None:
                for _ in range(10):
                    await counter.add(1)

            await asyncio.gather(*(bump(c) for c in counters))
            assert await counters[0].value() == 40
            assert await counters[1].add(-5) == 35
        finally:
            for client in clients:
                await client.close()

    run(body())


def test_party_membership(hosts: str) -> None:
    async def body() -> None:
        async with Client(hosts, timeout_s=10) as a:
            b = Client(hosts, timeout_s=10)
            await b.start()
            await Party(a, "/party", "a", b"alpha").join()
            await Party(b, "/party", "b", b"beta").join()
            viewer = Party(a, "/party")
            assert sorted(await viewer.members()) == [b"alpha", b"beta"]
            await b.close()  # its ephemeral member goes with the session
            assert await viewer.members() == [b"alpha"]

    run(body())


def test_service_registry_discovery_follows_providers(server: Any, chroot: str) -> None:
    async def body() -> None:
        hosts = f"{server.address}{chroot}"
        proxy = await Proxy(server.host, server.port).start()
        try:
            async with (
                Client(hosts, timeout_s=10) as caller,
                Client(f"{proxy.address}{chroot}", timeout_s=10) as provider_a,
            ):
                provider_b = Client(hosts, timeout_s=10)
                await provider_b.start()
                await ServiceRegistry(provider_a).register("rpc", "10.0.0.1:80", {"weight": 2})
                changes: list[list[str]] = []
                watch = ServiceRegistry(caller).discover("rpc")
                watch.on_change(lambda instances: changes.append([i.address for i in instances]))
                assert await watch.wait_for(lambda i: len(i) == 1, 10)
                assert watch.instances[0].metadata == {"weight": 2}
                await ServiceRegistry(provider_b).register("rpc", "10.0.0.2:80")
                assert await watch.wait_for(lambda i: len(i) == 2, 10)
                await provider_b.close()  # a provider goes away
                assert await watch.wait_for(lambda i: len(i) == 1, 10)
                assert watch.addresses == ["10.0.0.1:80"]
                # The surviving provider's session expires: it registers again by itself.
                await expire_session(provider_a, proxy, hosts)
                assert await watch.wait_for(lambda i: [x.address for x in i] == ["10.0.0.1:80"], 10)
                assert changes[0] == ["10.0.0.1:80"]
                assert ["10.0.0.1:80", "10.0.0.2:80"] in changes
                watch.stop()
        finally:
            await proxy.stop()

    run(body())
