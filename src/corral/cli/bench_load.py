"""The load generator of `corral bench`: raw connections, workloads, one client process.

Rules:
- The wire is spoken with corral's own sans-IO codec (protocol.connection.ClientConnection
  and protocol.records) over asyncio transports, never through a client library: the
  instrument must not be the bottleneck it measures. A connection is an asyncio.Protocol
  whose data_received decodes every whole frame, hands replies to the current consumer
  and then writes, in one transport.write, every request the consumer queued meanwhile.
- Many requests are in flight per connection. Replies are matched to requests by xid
  (the codec keeps the FIFO and refuses an out-of-order xid; we check it again against
  our own record of send times).
- Every run is bounded by a count AND a deadline: `Budget.take` hands out operation
  indexes until either runs out, and draining the requests still in flight has its own
  timeout. Every wait has a timeout.
- Latency is measured from the moment a request is queued for writing to the moment the
  bytes holding its reply arrive (one clock reading per read, before decoding), on
  time.perf_counter_ns, which is CLOCK_MONOTONIC on Linux and so comparable across the
  client processes of one run.
- Network traffic goes only where the caller points it (127.0.0.1 in tests).
- Everything the benchmark creates lives under ROOT_PATH; `cleanup` removes it without
  recursion (the layout is three levels deep and known).
"""

from __future__ import annotations

import asyncio
import enum
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol, cast

from corral.cli.bench_stats import Reservoir
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    ClientConnection,
    Connected,
    Notification,
    Reply,
)
from corral.protocol.constants import ANY_VERSION, CreateMode, ErrorCode, OpCode
from corral.protocol.errors import ProtocolError
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    ConnectRequest,
    ConnectResponse,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    ExistsRequest,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    MultiRequest,
    MultiResponse,
    Record,
    SetDataRequest,
)

ROOT_PATH = "/corral-bench"
DATA_PARENT_PATH = f"{ROOT_PATH}/data"
CHILDREN_PARENT_PATH = f"{ROOT_PATH}/children"
EPHEMERAL_PARENT_PATH = f"{ROOT_PATH}/eph"
LARGE_PARENT_PATH = f"{ROOT_PATH}/large"
WATCH_PATH = f"{ROOT_PATH}/watch"
MEMORY_PARENT_PATH = f"{ROOT_PATH}/memory"
PARENT_PATHS = (
    DATA_PARENT_PATH,
    CHILDREN_PARENT_PATH,
    EPHEMERAL_PARENT_PATH,
    LARGE_PARENT_PATH,
    WATCH_PATH,
    MEMORY_PARENT_PATH,
)

DATA_KEYS_COUNT = 100  # znodes the small-value workloads spread over
CHILDREN_COUNT = 100  # children listed by the `children` workload
LARGE_KEYS_COUNT = 4
MULTI_OPS_COUNT = 5
SMALL_VALUE_SIZE = 100  # bytes
LARGE_VALUE_SIZE = 512 * 1024  # bytes
MIX_WRITE_PER_10 = 1  # the 90/10 mix: 1 write in every 10 operations
SETTLE_WRITES = 1_000  # small writes before measuring memory (see _settle)

SESSION_TIMEOUT_MS = 30_000  # requested; every bench connection stays busy far more often
CONNECT_TIMEOUT_S = 10.0  # TCP connect plus handshake
CALL_TIMEOUT_S = 60.0  # one setup request (a 1,000,000-child listing is slow)
CLOSE_TIMEOUT_S = 10.0
CONNECT_CONCURRENCY_MAX = 64  # handshakes in progress at once when opening many connections
# Replies whose body no workload reads: the client checks their header only, so that
# decoding them (getChildren's hundred names) does not make the client the bottleneck.
UNREAD_BODIES = frozenset(
    {OpCode.EXISTS, OpCode.GET_DATA, OpCode.GET_CHILDREN, OpCode.GET_CHILDREN2, OpCode.SET_DATA}
)
ADMIN_WINDOW = 256  # setup requests in flight on the admin connection
XID_MAX = 0x7FFF_FFFF

SMALL_VALUE = bytes(range(SMALL_VALUE_SIZE))
LARGE_VALUE = bytes(i % 251 for i in range(LARGE_VALUE_SIZE))


class BenchError(Exception):
    """The benchmark cannot go on: the server refused, closed or stopped answering."""


def data_key_path(index: int) -> str:
    return f"{DATA_PARENT_PATH}/k-{index % DATA_KEYS_COUNT:04d}"


def large_key_path(index: int) -> str:
    return f"{LARGE_PARENT_PATH}/l-{index % LARGE_KEYS_COUNT:04d}"


def memory_znode_path(index: int) -> str:
    return f"{MEMORY_PARENT_PATH}/z-{index:08d}"


