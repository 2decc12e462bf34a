"""Fair locks: Lock, ReadWriteLock, and a Semaphore of leases.

Rules:
- A contender creates one ephemeral sequential node under the lock path (protected
  create: `<token>-lock-<seq>`), and holds the lock when no node it must wait for
  precedes its own. Order is the sequence number, so the lock is fair (FIFO).
- No herd: a waiter sets exactly one watch, an exists watch on the node just before
  the one it waits for (any node for a writer/plain lock, the last writer for a
  reader). Only the semaphore watches the children, as any earlier release may let
  it in.
- Connection loss while waiting is survived (the client re-arms the watch on
  reconnect). Session expiry while waiting deletes our node: we start again with a
  new one. Session expiry while holding loses the lock: `is_held` turns False,
  `lost` is set and `on_lost` is called; the holder must stop touching the resource.
  While the connection is SUSPENDED the lock may be lost without us knowing yet:
  `is_held` is also False then (check it before acting on the resource).
"""

from __future__ import annotations

from collections.abc import Callable

from corral.client.aio import BYTES, Client, Flag, SessionEvent
from corral.client.exceptions import ConnectionLoss, NoNodeError, ZooKeeperError
from corral.client.recipes._common import (
    create_protected,
    deadline_for,
    delete_quietly,
    expired,
    new_token,
    remaining_s,
    sort_by_sequence,
)

LOCK_ATTEMPTS_MAX = 1_000_000  # passes through the wait loop; bounds a livelock


class LockLost(ZooKeeperError):
    """The session holding the lock expired."""


Blocker = Callable[[list[str], int], str | None]


def _immediate_predecessor(ordered: list[str], index: int) -> str | None:
    return ordered[index - 1] if index > 0 else None


