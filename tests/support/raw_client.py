"""A tiny synchronous ZooKeeper client speaking the raw protocol, for tests.

Rules: one TCP connection to 127.0.0.1 per RawClient, encoded and decoded with
corral's own sans-IO ClientConnection, so nothing between the test and the wire
hides a difference. Every read is bounded by a deadline; nothing retries,
reconnects or pings on its own. Everything received is kept in arrival order
(`received`), so a test can see whether a notification came before or after a reply.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass

from corral.limits import PASSWORD_SIZE
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    ClientConnection,
    Connected,
    Notification,
    Reply,
)
from corral.protocol.constants import OpCode, SpecialXid
from corral.protocol.errors import ProtocolError
from corral.protocol.records import ConnectRequest, ConnectResponse, Record

READ_TIMEOUT_MS = 10_000  # default bound on any single wait for the server
RECV_SIZE = 1 << 16
ZERO_PASSWORD = bytes(PASSWORD_SIZE)


class ConnectionClosed(Exception):
    """The server closed the connection (or it broke) before what we waited for."""


class ReadTimeout(Exception):
    """Nothing we waited for arrived before the deadline."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed:
    """Marker in `received`: the peer closed the connection here."""

    reason: str


Received = Reply | Notification | Connected | Closed


class RawClient:
    __slots__ = (
        "_conn",
        "_inbox",
        "_next_xid",
        "_sock",
        "closed",
        "connect_response",
        "host",
        "port",
        "read_timeout_ms",
        "received",
    )

    def __init__(self, host: str, port: int, *, read_timeout_ms: int = READ_TIMEOUT_MS) -> None:
        self.host = host
        self.port = port
        self.read_timeout_ms = read_timeout_ms
        self._sock = socket.create_connection((host, port), timeout=read_timeout_ms / 1000)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = ClientConnection()
        self._inbox: deque[Received] = deque()  # received, not yet consumed by a wait
        self._next_xid = 1
        self.received: list[Received] = []  # everything, in arrival order
        self.closed: Closed | None = None
        self.connect_response: ConnectResponse | None = None

    # ------------------------------------------------------------------ handshake

    def connect(
        self,
        *,
        timeout_ms: int = 10_000,
        session_id: int = 0,
        password: bytes = ZERO_PASSWORD,
        read_only: bool | None = False,
        last_zxid_seen: int = 0,
        wait_ms: int | None = None,
    ) -> ConnectResponse | None:
        """Handshake; None if the server closed the connection without a response."""
        request = ConnectRequest(
            protocol_version=0,
            last_zxid_seen=last_zxid_seen,
            timeout_ms=timeout_ms,
            session_id=session_id,
            password=password,
            read_only=read_only,
        )
        self.send_raw(self._conn.connect(request))
        try:
            event = self._wait(lambda e: isinstance(e, Connected), wait_ms)
        except ConnectionClosed:
            return None
        assert isinstance(event, Connected)
        self.connect_response = event.response
        return event.response

    # ------------------------------------------------------------------ requests

    def send(self, opcode: int, record: Record | None = None, *, xid: int | None = None) -> int:
        """Send one request without waiting; returns its xid."""
        if xid is None:
            xid = self._allocate_xid(opcode)
        self.send_raw(self._conn.send_request(xid, opcode, record))
        return xid

    def request(
        self,
        opcode: int,
        record: Record | None = None,
        *,
        xid: int | None = None,
        wait_ms: int | None = None,
    ) -> Reply:
        """Send one request and wait for its reply (notifications before it are kept)."""
        sent_xid = self.send(opcode, record, xid=xid)
        return self.wait_reply(sent_xid, wait_ms=wait_ms)

    def wait_reply(self, xid: int | None = None, *, wait_ms: int | None = None) -> Reply:
        event = self._wait(lambda e: isinstance(e, Reply), wait_ms)
        assert isinstance(event, Reply)
        if xid is not None and event.xid != xid:
            # The codec already checked FIFO order; a ping is answered with xid -2.
            assert event.opcode == OpCode.PING or xid == SpecialXid.AUTH, (event, xid)
        return event

    def send_raw_request(self, xid: int, opcode: int, data: bytes) -> None:
        """Send hand-made request bytes, expecting a reply to (xid, opcode) if any."""
        self._conn.send_request(xid, opcode, None)  # registers the reply we may get
        self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as e:
            self._mark_closed(f"send failed: {e}")
            raise ConnectionClosed(str(e)) from e

    def shutdown_write(self) -> None:
        """End our side of the stream (a half-close); replies can still arrive."""
        self._sock.shutdown(socket.SHUT_WR)

    # ------------------------------------------------------------------ notifications

    def notifications(self) -> list[Notification]:
        return [e for e in self.received if isinstance(e, Notification)]

    def wait_notifications(self, count: int, *, wait_ms: int | None = None) -> list[Notification]:
        """Wait until `count` more notifications arrive; returns them."""
        got: list[Notification] = []
        for _ in range(count):
            event = self._wait(lambda e: isinstance(e, Notification), wait_ms)
            assert isinstance(event, Notification)
            got.append(event)
        return got

    def take_pending(self) -> list[Received]:
        """Everything received but not yet consumed by a wait, in arrival order."""
        events = list(self._inbox)
        self._inbox.clear()
        return events

    def poll(self, wait_ms: int) -> list[Received]:
        """Read whatever arrives within `wait_ms` and return all pending events."""
        deadline = time.monotonic() + wait_ms / 1000
        while self.closed is None and time.monotonic() < deadline:
            self._read_once(deadline)
        return self.take_pending()

    def wait_closed(self, wait_ms: int) -> bool:
        """True if the server closes the connection within `wait_ms`."""
        deadline = time.monotonic() + wait_ms / 1000
        while self.closed is None and time.monotonic() < deadline:
            self._read_once(deadline)
        return self.closed is not None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Drop the socket (no closeSession: the session lives on until it expires)."""
        try:
            self._sock.close()
        finally:
            if self.closed is None:
                self.closed = Closed(reason="closed by us")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _allocate_xid(self, opcode: int) -> int:
        if opcode == OpCode.PING:
            return int(SpecialXid.PING)
        if opcode == OpCode.AUTH:
            return int(SpecialXid.AUTH)
        xid = self._next_xid
        self._next_xid += 1
        return xid

    def _wait(self, wanted: object, wait_ms: int | None) -> Received:
        """Consume inbox events until one satisfies `wanted`; others stay consumed."""
        assert callable(wanted)
        deadline = time.monotonic() + (wait_ms or self.read_timeout_ms) / 1000
        while True:
            while self._inbox:
                event = self._inbox.popleft()
                if isinstance(event, Closed):
                    raise ConnectionClosed(event.reason)
                if wanted(event):
                    return event
            if self.closed is not None:
                raise ConnectionClosed(self.closed.reason)
            if time.monotonic() >= deadline:
                raise ReadTimeout(f"nothing awaited from {self.host}:{self.port} in time")
            self._read_once(deadline)

    def _read_once(self, deadline: float) -> None:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            return
        self._sock.settimeout(remaining_s)
        try:
            data = self._sock.recv(RECV_SIZE)
        except TimeoutError:
            return
        except OSError as e:
            self._mark_closed(f"recv failed: {e}")
            return
        self._conn.receive_data(data)
        try:
            while True:
                event = self._conn.next_event()
                if event is NEED_DATA:
                    break
                if event is PEER_CLOSED:
                    self._mark_closed("peer closed")
                    break
                assert isinstance(event, Connected | Reply | Notification), event
                self.received.append(event)
                self._inbox.append(event)
        except ProtocolError as e:
            self._mark_closed(f"protocol error from server: {e}")

    def _mark_closed(self, reason: str) -> None:
        if self.closed is not None:
            return
        self.closed = Closed(reason=reason)
        self.received.append(self.closed)
        self._inbox.append(self.closed)
