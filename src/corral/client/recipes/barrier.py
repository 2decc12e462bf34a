"""Barriers: a simple gate, and a double barrier (enter together, leave together).

Rules: a Barrier is one znode; while it exists, `wait()` blocks (an exists watch).
A DoubleBarrier's participants are ephemeral children of its path; the one that
completes the set creates `ready`, which everyone waits for to enter; leaving
waits until no participant is left. Ephemeral membership means a crashed participant
leaves by itself when its session expires.
"""

from __future__ import annotations

import contextlib

from corral.client.aio import BYTES, Client
from corral.client.exceptions import ConnectionLoss, NodeExistsError, NoNodeError
from corral.client.recipes._common import (
    deadline_for,
    delete_quietly,
    expired,
    new_token,
    remaining_s,
)

BARRIER_WAITS_MAX = 1_000_000
READY = "ready"


class Barrier:
    def __init__(self, zk: Client, path: str) -> None:
        self.zk = zk
        self.path = path

    async def create(self) -> bool:
        """Raise the barrier; False if it was already up."""
        try:
            await self.zk.create(self.path, b"", make_parents=True, codec=BYTES)
        except NodeExistsError:
            return False
        except ConnectionLoss:
            await self.zk.wait_connected()
            return await self.zk.exists(self.path) is not None
        return True

    async def remove(self) -> None:
        await delete_quietly(self.zk, self.path)

    async def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the barrier is removed; False on timeout."""
        deadline = deadline_for(timeout_s)
        for _ in range(BARRIER_WAITS_MAX):
            waiter = self.zk.waiter()
            if await self.zk.exists(self.path, watch=waiter) is None:
                return True
            if expired(deadline) or await waiter.wait(remaining_s(deadline)) is None:
                return False
        raise AssertionError("barrier wait did not converge")


class DoubleBarrier:
    def __init__(self, zk: Client, path: str, participants: int, identifier: str = "") -> None:
        if participants < 1:
            raise ValueError("participants must be >= 1")
        self.zk = zk
        self.path = path
        self.participants = participants
        self.name = f"{identifier or 'member'}-{new_token()}"
        self.node = f"{path}/{self.name}"

    async def enter(self, timeout_s: float | None = None) -> bool:
        """Join and wait for all participants; False (and left again) on timeout."""
        deadline = deadline_for(timeout_s)
        ready = f"{self.path}/{READY}"
        waiter = self.zk.waiter()
        ready_before = await self.zk.exists(ready, watch=waiter) is not None
        # NodeExists: our own create, whose reply was lost.
        with contextlib.suppress(NodeExistsError):
            await self.zk.create(self.node, b"", ephemeral=True, make_parents=True, codec=BYTES)
        if ready_before:
            return True
        children = [c for c in await self.zk.get_children(self.path) if c != READY]
        if len(children) >= self.participants:
            with contextlib.suppress(NodeExistsError):
                await self.zk.create(ready, b"", codec=BYTES)
            return True
        for _ in range(BARRIER_WAITS_MAX):
            if waiter.fired and await self.zk.exists(ready) is not None:
                return True
            if expired(deadline) or await waiter.wait(remaining_s(deadline)) is None:
                await delete_quietly(self.zk, self.node)
                return False
            waiter = self.zk.waiter()
            if await self.zk.exists(ready, watch=waiter) is not None:
                return True
        raise AssertionError("double barrier enter did not converge")

    async def leave(self, timeout_s: float | None = None) -> bool:
        """Leave and wait until every participant has left; False on timeout."""
        deadline = deadline_for(timeout_s)
        await delete_quietly(self.zk, self.node)
        for _ in range(BARRIER_WAITS_MAX):
            waiter = self.zk.waiter()
            try:
                children = await self.zk.get_children(self.path, watch=waiter)
            except NoNodeError:
                return True
            if not [c for c in children if c != READY]:
                await delete_quietly(self.zk, f"{self.path}/{READY}")
                return True
            if expired(deadline) or await waiter.wait(remaining_s(deadline)) is None:
                return False
        raise AssertionError("double barrier leave did not converge")