class _SequentialLock:
    """The shared algorithm; `marker` tells this lock's nodes from others in the dir."""

    def __init__(
        self,
        zk: Client,
        path: str,
        *,
        prefix: str,
        markers: tuple[str, ...],
        blocker: Blocker,
        identifier: bytes = b"",
        on_lost: Callable[[], object] | None = None,
    ) -> None:
        self.zk = zk
        self.path = path.rstrip("/") or "/"
        self.prefix = prefix
        self.markers = markers
        self.blocker = blocker
        self.identifier = identifier
        self.on_lost = on_lost
        self.node: str | None = None
        self.token = new_token()  # in our node's name: found again after a lost reply
        self.lost = Flag()
        self._held = False

    @property
    def is_held(self) -> bool:
        return self._held and self.zk.connected and not self.lost.is_set()

    def _is_contender(self, name: str) -> bool:
        return any(marker in name for marker in self.markers)

    def _on_session_event(self, event: SessionEvent) -> None:
        if event is SessionEvent.EXPIRED and self._held:
            self._held = False
            self.node = None
            self.lost.set()
            if self.on_lost is not None:
                self.on_lost()

    async def acquire(self, *, timeout_s: float | None = None, blocking: bool = True) -> bool:
        """Wait for the lock; False if `timeout_s` passed (or it is taken and not blocking)."""
        assert not self._held, "acquire() while holding the lock (it is not reentrant)"
        deadline = deadline_for(timeout_s)
        for _ in range(LOCK_ATTEMPTS_MAX):
            try:
                if self.node is None:
                    self.node = await create_protected(
                        self.zk, self.path, self.prefix, self.identifier, token=self.token
                    )
                name = self.node.rsplit("/", 1)[1]
                children = await self.zk.get_children(self.path)
                if name not in children:
                    self.node = None  # our session expired meanwhile: start again
                    continue
                ordered = sort_by_sequence([c for c in children if self._is_contender(c)])
                predecessor = self.blocker(ordered, ordered.index(name))
                if predecessor is None:
                    self._held = True
                    self.lost.clear()
                    self.zk.add_listener(self._on_session_event)
                    return True
                if not blocking or expired(deadline):
                    await self._give_up()
                    return False
                waiter = self.zk.waiter()
                if await self.zk.exists(f"{self.path}/{predecessor}", watch=waiter) is None:
                    continue
                if await waiter.wait(remaining_s(deadline)) is None:
                    await self._give_up()
                    return False
            except ConnectionLoss:
                await self.zk.wait_connected()
            except NoNodeError:
                self.node = None  # the lock directory was removed under us
        raise AssertionError(f"lock {self.path}: no decision after {LOCK_ATTEMPTS_MAX} passes")

    async def _give_up(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            await delete_quietly(self.zk, node)

    async def release(self) -> None:
        self.zk.remove_listener(self._on_session_event)
        self._held = False
        await self._give_up()

    def check(self) -> None:
        """Raise LockLost unless the lock is held right now (see `is_held`)."""
        if not self.is_held:
            raise LockLost(f"lock {self.path} is not held")

    async def cleanup(self) -> None:
        """Delete any node of ours, even one whose create reply never arrived (e.g. the
        acquiring task was cancelled mid-create)."""
        self.zk.remove_listener(self._on_session_event)
        self._held = False
        self.node = None
        try:
            children = await self.zk.get_children(self.path)
        except NoNodeError:
            return
        for child in children:
            if child.startswith(self.token):
                await delete_quietly(self.zk, f"{self.path}/{child}")

    async def __aenter__(self) -> _SequentialLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def contenders(self) -> list[bytes]:
        """Identifiers of the holder and the waiters, in lock order."""
        try:
            children = await self.zk.get_children(self.path)
        except NoNodeError:
            return []
        result: list[bytes] = []
        for child in sort_by_sequence([c for c in children if self._is_contender(c)]):
            try:
                value, _ = await self.zk.get(f"{self.path}/{child}", codec=BYTES)
            except NoNodeError:
                continue
            result.append(value)
        return result


class Lock(_SequentialLock):
    """A fair, non-reentrant mutual-exclusion lock:  `async with Lock(zk, "/locks/a"):`."""

    def __init__(
        self,
        zk: Client,
        path: str,
        identifier: bytes = b"",
        *,
        on_lost: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(
            zk,
            path,
            prefix="lock-",
            markers=("-lock-",),
            blocker=_immediate_predecessor,
            identifier=identifier,
            on_lost=on_lost,
        )


def _last_writer_before(ordered: list[str], index: int) -> str | None:
    for name in reversed(ordered[:index]):
        if "-write-" in name:
            return name
    return None


class ReadWriteLock:
    """Many readers or one writer, in arrival order: `rw.read_lock` / `rw.write_lock`."""

    def __init__(self, zk: Client, path: str, identifier: bytes = b"") -> None:
        markers = ("-read-", "-write-")
        self.read_lock = _SequentialLock(
            zk,
            path,
            prefix="read-",
            markers=markers,
            blocker=_last_writer_before,
            identifier=identifier,
        )
        self.write_lock = _SequentialLock(
            zk,
            path,
            prefix="write-",
            markers=markers,
            blocker=_immediate_predecessor,
            identifier=identifier,
        )


class Semaphore:
    """At most `leases_max` holders at once (a lease each), granted in arrival order."""

    def __init__(self, zk: Client, path: str, leases_max: int, identifier: bytes = b"") -> None:
        if leases_max < 1:
            raise ValueError("leases_max must be >= 1")
        self.zk = zk
        self.path = path.rstrip("/") or "/"
        self.leases_max = leases_max
        self.identifier = identifier
        self.node: str | None = None

    async def acquire(self, *, timeout_s: float | None = None) -> bool:
        deadline = deadline_for(timeout_s)
        for _ in range(LOCK_ATTEMPTS_MAX):
            try:
                if self.node is None:
                    self.node = await create_protected(
                        self.zk, self.path, "lease-", self.identifier
                    )
                name = self.node.rsplit("/", 1)[1]
                waiter = self.zk.waiter()
                children = await self.zk.get_children(self.path, watch=waiter)
                if name not in children:
                    self.node = None
                    continue
                ordered = sort_by_sequence([c for c in children if "-lease-" in c])
                if ordered.index(name) < self.leases_max:
                    return True
                if expired(deadline) or await waiter.wait(remaining_s(deadline)) is None:
                    await self.release()
                    return False
            except ConnectionLoss:
                await self.zk.wait_connected()
            except NoNodeError:
                self.node = None
        raise AssertionError(f"semaphore {self.path}: no decision after {LOCK_ATTEMPTS_MAX}")

    async def release(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            await delete_quietly(self.zk, node)

    async def holders(self) -> int:
        try:
            children = await self.zk.get_children(self.path)
        except NoNodeError:
            return 0
        return min(self.leases_max, len([c for c in children if "-lease-" in c]))

    async def __aenter__(self) -> Semaphore:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
