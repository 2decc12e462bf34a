"""The asyncio client: drives a sans-IO `Session` over TCP connections.

    async with Client("h1:2181,h2:2181/app", timeout_s=10) as zk:
        await zk.create("/a", b"x", ephemeral=True)
        value, stat = await zk.get("/a")
        async with zk.watch("/a", persistent=True) as events:
            async for event in events: ...

Rules:
- This is the only module of corral.client that imports asyncio (tests/test_layering.py).
  Protocol and session logic live in session.py; this file only moves bytes, keeps time
  and wakes waiters.
- Every task has an owner: `start()` creates one runner task; it owns a TaskGroup with
  the connection loop and every task `spawn()`ed for callbacks and recipes; each
  connection owns a TaskGroup of its reader and timer. `close()` cancels the runner and
  waits for it, so nothing outlives the client.
- Requests are pipelined: `_call` writes the request and awaits its own future; any
  number may be in flight on one connection (replies are matched by xid in the session).
- Retry policy: only idempotent operations (reads, sync, addWatch, auth) are re-sent
  after ConnectionLoss. A write that was in flight when the connection broke may or may
  not have been applied, so it raises ConnectionLoss and the caller (or a recipe, which
  checks what is actually on the server) decides. Writes are never repeated blindly.
- Per-call timeouts (`timeout_s`) cover waiting for a connection and for the reply; on
  timeout the call raises OperationTimeout and a late reply is discarded.
- Watch callbacks run on the event loop thread; a callback returning an awaitable is
  run as a task owned by the client. Exceptions in callbacks are logged, never raised
  into the connection.
- After expiry the client starts a new session by itself (like kazoo); listeners see
  EXPIRED then CONNECTED, and every watcher got one EXPIRED event.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Self, TypeVar

from corral.client.codecs import (
    BYTES,
    JSON,
    STR,
    BytesCodec,
    Codec,
    JsonCodec,
    StrCodec,
    digest_acl,
)
from corral.client.exceptions import (
    ClientClosed,
    NoNodeError,
    NotEmptyError,
    NoWatcherError,
    OperationTimeout,
    SessionExpired,
    UnimplementedError,
    ZooKeeperError,
    error_for,
)
from corral.client.retry import NO_RETRY, RetryPolicy
from corral.client.session import (
    ClientState,
    Completed,
    ConnectionDead,
    Notice,
    Output,
    Session,
    SessionEvent,
    Watcher,
    WatchEvent,
    WatchFired,
    WatchKind,
    parse_hosts,
)
from corral.client.transaction import ChildrenOp, DataOp, Transaction
from corral.limits import PASSWORD_SIZE, PENDING_REQUESTS_PER_CONNECTION_MAX, TTL_MAX_MS, TTL_MIN_MS
from corral.protocol.constants import (
    AddWatchMode,
    CreateMode,
    ErrorCode,
    EventType,
    KeeperState,
    OpCode,
    WatcherType,
)
from corral.protocol.errors import ProtocolError
from corral.protocol.paths import join_path, path_error
from corral.protocol.records import (
    ACL,
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    AddWatchRequest,
    ClientInfo,
    Create2Response,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetACLRequest,
    GetACLResponse,
    GetAllChildrenNumberResponse,
    GetChildren2Response,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    Id,
    MultiRequest,
    MultiResponse,
    PathRecord,
    Record,
    SetACLRequest,
    SetDataRequest,
    Stat,
    StatResponse,
    WatchesRequest,
    WhoAmIResponse,
)

__all__ = [
    "ACL",
    "BYTES",
    "CREATOR_ALL_ACL",
    "JSON",
    "NO_RETRY",
    "OPEN_ACL_UNSAFE",
    "READ_ACL_UNSAFE",
    "STR",
    "BytesCodec",
    "ChildrenOp",
    "Client",
    "ClientState",
    "Codec",
    "DataOp",
    "Flag",
    "Id",
    "JsonCodec",
    "LoopThread",
    "RetryPolicy",
    "SessionEvent",
    "StrCodec",
    "Transaction",
    "Waiter",
    "Watch",
    "WatchEvent",
    "WatchKind",
    "digest_acl",
    "sleep",
]

log = logging.getLogger("corral.client")

READ_SIZE = 65_536  # bytes per socket read
TIMER_SLEEP_MAX_MS = 250  # the timer re-reads the session's deadline at least this often
RECONNECT_BACKOFF_MIN_MS = 50
RECONNECT_BACKOFF_MAX_MS = 1_000
CLOSE_TIMEOUT_MS = 2_000  # how long close() waits for the closeSession reply
WATCH_EVENTS_QUEUED_MAX = 10_000  # events buffered by one Watch iterator before it fails
CONFIG_PATH = "/zookeeper/config"

T = TypeVar("T")


async def sleep(seconds: float) -> None:
    """asyncio.sleep, for recipes (which may not import asyncio themselves)."""
    await asyncio.sleep(seconds)


class _ConnectionDead(Exception):
    pass


# --------------------------------------------------------------------------- watch helpers


class Waiter:
    """A one-shot watcher you can await: pass it as `watch=` and then `await wait()`."""

    def __init__(self) -> None:
        self._future: asyncio.Future[WatchEvent] = asyncio.get_running_loop().create_future()

    def __call__(self, event: WatchEvent) -> None:
        if not self._future.done():
            self._future.set_result(event)

    @property
    def fired(self) -> bool:
        return self._future.done()

    async def wait(self, timeout_s: float | None = None) -> WatchEvent | None:
        """The event, or None if `timeout_s` passed first."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout_s)
        except TimeoutError:
            return None


