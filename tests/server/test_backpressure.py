"""A client that asks for more than it reads cannot make the server hold it all."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from corral.cli.launch import CorralServer
from corral.protocol.constants import OpCode
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    ConnectRequest,
    CreateRequest,
    ExistsRequest,
    GetDataRequest,
    RequestHeader,
)
from tests.support.raw_client import RawClient

VALUE_SIZE = 900_000  # bytes: each reply is about this big
REQUESTS = 2_000  # would be ~1.8 GB of replies if the server answered them all at once
SEND_BOUND_S = 10


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def test_a_client_that_does_not_read_is_paused_not_buffered() -> None:
    with CorralServer() as server:
        with RawClient(server.host, server.port) as setup:
            setup.connect()
            request = CreateRequest(
                path="/big", data=b"x" * VALUE_SIZE, acl=OPEN_ACL_UNSAFE, flags=0
            )
            assert setup.request(OpCode.CREATE, request).err == 0
        rss_before = rss_bytes(server.pid)

        greedy = socket.create_connection((server.host, server.port), timeout=5)
        try:
            connect = ConnectRequest(
                protocol_version=0,
                last_zxid_seen=0,
                timeout_ms=30_000,
                session_id=0,
                password=bytes(16),
                read_only=False,
            )
            greedy.sendall(frame(connect.to_bytes()))
            get = GetDataRequest(path="/big", watch=False).to_bytes()
            requests = b"".join(
                frame(RequestHeader(xid=i + 1, opcode=OpCode.GET_DATA).to_bytes() + get)
                for i in range(REQUESTS)
            )
            # Send as much as the server takes within the bound, never reading a reply.
            greedy.setblocking(False)
            sent, deadline = 0, time.monotonic() + SEND_BOUND_S
            while sent < len(requests) and time.monotonic() < deadline:
                try:
                    sent += greedy.send(requests[sent : sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
            time.sleep(1)

            # The server held back instead of building ~1.8 GB of replies...
            assert rss_bytes(server.pid) - rss_before < 200 * 1_048_576
            # ...and it still serves everyone else.
            with RawClient(server.host, server.port) as other:
                other.connect()
                reply = other.request(OpCode.EXISTS, ExistsRequest(path="/big", watch=False))
                assert reply.err == 0
                assert reply.body.stat.data_length == VALUE_SIZE  # type: ignore[union-attr]

            # When the greedy client reads, its replies come, in order.
            greedy.setblocking(True)
            greedy.settimeout(10)
            buffer = b""
            while len(buffer) < 41:  # the connect response
                buffer += greedy.recv(65536)
            buffer = buffer[41:]
            for expected_xid in range(1, 4):
                while len(buffer) < 4 or len(buffer) < 4 + struct.unpack(">i", buffer[:4])[0]:
                    chunk = greedy.recv(1 << 20)
                    assert chunk, "server closed the connection"
                    buffer += chunk
                size = struct.unpack(">i", buffer[:4])[0]
                xid, _zxid, err = struct.unpack(">iqi", buffer[4:20])
                assert (xid, err) == (expected_xid, 0)
                buffer = buffer[4 + size :]
        finally:
            greedy.close()