# --------------------------------------------------------------------------- workloads


class Shape(enum.Enum):
    PIPELINED = "pipelined"  # many connections, many requests in flight on each
    SINGLE = "single"  # one connection, one request in flight: latency
    FANOUT = "fanout"  # N watcher sessions on one znode, one writer
    SESSIONS = "sessions"  # open a session, close it, again
    MEMORY = "memory"  # create N znodes, measure the server's RSS growth


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    name: str
    shape: Shape
    summary: str
    # Its operations are writes (tree or session table): their bytes must reach the disk.
    # Not watch-fanout: its operations are notifications, a handful of setData behind them.
    writes: bool
    connections_max: int | None = None  # caps --connections (large values: memory)
    in_flight_max: int | None = None


def _workload(
    name: str, shape: Shape, writes: bool, summary: str, **caps: int
) -> tuple[str, Workload]:
    return name, Workload(name=name, shape=shape, writes=writes, summary=summary, **caps)


WORKLOADS: dict[str, Workload] = dict(
    (
        _workload("get", Shape.PIPELINED, False, "getData of a 100-byte value"),
        _workload("exists", Shape.PIPELINED, False, "exists of a znode"),
        _workload("children", Shape.PIPELINED, False, "getChildren of a znode with 100"),
        _workload("set", Shape.PIPELINED, True, "setData of a 100-byte value"),
        _workload(
            "create-delete",
            Shape.PIPELINED,
            True,
            "create an ephemeral sequential znode, then delete it (2 ops)",
        ),
        _workload("mix", Shape.PIPELINED, True, "90% getData, 10% setData"),
        _workload("multi", Shape.PIPELINED, True, "multi of 5 setData"),
        _workload(
            "latency-read", Shape.SINGLE, False, "getData, one connection, one request in flight"
        ),
        _workload(
            "latency-write", Shape.SINGLE, True, "setData, one connection, one request in flight"
        ),
        _workload(
            "watch-fanout",
            Shape.FANOUT,
            False,
            "setData on a znode N sessions watch: time to the last notification",
        ),
        _workload(
            "session-storm",
            Shape.SESSIONS,
            True,
            "open a session and close it, on many connections at once",
        ),
        _workload(
            "memory", Shape.MEMORY, True, "create N znodes of 100 bytes: server RSS growth / N"
        ),
        _workload(
            "large",
            Shape.PIPELINED,
            True,
            "alternate setData and getData of 512 KiB values",
            connections_max=4,
            in_flight_max=2,
        ),
    )
)


class OpSource(Protocol):
    """What one connection of a workload sends next, and how it judges a reply."""

    def next_op(self, index: int) -> tuple[int, Record | None]: ...

    def on_reply(self, reply: Reply) -> int:
        """The reply's error code (0 = success); may queue follow-up operations."""
        ...


class _FixedSource:
    """Cycles through prebuilt requests of one opcode (records are immutable)."""

    __slots__ = ("_opcode", "_records")

    def __init__(self, opcode: int, records: list[Record]) -> None:
        self._opcode = opcode
        self._records = records

    def next_op(self, index: int) -> tuple[int, Record | None]:
        return self._opcode, self._records[index % len(self._records)]

    def on_reply(self, reply: Reply) -> int:
        return reply.err


class _MixSource:
    __slots__ = ("_reads", "_writes")

    def __init__(self) -> None:
        self._reads = [
            GetDataRequest(path=data_key_path(i), watch=False) for i in range(DATA_KEYS_COUNT)
        ]
        self._writes = _set_requests(SMALL_VALUE)

    def next_op(self, index: int) -> tuple[int, Record | None]:
        if index % 10 < MIX_WRITE_PER_10:
            return OpCode.SET_DATA, self._writes[index % DATA_KEYS_COUNT]
        return OpCode.GET_DATA, self._reads[index % DATA_KEYS_COUNT]

    def on_reply(self, reply: Reply) -> int:
        return reply.err


