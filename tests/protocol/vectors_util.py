"""Helpers shared by the protocol tests: hex vectors and connections driven to a state."""

from __future__ import annotations

from corral.protocol.connection import (
    ClientConnection,
    ClientEvent,
    Connect,
    Connected,
    Sentinel,
    ServerConnection,
    ServerEvent,
    encode_connect_response,
)
from corral.protocol.records import ConnectRequest, ConnectResponse

EVENTS_PER_DRAIN_MAX = 100_000  # bound on next_event loops in tests


def h(text: str) -> bytes:
    """Bytes from a §10 hex vector; `|` and whitespace separate fields for reading only."""
    return bytes.fromhex("".join(text.replace("|", " ").split()))


NEW_CONNECT = ConnectRequest(
    protocol_version=0,
    last_zxid_seen=0,
    timeout_ms=30_000,
    session_id=0,
    password=bytes(16),
    read_only=False,
)
NEW_CONNECTED = ConnectResponse(
    protocol_version=0,
    timeout_ms=30_000,
    session_id=0x0100000A8F490000,
    password=bytes(range(16)),
    read_only=False,
)


def drain_server(server: ServerConnection) -> list[ServerEvent]:
    """Every event up to and including the first NEED_DATA or PEER_CLOSED."""
    events: list[ServerEvent] = []
    for _ in range(EVENTS_PER_DRAIN_MAX):
        event = server.next_event()
        events.append(event)
        if isinstance(event, Sentinel):
            return events
    raise AssertionError("server produced too many events")


def drain_client(client: ClientConnection) -> list[ClientEvent]:
    """Every event up to and including the first NEED_DATA or PEER_CLOSED."""
    events: list[ClientEvent] = []
    for _ in range(EVENTS_PER_DRAIN_MAX):
        event = client.next_event()
        events.append(event)
        if isinstance(event, Sentinel):
            return events
    raise AssertionError("client produced too many events")


def connected_server() -> ServerConnection:
    """A ServerConnection past the handshake."""
    server = ServerConnection()
    server.receive_data(ClientConnection().connect(NEW_CONNECT))
    event = server.next_event()
    assert isinstance(event, Connect), event
    return server


def connected_client() -> ClientConnection:
    """A ClientConnection that has received its ConnectResponse."""
    client = ClientConnection()
    client.connect(NEW_CONNECT)
    client.receive_data(encode_connect_response(NEW_CONNECTED))
    event = client.next_event()
    assert isinstance(event, Connected), event
    return client
