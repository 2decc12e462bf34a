"""Helpers shared by the recipes: protected sequential creates and sequence order.

Rules: public client API only. A "protected" create puts a unique token in the node
name, so after ConnectionLoss (reply lost; the node may or may not exist) the recipe
lists the parent and finds its own node instead of creating a second one.
"""

from __future__ import annotations

import time
import uuid

from corral.client.aio import BYTES, Client
from corral.client.exceptions import ConnectionLoss, NoNodeError
from corral.limits import SEQUENCE_DIGITS

PROTECTED_CREATE_TRIES_MAX = 10


def sequence_of(name: str) -> int:
    """The sequence number ZooKeeper appended to a sequential node's name."""
    return int(name[-SEQUENCE_DIGITS:])


def sort_by_sequence(names: list[str]) -> list[str]:
    return sorted(names, key=sequence_of)


def new_token() -> str:
    return uuid.uuid4().hex


async def create_protected(
    zk: Client,
    parent: str,
    prefix: str,
    value: bytes = b"",
    *,
    ephemeral: bool = True,
    token: str | None = None,
) -> str:
    """Create `parent/<token>-<prefix><seq>`; returns its path. Exactly one node, even if
    replies are lost to connection loss."""
    token = token or new_token()
    name_start = f"{token}-{prefix}"
    for _ in range(PROTECTED_CREATE_TRIES_MAX):
        try:
            return await zk.create(
                f"{parent}/{name_start}",
                value,
                ephemeral=ephemeral,
                sequential=True,
                make_parents=True,
                codec=BYTES,
            )
        except ConnectionLoss:
            await zk.wait_connected()
            try:
                children = await zk.get_children(parent)
            except NoNodeError:
                continue
            for child in children:
                if child.startswith(name_start):
                    return f"{parent}/{child}"
    raise ConnectionLoss(f"could not create a node under {parent}")


async def delete_quietly(zk: Client, path: str) -> None:
    """Delete `path`, tolerating that it is gone; retried across connection loss."""
    for _ in range(PROTECTED_CREATE_TRIES_MAX):
        try:
            await zk.delete(path)
            return
        except NoNodeError:
            return
        except ConnectionLoss:
            await zk.wait_connected()


def remaining_s(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def deadline_for(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
