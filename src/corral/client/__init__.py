"""corral.client: an asyncio ZooKeeper client, a sync facade, and recipes.

    from corral.client import Client, SyncClient
    async with Client("127.0.0.1:2181/app", timeout_s=10) as zk: ...

Rules: the names below are loaded lazily, so importing the sans-IO parts
(`corral.client.session`, `corral.client.exceptions`) never imports asyncio; the
simulator relies on that.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Client": "corral.client.aio",
    "Codec": "corral.client.codecs",
    "BYTES": "corral.client.codecs",
    "STR": "corral.client.codecs",
    "JSON": "corral.client.codecs",
    "RetryPolicy": "corral.client.retry",
    "Transaction": "corral.client.transaction",
    "Watch": "corral.client.aio",
    "Waiter": "corral.client.aio",
    "DataOp": "corral.client.transaction",
    "ChildrenOp": "corral.client.transaction",
    "digest_acl": "corral.client.codecs",
    "SyncClient": "corral.client.sync",
    "ClientState": "corral.client.session",
    "SessionEvent": "corral.client.session",
    "WatchEvent": "corral.client.session",
    "WatchKind": "corral.client.session",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
