"""A distributed FIFO queue of persistent sequential znodes.

Rules: `put` creates `<path>/item-<seq>` (protected against lost replies by a token
in the name, so one put is one item). `get` takes the lowest item: read it, then
delete it with its version; whoever deletes it owns it, so an item is consumed at
most once even with competing consumers. An empty queue waits on a children watch.
"""

from __future__ import annotations

from typing import Any

from corral.client.aio import BYTES, Client, Codec
from corral.client.exceptions import BadVersionError, ConnectionLoss, NoNodeError
from corral.client.recipes._common import (
    create_protected,
    deadline_for,
    expired,
    remaining_s,
    sort_by_sequence,
)

QUEUE_PASSES_MAX = 1_000_000


class Queue:
    def __init__(self, zk: Client, path: str, *, codec: Codec | None = None) -> None:
        self.zk = zk
        self.path = path
        self.codec = codec or zk.codec

    async def put(self, value: Any) -> str:
        return await create_protected(
            self.zk, self.path, "item-", self.codec.encode(value), ephemeral=False
        )

    async def size(self) -> int:
        try:
            return len(await self.zk.get_children(self.path))
        except NoNodeError:
            return 0

    async def get(self, timeout_s: float | None = None) -> Any:
        """Take the oldest item; waits while the queue is empty. None on timeout."""
        deadline = deadline_for(timeout_s)
        for _ in range(QUEUE_PASSES_MAX):
            waiter = self.zk.waiter()
            try:
                children = await self.zk.get_children(self.path, watch=waiter)
            except NoNodeError:
                await self.zk.ensure_path(self.path)
                continue
            for child in sort_by_sequence([c for c in children if "-item-" in c]):
                taken = await self._take(f"{self.path}/{child}")
                if taken is not None:
                    return self.codec.decode(taken)
            if expired(deadline) or await waiter.wait(remaining_s(deadline)) is None:
                return None
        raise AssertionError("queue get did not converge")

    async def _take(self, path: str) -> bytes | None:
        try:
            value, stat = await self.zk.get(path, codec=BYTES)
            await self.zk.delete(path, version=stat.version)
        except (NoNodeError, BadVersionError):
            return None  # another consumer took it
        except ConnectionLoss:
            await self.zk.wait_connected()
            # Our delete may have gone through; if the node is gone we cannot tell who
            # took it, so we leave it to the other taker (at most once).
            return None
        assert isinstance(value, bytes)
        return value
