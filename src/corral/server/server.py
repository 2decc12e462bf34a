"""The asyncio driver of a Replica: sockets, the clock, the log, signals.

Rules:
* The Replica decides; this module only does IO. Each Outbox is executed completely,
  in the order the replica produced it (replica/outbox.py states the contract):
  persist, then send, then client frames, then closes.
* Each client connection is an asyncio.Protocol: the loop hands it the bytes it reads
  (no task and no stream buffer per connection), it decodes them and gives the events
  to the replica at once. One task owns time (ticks); the server owns its tasks through
  a TaskGroup, so nothing leaks and a crash in a task stops the server instead of
  going unnoticed.
* Back-pressure: while a client's unread output is over the high-water mark, nothing
  more of its input is decoded and its transport stops reading, until the transport
  says (resume_writing) that the client has taken most of it.
* Bad input never crashes the server: a malformed or oversized frame closes that one
  connection with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

from corral import limits
from corral.consensus.types import SnapshotMeta, SnapshotSend
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    BadRequest,
    Connect,
    FourLetterWord,
    Request,
    ServerConnection,
)
from corral.protocol.constants import OpCode
from corral.protocol.errors import RemoteProtocolError
from corral.replica.messages import snapshot_chunk_payloads
from corral.replica.outbox import Outbox, Persist
from corral.replica.replica import Replica
from corral.server import fourletter
from corral.server.admin import AdminServer, AdminServerError, start_admin_server
from corral.server.config import ServerConfig
from corral.server.durability import DurableLog, Snapshotter, open_durable, purge_loop
from corral.server.peers import PeerAddress, PeerTransport, membership_fingerprint
from corral.storage.wal import StorageError

log = logging.getLogger("corral.server")

_TICK_INTERVAL_MS = 50
_HAND_OVER_POLL_MS = 20
_HAND_OVER_POLLS = 100  # at most ~2 s: then stop anyway, the others elect a leader
# Requests answered at once with a reply of bounded size (a Stat, a path, a header) or
# later (writes: their replies come once the log has them, paced by the replica). The
# others (getData, getChildren, setWatches, ...) may be answered with megabytes: the
# replica answers a run of requests at once, so a run holds at most a few of them.
_SMALL_REPLY_OPCODES = frozenset(
    {
        OpCode.EXISTS,
        OpCode.SET_DATA,
        OpCode.CREATE,
        OpCode.CREATE2,
        OpCode.CREATE_CONTAINER,
        OpCode.CREATE_TTL,
        OpCode.DELETE,
        OpCode.SET_ACL,
        OpCode.MULTI,
        OpCode.PING,
        OpCode.SYNC,
        OpCode.CHECK_WATCHES,
        OpCode.REMOVE_WATCHES,
        OpCode.ADD_WATCH,
        OpCode.AUTH,
        OpCode.SASL,
        OpCode.GET_ALL_CHILDREN_NUMBER,
        OpCode.CLOSE_SESSION,
    }
)
_LARGE_REPLIES_PER_RUN_MAX = 8
# Python's cyclic collector scans its young generation every 700 container allocations
# by default; a request allocates dozens of short-lived records that are freed by
# reference counting anyway. Scanning every 10,000 costs little memory and saved 9% of
# the CPU per setData and 3.5% per create/delete (in-process replica, min of 3 runs).
_GC_YOUNG_ALLOCATIONS = 10_000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Status(enum.Enum):
    MORE = "more"  # the decoder needs more bytes
    BACKLOG = "backlog"  # the client has not read enough of its output: wait for it
    DONE = "done"  # the connection is over


@dataclass(slots=True)
class _Client:
    connection_id: int
    transport: asyncio.Transport
    codec: ServerConnection
    address: str
    port: int
    closing: bool = False
    unsent: list[bytes] = field(default_factory=list)  # frames waiting for the next flush
    unsent_bytes: int = 0
    write_paused: bool = False  # the transport's buffer is over its high-water mark
    backlog: bool = False  # decoding stopped until the client reads (reading paused)
    eof: bool = False  # the peer closed its side
    finished: bool = False  # the replica has been told the connection is closed
    drain_waiters: list[asyncio.Future[None]] = field(default_factory=list)


class _ClientProtocol(asyncio.Protocol):
    """The loop's callbacks for one client connection, handed to the Server."""

    __slots__ = ("_client", "_server")

    def __init__(self, server: Server) -> None:
        self._server = server
        self._client: _Client | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports have the Transport methods without the base class.
        self._client = self._server._client_opened(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        client = self._client
        assert client is not None
        if not client.closing:
            client.codec.receive_data(data)
            self._server._serve_events(client)

    def eof_received(self) -> bool:
        client = self._client
        assert client is not None
        client.eof = True
        if not client.closing:
            client.codec.receive_data(b"")
            self._server._serve_events(client)
        return True  # the server closes it, after the replies to what came before

    def connection_lost(self, exc: Exception | None) -> None:
        assert self._client is not None
        self._server._client_lost(self._client, exc)

    def pause_writing(self) -> None:
        assert self._client is not None
        self._client.write_paused = True

    def resume_writing(self) -> None:
        assert self._client is not None
        self._server._client_writable(self._client)


@dataclass(slots=True)
class Server:
    """A standalone corral server. `await server.serve()` runs until `stop()`."""

    config: ServerConfig
    trace_mask: int = fourletter.DEFAULT_TRACE_MASK
    started_ms: int = field(default_factory=monotonic_ms)
    replica: Replica = field(init=False)
    _log: DurableLog = field(init=False)
    _io: ThreadPoolExecutor = field(init=False)
    _snapshotter: Snapshotter = field(init=False)
    _tasks: asyncio.TaskGroup | None = field(init=False, default=None)
    _clients: dict[int, _Client] = field(init=False, default_factory=dict)
    _next_connection_id: int = field(init=False, default=1)
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _listener: asyncio.Server | None = field(init=False, default=None)
    _persist_queue: asyncio.Queue[Outbox] = field(init=False, default_factory=asyncio.Queue)
    _log_idle: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _received_at_last_persist: int = field(init=False, default=0)  # client requests
    # Connections that sent anything since the last persist was handed out.
    _active_since_persist: set[int] = field(init=False, default_factory=set)
    _dirty: list[_Client] = field(init=False, default_factory=list)
    _flush_scheduled: bool = field(init=False, default=False)
    bound_port: int = field(init=False, default=0)
    admin: AdminServer | None = field(init=False, default=None)  # the HTTP AdminServer
    _peers: PeerTransport | None = field(init=False, default=None)  # ensemble links

    def __post_init__(self) -> None:
        # Recovery (storage/): the newest valid snapshot, the log after it; Raft replays it.
        tree, wal = open_durable(self.config)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-io")
        self._log = DurableLog(wal, self._io, self.config.data_dir)
        self._snapshotter = Snapshotter(
            config=self.config,
            wal=wal,
            rng=random.Random(int.from_bytes(os.urandom(8), "big")),
            on_durable=self._on_snapshot_durable,
        )
        self.replica = Replica(
            config=self.config.replica_config(),
            storage=self._log.storage,
            tree=tree,
            random_bytes=os.urandom,
            rng_seed=int.from_bytes(os.urandom(8), "big"),
            now_ms=monotonic_ms(),
            wall_ms=wall_ms(),
            check_invariants=False,
        )
        self.replica.persist_hook = self._start_persist
        if self.config.is_ensemble:
            me = next(m for m in self.config.members if m.replica_id == self.config.my_id)
            self._peers = PeerTransport(
                replica_id=me.replica_id,
                listen=PeerAddress(host=me.host, port=me.quorum_port),
                peers={
                    m.replica_id: PeerAddress(
                        host=self.config.peer_dial_address(m)[0],
                        port=self.config.peer_dial_address(m)[1],
                    )
                    for m in self.config.members
                    if m.replica_id != me.replica_id
                },
                secret=self.config.ensemble_secret.encode(),
                fingerprint=membership_fingerprint(
                    (m.replica_id for m in self.config.members if not m.observer),
                    (m.replica_id for m in self.config.members if m.observer),
                ),
                on_payload=self._on_payload,
                on_link_lost=self._on_peer_link_lost,
            )

    def _on_snapshot_durable(self, meta: SnapshotMeta) -> None:
        """The snapshot writer finished: Raft compacts first, then the WAL (in memory; the
        files go at the next purge) and a new segment starts."""
        self._execute(self.replica.on_snapshot_durable(meta))
        wal = self._log.storage
        if meta.index >= wal.first_index() - 1:  # else a received snapshot overtook it
            wal.compact(meta.index, meta)
            wal.request_roll()

    def _on_payload(self, peer_id: int, payload: bytes) -> None:
        self._execute(self.replica.on_message(peer_id, payload, monotonic_ms(), wall_ms()))

    def _on_peer_link_lost(self, peer_id: int) -> None:
        self._execute(self.replica.on_peer_link_lost(peer_id, monotonic_ms(), wall_ms()))

    def _send_to_peers(self, messages: list[tuple[int, bytes]]) -> None:
        assert self._peers is not None or not messages, "a standalone server has no peers"
        for peer_id, payload in messages:
            assert self._peers is not None
            self._peers.send(peer_id, payload)  # dropped when full: Raft retries

    # ServerView for four-letter words
    def now_ms(self) -> int:
        return monotonic_ms()

    def wall_ms(self) -> int:
        return wall_ms()

    async def serve(self, ready: Callable[[int], None] | None = None) -> None:
        os.makedirs(self.config.data_dir, exist_ok=True)
        # The AdminServer binds first and stops last; a port it cannot bind stops the
        # start-up (as in ZooKeeper).
        async with (
            contextlib.aclosing(await start_admin_server(self)) as self.admin,
            asyncio.TaskGroup() as tasks,
        ):
            self._tasks = tasks
            log_writer = tasks.create_task(self._log_writer())
            tasks.create_task(purge_loop(self.config, self._log, self._stopping))
            if self._peers is not None:
                tasks.create_task(self._peers.run())
                log.info(
                    "ensemble member %d of %s",
                    self.config.my_id,
                    ",".join(str(m.replica_id) for m in self.config.members),
                )
            self._log_idle.set()
            self._execute(self.replica.take_startup_outbox())
            # The first term must be durable before the replica can lead and serve.
            await self._log_idle.wait()
            await self._serve_clients(tasks, ready)
            # Finish the persist in flight (a write a client may be waiting for), then stop.
            await self._log_idle.wait()
            log_writer.cancel()
            if self._peers is not None:
                self._peers.stop()
            await self._snapshotter.stop()
        await self._log.on_io_thread(self._log.storage.close)
        self._io.shutdown()
        log.info("corral stopped")

    async def _serve_clients(
        self, tasks: asyncio.TaskGroup, ready: Callable[[int], None] | None
    ) -> None:
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: _ClientProtocol(self),
            host=self.config.client_port_address,
            port=self.config.client_port,
            reuse_address=True,
        )
        sockets: tuple[socket.socket, ...] = tuple(self._listener.sockets or ())
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.config.client_port
        log.info(
            "corral serving on %s:%d (tickTime=%dms, session timeout %d..%dms, dataDir=%s)",
            self.config.client_port_address,
            self.bound_port,
            self.config.tick_time_ms,
            self.config.min_session_timeout_effective_ms,
            self.config.max_session_timeout_effective_ms,
            self.config.data_dir,
        )
        if ready is not None:
            ready(self.bound_port)
        ticker = tasks.create_task(self._tick_loop())
        await self._stopping.wait()
        if self._peers is not None:
            await self._hand_over_leadership()
        self._listener.close()
        for client in list(self._clients.values()):
            self._close_client(client)
        await ticker
        await self._listener.wait_closed()

    def stop(self) -> None:
        self._stopping.set()

    async def _hand_over_leadership(self) -> None:
        """A leader that stops gracefully first makes another member leader (bounded)."""
        self._execute(self.replica.on_shutdown(monotonic_ms()))
        for _ in range(_HAND_OVER_POLLS):
            if not self.replica.is_leader:
                return
            await asyncio.sleep(_HAND_OVER_POLL_MS / 1000)  # the tick loop still runs

    # ------------------------------------------------------------------ time

    async def _tick_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _TICK_INTERVAL_MS / 1000)
            if self._stopping.is_set():
                return
            self._execute(self.replica.on_tick(monotonic_ms(), wall_ms()))

    # ------------------------------------------------------------------ clients

    def _client_opened(self, transport: asyncio.Transport) -> _Client:
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        peer = transport.get_extra_info("peername") or ("?", 0)
        address, port = str(peer[0]), int(peer[1])
        client = _Client(
            connection_id=connection_id,
            transport=transport,
            codec=ServerConnection(frame_size_max=self.config.jute_max_buffer),
            address=address,
            port=port,
        )
        self._clients[connection_id] = client
        self._execute(
            self.replica.on_connection_opened(connection_id, address, port, monotonic_ms())
        )
        if client.closing:
            log.warning(
                "refused connection from %s: more than %d connections",
                address,
                self.config.max_client_cnxns,
            )
            self._finish_client(client)
        return client

    def _serve_events(self, client: _Client) -> None:
        """Decode what the client sent and run it, unless it must read its output first."""
        status = self._handle_events(client)
        while status is _Status.BACKLOG:
            # Back-pressure: answer nothing more (and read nothing more) until the
            # client has taken most of what it was sent (resume_writing).
            self._flush_client(client)
            if client.write_paused:
                client.backlog = True
                if not client.eof:
                    client.transport.pause_reading()
                return
            status = self._handle_events(client)
        if status is _Status.DONE:
            self._finish_client(client)

    def _client_writable(self, client: _Client) -> None:
        """The transport's buffer is below its low-water mark again."""
        client.write_paused = False
        waiters, client.drain_waiters = client.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if client.backlog and not client.closing:
            client.backlog = False
            self._serve_events(client)
            if not client.backlog and not client.closing and not client.eof:
                client.transport.resume_reading()

    def _client_lost(self, client: _Client, exc: Exception | None) -> None:
        if exc is not None:
            log.debug(
                "connection %d from %s:%d: %s",
                client.connection_id,
                client.address,
                client.port,
                exc,
            )
        client.closing = True
        client.unsent.clear()
        client.unsent_bytes = 0
        self._client_writable(client)  # wakes whoever waits for a drain
        self._finish_client(client)

    def _finish_client(self, client: _Client) -> None:
        """The connection is over: the replica hears it once, and the transport closes
        after the frames queued before."""
        self._close_client(client)
        if client.finished:
            return
        client.finished = True
        self._clients.pop(client.connection_id, None)
        self._execute(self.replica.on_connection_closed(client.connection_id))

    def _handle_events(self, client: _Client) -> _Status:
        """Feed decoded events to the replica, until more data is needed (MORE), the
        client's unread output is over the high-water mark (BACKLOG), or it is DONE."""
        connection_id = client.connection_id
        codec = client.codec
        self._active_since_persist.add(connection_id)
        # One clock reading per received chunk: the requests of one read arrived together.
        now, wall = monotonic_ms(), wall_ms()
        # The transport's buffer grows only when frames are flushed, which happens on a
        # later loop iteration or when this client closes (which ends this loop).
        buffered = client.transport.get_write_buffer_size()
        high_water = limits.CLIENT_OUTPUT_HIGH_WATER_BYTES - buffered
        # Consecutive requests go to the replica together (one Outbox, one persist for
        # the writes among them). Output grows only when a run is answered, and a run
        # holds few requests whose reply may be large, so the high-water check before
        # each run bounds the overshoot to _LARGE_REPLIES_PER_RUN_MAX replies.
        requests: list[Request] = []
        large_replies = 0
        while not client.closing:
            if client.unsent_bytes > high_water:
                return _Status.BACKLOG
            try:
                event = codec.next_event()
            except RemoteProtocolError as e:
                if requests:
                    self._execute(self.replica.on_requests(connection_id, requests, now, wall))
                log.warning("closing connection from %s:%d: %s", client.address, client.port, e)
                return _Status.DONE
            if isinstance(event, Request):
                requests.append(event)
                if event.opcode not in _SMALL_REPLY_OPCODES:
                    large_replies += 1
                    if large_replies == _LARGE_REPLIES_PER_RUN_MAX:
                        self._execute(self.replica.on_requests(connection_id, requests, now, wall))
                        requests, large_replies = [], 0
                continue
            if requests:
                self._execute(self.replica.on_requests(connection_id, requests, now, wall))
                requests, large_replies = [], 0
                if client.closing:
                    break
            if event is NEED_DATA:
                return _Status.MORE
            if event is PEER_CLOSED:
                return _Status.DONE
            if isinstance(event, Connect):
                self._execute(self.replica.on_connect(connection_id, event.request, now, wall))
            elif isinstance(event, BadRequest):
                log.warning(
                    "request from %s:%d (xid %d, opcode %d): %s",
                    client.address,
                    client.port,
                    event.xid,
                    event.opcode,
                    event.reason,
                )
                self._execute(self.replica.on_bad_request(connection_id, event, now))
            elif isinstance(event, FourLetterWord):
                if event.word:
                    text = fourletter.answer(event.word, self, event.argument)
                    client.transport.write(text.encode("utf-8"))  # the close flushes it
                return _Status.DONE
        return _Status.DONE

    async def _drain(self, client: _Client) -> None:
        """Wait until the client has taken most of its output (or is gone)."""
        if not client.write_paused or client.closing:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.drain_waiters.append(waiter)
        await waiter

    def _abort_client(self, client: _Client) -> None:
        """Close without flushing what is queued (the client is not reading it)."""
        client.closing = True
        client.transport.abort()

    def _close_client(self, client: _Client) -> None:
        if client.transport.is_closing():
            return
        self._flush_client(client)  # a close follows the frames queued before it
        client.closing = True
        client.transport.close()

    # ------------------------------------------------------------------ outbox execution

    def _execute(self, out: Outbox) -> None:
        """Run an Outbox in contract order; its persist goes to the log writer task.

        Client frames are written at once: the replica only ever replies about entries
        that were durable before this Outbox was made, so they need not wait for this
        Outbox's persist (and later Outboxes need not wait either: group commit). The
        consensus messages of `send` wait for the persist, in the log writer; those of
        `send_now` (forwarded writes, touches) go at once.
        """
        self._send_to_peers(out.send_now)
        self._write_frames(out.reply)
        for connection_id in out.close:
            client = self._clients.get(connection_id)
            if client is not None:
                self._close_client(client)
        for connection_id in out.paused:
            client = self._clients.get(connection_id)
            if client is not None and self._tasks is not None:
                self._tasks.create_task(self._resume_when_read(client))
        if out.persist is not None:
            # The replica hands out one persist at a time (it waits for on_persisted).
            assert self._persist_queue.empty(), "two persists in flight"
            self._log_idle.clear()
            self._persist_queue.put_nowait(out)
        else:
            self._send_to_peers(out.send)
            self._stream_snapshots(out.snapshot_sends)

    def _stream_snapshots(self, sends: list[SnapshotSend]) -> None:
        """Each send reads its snapshot file on the IO thread, then queues the chunks."""
        if self._tasks is None:
            return  # stopping: Raft asks again after a restart
        for send in sends:
            self._tasks.create_task(self._stream_snapshot(send))

    async def _stream_snapshot(self, send: SnapshotSend) -> None:
        content = await self._log.load_snapshot(send.meta)
        if content is None:
            log.info(
                "snapshot %d for replica %d is gone; the leader will offer a newer one",
                send.meta.index,
                send.to_id,
            )
            return
        assert self._peers is not None, "only an ensemble sends snapshots"
        log.info(
            "sending snapshot %d (%d bytes) to replica %d",
            send.meta.index,
            len(content),
            send.to_id,
        )
        # A chunk at a time, each encoded as it goes (a copy of 1 MiB: well under a
        # millisecond of the loop), with at most a few queued for the link: the file's
        # content plus a few MiB in memory, not a second copy of the whole snapshot.
        # The follower restarts a transfer stalled for initLimit x tickTime; so do we.
        stall_s = self.config.init_limit_ticks * self.config.tick_time_ms / 1000
        for peer_id, payload in snapshot_chunk_payloads(send, content):
            queued = await self._peers.send_paced(
                peer_id,
                payload,
                queued_max=limits.SNAPSHOT_CHUNKS_QUEUED_MAX,
                timeout_s=stall_s,
            )
            if not queued:
                log.info(
                    "snapshot %d to replica %d stalled (no room on its link for %.0f s); "
                    "Raft will offer it again",
                    send.meta.index,
                    send.to_id,
                    stall_s,
                )
                return

    async def _resume_when_read(self, client: _Client) -> None:
        """Give the replica the next batch of a paused connection once it read this one."""
        self._flush_client(client)
        await self._drain(client)
        if not client.closing:
            self._execute(self.replica.on_output_drained(client.connection_id, monotonic_ms()))

    async def _log_writer(self) -> None:
        """Owns the log: persist, then tell the replica, then run what that unlocks."""
        while True:
            out = await self._persist_queue.get()
            assert out.persist is not None
            await self._log.persist(out.persist)  # begun by _start_persist
            if out.persist.snapshot is not None:
                self._snapshotter.note_installed(out.persist.snapshot.meta)
            self._send_to_peers(out.send)  # votes and appends only once durable
            self._stream_snapshots(out.snapshot_sends)
            self._execute(self.replica.on_persisted(out.persist.token, monotonic_ms(), wall_ms()))
            if self._tasks is not None:
                self._snapshotter.maybe_snapshot(self.replica.snapshot_meta(), self._tasks)
            if self._persist_queue.empty():
                self._log_idle.set()

    def _start_persist(self, persist: Persist) -> None:
        """The replica's persist hook: start writing the batch at once, before the
        replica applies what the previous one committed (the log writer task waits for
        it and tells the replica)."""
        # Quiet: one connection at most sent anything since the last batch, and the only
        # requests since are the writes in this one. (Requests alone are not enough: a
        # storm of new sessions sends only handshakes, and written on the loop one by
        # one they would each wait for an fsync instead of sharing one.)
        received = self.replica.stats.packets_received
        quiet = len(
            self._active_since_persist
        ) <= 1 and received - self._received_at_last_persist <= len(persist.entries)
        self._received_at_last_persist = received
        self._active_since_persist.clear()
        self._log.start(persist, quiet=quiet)

    def _write_frames(self, frames: list[tuple[int, bytes]]) -> None:
        """Queue frames; they go out in one write per connection per loop iteration.

        A write system call per reply costs more than the rest of a read request.
        """
        for connection_id, frame in frames:
            client = self._clients.get(connection_id)
            if client is None or client.closing:
                continue
            if not client.unsent:
                self._dirty.append(client)
            client.unsent.append(frame)
            client.unsent_bytes += len(frame)
            if (
                client.unsent_bytes + client.transport.get_write_buffer_size()
                > limits.CLIENT_OUTPUT_BYTES_MAX
            ):
                # A client that does not read what it asked for (or what it watches)
                # would make us hold its replies forever: drop it, as ZooKeeper would.
                log.warning(
                    "closing connection %d: more than %d bytes it does not read",
                    connection_id,
                    limits.CLIENT_OUTPUT_BYTES_MAX,
                )
                client.unsent.clear()
                client.unsent_bytes = 0
                self._abort_client(client)
        if self._dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            self._flush_client(client)

    @staticmethod
    def _flush_client(client: _Client) -> None:
        if client.unsent:
            frames, client.unsent = client.unsent, []
            client.unsent_bytes = 0
            if not client.transport.is_closing():
                client.transport.writelines(frames)


def run(config: ServerConfig) -> int:
    """Run a server in the foreground until SIGTERM or SIGINT; the process exit code."""

    async def main() -> None:
        try:
            server = Server(config)
        except StorageError as e:
            log.critical("cannot start: %s", e)
            raise SystemExit(1) from e
        # The recovered tree lives long: keep it out of the collector's full scans.
        gc.freeze()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _on_signal(server, signum))
        try:
            await server.serve()
        except AdminServerError as e:
            log.critical("Unable to start AdminServer, exiting abnormally: %s", e)
            raise SystemExit(4) from e  # ZooKeeper's exit code for this

    _, *older_thresholds = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_ALLOCATIONS, *older_thresholds)
    _run_loop(main)
    return 0


def _on_signal(server: Server, signum: int) -> Callable[[], None]:
    def handler() -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        server.stop()

    return handler


def _run_loop(main: Callable[[], Awaitable[None]]) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on every platform)
        asyncio.run(main())  # type: ignore[arg-type]
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())  # type: ignore[arg-type]
