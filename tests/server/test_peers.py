"""The replica-to-replica transport on 127.0.0.1: delivery, authentication, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable

import pytest

from corral.cli.launch import free_port
from corral.server.peers import PeerAddress, PeerTransport

WAIT_S = 10


def make(
    replica_id: int,
    ports: dict[int, int],
    secret: bytes,
    inbox: list[tuple[int, int, bytes]],
    **kwargs: object,
) -> PeerTransport:
    addresses = {rid: PeerAddress(host="127.0.0.1", port=port) for rid, port in ports.items()}
    listen = addresses.pop(replica_id)
    return PeerTransport(
        replica_id=replica_id,
        listen=listen,
        peers=addresses,
        secret=secret,
        on_payload=lambda peer, payload: inbox.append((replica_id, peer, payload)),
        rng=random.Random(replica_id),
        **kwargs,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(*transports: PeerTransport) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(t.run()) for t in transports]
    try:
        for transport in transports:
            await asyncio.wait_for(transport.ready.wait(), WAIT_S)
        yield
    finally:
        for transport in transports:
            transport.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT_S)


async def until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def test_payloads_flow_both_ways_in_order() -> None:
    async def scenario() -> None:
        ports = {1: free_port(), 2: free_port(), 3: free_port()}
        inbox: list[tuple[int, int, bytes]] = []
        transports = [make(rid, ports, b"s3cret", inbox) for rid in ports]
        async with running(*transports):
            assert await until(lambda: all(t.is_connected(p) for t in transports for p in t.peers))
            for i in range(100):
                transports[0].send(2, f"a{i}".encode())
                transports[1].send(1, f"b{i}".encode())
                transports[2].send(1, f"c{i}".encode())
            assert await until(lambda: len(inbox) == 300)
        assert [p for (to, frm, p) in inbox if (to, frm) == (2, 1)] == [
            f"a{i}".encode() for i in range(100)
        ]
        assert [p for (to, frm, p) in inbox if (to, frm) == (1, 2)] == [
            f"b{i}".encode() for i in range(100)
        ]
        assert [p for (to, frm, p) in inbox if (to, frm) == (1, 3)] == [
            f"c{i}".encode() for i in range(100)
        ]

    asyncio.run(scenario())


def test_a_replica_with_another_secret_gets_nothing_through() -> None:
    async def scenario() -> None:
        ports = {1: free_port(), 2: free_port()}
        inbox: list[tuple[int, int, bytes]] = []
        good = make(1, ports, b"right", inbox)
        intruder = make(2, ports, b"wrong", inbox)
        async with running(good, intruder):
            intruder.send(1, b"let me in")
            good.send(2, b"hello?")
            await asyncio.sleep(0.5)
            assert not intruder.is_connected(1)
            assert not good.is_connected(2)
        assert inbox == []

    asyncio.run(scenario())


def test_links_come_back_after_a_peer_restarts() -> None:
    async def scenario() -> None:
        ports = {1: free_port(), 2: free_port()}
        inbox: list[tuple[int, int, bytes]] = []
        first = make(1, ports, b"k", inbox, backoff_max_ms=200)
        async with running(first):
            second = make(2, ports, b"k", inbox)
            async with running(second):
                assert await until(lambda: first.is_connected(2))
                first.send(2, b"before")
                assert await until(lambda: (2, 1, b"before") in inbox)
            assert await until(lambda: not first.is_connected(2))
            restarted = make(2, ports, b"k", inbox)
            async with running(restarted):
                assert await until(lambda: first.is_connected(2))
                first.send(2, b"after")
                assert await until(lambda: (2, 1, b"after") in inbox)

    asyncio.run(scenario())


def test_a_full_queue_drops_instead_of_growing() -> None:
    async def scenario() -> None:
        ports = {1: free_port(), 2: free_port()}
        inbox: list[tuple[int, int, bytes]] = []
        lonely = make(1, ports, b"k", inbox, queue_frames_max=10)
        async with running(lonely):  # replica 2 never starts
            accepted = [lonely.send(2, bytes([i])) for i in range(15)]
        assert accepted == [True] * 10 + [False] * 5
        assert lonely.dropped(2) == 5

    asyncio.run(scenario())


def test_oversized_payload_is_refused_locally() -> None:
    inbox: list[tuple[int, int, bytes]] = []
    transport = make(1, {1: 1, 2: 2}, b"k", inbox)
    with pytest.raises(ValueError):
        transport.send(2, b"x" * (16 * 1024 * 1024 + 1))
