"""A shared integer changed by versioned compare-and-set.

Rules: the znode holds JSON `{"value": n, "tokens": [...]}` where `tokens` are the
ids of the last RECENT_TOKENS_MAX increments. `add` reads value and version and writes
with that version; BadVersion means someone else won: read and retry. After
ConnectionLoss the write may or may not have happened, so the counter re-reads and
looks for its own token: an increment is applied exactly once (as long as fewer than
RECENT_TOKENS_MAX other increments land before the re-read).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from corral.client.aio import BYTES, Client
from corral.client.exceptions import (
    BadVersionError,
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
)
from corral.client.recipes._common import new_token

CAS_TRIES_MAX = 10_000
RECENT_TOKENS_MAX = 64


class Counter:
    def __init__(self, zk: Client, path: str, default: int = 0) -> None:
        self.zk = zk
        self.path = path
        self.default = default

    async def _read(self) -> tuple[int, list[str], int]:
        for _ in range(CAS_TRIES_MAX):
            try:
                data, stat = await self.zk.get(self.path, codec=BYTES)
            except NoNodeError:
                initial = json.dumps({"value": self.default, "tokens": []}).encode()
                # NodeExists/ConnectionLoss: someone (maybe us) created it; read again.
                with contextlib.suppress(NodeExistsError, ConnectionLoss):
                    await self.zk.create(self.path, initial, make_parents=True, codec=BYTES)
                continue
            document: dict[str, Any] = json.loads(data) if data else {}
            value = int(document.get("value", self.default))
            tokens = [str(token) for token in document.get("tokens", [])]
            return value, tokens, stat.version
        raise AssertionError("counter: could not read")

    async def value(self) -> int:
        value, _, _ = await self._read()
        return value

    async def add(self, delta: int) -> int:
        """Add `delta` atomically; returns the value right after our change."""
        token = new_token()
        for _ in range(CAS_TRIES_MAX):
            value, tokens, version = await self._read()
            new_value = value + delta
            tokens = [*tokens[-(RECENT_TOKENS_MAX - 1) :], token]
            data = json.dumps({"value": new_value, "tokens": tokens}).encode()
            try:
                await self.zk.set(self.path, data, version=version, codec=BYTES)
                return new_value
            except BadVersionError:
                continue
            except ConnectionLoss:
                await self.zk.wait_connected()
                _, current_tokens, _ = await self._read()
                if token in current_tokens:
                    return new_value  # our write was applied before the connection broke
        raise AssertionError(f"counter {self.path}: no successful CAS in {CAS_TRIES_MAX} tries")
