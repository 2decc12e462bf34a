"""A synchronous facade over the asyncio Client, for scripts.

    with SyncClient("127.0.0.1:2181", timeout_s=10) as zk:
        zk.create("/a", b"x")
        value, stat = zk.get("/a")

Rules:
- The asyncio Client runs on a private event loop in a daemon thread (aio.LoopThread);
  every coroutine method of Client is available here as a blocking method with the same
  name and arguments (it runs on that loop; the caller's thread waits for the result).
- Watch callbacks and state listeners run on the loop thread, not the caller's: they
  must be quick and must not call back into this facade (that would deadlock; it is
  detected and raises RuntimeError). Async iterators (`watch`) are asyncio-only.
- No asyncio import here (only client/aio.py may); the loop is aio.LoopThread's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Self

from corral.client.aio import Client, Transaction
from corral.client.session import ClientState


class SyncTransaction:
    def __init__(self, facade: SyncClient, transaction: Transaction) -> None:
        self._facade = facade
        self._transaction = transaction

    def create(self, path: str, value: Any = b"", **options: Any) -> Self:
        self._transaction.create(path, value, **options)
        return self

    def delete(self, path: str, version: int = -1) -> Self:
        self._transaction.delete(path, version)
        return self

    def set(self, path: str, value: Any, version: int = -1, **options: Any) -> Self:
        self._transaction.set(path, value, version, **options)
        return self

    def check(self, path: str, version: int) -> Self:
        self._transaction.check(path, version)
        return self

    def commit(self, *, timeout_s: float | None = None) -> list[Any]:
        return self._facade._loop.run(self._transaction.commit(timeout_s=timeout_s))


class SyncClient:
    """Blocking twin of corral.client.aio.Client (same methods, same arguments)."""

    def __init__(self, hosts: str = "127.0.0.1:2181", **options: Any) -> None:
        from corral.client.aio import LoopThread

        self._loop = LoopThread()
        self._client = Client(hosts, **options)

    @property
    def client(self) -> Client:
        """The asyncio client underneath (use it only from the loop thread)."""
        return self._client

    @property
    def state(self) -> ClientState:
        return self._client.state

    def start(self, timeout_s: float | None = None) -> None:
        try:
            self._loop.run(self._client.start(timeout_s))
        except BaseException:
            self._loop.stop()
            raise

    def close(self) -> None:
        try:
            self._loop.run(self._client.close())
        finally:
            self._loop.stop()

    def transaction(self) -> SyncTransaction:
        return SyncTransaction(self, self._client.transaction())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("watch", "waiter", "spawn"):
            raise AttributeError(f"SyncClient has no attribute {name!r}")
        attribute = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        method: Callable[..., Any] = attribute

        @functools.wraps(method)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(method(*args, **kwargs))

        return blocking
