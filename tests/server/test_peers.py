"""The replica-to-replica transport on 127.0.0.1: delivery, authentication, reconnects.

The authentication tests put a relay between two replicas (as the fault-injecting proxy
of tests/cluster does) or speak the handshake by hand, and check that nothing reaches a
replica from anything that does not know the secret and the member list.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from corral.cli.launch import free_ports
from corral.server import peers
from corral.server.peers import PeerAddress, PeerTransport, membership_fingerprint
from tests.support.faultproxy import FaultNetwork

WAIT_S = 10


def make(
    replica_id: int,
    ports: dict[int, int],
    secret: bytes,
    inbox: list[tuple[int, int, bytes]],
    *,
    dial: dict[int, int] | None = None,
    fingerprint: bytes | None = None,
    **kwargs: object,
) -> PeerTransport:
    """Replica `replica_id` of the members `ports` (id -> quorum port); `dial` overrides
    the port it dials a peer at (a relay in between)."""
    addresses = {rid: PeerAddress(host="127.0.0.1", port=port) for rid, port in ports.items()}
    listen = addresses.pop(replica_id)
    for rid, port in (dial or {}).items():
        addresses[rid] = PeerAddress(host="127.0.0.1", port=port)
    return PeerTransport(
        replica_id=replica_id,
        listen=listen,
        peers=addresses,
        secret=secret,
        fingerprint=fingerprint or membership_fingerprint(ports),
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
        ports = dict(zip((1, 2, 3), free_ports(3), strict=True))
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
        ports = dict(zip((1, 2), free_ports(2), strict=True))
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
        ports = dict(zip((1, 2), free_ports(2), strict=True))
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
        ports = dict(zip((1, 2), free_ports(2), strict=True))
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


# ---------------------------------------------------------------------- authentication


def test_a_peer_dialled_through_a_relay_is_known_by_its_id() -> None:
    async def scenario() -> None:
        ports = dict(zip((1, 2), free_ports(2), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        with FaultNetwork() as network:
            relay = network.add_link(1, 2, ports[2])
            first = make(1, ports, b"k", inbox, dial={2: relay})
            second = make(2, ports, b"k", inbox)
            async with running(first, second):
                assert await until(lambda: first.is_connected(2) and second.is_connected(1))
                first.send(2, b"via the relay")
                second.send(1, b"direct")
                assert await until(lambda: len(inbox) == 2)
            assert network.accepted_total(1, 2) >= 1
        assert sorted(inbox) == [(1, 2, b"direct"), (2, 1, b"via the relay")]

    asyncio.run(scenario())


def test_a_member_with_another_member_list_is_refused_despite_the_secret() -> None:
    async def scenario() -> None:
        ports = dict(zip((1, 2), free_ports(2), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        good = make(1, ports, b"k", inbox)
        # Replica 2 believes the ensemble is 1, 2 and an observer 3.
        stale = make(2, ports, b"k", inbox, fingerprint=membership_fingerprint((1, 2), (3,)))
        async with running(good, stale):
            stale.send(1, b"let me in")
            good.send(2, b"hello?")
            assert await until(lambda: good.refused >= 1 and stale.refused >= 1)
            assert not stale.is_connected(1)
            assert not good.is_connected(2)
        assert inbox == []

    asyncio.run(scenario())


def test_fingerprints_cover_ids_and_roles_not_order() -> None:
    assert membership_fingerprint((1, 2, 3)) == membership_fingerprint((3, 1, 2))
    assert membership_fingerprint((1, 2, 3)) != membership_fingerprint((1, 2, 4))
    assert membership_fingerprint((1, 2), (3,)) != membership_fingerprint((1, 2, 3))


async def _hello(
    port: int, from_id: int, to_id: int, ports: dict[int, int]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a link to `port` and send a well-formed HELLO; returns it too."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hello = peers._HELLO.pack(
        peers._MAGIC, peers._VERSION, membership_fingerprint(ports), from_id, to_id, bytes(16)
    )
    writer.write(hello)
    await writer.drain()
    return reader, writer, hello


def test_an_impostor_without_the_secret_cannot_pass_the_challenge() -> None:
    async def scenario() -> None:
        ports = dict(zip((1, 2, 3), free_ports(3), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        victim = make(1, ports, b"k", inbox)
        async with running(victim):
            # Claims to be replica 2 and answers the challenge with a guess.
            reader, writer, _ = await _hello(ports[1], 2, 1, ports)
            challenge = await asyncio.wait_for(reader.readexactly(16 + 32), WAIT_S)
            assert len(challenge) == 48
            writer.write(bytes(32) + struct.pack(">I", 1) + b"x" + bytes(16))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(1), WAIT_S) == b""  # closed on us
            writer.close()
            # Addressed to replica 3, or from a replica that is no member: no challenge.
            for from_id, to_id in ((2, 3), (9, 1), (1, 1)):
                reader, writer, _ = await _hello(ports[1], from_id, to_id, ports)
                assert await asyncio.wait_for(reader.read(48), WAIT_S) == b""
                writer.close()
            assert victim.refused == 4
        assert inbox == []

    asyncio.run(scenario())


def test_a_recorded_link_cannot_be_replayed() -> None:
    async def scenario() -> None:
        ports = dict(zip((1, 2), free_ports(2), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        with FaultNetwork() as network:
            relay = network.add_link(2, 1, ports[1])
            network.start_capture(2, 1)
            target = make(1, ports, b"k", inbox)
            sender = make(2, ports, b"k", inbox, dial={1: relay})
            async with running(target, sender):
                assert await until(lambda: sender.is_connected(1))
                sender.send(1, b"pay 10")
                assert await until(lambda: len(inbox) == 1)
                recording = network.captured(2, 1)
                assert b"pay 10" in recording
                # Replay the whole recorded connection (HELLO, proof, frame) to replica 1.
                _, writer = await asyncio.open_connection("127.0.0.1", ports[1])
                writer.write(recording)
                await writer.drain()
                assert await until(lambda: target.refused == 1)
                writer.close()
        assert inbox == [(1, 2, b"pay 10")]

    asyncio.run(scenario())


def test_a_changed_or_repeated_frame_closes_the_link() -> None:
    async def scenario() -> None:
        ports = dict(zip((1, 2), free_ports(2), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        target = make(1, ports, b"k", inbox)
        async with running(target):
            for forge in ("changed", "repeated"):
                # A member that knows the secret, to reach the framing layer.
                reader, writer, hello = await _hello(ports[1], 2, 1, ports)
                challenge = await asyncio.wait_for(reader.readexactly(16 + 32), WAIT_S)
                nonce = challenge[:16]
                writer.write(peers._mac(b"k", b"dialer", hello, nonce))
                key = peers._mac(b"k", b"link", hello, nonce)
                good = struct.pack(">I", 2) + b"ok" + peers._frame_tag(key, 0, b"ok")
                if forge == "changed":
                    frames = struct.pack(">I", 2) + b"no" + peers._frame_tag(key, 0, b"ok")
                else:
                    frames = good + good  # the second carries sequence 0 again
                writer.write(frames)
                await writer.drain()
                assert await asyncio.wait_for(reader.read(1), WAIT_S) == b""
                writer.close()
            assert target.refused == 2
        assert inbox == [(1, 2, b"ok")]  # the one genuine frame of the "repeated" run

    asyncio.run(scenario())


def test_a_peer_that_stops_is_reported_lost_once_and_not_when_we_stop() -> None:
    async def scenario() -> None:
        ports = dict(zip((1, 2), free_ports(2), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        lost: list[int] = []
        first = make(1, ports, b"k", inbox, on_link_lost=lost.append)
        async with running(first):
            second = make(2, ports, b"k", inbox)
            async with running(second):
                second.send(1, b"hello")  # its link to us is up once this arrives
                assert await until(lambda: (1, 2, b"hello") in inbox)
                assert lost == []
            # Its process is gone: our inbound link from it closed.
            assert await until(lambda: lost == [2])
        await asyncio.sleep(0.1)
        assert lost == [2]  # stopping ourselves reports nothing

    asyncio.run(scenario())


def test_connections_beyond_the_handshake_cap_are_closed_at_once() -> None:
    # Two connections that never say HELLO fill a cap of 2: a third is closed as it
    # arrives (counted as refused; one that timed out its handshake would not be), and
    # once the silent ones are gone a member gets through again.
    async def scenario() -> None:
        ports = dict(zip((1, 2), free_ports(2), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        first = make(1, ports, b"k", inbox, handshakes_max=2)
        async with running(first):
            silent = [await asyncio.open_connection("127.0.0.1", ports[1]) for _ in range(2)]
            assert await until(lambda: first._handshakes == 2)
            reader, writer = await asyncio.open_connection("127.0.0.1", ports[1])
            assert await asyncio.wait_for(reader.read(1), WAIT_S) == b""
            assert first.refused == 1
            writer.close()
            for _, silent_writer in silent:
                silent_writer.close()
            assert await until(lambda: first._handshakes == 0)
            second = make(2, ports, b"k", inbox, backoff_max_ms=200)
            async with running(second):
                second.send(1, b"member")
                assert await until(lambda: (1, 2, b"member") in inbox)
            assert first.refused == 1

    asyncio.run(scenario())


def test_paced_sends_wait_for_room_and_give_up_on_a_dead_link() -> None:
    async def scenario() -> None:
        ports = dict(zip((1, 2), free_ports(2), strict=True))
        inbox: list[tuple[int, int, bytes]] = []
        first = make(1, ports, b"k", inbox, backoff_max_ms=200)
        async with running(first):
            # Replica 2 is not running: the link never takes anything.
            for i in range(2):
                assert await first.send_paced(2, b"p%d" % i, queued_max=2, timeout_s=0.2)
            assert not await first.send_paced(2, b"p2", queued_max=2, timeout_s=0.2)
            assert first._outbound[2].queue.qsize() == 2  # no more than the window
            second = make(2, ports, b"k", inbox)
            async with running(second):
                # 50 payloads through a window of 2: each waits for room, none is lost.
                for i in range(3, 53):
                    assert await first.send_paced(2, b"p%d" % i, queued_max=2, timeout_s=WAIT_S)
                    assert first._outbound[2].queue.qsize() <= 2
                assert await until(lambda: len(inbox) == 52)
        expected = [b"p0", b"p1"] + [b"p%d" % i for i in range(3, 53)]
        assert [payload for _, _, payload in inbox] == expected

    asyncio.run(scenario())