class Flag:
    """An awaitable boolean (asyncio.Event), for recipes, which may not import asyncio."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout_s: float | None = None) -> bool:
        """True once set; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class Watch:
    """Watch events as an async iterator (also usable as a callback target).

    One-shot (`persistent=False`): yields the first event, then stops. Persistent: uses
    addWatch (recursive if asked) and then yields every event type for the path (and,
    if recursive, for every descendant, NodeChildrenChanged excepted), whatever `kind`
    says; on a server without addWatch it re-arms a one-shot watch of `kind` after each
    event. Session expiry ends the iteration with
    SessionExpired (the server forgot the watch with the session).
    """

    def __init__(
        self,
        client: Client,
        path: str,
        *,
        kind: str = "data",
        persistent: bool = False,
        recursive: bool = False,
    ) -> None:
        if kind not in ("data", "children", "exists"):
            raise ValueError(f"kind must be data, children or exists, not {kind!r}")
        self.client = client
        self.path = path
        self.kind = kind
        self.persistent = persistent or recursive
        self.recursive = recursive
        self._queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(WATCH_EVENTS_QUEUED_MAX)
        self._rearm = False  # persistent emulated with one-shot watches
        self._closed = False
        self._done = False

    def __call__(self, event: WatchEvent) -> None:
        if self._closed:
            return
        if self._rearm and event.type is not EventType.NONE:
            # Spawned before the event is queued, so the re-arming request is written
            # before the consumer can react to the event (and, say, sync after it).
            # Changes between the event and the re-arm are not reported one by one: the
            # one-shot emulation can only say "something changed since".
            self.client.spawn(self._arm_one_shot())
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.error(
                "watch on %s: %d events not consumed; dropping", self.path, self._queue.qsize()
            )

    async def start(self) -> Self:
        if self.persistent:
            try:
                await self.client.add_watch(self.path, self, recursive=self.recursive)
                return self
            except UnimplementedError:
                if self.recursive:
                    raise
                self._rearm = True
        await self._arm_one_shot()
        return self

    async def _arm_one_shot(self) -> None:
        if self._closed:
            return
        if self.kind == "children":
            try:
                await self.client.get_children(self.path, watch=self)
                return
            except NoNodeError:
                pass
        await self.client.exists(self.path, watch=self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self.client._forget_watcher(self.path, self, persistent=self.persistent)

    async def next(self, timeout_s: float | None = None) -> WatchEvent | None:
        """The next event, or None on timeout or when the watch is over."""
        if self._done:
            return None
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return None
        if event is None:
            self._done = True
            return None
        if event.state is KeeperState.EXPIRED:
            self._done = True
            raise SessionExpired(path=self.path)
        if not self.persistent:
            self._done = True
        return event

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --------------------------------------------------------------------------- the client


class Client:
    """An asyncio ZooKeeper client; see the module docstring."""

    def __init__(
        self,
        hosts: str = "127.0.0.1:2181",
        *,
        timeout_s: float = 10.0,
        request_timeout_s: float | None = None,
        connect_timeout_s: float | None = None,
        read_only: bool = False,
        session_id: int = 0,
        session_password: bytes | None = None,
        auth: Iterable[tuple[str, bytes | str]] = (),
        codec: Codec = BYTES,
        default_acl: Sequence[ACL] = OPEN_ACL_UNSAFE,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        self.hosts, chroot = parse_hosts(hosts)
        self._rng = random.Random(seed)
        self._rng.shuffle(self.hosts)
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s if request_timeout_s is not None else timeout_s
        self.connect_timeout_s = (
            connect_timeout_s if connect_timeout_s is not None else timeout_s / len(self.hosts)
        )
        self.codec = codec
        self.default_acl = tuple(default_acl)
        self.retry = retry if retry is not None else RetryPolicy()
        self._session = Session(
            session_timeout_ms=int(timeout_s * 1000),
            chroot=chroot,
            read_only_allowed=read_only,
            session_id=session_id,
            password=session_password if session_password is not None else bytes(PASSWORD_SIZE),
        )
        self._initial_auth = [
            (scheme, credential.encode() if isinstance(credential, str) else credential)
            for scheme, credential in auth
        ]
        self._listeners: list[Callable[[SessionEvent], object]] = []
        self._writer: asyncio.StreamWriter | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._tasks_ready: asyncio.Event | None = None
        self._state_changed: asyncio.Event | None = None
        self._closing = False
        self._host_index = 0
        self.current_host: tuple[str, int] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> ClientState:
        return self._session.state

    @property
    def connected(self) -> bool:
        return self._session.connected

    @property
    def session_id(self) -> int:
        return self._session.session_id

    @property
    def session_password(self) -> bytes:
        return self._session.password

    @property
    def negotiated_timeout_ms(self) -> int:
        return self._session.negotiated_timeout_ms

    @property
    def last_zxid_seen(self) -> int:
        return self._session.last_zxid_seen

    @property
    def chroot(self) -> str:
        return self._session.chroot

    def add_listener(self, listener: Callable[[SessionEvent], object]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[SessionEvent], object]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, timeout_s: float | None = None) -> None:
        """Start the runner and wait for the first session (raises on timeout)."""
        assert self._runner is None, "start() called twice"
        self._state_changed = asyncio.Event()
        self._tasks_ready = asyncio.Event()
        self._runner = asyncio.create_task(self._run(), name="corral-client")
        await self._tasks_ready.wait()
        try:
            await self.wait_connected(timeout_s if timeout_s is not None else self.timeout_s)
        except BaseException:
            await self.close()
            raise
        for scheme, credential in self._initial_auth:
            await self.add_auth(scheme, credential)

    async def close(self) -> None:
        """Close the session (ephemerals go at once) and stop every task of the client."""
        if self._runner is None or self._closing:
            return
        self._closing = True
        if self._session.connected:
            # If this fails the server expires the session instead.
            with contextlib.suppress(ZooKeeperError):
                await self._call(
                    OpCode.CLOSE_SESSION,
                    None,
                    timeout_s=CLOSE_TIMEOUT_MS / 1000,
                    idempotent=False,
                )
        self._dispatch(self._session.close())
        self._close_writer()
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until a session is usable; OperationTimeout or ClientClosed otherwise."""
        deadline = None if timeout_s is None else _now() + timeout_s
        await self._wait_connected_until(deadline)

    async def _wait_connected_until(self, deadline: float | None) -> None:
        while not self._session.connected:
            if self._session.state is ClientState.CLOSED or self._closing:
                raise ClientClosed("client is closed")
            assert self._state_changed is not None, "client not started"
            self._state_changed.clear()
            remaining = None if deadline is None else deadline - _now()
            if remaining is not None and remaining <= 0:
                raise OperationTimeout("not connected before the deadline")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), remaining)

    def spawn(
        self, coroutine: Coroutine[Any, Any, Any], name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run `coroutine` as a task owned by this client (cancelled by close())."""
        if self._tasks is None:
            coroutine.close()
            raise ClientClosed("client is not running")
        return self._tasks.create_task(self._guarded(coroutine), name=name)

    @staticmethod
    async def _guarded(coroutine: Coroutine[Any, Any, Any]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task owned by the client failed")

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                assert self._tasks_ready is not None
                self._tasks_ready.set()
                tasks.create_task(self._connect_loop(), name="corral-client-connect")
        finally:
            self._tasks = None

    async def _connect_loop(self) -> None:
        failures = 0
        while self._session.state is not ClientState.CLOSED:
            host, port = self.hosts[self._host_index % len(self.hosts)]
            self._host_index += 1
            was_connected = False
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self.connect_timeout_s
                )
            except (OSError, TimeoutError) as e:
                log.debug("connect to %s:%d failed: %s", host, port, e)
            else:
                self.current_host = (host, port)
                try:
                    was_connected = await self._serve_connection(reader, writer)
                finally:
                    self.current_host = None
                    self._close_writer()
                    self._dispatch(self._session.connection_lost(_now_ms()))
            if was_connected:
                failures = 0
                continue  # reconnect at once: the session is ticking
            failures += 1
            if failures % len(self.hosts) == 0:
                rounds = failures // len(self.hosts)
                backoff_ms = min(RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS * 2**rounds)
                await asyncio.sleep(backoff_ms * self._rng.uniform(0.5, 1.0) / 1000)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Run one connection until it dies; True if a handshake succeeded on it."""
        self._writer = writer
        connected = False
        writer.write(self._session.start_connection(_now_ms(), int(self.connect_timeout_s * 1000)))

        async def read_loop() -> None:
            nonlocal connected
            while True:
                data = await reader.read(READ_SIZE)
                outputs = self._session.receive_data(data, _now_ms())
                connected = connected or self._session.connected
                self._flush()
                self._dispatch(outputs)
                if not data:
                    raise _ConnectionDead("the server closed the connection")

        async def timer_loop() -> None:
            while True:
                deadline_ms = self._session.next_timer_ms()
                if deadline_ms is None:
                    return
                delay_ms = min(max(0, deadline_ms - _now_ms()), TIMER_SLEEP_MAX_MS)
                await asyncio.sleep(delay_ms / 1000)
                outputs = self._session.tick(_now_ms())
                self._flush()
                self._dispatch(outputs)

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(read_loop())
                tasks.create_task(timer_loop())
        except* (_ConnectionDead, OSError, ProtocolError) as group:
            log.debug("connection ended: %s", group.exceptions[0])
        return connected

    def _close_writer(self) -> None:
        writer = self._writer
        self._writer = None
        if writer is not None:
            writer.close()

    def _flush(self) -> None:
        data = self._session.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def _dispatch(self, outputs: list[Output]) -> None:
        dead: ConnectionDead | None = None
        for output in outputs:
            if isinstance(output, Completed):
                future = output.token
                assert isinstance(future, asyncio.Future)
                if not future.done():
                    future.set_result(output)
            elif isinstance(output, WatchFired):
                for watcher in output.watchers:
                    self._invoke(watcher, output.event)
            elif isinstance(output, Notice):
                if self._state_changed is not None:
                    self._state_changed.set()
                for listener in list(self._listeners):
                    self._invoke(listener, output.event)
            elif isinstance(output, ConnectionDead):
                dead = output
        if dead is not None:
            # Give the connection up before anyone awaiting a reply resumes, so no
            # request is written into a connection that is going away.
            self._close_writer()
            self._dispatch(self._session.connection_lost(_now_ms()))
            raise _ConnectionDead(dead.reason)

    def _invoke(self, callback: Callable[[Any], object], argument: object) -> None:
        try:
            result = callback(argument)
        except Exception:
            log.exception("callback %r failed", callback)
            return
        if inspect.isawaitable(result):
            if self._tasks is None:
                if inspect.iscoroutine(result):
                    result.close()
                return
            self.spawn(_as_coroutine(result))

    # ------------------------------------------------------------------ calls

    def _server_path(self, path: str) -> str:
        error = path_error(path)
        if error is not None:
            raise ValueError(f"invalid path {path!r}: {error}")
        return self._session.server_path(path)

    async def _call(
        self,
        opcode: int,
        request: Record | None,
        *,
        timeout_s: float | None,
        idempotent: bool,
        path: str = "",
        watch: tuple[WatchKind, Watcher] | None = None,
    ) -> Completed:
        loop = asyncio.get_running_loop()
        deadline = _now() + (timeout_s if timeout_s is not None else self.request_timeout_s)
        tries_max = self.retry.tries_max if idempotent else 1
        attempt = 0
        while True:
            await self._wait_connected_until(deadline)
            while self._session.pending_count >= PENDING_REQUESTS_PER_CONNECTION_MAX:
                if _now() >= deadline:
                    raise OperationTimeout("too many requests in flight")
                await asyncio.sleep(0.001)
                await self._wait_connected_until(deadline)
            future: asyncio.Future[Completed] = loop.create_future()
            self._session.submit(
                opcode, request, token=future, now_ms=_now_ms(), path=path, watch=watch
            )
            self._flush()
            try:
                completed = await asyncio.wait_for(asyncio.shield(future), deadline - _now())
            except TimeoutError:
                raise OperationTimeout(path=path or None) from None
            attempt += 1
            if completed.err != ErrorCode.CONNECTION_LOSS or attempt >= tries_max:
                return completed
            if self._closing or self._session.state is ClientState.CLOSED:
                return completed
            await asyncio.sleep(self.retry.backoff_s(attempt - 1))

    def _raise_for(self, completed: Completed, path: str | None) -> None:
        if completed.err == 0:
            return
        if completed.err == ErrorCode.CONNECTION_LOSS and (
            self._closing or self._session.state is ClientState.CLOSED
        ):
            raise ClientClosed(path=path)
        raise error_for(completed.err, path)

    async def _request(
        self,
        opcode: int,
        request: Record | None,
        path: str | None,
        *,
        timeout_s: float | None,
        idempotent: bool,
        server_path: str = "",
        watch: tuple[WatchKind, Watcher] | None = None,
    ) -> Record | None:
        completed = await self._call(
            opcode,
            request,
            timeout_s=timeout_s,
            idempotent=idempotent,
            path=server_path,
            watch=watch,
        )
        self._raise_for(completed, path)
        return completed.body

    # ------------------------------------------------------------------ operations

    def _create_request(
        self,
        path: str,
        value: Any,
        acl: Sequence[ACL] | None,
        ephemeral: bool,
        sequential: bool,
        container: bool,
        ttl_ms: int | None,
        codec: Codec | None,
    ) -> tuple[int, Record]:
        if container and (ephemeral or sequential or ttl_ms is not None):
            raise ValueError("a container cannot be ephemeral, sequential or have a TTL")
        if ttl_ms is not None and ephemeral:
            raise ValueError("a TTL node cannot be ephemeral")
        if ttl_ms is not None and not TTL_MIN_MS <= ttl_ms <= TTL_MAX_MS:
            raise ValueError(f"ttl_ms must be in [{TTL_MIN_MS}, {TTL_MAX_MS}]")
        data = (codec or self.codec).encode(value)
        acls = tuple(acl) if acl is not None else self.default_acl
        server_path = self._server_path(path)
        if container:
            mode = CreateMode.CONTAINER
            flags = int(mode)
            return OpCode.CREATE_CONTAINER, CreateRequest(
                path=server_path, data=data, acl=acls, flags=flags
            )
        if ttl_ms is not None:
            mode = (
                CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL
                if sequential
                else CreateMode.PERSISTENT_WITH_TTL
            )
            return OpCode.CREATE_TTL, CreateTTLRequest(
                path=server_path, data=data, acl=acls, flags=int(mode), ttl_ms=ttl_ms
            )
        if ephemeral:
            mode = CreateMode.EPHEMERAL_SEQUENTIAL if sequential else CreateMode.EPHEMERAL
        else:
            mode = CreateMode.PERSISTENT_SEQUENTIAL if sequential else CreateMode.PERSISTENT
        return OpCode.CREATE2, CreateRequest(path=server_path, data=data, acl=acls, flags=int(mode))

    async def create(
        self,
        path: str,
        value: Any = b"",
        *,
        acl: Sequence[ACL] | None = None,
        ephemeral: bool = False,
        sequential: bool = False,
        container: bool = False,
        ttl_ms: int | None = None,
        make_parents: bool = False,
        codec: Codec | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Create a znode; returns its path (with the sequence suffix if sequential)."""
        created, _ = await self.create_stat(
            path,
            value,
            acl=acl,
            ephemeral=ephemeral,
            sequential=sequential,
            container=container,
            ttl_ms=ttl_ms,
            make_parents=make_parents,
            codec=codec,
            timeout_s=timeout_s,
        )
        return created

    async def create_stat(
        self,
        path: str,
        value: Any = b"",
        *,
        acl: Sequence[ACL] | None = None,
        ephemeral: bool = False,
        sequential: bool = False,
        container: bool = False,
        ttl_ms: int | None = None,
        make_parents: bool = False,
        codec: Codec | None = None,
        timeout_s: float | None = None,
    ) -> tuple[str, Stat]:
        """Like create, also returning the new znode's Stat (create2)."""
        opcode, request = self._create_request(
            path, value, acl, ephemeral, sequential, container, ttl_ms, codec
        )
        try:
            body = await self._request(opcode, request, path, timeout_s=timeout_s, idempotent=False)
        except NoNodeError:
            if not make_parents or path.rfind("/") <= 0:
                raise
            await self.ensure_path(path[: path.rfind("/")], acl=acl, timeout_s=timeout_s)
            body = await self._request(opcode, request, path, timeout_s=timeout_s, idempotent=False)
        assert isinstance(body, Create2Response)
        return body.path, body.stat

    async def ensure_path(
        self, path: str, *, acl: Sequence[ACL] | None = None, timeout_s: float | None = None
    ) -> None:
        """Create `path` and its missing ancestors as empty persistent znodes."""
        self._server_path(path)
        if path == "/":
            return
        parts = path.strip("/").split("/")
        current = ""
        for part in parts:
            current = f"{current}/{part}"
            if await self.exists(current, timeout_s=timeout_s) is not None:
                continue
            try:
                await self.create(current, b"", acl=acl, codec=BYTES, timeout_s=timeout_s)
            except ZooKeeperError as e:
                if e.code != ErrorCode.NODE_EXISTS:
                    raise

    async def delete(
        self,
        path: str,
        version: int = -1,
        *,
        recursive: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Delete a znode; `recursive` deletes its subtree first (children before parents)."""
        if recursive:
            await self._delete_tree(path, timeout_s)
            return
        request = DeleteRequest(path=self._server_path(path), version=version)
        await self._request(OpCode.DELETE, request, path, timeout_s=timeout_s, idempotent=False)

    async def _delete_tree(self, root: str, timeout_s: float | None) -> None:
        # Iterative post-order walk: no recursion over the tree (STYLE rule 3).
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            path, expanded = stack.pop()
            if not expanded:
                stack.append((path, True))
                try:
                    children = await self.get_children(path, timeout_s=timeout_s)
                except NoNodeError:
                    stack.pop()
                    continue
                stack.extend((join_path(path, child), False) for child in children)
                continue
            try:
                await self.delete(path, timeout_s=timeout_s)
            except NoNodeError:
                pass
            except NotEmptyError:
                stack.append((path, False))  # a child appeared meanwhile: walk it again

    async def exists(
        self, path: str, *, watch: Watcher | None = None, timeout_s: float | None = None
    ) -> Stat | None:
        server_path = self._server_path(path)
        request = ExistsRequest(path=server_path, watch=watch is not None)
        completed = await self._call(
            OpCode.EXISTS,
            request,
            timeout_s=timeout_s,
            idempotent=True,
            path=server_path,
            watch=None if watch is None else (WatchKind.DATA, watch),
        )
        if completed.err == ErrorCode.NO_NODE:
            return None
        self._raise_for(completed, path)
        assert isinstance(completed.body, StatResponse)
        return completed.body.stat

    async def get(
        self,
        path: str,
        *,
        watch: Watcher | None = None,
        codec: Codec | None = None,
        timeout_s: float | None = None,
    ) -> tuple[Any, Stat]:
        """(value, stat); the value decoded with `codec` (the client's by default)."""
        server_path = self._server_path(path)
        body = await self._request(
            OpCode.GET_DATA,
            GetDataRequest(path=server_path, watch=watch is not None),
            path,
            timeout_s=timeout_s,
            idempotent=True,
            server_path=server_path,
            watch=None if watch is None else (WatchKind.DATA, watch),
        )
        assert isinstance(body, GetDataResponse)
        return (codec or self.codec).decode(body.data or b""), body.stat

    async def set(
        self,
        path: str,
        value: Any,
        version: int = -1,
        *,
        codec: Codec | None = None,
        timeout_s: float | None = None,
    ) -> Stat:
        data = (codec or self.codec).encode(value)
        request = SetDataRequest(path=self._server_path(path), data=data, version=version)
        body = await self._request(
            OpCode.SET_DATA, request, path, timeout_s=timeout_s, idempotent=False
        )
        assert isinstance(body, StatResponse)
        return body.stat

    async def get_acl(self, path: str, *, timeout_s: float | None = None) -> tuple[list[ACL], Stat]:
        request = GetACLRequest(path=self._server_path(path))
        body = await self._request(
            OpCode.GET_ACL, request, path, timeout_s=timeout_s, idempotent=True
        )
        assert isinstance(body, GetACLResponse)
        return list(body.acl), body.stat

    async def set_acl(
        self, path: str, acl: Sequence[ACL], version: int = -1, *, timeout_s: float | None = None
    ) -> Stat:
        request = SetACLRequest(path=self._server_path(path), acl=tuple(acl), version=version)
        body = await self._request(
            OpCode.SET_ACL, request, path, timeout_s=timeout_s, idempotent=False
        )
        assert isinstance(body, StatResponse)
        return body.stat

    async def get_children(
        self, path: str, *, watch: Watcher | None = None, timeout_s: float | None = None
    ) -> list[str]:
        server_path = self._server_path(path)
        body = await self._request(
            OpCode.GET_CHILDREN,
            GetChildrenRequest(path=server_path, watch=watch is not None),
            path,
            timeout_s=timeout_s,
            idempotent=True,
            server_path=server_path,
            watch=None if watch is None else (WatchKind.CHILD, watch),
        )
        assert isinstance(body, GetChildrenResponse)
        return list(body.children)

    async def get_children_stat(
        self, path: str, *, watch: Watcher | None = None, timeout_s: float | None = None
    ) -> tuple[list[str], Stat]:
        """Children and the parent's Stat (getChildren2)."""
        server_path = self._server_path(path)
        body = await self._request(
            OpCode.GET_CHILDREN2,
            GetChildrenRequest(path=server_path, watch=watch is not None),
            path,
            timeout_s=timeout_s,
            idempotent=True,
            server_path=server_path,
            watch=None if watch is None else (WatchKind.CHILD, watch),
        )
        assert isinstance(body, GetChildren2Response)
        return list(body.children), body.stat

    async def sync(self, path: str = "/", *, timeout_s: float | None = None) -> str:
        request = PathRecord(path=self._server_path(path))
        body = await self._request(OpCode.SYNC, request, path, timeout_s=timeout_s, idempotent=True)
        assert isinstance(body, PathRecord)
        return body.path

    def transaction(self) -> Transaction:
        return Transaction(self)

    async def multi_read(
        self, *ops: DataOp | ChildrenOp, codec: Codec | None = None, timeout_s: float | None = None
    ) -> list[Any]:
        """Each op's result: (value, stat) for DataOp, [names] for ChildrenOp, or the
        exception its error code maps to (multiRead is not atomic)."""
        records: list[tuple[int, Record]] = []
        for op in ops:
            server_path = self._server_path(op.path)
            if isinstance(op, DataOp):
                records.append((OpCode.GET_DATA, GetDataRequest(path=server_path, watch=False)))
            else:
                records.append(
                    (OpCode.GET_CHILDREN, GetChildrenRequest(path=server_path, watch=False))
                )
        body = await self._request(
            OpCode.MULTI_READ,
            MultiRequest(ops=tuple(records)),
            None,
            timeout_s=timeout_s,
            idempotent=True,
        )
        assert isinstance(body, MultiResponse)
        results: list[Any] = []
        for op, result in zip(ops, body.results, strict=False):
            if result.type == -1:
                results.append(error_for(result.err or ErrorCode.SYSTEM_ERROR, op.path))
            elif isinstance(result.body, GetDataResponse):
                data = result.body.data or b""
                results.append(((codec or self.codec).decode(data), result.body.stat))
            elif isinstance(result.body, GetChildrenResponse):
                results.append(list(result.body.children))
            else:
                results.append(None)
        return results

    async def add_auth(
        self, scheme: str, credential: bytes | str, *, timeout_s: float | None = None
    ) -> None:
        """Add an identity to this connection; it is replayed on every reconnect."""
        raw = credential.encode() if isinstance(credential, str) else credential
        loop = asyncio.get_running_loop()
        deadline = _now() + (timeout_s if timeout_s is not None else self.request_timeout_s)
        for attempt in range(self.retry.tries_max):
            await self._wait_connected_until(deadline)
            future: asyncio.Future[Completed] = loop.create_future()
            self._session.add_auth(scheme, raw, token=future, now_ms=_now_ms())
            self._flush()
            try:
                completed = await asyncio.wait_for(asyncio.shield(future), deadline - _now())
            except TimeoutError:
                raise OperationTimeout("auth") from None
            if completed.err != ErrorCode.CONNECTION_LOSS:
                break
            await asyncio.sleep(self.retry.backoff_s(attempt))
        self._raise_for(completed, None)

    async def add_watch(
        self,
        path: str,
        watcher: Watcher,
        *,
        recursive: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """A persistent (or persistent recursive) watch: it stays after firing."""
        server_path = self._server_path(path)
        mode = AddWatchMode.PERSISTENT_RECURSIVE if recursive else AddWatchMode.PERSISTENT
        kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
        await self._request(
            OpCode.ADD_WATCH,
            AddWatchRequest(path=server_path, mode=mode),
            path,
            timeout_s=timeout_s,
            idempotent=True,
            server_path=server_path,
            watch=(kind, watcher),
        )

    async def remove_watches(
        self,
        path: str,
        watcher_type: WatcherType = WatcherType.ANY,
        *,
        local: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Remove this session's watches of `watcher_type` on `path` (all watchers).

        Watchers get a DATA/CHILD/PERSISTENT_WATCH_REMOVED event, synthesised here as the
        server sends none. `local=True` forgets them without asking the server.
        """
        server_path = self._server_path(path)
        if not local:
            await self._request(
                OpCode.REMOVE_WATCHES,
                WatchesRequest(path=server_path, type=watcher_type),
                path,
                timeout_s=timeout_s,
                idempotent=False,
            )
        kinds_by_type = {
            WatcherType.CHILDREN: (WatchKind.CHILD,),
            WatcherType.DATA: (WatchKind.DATA, WatchKind.EXIST),
            WatcherType.ANY: tuple(WatchKind),
            WatcherType.PERSISTENT: (WatchKind.PERSISTENT,),
            WatcherType.PERSISTENT_RECURSIVE: (WatchKind.PERSISTENT_RECURSIVE,),
        }
        for kind in kinds_by_type[watcher_type]:
            event_type = {
                WatchKind.CHILD: EventType.CHILD_WATCH_REMOVED,
                WatchKind.DATA: EventType.DATA_WATCH_REMOVED,
                WatchKind.EXIST: EventType.DATA_WATCH_REMOVED,
            }.get(kind, EventType.PERSISTENT_WATCH_REMOVED)
            event = WatchEvent(type=event_type, state=KeeperState.SYNC_CONNECTED, path=path)
            for watcher in self._session.watchers(kind, path):
                self._session.remove_watcher(kind, server_path, watcher)
                self._invoke(watcher, event)

    async def check_watches(
        self,
        path: str,
        watcher_type: WatcherType = WatcherType.ANY,
        *,
        timeout_s: float | None = None,
    ) -> bool:
        """True if the server holds a watch of this session of `watcher_type` on `path`."""
        try:
            await self._request(
                OpCode.CHECK_WATCHES,
                WatchesRequest(path=self._server_path(path), type=watcher_type),
                path,
                timeout_s=timeout_s,
                idempotent=True,
            )
        except NoWatcherError:
            return False
        return True

    async def _forget_watcher(self, path: str, watcher: Watcher, *, persistent: bool) -> None:
        """Drop one watcher locally; a persistent watch nobody else uses is removed on the
        server too (one-shot server watches are left to fire into nothing)."""
        server_path = self._session.server_path(path)
        removed_persistent = False
        for kind in WatchKind:
            if self._session.remove_watcher(kind, server_path, watcher) and kind in (
                WatchKind.PERSISTENT,
                WatchKind.PERSISTENT_RECURSIVE,
            ):
                removed_persistent = True
        if persistent and removed_persistent and not self._session.has_watchers(server_path):
            if not self._session.connected:
                return  # not re-armed on reconnect since no watcher is left
            # Failure means gone already, or the connection broke (then it is not re-armed).
            with contextlib.suppress(ZooKeeperError):
                await self._request(
                    OpCode.REMOVE_WATCHES,
                    WatchesRequest(path=server_path, type=WatcherType.ANY),
                    path,
                    timeout_s=None,
                    idempotent=False,
                )

    def watch(
        self, path: str, *, kind: str = "data", persistent: bool = False, recursive: bool = False
    ) -> Watch:
        """Events on `path` as an async iterator (`async with zk.watch(p) as w`)."""
        return Watch(self, path, kind=kind, persistent=persistent, recursive=recursive)

    def waiter(self) -> Waiter:
        return Waiter()

    async def get_ephemerals(
        self, prefix: str = "/", *, timeout_s: float | None = None
    ) -> list[str]:
        """Paths of this session's ephemerals starting with `prefix` (string prefix).

        Unlike the Java client, the chroot is applied to the prefix and stripped from
        the results, so paths are client paths like everywhere else.
        """
        server_prefix = self._session.server_path(prefix) if prefix.startswith("/") else prefix
        body = await self._request(
            OpCode.GET_EPHEMERALS,
            GetEphemeralsRequest(prefix_path=server_prefix),
            prefix,
            timeout_s=timeout_s,
            idempotent=True,
        )
        assert isinstance(body, GetEphemeralsResponse)
        return [self._session.client_path(p) for p in body.ephemerals]

    async def get_all_children_number(self, path: str, *, timeout_s: float | None = None) -> int:
        body = await self._request(
            OpCode.GET_ALL_CHILDREN_NUMBER,
            PathRecord(path=self._server_path(path)),
            path,
            timeout_s=timeout_s,
            idempotent=True,
        )
        assert isinstance(body, GetAllChildrenNumberResponse)
        return body.total_number

    async def whoami(self, *, timeout_s: float | None = None) -> list[ClientInfo]:
        body = await self._request(
            OpCode.WHO_AM_I, None, None, timeout_s=timeout_s, idempotent=True
        )
        assert isinstance(body, WhoAmIResponse)
        return list(body.client_info)

    async def get_config(
        self, *, watch: Watcher | None = None, timeout_s: float | None = None
    ) -> tuple[bytes, Stat]:
        """The cluster configuration from /zookeeper/config (never chrooted)."""
        body = await self._request(
            OpCode.GET_DATA,
            GetDataRequest(path=CONFIG_PATH, watch=watch is not None),
            CONFIG_PATH,
            timeout_s=timeout_s,
            idempotent=True,
            server_path=CONFIG_PATH,
            watch=None if watch is None else (WatchKind.DATA, watch),
        )
        assert isinstance(body, GetDataResponse)
        return body.data or b"", body.stat


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _now() -> float:
    return time.monotonic()


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


# --------------------------------------------------------------------------- loop thread


class LoopThread:
    """A private event loop on a daemon thread, for the synchronous facade."""

    def __init__(self, name: str = "corral-client-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("LoopThread.run called from its own loop (would deadlock)")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise OperationTimeout("no result in time") from None

    def call_soon(self, callback: Callable[[], object]) -> None:
        self._loop.call_soon_threadsafe(callback)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
