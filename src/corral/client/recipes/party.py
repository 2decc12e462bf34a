"""Group membership: members join as ephemeral nodes, and everyone can list them.

Rules: a member is `<path>/<identifier>-<token>` holding its data; it disappears when
the member leaves or its session expires. After expiry a joined member re-joins by
itself (a new session is not a new member). `members()` lists the data of everyone.
"""

from __future__ import annotations

from typing import Any

from corral.client.aio import BYTES, Client, SessionEvent
from corral.client.exceptions import ConnectionLoss, NodeExistsError, NoNodeError
from corral.client.recipes._common import delete_quietly, new_token

JOIN_TRIES_MAX = 100


class Party:
    def __init__(self, zk: Client, path: str, identifier: str = "member", data: bytes = b""):
        self.zk = zk
        self.path = path
        self.data = data
        self.node = f"{path}/{identifier}-{new_token()}"
        self.joined = False

    def _on_session_event(self, event: SessionEvent) -> None:
        if event is SessionEvent.CONNECTED and self.joined:
            self.zk.spawn(self._create(), name=f"party rejoin {self.node}")

    async def _create(self) -> None:
        for _ in range(JOIN_TRIES_MAX):
            try:
                await self.zk.create(
                    self.node, self.data, ephemeral=True, make_parents=True, codec=BYTES
                )
                return
            except NodeExistsError:
                return  # our create whose reply was lost
            except ConnectionLoss:
                await self.zk.wait_connected()

    async def join(self) -> None:
        self.joined = True
        self.zk.add_listener(self._on_session_event)
        await self._create()

    async def leave(self) -> None:
        self.joined = False
        self.zk.remove_listener(self._on_session_event)
        await delete_quietly(self.zk, self.node)

    async def members(self, *, watch: Any = None) -> list[bytes]:
        try:
            children = await self.zk.get_children(self.path, watch=watch)
        except NoNodeError:
            return []
        result: list[bytes] = []
        for child in sorted(children):
            try:
                value, _ = await self.zk.get(f"{self.path}/{child}", codec=BYTES)
            except NoNodeError:
                continue
            result.append(value)
        return result

    async def __aenter__(self) -> Party:
        await self.join()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()
