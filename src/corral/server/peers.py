"""Replica-to-replica transport: authenticated, reconnecting, bounded TCP links.

Rules:
* The transport moves opaque payloads (encoded consensus and replica messages); it
  never looks inside. Losing a payload is allowed — Raft retries — so a full queue
  drops the newest payload (counted) instead of blocking the event loop or growing.
* Links are one-way: each replica dials every peer for the payloads *it* sends and
  accepts one inbound link per peer for what it receives. No connection races, no
  de-duplication; a peer restart simply replaces its inbound link.
* A peer is known by its replica id, never by its address. The address a replica dials
  (`peers`) may differ from the one the peer listens on (a port-forward, NAT, or a
  test's fault-injecting proxy); the handshake proves who is at the other end.
* Both ends prove they belong to the same ensemble before any payload flows, by
  challenge and response under the ensemble secret (HMAC-SHA256), each side with a
  fresh nonce, so a recorded handshake cannot be replayed:
      dialer   -> HELLO  magic, version, membership fingerprint, from id, to id, nonce_d
      acceptor -> nonce_a, MAC("acceptor", HELLO, nonce_a)
      dialer   -> MAC("dialer", HELLO, nonce_a)
  The fingerprint (`membership_fingerprint`) hashes the replica ids and roles of the
  server.N lines, not their addresses: members with another member list are refused
  even when they share the secret. The acceptor refuses a HELLO addressed to another id,
  from an id that is not a peer, or with another fingerprint, before any MAC.
* After the handshake every frame is `length | payload | tag`, the tag a truncated
  HMAC under a per-link key (derived from the secret and both nonces) over the frame's
  sequence number and payload: bytes injected, changed, dropped or replayed by anything
  between the two replicas close the link. A refused link is logged; nothing from it
  reaches the replica.
* When an authenticated inbound link closes, the transport says so (`on_link_lost`): a
  peer whose process died closes its links at once, which lets a follower notice a dead
  leader without waiting out its election timeout.
* Every frame is bounded (PEER_FRAME_SIZE_MAX); every wait is bounded; reconnects back
  off exponentially with jitter, up to a cap. At most PEER_HANDSHAKES_MAX inbound
  handshakes run at once: more connections are closed as they arrive, so a flood of
  connections that never authenticate cannot pile up sockets and tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from corral import limits

log = logging.getLogger("corral.peers")

_MAGIC = b"CRRL"
_VERSION = 2
_NONCE_SIZE = 16
_MAC_SIZE = 32
_TAG_SIZE = 16  # truncated HMAC-SHA256 per frame (128 bits, as in common AEADs)
_FINGERPRINT_SIZE = 32
# magic, version, membership fingerprint, from id, to id, dialer nonce
_HELLO = struct.Struct(f">4sH{_FINGERPRINT_SIZE}sBB{_NONCE_SIZE}s")
_LENGTH = struct.Struct(">I")
_SEQUENCE = struct.Struct(">Q")


class PeerAuthError(Exception):
    """A handshake or a frame did not prove membership of this ensemble."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAddress:
    host: str
    port: int


def membership_fingerprint(voters: Iterable[int], learners: Iterable[int] = ()) -> bytes:
    """A digest of who is in the ensemble and with which role; addresses are left out so
    a member may be dialled at any address. Replicas with other lists never talk."""
    roles = {rid: "participant" for rid in voters}
    for rid in learners:
        assert rid not in roles, rid
        roles[rid] = "observer"
    text = ";".join(f"{rid}:{role}" for rid, role in sorted(roles.items()))
    return hashlib.sha256(b"corral-membership\x00" + text.encode()).digest()


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.digest(secret, b"".join(parts), "sha256")


def _frame_tag(key: bytes, sequence: int, payload: bytes) -> bytes:
    return hmac.digest(key, _SEQUENCE.pack(sequence) + payload, "sha256")[:_TAG_SIZE]


@dataclass(slots=True)
class _Outbound:
    peer_id: int
    address: PeerAddress
    queue: asyncio.Queue[bytes]
    connected: bool = False
    dropped: int = 0
    sent: int = 0
    taken: asyncio.Event = field(default_factory=asyncio.Event)  # the pump took payloads


