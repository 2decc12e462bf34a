"""Drive a Replica with no IO: a fake clock, an in-memory log, decoded client frames.

The harness plays the asyncio driver's part exactly (outbox contract: persist, then
on_persisted; frames in order; closes) but can also hold persists back, so tests can
check that nothing is acknowledged before it is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.consensus.log_storage import MemoryLogStorage
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    BadRequest,
    ClientConnection,
    Connect,
    Connected,
    FourLetterWord,
    Notification,
    Reply,
    Request,
    ServerConnection,
)
from corral.protocol.records import ConnectRequest, Record
from corral.replica.outbox import Outbox, Persist
from corral.replica.replica import Replica, ReplicaConfig
from corral.tree.tree import DataTree

WALL_EPOCH_MS = 1_700_000_000_000


@dataclass
class FakeClient:
    connection_id: int
    codec: ClientConnection = field(default_factory=ClientConnection)
    received: list[Connected | Reply | Notification] = field(default_factory=list)
    closed: bool = False
    next_xid: int = 1
    decode: bool = True  # False for clients fed raw bytes: their replies are only counted
    frames: int = 0


class Harness:
    def __init__(self, config: ReplicaConfig | None = None, *, auto_persist: bool = True) -> None:
        self.now_ms = 0
        self.storage = MemoryLogStorage()
        self.tree = DataTree(extended_types_enabled=True)
        self._counter = 0
        self.replica = Replica(
            config=config or ReplicaConfig(),
            storage=self.storage,
            tree=self.tree,
            random_bytes=self._random_bytes,
            rng_seed=7,
            now_ms=0,
            wall_ms=WALL_EPOCH_MS,
        )
        self.clients: dict[int, FakeClient] = {}
        self.auto_persist = auto_persist
        self.held: list[Persist] = []
        self.auto_drain = True  # clients read everything at once
        self.paused: list[int] = []  # connections waiting for on_output_drained
        self._next_connection_id = 1
        self.execute(self.replica.take_startup_outbox())

    def _random_bytes(self, size: int) -> bytes:
        self._counter += 1
        return bytes((self._counter + i) % 256 for i in range(size))

    @property
    def wall_ms(self) -> int:
        return WALL_EPOCH_MS + self.now_ms

    # ------------------------------------------------------------------ outbox execution

    def execute(self, out: Outbox) -> None:
        pending = [out]
        while pending:
            current = pending.pop(0)
            assert not current.send
            assert not current.send_now
            for connection_id, frame in current.reply:
                client = self.clients.get(connection_id)
                if client is None or client.closed:
                    continue
                client.frames += 1
                if not client.decode:
                    continue
                client.codec.receive_data(frame)
                while True:
                    event = client.codec.next_event()
                    if event is NEED_DATA or event is PEER_CLOSED:
                        break
                    client.received.append(event)  # type: ignore[arg-type]
            for connection_id in current.close:
                client = self.clients.get(connection_id)
                if client is not None and not client.closed:
                    client.closed = True
                    self.replica.on_connection_closed(connection_id)
            for connection_id in current.paused:
                if self.auto_drain:
                    pending.append(self.replica.on_output_drained(connection_id, self.now_ms))
                else:
                    self.paused.append(connection_id)
            if current.persist is not None:
                if self.auto_persist:
                    self._persist(current.persist)
                    pending.insert(
                        0,
                        self.replica.on_persisted(current.persist.token, self.now_ms, self.wall_ms),
                    )
                else:
                    self.held.append(current.persist)

    def _persist(self, persist: Persist) -> None:
        if persist.entries:
            self.storage.append(persist.entries)
        if persist.hard_state is not None:
            self.storage.set_hard_state(persist.hard_state)

    def release(self) -> None:
        """Complete the held persists, in order."""
        while self.held:
            persist = self.held.pop(0)
            self._persist(persist)
            self.execute(self.replica.on_persisted(persist.token, self.now_ms, self.wall_ms))

    # ------------------------------------------------------------------ clients

    def open(self, address: str = "127.0.0.1") -> FakeClient:
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        client = FakeClient(connection_id=connection_id)
        self.clients[connection_id] = client
        self.execute(
            self.replica.on_connection_opened(
                connection_id, address, 40000 + connection_id, self.now_ms
            )
        )
        return client

    def connect(self, client: FakeClient, **fields: object) -> None:
        request = ConnectRequest(
            protocol_version=0,
            last_zxid_seen=int(fields.get("last_zxid_seen", 0)),  # type: ignore[call-overload]
            timeout_ms=int(fields.get("timeout_ms", 30_000)),  # type: ignore[call-overload]
            session_id=int(fields.get("session_id", 0)),  # type: ignore[call-overload]
            password=bytes(fields.get("password", bytes(16))),  # type: ignore[call-overload]
            read_only=False,
        )
        client.codec.connect(request)
        self.execute(
            self.replica.on_connect(client.connection_id, request, self.now_ms, self.wall_ms)
        )

    def session(self) -> FakeClient:
        client = self.open()
        self.connect(client)
        return client

    def send(
        self, client: FakeClient, opcode: int, record: Record | None = None, xid: int | None = None
    ) -> int:
        if xid is None:
            xid = client.next_xid
            client.next_xid += 1
        client.codec.send_request(xid, opcode, record)
        event = Request(xid=xid, opcode=opcode, request=record, size=0)
        self.execute(
            self.replica.on_request(client.connection_id, event, self.now_ms, self.wall_ms)
        )
        return xid

    def feed_bytes(self, client: FakeClient, codec: ServerConnection, data: bytes) -> None:
        """Bytes from the client through a real ServerConnection (for fuzzing)."""
        client.decode = False
        codec.receive_data(data)
        while True:
            event = codec.next_event()
            if event is NEED_DATA or event is PEER_CLOSED:
                return
            if isinstance(event, Connect):
                self.execute(
                    self.replica.on_connect(
                        client.connection_id, event.request, self.now_ms, self.wall_ms
                    )
                )
            elif isinstance(event, Request):
                self.execute(
                    self.replica.on_request(client.connection_id, event, self.now_ms, self.wall_ms)
                )
            elif isinstance(event, BadRequest):
                self.execute(self.replica.on_bad_request(client.connection_id, event, self.now_ms))
            elif isinstance(event, FourLetterWord):
                return

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.execute(self.replica.on_tick(self.now_ms, self.wall_ms))

    def replies(self, client: FakeClient) -> list[Reply]:
        return [e for e in client.received if isinstance(e, Reply)]

    def notifications(self, client: FakeClient) -> list[Notification]:
        return [e for e in client.received if isinstance(e, Notification)]
