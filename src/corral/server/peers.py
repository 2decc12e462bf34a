"""Replica-to-replica transport: authenticated, reconnecting, bounded TCP links.

Rules:
* The transport moves opaque payloads (encoded consensus and replica messages); it
  never looks inside. Losing a payload is allowed — Raft retries — so a full queue
  drops the newest payload (counted) instead of blocking the event loop or growing.
* Links are one-way: each replica dials every peer for the payloads *it* sends and
  accepts one inbound link per peer for what it receives. No connection races, no
  de-duplication; a peer restart simply replaces its inbound link.
* Both ends prove they belong to the same ensemble before any payload flows: the
  dialer sends a hello (magic, version, cluster id, its id, the id it expects to reach,
  a nonce, an HMAC-SHA256 of all that under the ensemble secret); the acceptor checks it
  and answers with its own HMAC over the dialer's nonce. A bad hello closes the link
  with a log line; nothing from an unauthenticated link reaches the replica.
* Every frame is length-prefixed and bounded (PEER_FRAME_SIZE_MAX); every wait is
  bounded; reconnects back off exponentially with jitter, up to a cap.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from corral import limits

log = logging.getLogger("corral.peers")

_MAGIC = b"CRRL"
_VERSION = 1
_NONCE_SIZE = 16
_MAC_SIZE = 32
_HELLO = struct.Struct(f">4sH32sBB{_NONCE_SIZE}s")  # magic, version, cluster id, from, to, nonce
_LENGTH = struct.Struct(">I")


class PeerAuthError(Exception):
    """A hello or its answer did not prove membership of this ensemble."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAddress:
    host: str
    port: int


def cluster_id(members: Mapping[int, PeerAddress], secret: bytes) -> bytes:
    """A digest of the membership and secret: replicas of different ensembles never talk."""
    text = ";".join(f"{rid}={a.host}:{a.port}" for rid, a in sorted(members.items()))
    return hashlib.sha256(secret + b"\x00" + text.encode()).digest()


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, b"".join(parts), hashlib.sha256).digest()


@dataclass(slots=True)
class _Outbound:
    peer_id: int
    address: PeerAddress
    queue: asyncio.Queue[bytes]
    connected: bool = False
    dropped: int = 0
    sent: int = 0


@dataclass(slots=True)
class PeerTransport:
    """Links from this replica to its peers. `await run()` owns every task it starts."""

    replica_id: int
    listen: PeerAddress
    peers: dict[int, PeerAddress]  # excluding this replica
    secret: bytes
    on_payload: Callable[[int, bytes], None]  # (peer id, payload), called on the loop
    queue_frames_max: int = limits.PEER_QUEUE_FRAMES_MAX
    backoff_min_ms: int = 50
    backoff_max_ms: int = 2_000
    rng: random.Random = field(default_factory=random.Random)
    _outbound: dict[int, _Outbound] = field(init=False, default_factory=dict)
    _inbound: dict[int, asyncio.StreamWriter] = field(init=False, default_factory=dict)
    _cluster: bytes = field(init=False, default=b"")
    _server: asyncio.Server | None = field(init=False, default=None)
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    bound_port: int = field(init=False, default=0)
    ready: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        assert self.replica_id not in self.peers, self.replica_id
        members = dict(self.peers)
        members[self.replica_id] = self.listen
        self._cluster = cluster_id(members, self.secret)
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
                await self._handshake_dialer(link.peer_id, reader, writer)
                link.connected = True
                backoff_ms = self.backoff_min_ms
                log.info(
                    "link to replica %d at %s:%d up",
                    link.peer_id,
                    link.address.host,
                    link.address.port,
                )
                await self._pump(link, reader, writer)
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
    ) -> None:
        nonce = os.urandom(_NONCE_SIZE)
        hello = _HELLO.pack(_MAGIC, _VERSION, self._cluster, self.replica_id, peer_id, nonce)
        writer.write(hello + _mac(self.secret, hello))
        await writer.drain()
        answer = await asyncio.wait_for(
            reader.readexactly(_MAC_SIZE), timeout=limits.PEER_HANDSHAKE_TIMEOUT_MS / 1000
        )
        expected = _mac(self.secret, b"answer", nonce, bytes([peer_id, self.replica_id]))
        if not hmac.compare_digest(answer, expected):
            raise PeerAuthError(f"replica {peer_id} did not prove it belongs to this ensemble")

    async def _pump(
        self, link: _Outbound, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write queued payloads until the link breaks or the transport stops."""
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
                writer.writelines(x for p in batch for x in (_LENGTH.pack(len(p)), p))
                await writer.drain()
                link.sent += len(batch)
        finally:
            closed.cancel()
            stopping.cancel()

    # ------------------------------------------------------------------ inbound

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        peer_id = 0
        try:
            raw = await asyncio.wait_for(
                reader.readexactly(_HELLO.size + _MAC_SIZE),
                timeout=limits.PEER_HANDSHAKE_TIMEOUT_MS / 1000,
            )
            hello, mac = raw[: _HELLO.size], raw[_HELLO.size :]
            magic, version, cluster, from_id, to_id, nonce = _HELLO.unpack(hello)
            if magic != _MAGIC or version != _VERSION:
                raise PeerAuthError("not a corral peer")
            if not hmac.compare_digest(mac, _mac(self.secret, hello)) or cluster != self._cluster:
                raise PeerAuthError("not a member of this ensemble (secret or membership differ)")
            if to_id != self.replica_id or from_id not in self.peers:
                raise PeerAuthError(f"replica {from_id} dialled {to_id}, this is {self.replica_id}")
            peer_id = from_id
            writer.write(_mac(self.secret, b"answer", nonce, bytes([self.replica_id, from_id])))
            await writer.drain()
            previous = self._inbound.pop(peer_id, None)
            if previous is not None:
                previous.close()
            self._inbound[peer_id] = writer
            while not self._stopping.is_set():
                (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                if size > limits.PEER_FRAME_SIZE_MAX:
                    raise PeerAuthError(f"frame of {size} bytes from replica {peer_id}")
                self.on_payload(peer_id, await reader.readexactly(size))
        except PeerAuthError as e:
            log.warning("refused peer link from %s:%s: %s", peer[0], peer[1], e)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
            pass
        finally:
            if peer_id and self._inbound.get(peer_id) is writer:
                del self._inbound[peer_id]
            writer.close()