@dataclass(slots=True)
class PeerTransport:
    """Links from this replica to its peers. `await run()` owns every task it starts."""

    replica_id: int
    listen: PeerAddress
    peers: dict[int, PeerAddress]  # peer id -> the address to dial it at (not this replica)
    secret: bytes
    fingerprint: bytes  # membership_fingerprint() of the ensemble, the same on every member
    on_payload: Callable[[int, bytes], None]  # (peer id, payload), called on the loop
    # (peer id): its authenticated link to us closed (EOF, reset, bad frame) — its
    # process may have died. Not called when a newer link from it replaced this one.
    on_link_lost: Callable[[int], None] | None = None
    queue_frames_max: int = limits.PEER_QUEUE_FRAMES_MAX
    handshakes_max: int = limits.PEER_HANDSHAKES_MAX  # inbound, unauthenticated, at once
    backoff_min_ms: int = 50
    backoff_max_ms: int = 2_000
    rng: random.Random = field(default_factory=random.Random)
    _outbound: dict[int, _Outbound] = field(init=False, default_factory=dict)
    _inbound: dict[int, asyncio.StreamWriter] = field(init=False, default_factory=dict)
    _server: asyncio.Server | None = field(init=False, default=None)
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    bound_port: int = field(init=False, default=0)
    ready: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    refused: int = field(init=False, default=0)  # inbound links refused (bad handshake/frame)
    _handshakes: int = field(init=False, default=0)  # inbound handshakes under way
    _busy_logged: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        assert self.replica_id not in self.peers, self.replica_id
        assert len(self.fingerprint) == _FINGERPRINT_SIZE, len(self.fingerprint)
        if not self.secret:
            raise ValueError("the ensemble secret must not be empty")
        for peer_id, address in self.peers.items():
            self._outbound[peer_id] = _Outbound(
                peer_id=peer_id, address=address, queue=asyncio.Queue(self.queue_frames_max)
            )

    # ------------------------------------------------------------------ public

    def send(self, peer_id: int, payload: bytes) -> bool:
        """Queue `payload` for `peer_id`; False if it was dropped (queue full)."""
        if len(payload) > limits.PEER_FRAME_SIZE_MAX:
            raise ValueError(f"peer payload {len(payload)} exceeds {limits.PEER_FRAME_SIZE_MAX}")
        link = self._outbound[peer_id]
        try:
            link.queue.put_nowait(payload)
        except asyncio.QueueFull:
            link.dropped += 1
            return False
        return True

    async def send_paced(
        self, peer_id: int, payload: bytes, *, queued_max: int, timeout_s: float
    ) -> bool:
        """Queue `payload` once fewer than `queued_max` payloads wait for `peer_id`, so a
        long stream (a snapshot's chunks) holds a few in memory, not all of them. False
        if there was no room within `timeout_s` (the link is down or stuck) or the
        payload was dropped."""
        link = self._outbound[peer_id]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while link.queue.qsize() >= queued_max:
            link.taken.clear()
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return False
            try:
                await asyncio.wait_for(link.taken.wait(), remaining_s)
            except TimeoutError:
                return False
        return self.send(peer_id, payload)

    def is_connected(self, peer_id: int) -> bool:
        return self._outbound[peer_id].connected

    def dropped(self, peer_id: int) -> int:
        return self._outbound[peer_id].dropped

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, host=self.listen.host, port=self.listen.port, reuse_address=True
        )
        sockets = self._server.sockets or ()
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.listen.port
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                for link in self._outbound.values():
                    tasks.create_task(self._dial_forever(link))
                await self._stopping.wait()
                self._server.close()
                for writer in list(self._inbound.values()):
                    writer.close()
        finally:
            self._server.close()
            await self._server.wait_closed()

    # ------------------------------------------------------------------ outbound

    async def _dial_forever(self, link: _Outbound) -> None:
        backoff_ms = self.backoff_min_ms
        while not self._stopping.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(link.address.host, link.address.port),
                    timeout=limits.PEER_CONNECT_TIMEOUT_MS / 1000,
                )
            except (OSError, TimeoutError):
                await self._sleep(backoff_ms)
                backoff_ms = min(self.backoff_max_ms, backoff_ms * 2)
                continue
            try:
                key = await self._handshake_dialer(link.peer_id, reader, writer)
                link.connected = True
                backoff_ms = self.backoff_min_ms
                log.info(
                    "link to replica %d at %s:%d up",
                    link.peer_id,
                    link.address.host,
                    link.address.port,
                )
                await self._pump(link, key, reader, writer)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, PeerAuthError) as e:
                log.warning("link to replica %d: %s", link.peer_id, e or type(e).__name__)
            finally:
                link.connected = False
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
            await self._sleep(backoff_ms)
            backoff_ms = min(self.backoff_max_ms, backoff_ms * 2)

    async def _sleep(self, base_ms: int) -> None:
        jittered_ms = base_ms // 2 + self.rng.randrange(base_ms // 2 + 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), jittered_ms / 1000)

    async def _handshake_dialer(
        self, peer_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """Prove membership both ways; returns the link's frame key."""
        nonce = os.urandom(_NONCE_SIZE)
        hello = _HELLO.pack(_MAGIC, _VERSION, self.fingerprint, self.replica_id, peer_id, nonce)
        writer.write(hello)
        await writer.drain()
        challenge = await asyncio.wait_for(
            reader.readexactly(_NONCE_SIZE + _MAC_SIZE),
            timeout=limits.PEER_HANDSHAKE_TIMEOUT_MS / 1000,
        )
        acceptor_nonce, proof = challenge[:_NONCE_SIZE], challenge[_NONCE_SIZE:]
        if not hmac.compare_digest(proof, _mac(self.secret, b"acceptor", hello, acceptor_nonce)):
            raise PeerAuthError(f"replica {peer_id} did not prove it belongs to this ensemble")
        writer.write(_mac(self.secret, b"dialer", hello, acceptor_nonce))
        await writer.drain()
        return _mac(self.secret, b"link", hello, acceptor_nonce)

    async def _pump(
        self,
        link: _Outbound,
        key: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Write queued payloads, tagged, until the link breaks or the transport stops."""
        sequence = 0
        closed = asyncio.ensure_future(reader.read(1))  # the acceptor never writes: EOF/error only
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                getter = asyncio.ensure_future(link.queue.get())
                done, _ = await asyncio.wait(
                    {getter, closed, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    getter.cancel()
                    return
                if closed in done:
                    getter.cancel()
                    raise ConnectionResetError("peer closed the link")
                payload = getter.result()
                batch = [payload]
                while not link.queue.empty() and len(batch) < 256:
                    batch.append(link.queue.get_nowait())
                link.taken.set()
                chunks: list[bytes] = []
                for payload in batch:
                    chunks += (_LENGTH.pack(len(payload)), payload)
                    chunks.append(_frame_tag(key, sequence, payload))
                    sequence += 1
                writer.writelines(chunks)
                await writer.drain()
                link.sent += len(batch)
        finally:
            closed.cancel()
            stopping.cancel()

    # ------------------------------------------------------------------ inbound

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        if self._handshakes >= self.handshakes_max:
            # Anyone can connect; only members get past the handshake. Connections that
            # never finish it would each hold a socket and a task for the handshake
            # timeout: beyond the cap they are closed at once (members dial again).
            self.refused += 1
            if not self._busy_logged:
                self._busy_logged = True
                log.warning(
                    "refusing peer connections: %d handshakes already under way (from %s:%s)",
                    self._handshakes,
                    peer[0],
                    peer[1],
                )
            writer.close()
            return
        peer_id = 0
        try:
            self._handshakes += 1
            try:
                peer_id, key = await self._handshake_acceptor(reader, writer)
            finally:
                self._handshakes -= 1
                if self._handshakes < self.handshakes_max // 2:
                    self._busy_logged = False
            previous = self._inbound.pop(peer_id, None)
            if previous is not None:
                previous.close()
            self._inbound[peer_id] = writer
            sequence = 0
            while not self._stopping.is_set():
                (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                if size > limits.PEER_FRAME_SIZE_MAX:
                    raise PeerAuthError(f"frame of {size} bytes from replica {peer_id}")
                frame = await reader.readexactly(size + _TAG_SIZE)
                payload, tag = frame[:size], frame[size:]
                if not hmac.compare_digest(tag, _frame_tag(key, sequence, payload)):
                    raise PeerAuthError(f"frame {sequence} from replica {peer_id} fails its tag")
                sequence += 1
                self.on_payload(peer_id, payload)
        except PeerAuthError as e:
            self.refused += 1
            log.warning("refused peer link from %s:%s: %s", peer[0], peer[1], e)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
            pass
        finally:
            if peer_id and self._inbound.get(peer_id) is writer:
                del self._inbound[peer_id]
                if self.on_link_lost is not None and not self._stopping.is_set():
                    self.on_link_lost(peer_id)
            writer.close()

    async def _handshake_acceptor(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[int, bytes]:
        """Check a dialer's HELLO and its answer to our challenge; returns (peer id, key)."""
        timeout_s = limits.PEER_HANDSHAKE_TIMEOUT_MS / 1000
        hello = await asyncio.wait_for(reader.readexactly(_HELLO.size), timeout=timeout_s)
        magic, version, fingerprint, from_id, to_id, _ = _HELLO.unpack(hello)
        if magic != _MAGIC or version != _VERSION:
            raise PeerAuthError("not a corral peer (or another transport version)")
        if to_id != self.replica_id:
            raise PeerAuthError(f"link meant for replica {to_id}, this is {self.replica_id}")
        if from_id not in self.peers:
            raise PeerAuthError(f"replica {from_id} is not a peer of {self.replica_id}")
        if not hmac.compare_digest(fingerprint, self.fingerprint):
            raise PeerAuthError(f"replica {from_id} has another member list (server.N lines)")
        nonce = os.urandom(_NONCE_SIZE)
        writer.write(nonce + _mac(self.secret, b"acceptor", hello, nonce))
        await writer.drain()
        proof = await asyncio.wait_for(reader.readexactly(_MAC_SIZE), timeout=timeout_s)
        if not hmac.compare_digest(proof, _mac(self.secret, b"dialer", hello, nonce)):
            raise PeerAuthError(f"replica {from_id} did not prove it knows the ensemble secret")
        return from_id, _mac(self.secret, b"link", hello, nonce)
