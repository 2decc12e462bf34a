"""Leader election with callbacks on gaining and losing leadership.

Rules:
- Built on the fair Lock: the holder is the leader; the others wait in line, each
  watching only its predecessor (no herd when the leader goes).
- `on_elected` is called when this contender becomes leader; if it returns an awaitable
  (a coroutine doing the leader's work) that runs as a task owned by the client and is
  cancelled when leadership is lost or resigned. `on_lost` is called when leadership
  ends for any reason but `resign()` (session expiry; the leader must stop acting).
- After losing, the contender re-enters the election automatically until `resign()`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

from corral.client.aio import Client, Flag
from corral.client.exceptions import ConnectionLoss, ZooKeeperError
from corral.client.recipes.lock import Lock

ELECTION_ROUNDS_MAX = 1_000_000  # re-entries into the election; bounds a livelock


class LeaderElection:
    def __init__(
        self,
        zk: Client,
        path: str,
        identifier: bytes = b"",
        *,
        on_elected: Callable[[], object] | None = None,
        on_lost: Callable[[], object] | None = None,
    ) -> None:
        self.zk = zk
        self.path = path
        self.identifier = identifier
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.elected = Flag()  # set while this contender is the leader
        self._lock: Lock | None = None
        self._campaign: Any = None
        self._work: Any = None
        self._resigned = False

    @property
    def is_leader(self) -> bool:
        return self._lock is not None and self._lock.is_held

    def start(self) -> None:
        """Enter the election (returns at once; see `elected` / `wait_elected`)."""
        assert self._campaign is None, "start() called twice"
        self._campaign = self.zk.spawn(self._run(), name=f"election {self.path}")

    async def wait_elected(self, timeout_s: float | None = None) -> bool:
        return await self.elected.wait(timeout_s)

    async def _run(self) -> None:
        for _ in range(ELECTION_ROUNDS_MAX):
            if self._resigned:
                return
            lock = Lock(self.zk, self.path, self.identifier)
            self._lock = lock
            try:
                await lock.acquire()
            except ConnectionLoss:
                continue
            self.elected.set()
            if self.on_elected is not None:
                result = self.on_elected()
                if inspect.isawaitable(result):
                    self._work = self.zk.spawn(_await(result), name=f"leader {self.path}")
            await lock.lost.wait()
            self._step_down()
            # Our node went with the expired session; release() only unhooks the lock's
            # session listener (deleting a node that is gone is a no-op).
            with contextlib.suppress(ZooKeeperError):
                await lock.release()
            if self.on_lost is not None:
                self.on_lost()

    def _step_down(self) -> None:
        self.elected.clear()
        if self._work is not None:
            self._work.cancel()
            self._work = None

    async def resign(self) -> None:
        """Leave the election (giving up leadership if held); no `on_lost` call."""
        self._resigned = True
        if self._campaign is not None:
            self._campaign.cancel()
            self._campaign = None
        self._step_down()
        lock, self._lock = self._lock, None
        if lock is not None:
            # On failure our node still goes with the session: it is ephemeral.
            with contextlib.suppress(ZooKeeperError):
                await lock.cleanup()

    async def leader(self) -> bytes | None:
        """The identifier of the current leader, or None if nobody leads."""
        contenders = await Lock(self.zk, self.path).contenders()
        return contenders[0] if contenders else None


async def _await(awaitable: Any) -> None:
    await awaitable