class _LargeSource:
    __slots__ = ("_reads", "_writes")

    def __init__(self) -> None:
        self._writes = [
            SetDataRequest(path=large_key_path(i), data=LARGE_VALUE, version=ANY_VERSION)
            for i in range(LARGE_KEYS_COUNT)
        ]
        self._reads = [
            GetDataRequest(path=large_key_path(i), watch=False) for i in range(LARGE_KEYS_COUNT)
        ]

    def next_op(self, index: int) -> tuple[int, Record | None]:
        if index % 2 == 0:
            return OpCode.SET_DATA, self._writes[(index // 2) % LARGE_KEYS_COUNT]
        return OpCode.GET_DATA, self._reads[(index // 2) % LARGE_KEYS_COUNT]

    def on_reply(self, reply: Reply) -> int:
        return reply.err


class _MultiSource:
    __slots__ = ("_writes",)

    def __init__(self) -> None:
        self._writes = _set_requests(SMALL_VALUE)

    def next_op(self, index: int) -> tuple[int, Record | None]:
        first = index * MULTI_OPS_COUNT
        ops = tuple(
            (int(OpCode.SET_DATA), self._writes[(first + i) % DATA_KEYS_COUNT])
            for i in range(MULTI_OPS_COUNT)
        )
        return OpCode.MULTI, MultiRequest(ops=ops)

    def on_reply(self, reply: Reply) -> int:
        if reply.err != 0:
            return reply.err
        assert isinstance(reply.body, MultiResponse), reply
        for result in reply.body.results:
            if result.err != 0:
                return result.err
        return 0


class _CreateDeleteSource:
    """Creates an ephemeral sequential znode; its delete goes out before the next create."""

    __slots__ = ("_create", "_to_delete")

    def __init__(self) -> None:
        self._create = CreateRequest(
            path=f"{EPHEMERAL_PARENT_PATH}/e-",
            data=SMALL_VALUE,
            acl=OPEN_ACL_UNSAFE,
            flags=CreateMode.EPHEMERAL_SEQUENTIAL,
        )
        self._to_delete: deque[str] = deque()

    def next_op(self, index: int) -> tuple[int, Record | None]:
        if self._to_delete:
            path = self._to_delete.popleft()
            return OpCode.DELETE, DeleteRequest(path=path, version=ANY_VERSION)
        return OpCode.CREATE, self._create

    def on_reply(self, reply: Reply) -> int:
        if reply.err == 0 and reply.opcode == OpCode.CREATE:
            assert isinstance(reply.body, CreateResponse), reply
            self._to_delete.append(reply.body.path)
        return reply.err


class _MemorySource:
    """Creates memory_znode_path(index): distinct names across connections and processes,
    because indexes come from disjoint budgets."""

    __slots__ = ()

    def next_op(self, index: int) -> tuple[int, Record | None]:
        request = CreateRequest(
            path=memory_znode_path(index), data=SMALL_VALUE, acl=OPEN_ACL_UNSAFE, flags=0
        )
        return OpCode.CREATE, request

    def on_reply(self, reply: Reply) -> int:
        return reply.err


def _set_requests(value: bytes) -> list[Record]:
    return [
        SetDataRequest(path=data_key_path(i), data=value, version=ANY_VERSION)
        for i in range(DATA_KEYS_COUNT)
    ]


def make_source(workload: str) -> OpSource:
    """A fresh source for one connection of `workload` (sources may hold state)."""
    if workload in ("get", "latency-read"):
        gets: list[Record] = [
            GetDataRequest(path=data_key_path(i), watch=False) for i in range(DATA_KEYS_COUNT)
        ]
        return _FixedSource(OpCode.GET_DATA, gets)
    if workload == "exists":
        exists: list[Record] = [
            ExistsRequest(path=data_key_path(i), watch=False) for i in range(DATA_KEYS_COUNT)
        ]
        return _FixedSource(OpCode.EXISTS, exists)
    if workload == "children":
        listing: list[Record] = [GetChildrenRequest(path=CHILDREN_PARENT_PATH, watch=False)]
        return _FixedSource(OpCode.GET_CHILDREN, listing)
    if workload in ("set", "latency-write"):
        return _FixedSource(OpCode.SET_DATA, _set_requests(SMALL_VALUE))
    if workload == "create-delete":
        return _CreateDeleteSource()
    if workload == "mix":
        return _MixSource()
    if workload == "multi":
        return _MultiSource()
    if workload == "large":
        return _LargeSource()
    if workload == "memory":
        return _MemorySource()
    raise AssertionError(f"workload {workload!r} has no op source")


# --------------------------------------------------------------------------- connection

ReplyHandler = Callable[[Reply, object, int, int], None]  # reply, tag, sent_ns, arrival_ns
NotificationHandler = Callable[[Notification, int], None]  # notification, arrival_ns


def _ignore_notification(notification: Notification, arrival_ns: int) -> None:
    pass


def _nothing() -> None:
    pass


class BenchConnection(asyncio.Protocol):
    """One session on one TCP connection, driven by callbacks.

    `send` queues a request (encoded at once), `flush` writes everything queued in one
    write; data_received flushes by itself after handing out replies, so a consumer
    that answers each reply with a new request gets one write per read. The consumer is
    `on_reply`; by default it resolves the Future passed as the request's tag (`call`).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, skip_bodies: frozenset[int] = frozenset()
    ) -> None:
        self._loop = loop
        self._codec = ClientConnection(skip_bodies=skip_bodies)
        self._transport: asyncio.Transport | None = None
        self._xid = 0
        self._in_flight: deque[tuple[int, int, object]] = deque()  # (xid, sent_ns, tag)
        self._outbox: list[bytes] = []
        self._connected: asyncio.Future[ConnectResponse] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.failure: str | None = None
        self.session_id = 0
        self.on_reply: ReplyHandler = self._resolve_tag
        self.on_notification: NotificationHandler = _ignore_notification
        self.on_lost: Callable[[], None] = _nothing

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        timeout_s: float = CONNECT_TIMEOUT_S,
        *,
        skip_bodies: frozenset[int] = frozenset(),
    ) -> BenchConnection:
        loop = asyncio.get_running_loop()
        connection: BenchConnection | None = None
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(
                    lambda: cls(loop, skip_bodies), host, port
                )
                request = ConnectRequest(
                    protocol_version=0,
                    last_zxid_seen=0,
                    timeout_ms=SESSION_TIMEOUT_MS,
                    session_id=0,
                    password=bytes(16),
                    read_only=False,
                )
                assert connection._transport is not None
                connection._transport.write(connection._codec.connect(request))
                response = await connection._connected
        except (OSError, TimeoutError) as e:
            if connection is not None:
                connection.abort()
            raise BenchError(f"cannot open a session on {host}:{port}: {e!r}") from e
        if response.timeout_ms <= 0:
            connection.abort()
            raise BenchError(f"{host}:{port} refused the session (timeout 0)")
        connection.session_id = response.session_id
        return connection

    # ----------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        arrival_ns = time.perf_counter_ns()
        self._codec.receive_data(data)
        try:
            while True:
                event = self._codec.next_event()
                if event is NEED_DATA or event is PEER_CLOSED:
                    break
                if isinstance(event, Reply):
                    xid, sent_ns, tag = self._in_flight.popleft()
                    if event.xid != xid:
                        raise BenchError(f"reply xid {event.xid}, expected {xid}")
                    self.on_reply(event, tag, sent_ns, arrival_ns)
                elif isinstance(event, Notification):
                    self.on_notification(event, arrival_ns)
                elif isinstance(event, Connected) and not self._connected.done():
                    self._connected.set_result(event.response)
        except (ProtocolError, BenchError) as e:
            self._fail(f"bad reply from server: {e}")
            return
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.failure is None and self._in_flight:
            self.failure = f"server closed the connection with {len(self._in_flight)} in flight"
        error = BenchError(self.failure or "connection closed")
        if not self._connected.done():
            self._connected.set_exception(ConnectionError(str(error)))
        for _, _, tag in self._in_flight:
            if isinstance(tag, asyncio.Future) and not tag.done():
                tag.set_exception(error)
        self._in_flight.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_lost()

    # ----------------------------------------------------------------- requests

    @property
    def in_flight_count(self) -> int:
        return len(self._in_flight)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self.closed.done()

    def send(self, opcode: int, record: Record | None, tag: object = None) -> None:
        self._xid = self._xid + 1 if self._xid < XID_MAX else 1
        self._outbox.append(self._codec.send_request(self._xid, opcode, record))
        self._in_flight.append((self._xid, time.perf_counter_ns(), tag))

    def flush(self) -> None:
        if not self._outbox:
            return
        data = b"".join(self._outbox) if len(self._outbox) > 1 else self._outbox[0]
        self._outbox.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def call(
        self, opcode: int, record: Record | None, timeout_s: float = CALL_TIMEOUT_S
    ) -> Reply:
        if not self.is_open:
            raise BenchError(self.failure or "connection closed")
        future: asyncio.Future[Reply] = self._loop.create_future()
        self.send(opcode, record, future)
        self.flush()
        async with asyncio.timeout(timeout_s):
            return await future

    async def call_many(
        self,
        requests: Iterable[tuple[int, Record | None]],
        window: int = ADMIN_WINDOW,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> list[Reply]:
        """Pipelined calls, at most `window` in flight; replies in request order.
        `timeout_s` bounds the wait for each reply, not the whole batch."""
        replies: list[Reply] = []
        pending: deque[asyncio.Future[Reply]] = deque()
        for opcode, record in requests:
            if len(pending) >= window:
                self.flush()
                async with asyncio.timeout(timeout_s):
                    replies.append(await pending.popleft())
            if not self.is_open:
                raise BenchError(self.failure or "connection closed")
            future: asyncio.Future[Reply] = self._loop.create_future()
            self.send(opcode, record, future)
            pending.append(future)
        self.flush()
        while pending:
            async with asyncio.timeout(timeout_s):
                replies.append(await pending.popleft())
        return replies

    async def close_session(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """closeSession, then wait for the server to close the connection. On any
        trouble the connection is aborted: closing never hangs and never raises."""
        # The workload's consumer is done: the close reply is not one of its operations.
        self.on_reply = self._resolve_tag
        self.on_notification = _ignore_notification
        self.on_lost = _nothing
        try:
            if self.is_open:
                await self.call(OpCode.CLOSE_SESSION, None, timeout_s)
                assert self._transport is not None
                self._transport.close()
                async with asyncio.timeout(timeout_s):
                    await self.closed
        except (BenchError, TimeoutError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        if self._transport is not None and not self.closed.done():
            self._transport.abort()

    def _resolve_tag(self, reply: Reply, tag: object, sent_ns: int, arrival_ns: int) -> None:
        if isinstance(tag, asyncio.Future) and not tag.done():
            tag.set_result(reply)

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.abort()


async def open_many(
    host: str, port: int, count: int, *, skip_bodies: frozenset[int] = frozenset()
) -> list[BenchConnection]:
    """`count` sessions, opened CONNECT_CONCURRENCY_MAX at a time; all or none."""
    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY_MAX)

    async def one() -> BenchConnection:
        async with semaphore:
            return await BenchConnection.open(host, port, skip_bodies=skip_bodies)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    connections = [r for r in results if isinstance(r, BenchConnection)]
    failures = [r for r in results if not isinstance(r, BenchConnection)]
    if failures:
        for connection in connections:
            connection.abort()
        raise BenchError(f"{len(failures)} of {count} sessions failed to open: {failures[0]}")
    return connections


async def close_many(connections: list[BenchConnection]) -> None:
    await asyncio.gather(*(c.close_session() for c in connections))


# --------------------------------------------------------------------------- one worker


class Budget:
    """Operation indexes [first, first + ops), handed out until the deadline."""

    __slots__ = ("_end", "_next", "deadline_ns", "first_index")

    def __init__(self, first_index: int, ops: int, deadline_ns: int) -> None:
        assert ops >= 0, ops
        self.first_index = first_index
        self._next = first_index
        self._end = first_index + ops
        self.deadline_ns = deadline_ns

    @property
    def taken_count(self) -> int:
        return self._next - self.first_index

    def take(self, now_ns: int) -> int | None:
        if self._next >= self._end or now_ns >= self.deadline_ns:
            return None
        index = self._next
        self._next += 1
        return index

    def stop(self) -> None:
        self._end = self._next


class Tally:
    """Completed operations of one worker: counts, error codes and latency samples."""

    __slots__ = ("completed_count", "errors", "failure", "last_arrival_ns", "latencies")

    def __init__(self, samples_max: int, seed: int) -> None:
        self.completed_count = 0
        self.errors: dict[int, int] = {}
        self.latencies = Reservoir(samples_max, seed)
        self.failure: str | None = None
        self.last_arrival_ns = 0

    def record(self, latency_ns: int, err: int, arrival_ns: int) -> None:
        self.completed_count += 1
        self.last_arrival_ns = arrival_ns
        if err != 0:
            self.errors[err] = self.errors.get(err, 0) + 1
        self.latencies.add(latency_ns)

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    """One client process's share of a workload run (picklable: sent to subprocesses)."""

    workload: str
    host: str
    port: int
    connections: int
    in_flight: int  # requests in flight per connection
    ops: int  # this worker's share of the count bound
    first_index: int  # its first operation index: workers use disjoint ranges
    duration_s: float  # the time bound, counted once every connection is open
    drain_timeout_s: float  # after the bound, how long replies may still take
    samples_max: int
    seed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerResult:
    ops_requested: int
    ops_completed: int  # replies received, successful or not
    errors: dict[int, int]  # error code -> count
    samples_ns: array[int]
    started_ns: int  # perf_counter_ns when the first request went out
    finished_ns: int  # perf_counter_ns when the last reply arrived
    cpu_s: float  # this process's CPU time over the run
    failure: str | None
    extra: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[int], None]  # completed operations so far


def failed_result(ops_requested: int, reason: str) -> WorkerResult:
    """A worker that did nothing, and why."""
    now_ns = time.perf_counter_ns()
    return WorkerResult(
        ops_requested=ops_requested,
        ops_completed=0,
        errors={},
        samples_ns=array("q"),
        started_ns=now_ns,
        finished_ns=now_ns,
        cpu_s=0.0,
        failure=reason,
    )


def _result(
    spec_ops: int, tally: Tally, started_ns: int, finished_ns: int, cpu_s: float
) -> WorkerResult:
    return WorkerResult(
        ops_requested=spec_ops,
        ops_completed=tally.completed_count,
        errors=dict(tally.errors),
        samples_ns=tally.latencies.samples_ns,
        started_ns=started_ns,
        finished_ns=max(finished_ns, started_ns),
        cpu_s=cpu_s,
        failure=tally.failure,
    )


class _Pipeline:
    """Keeps up to `in_flight` requests outstanding on one connection: every reply is
    answered by the next operation, until the budget says stop."""

    __slots__ = ("_budget", "_connection", "_in_flight", "_source", "_tally", "done")

    def __init__(
        self,
        connection: BenchConnection,
        source: OpSource,
        budget: Budget,
        in_flight: int,
        tally: Tally,
    ) -> None:
        self._connection = connection
        self._source = source
        self._budget = budget
        self._in_flight = in_flight
        self._tally = tally
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connection.on_reply = self._on_reply
        connection.on_lost = self._on_lost

    def start(self) -> None:
        self._fill(time.perf_counter_ns())
        self._connection.flush()
        self._check_done()

    def _fill(self, now_ns: int) -> None:
        connection = self._connection
        while connection.in_flight_count < self._in_flight:
            index = self._budget.take(now_ns)
            if index is None:
                return
            opcode, record = self._source.next_op(index)
            connection.send(opcode, record)

    def _on_reply(self, reply: Reply, tag: object, sent_ns: int, arrival_ns: int) -> None:
        self._tally.record(arrival_ns - sent_ns, self._source.on_reply(reply), arrival_ns)
        self._fill(arrival_ns)
        self._check_done()

    def _check_done(self) -> None:
        if self._connection.in_flight_count == 0 and not self.done.done():
            self.done.set_result(None)

    def _on_lost(self) -> None:
        if self._connection.failure is not None:
            self._tally.fail(self._connection.failure)
            self._budget.stop()
        if not self.done.done():
            self.done.set_result(None)


async def _progress_ticker(tally: Tally, progress: ProgressFn, interval_s: float) -> None:
    while True:
        progress(tally.completed_count)
        await asyncio.sleep(interval_s)


async def run_worker(
    spec: WorkerSpec, progress: ProgressFn, progress_interval_s: float = 0.2
) -> WorkerResult:
    """One client process's part of a pipelined, single or session-storm run."""
    shape = WORKLOADS[spec.workload].shape
    assert shape in (Shape.PIPELINED, Shape.SINGLE, Shape.MEMORY, Shape.SESSIONS), shape
    tally = Tally(spec.samples_max, spec.seed)
    ticker = asyncio.create_task(_progress_ticker(tally, progress, progress_interval_s))
    try:
        if shape is Shape.SESSIONS:
            return await _run_sessions(spec, tally)
        return await _run_pipelined(spec, tally)
    finally:
        ticker.cancel()
        progress(tally.completed_count)


async def _run_pipelined(spec: WorkerSpec, tally: Tally) -> WorkerResult:
    try:
        connections = await open_many(
            spec.host, spec.port, spec.connections, skip_bodies=UNREAD_BODIES
        )
    except BenchError as e:
        tally.fail(str(e))
        now_ns = time.perf_counter_ns()
        return _result(spec.ops, tally, now_ns, now_ns, 0.0)
    cpu_start_s = time.process_time()
    started_ns = time.perf_counter_ns()
    budget = Budget(spec.first_index, spec.ops, started_ns + int(spec.duration_s * 1e9))
    pipelines = [
        _Pipeline(c, make_source(spec.workload), budget, spec.in_flight, tally) for c in connections
    ]
    for pipeline in pipelines:
        pipeline.start()
    pending = {p.done for p in pipelines}
    _, still_pending = await asyncio.wait(pending, timeout=spec.duration_s + spec.drain_timeout_s)
    finished_ns = tally.last_arrival_ns or time.perf_counter_ns()
    cpu_s = time.process_time() - cpu_start_s
    if still_pending:
        budget.stop()
        stuck = sum(c.in_flight_count for c in connections)
        tally.fail(f"{stuck} requests still unanswered {spec.drain_timeout_s:g} s after the run")
        for connection in connections:
            connection.abort()
    await close_many(connections)
    return _result(spec.ops, tally, started_ns, finished_ns, cpu_s)


async def _run_sessions(spec: WorkerSpec, tally: Tally) -> WorkerResult:
    """`spec.connections` loops, each: open a session, close it, record the round trip."""
    cpu_start_s = time.process_time()
    started_ns = time.perf_counter_ns()
    budget = Budget(spec.first_index, spec.ops, started_ns + int(spec.duration_s * 1e9))

    async def storm() -> None:
        while budget.take(time.perf_counter_ns()) is not None:
            begin_ns = time.perf_counter_ns()
            connection: BenchConnection | None = None
            try:
                connection = await BenchConnection.open(spec.host, spec.port)
                reply = await connection.call(OpCode.CLOSE_SESSION, None, CLOSE_TIMEOUT_S)
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await connection.closed
            except (BenchError, TimeoutError) as e:
                tally.fail(f"session {budget.taken_count}: {e!r}")
                budget.stop()
                return
            finally:
                if connection is not None:
                    connection.abort()
            end_ns = time.perf_counter_ns()
            tally.record(end_ns - begin_ns, reply.err, end_ns)

    try:
        async with asyncio.timeout(spec.duration_s + spec.drain_timeout_s):
            await asyncio.gather(*(storm() for _ in range(spec.connections)))
    except TimeoutError:
        budget.stop()
        tally.fail(f"sessions still opening or closing {spec.drain_timeout_s:g} s after the run")
    finished_ns = tally.last_arrival_ns or time.perf_counter_ns()
    return _result(spec.ops, tally, started_ns, finished_ns, time.process_time() - cpu_start_s)


# --------------------------------------------------------------------------- watch fan-out


class _FanoutRound:
    """Notifications of the current round: how many arrived, and when the last did."""

    __slots__ = ("all_arrived", "arrived_count", "expected_count", "last_arrival_ns")

    def __init__(self, expected_count: int) -> None:
        assert expected_count > 0, expected_count
        self.expected_count = expected_count
        self.arrived_count = 0
        self.last_arrival_ns = 0
        self.all_arrived = asyncio.Event()

    def reset(self) -> None:
        self.arrived_count = 0
        self.last_arrival_ns = 0
        self.all_arrived.clear()

    def on_notification(self, notification: Notification, arrival_ns: int) -> None:
        self.arrived_count += 1
        self.last_arrival_ns = max(self.last_arrival_ns, arrival_ns)
        if self.arrived_count == self.expected_count:
            self.all_arrived.set()


async def run_fanout(
    host: str,
    port: int,
    watchers: int,
    rounds: int,
    duration_s: float,
    round_timeout_s: float,
    progress: ProgressFn,
) -> WorkerResult:
    """`watchers` sessions each watch WATCH_PATH (getData with watch); one more session
    sets it; a round's latency is setData sent -> last notification received. Watches
    are one-shot, so every round re-arms them all first. Rounds start until `rounds` or
    `duration_s` runs out; one that takes longer than `round_timeout_s` is a failure.
    Operations counted: the notifications received (watchers x rounds when all goes
    well)."""
    tally = Tally(samples_max=max(rounds, 1), seed=0)
    try:
        connections = await open_many(host, port, watchers + 1)
    except BenchError as e:
        tally.fail(str(e))
        now_ns = time.perf_counter_ns()
        return _result(watchers * rounds, tally, now_ns, now_ns, 0.0)
    writer, watching = connections[0], connections[1:]
    arm = GetDataRequest(path=WATCH_PATH, watch=True)
    update = SetDataRequest(path=WATCH_PATH, data=SMALL_VALUE, version=ANY_VERSION)
    current = _FanoutRound(len(watching))
    for connection in watching:
        connection.on_notification = current.on_notification
    cpu_start_s = time.process_time()
    started_ns = time.perf_counter_ns()
    budget = Budget(0, rounds, started_ns + int(duration_s * 1e9))
    try:
        while budget.take(time.perf_counter_ns()) is not None:
            async with asyncio.timeout(round_timeout_s):
                armed = await asyncio.gather(
                    *(c.call(OpCode.GET_DATA, arm, round_timeout_s) for c in watching)
                )
                if any(reply.err != 0 for reply in armed):
                    tally.fail(f"arming a watch failed: {next(r.err for r in armed if r.err)}")
                    break
                current.reset()
                sent_ns = time.perf_counter_ns()
                reply = await writer.call(OpCode.SET_DATA, update, round_timeout_s)
                await current.all_arrived.wait()
            tally.completed_count += current.arrived_count
            tally.last_arrival_ns = current.last_arrival_ns
            tally.latencies.add(current.last_arrival_ns - sent_ns)
            if reply.err != 0:
                tally.errors[reply.err] = tally.errors.get(reply.err, 0) + 1
            progress(tally.completed_count)
    except TimeoutError:
        tally.fail(
            f"round {budget.taken_count}: {current.arrived_count} of {len(watching)} "
            f"notifications within {round_timeout_s:g} s"
        )
    except BenchError as e:
        tally.fail(str(e))
    finished_ns = tally.last_arrival_ns or time.perf_counter_ns()
    cpu_s = time.process_time() - cpu_start_s
    await close_many(connections)
    result = _result(watchers * rounds, tally, started_ns, finished_ns, cpu_s)
    rounds_done = float(tally.latencies.offered_count)
    return replace(result, extra={"watchers": float(watchers), "rounds": rounds_done})


# --------------------------------------------------------------------------- setup, cleanup


async def _ensure(connection: BenchConnection, nodes: list[tuple[str, bytes]]) -> None:
    """Each (path, data) exists and holds data, parents listed before children."""
    replies = await connection.call_many(
        (OpCode.CREATE, CreateRequest(path=path, data=data, acl=OPEN_ACL_UNSAFE, flags=0))
        for path, data in nodes
    )
    existing: list[tuple[str, bytes]] = []
    for (path, data), reply in zip(nodes, replies, strict=True):
        if reply.err == ErrorCode.NODE_EXISTS:
            existing.append((path, data))
        elif reply.err != 0:
            raise BenchError(f"create {path}: error {ErrorCode(reply.err).name}")
    replies = await connection.call_many(
        (OpCode.SET_DATA, SetDataRequest(path=path, data=data, version=ANY_VERSION))
        for path, data in existing
        if data
    )
    for reply in replies:
        if reply.err != 0:
            raise BenchError(f"setData during setup: error {ErrorCode(reply.err).name}")


async def _children(connection: BenchConnection, path: str) -> list[str]:
    reply = await connection.call(OpCode.GET_CHILDREN, GetChildrenRequest(path=path, watch=False))
    if reply.err == ErrorCode.NO_NODE:
        return []
    if reply.err != 0:
        raise BenchError(f"getChildren {path}: error {ErrorCode(reply.err).name}")
    assert isinstance(reply.body, GetChildrenResponse), reply
    return list(reply.body.children)


async def _delete_all(connection: BenchConnection, paths: Iterable[str]) -> None:
    replies = await connection.call_many(
        (OpCode.DELETE, DeleteRequest(path=path, version=ANY_VERSION)) for path in paths
    )
    for reply in replies:
        if reply.err not in (0, ErrorCode.NO_NODE):
            raise BenchError(f"delete during cleanup: error {ErrorCode(reply.err).name}")


async def prepare(host: str, port: int, workload: str) -> None:
    """Creates what `workload` reads or writes, under ROOT_PATH."""
    connection = await BenchConnection.open(host, port)
    try:
        nodes: list[tuple[str, bytes]] = [(ROOT_PATH, b""), *((p, b"") for p in PARENT_PATHS)]
        if workload in ("get", "exists", "set", "mix", "multi", "latency-read", "latency-write"):
            nodes += [(data_key_path(i), SMALL_VALUE) for i in range(DATA_KEYS_COUNT)]
        elif workload == "children":
            nodes += [(f"{CHILDREN_PARENT_PATH}/c-{i:04d}", b"") for i in range(CHILDREN_COUNT)]
        elif workload == "large":
            nodes += [(large_key_path(i), LARGE_VALUE) for i in range(LARGE_KEYS_COUNT)]
        elif workload == "watch-fanout":
            nodes.append((WATCH_PATH, SMALL_VALUE))
        elif workload == "memory":
            # Leftovers of an interrupted run would collide with the names we create.
            leftovers = await _children(connection, MEMORY_PARENT_PATH)
            await _delete_all(connection, (f"{MEMORY_PARENT_PATH}/{c}" for c in leftovers))
        await _ensure(connection, nodes)
        if workload == "memory":
            await _settle(connection)
    finally:
        await connection.close_session()


async def _settle(connection: BenchConnection) -> None:
    """Small writes that push earlier large txns out of the server's memory before the
    memory workload's first reading: ZooKeeper keeps its last 500 committed txns in
    memory (commitLogCount), which after the `large` workload is ~1 GB of 512 KiB values."""
    update = SetDataRequest(path=MEMORY_PARENT_PATH, data=SMALL_VALUE, version=ANY_VERSION)
    replies = await connection.call_many((OpCode.SET_DATA, update) for _ in range(SETTLE_WRITES))
    for reply in replies:
        if reply.err != 0:
            raise BenchError(f"setData during setup: error {ErrorCode(reply.err).name}")


async def delete_memory_znodes(host: str, port: int, count: int) -> None:
    connection = await BenchConnection.open(host, port)
    try:
        await _delete_all(connection, (memory_znode_path(i) for i in range(count)))
    finally:
        await connection.close_session()


async def cleanup(host: str, port: int) -> None:
    """Deletes ROOT_PATH and everything under it: the known parents' children, the
    parents, the root. Three fixed levels, so no recursion and no surprise depth."""
    connection = await BenchConnection.open(host, port)
    try:
        for parent in PARENT_PATHS:
            names = await _children(connection, parent)
            await _delete_all(connection, (f"{parent}/{name}" for name in names))
        await _delete_all(connection, PARENT_PATHS)
        await _delete_all(connection, [ROOT_PATH])
    finally:
        await connection.close_session()


async def count_children(host: str, port: int, path: str) -> int:
    connection = await BenchConnection.open(host, port)
    try:
        return len(await _children(connection, path))
    finally:
        await connection.close_session()
