"""Replica.persist_hook: the driver hears of each persist before the replica applies what
the previous one committed, so it can start the write while the replica applies."""

from __future__ import annotations

from corral.protocol.connection import Reply
from corral.protocol.constants import OpCode
from corral.protocol.records import OPEN_ACL_UNSAFE, CreateRequest
from corral.replica.outbox import Persist
from tests.replica.harness import Harness


def _create(path: str) -> CreateRequest:
    return CreateRequest(path=path, data=b"", acl=OPEN_ACL_UNSAFE, flags=0)


def _release_one(harness: Harness) -> None:
    """The oldest held persist is durable (the next one, if any, is held again)."""
    persist = harness.held.pop(0)
    harness._persist(persist)
    harness.execute(harness.replica.on_persisted(persist.token, harness.now_ms, harness.wall_ms))


def test_the_hook_sees_each_persist_before_the_previous_batch_is_applied() -> None:
    harness = Harness()
    client = harness.session()
    harness.auto_persist = False
    seen: list[tuple[Persist, bool, int]] = []

    def hook(persist: Persist) -> None:
        # What the tree and the client have when the driver hears of the persist.
        seen.append((persist, harness.tree.get("/a") is not None, len(client.received)))

    harness.replica.persist_hook = hook
    harness.send(client, OpCode.CREATE, _create("/a"))  # its persist is held
    harness.send(client, OpCode.CREATE, _create("/b"))  # waits: one persist at a time
    assert len(seen) == 1 and len(harness.held) == 1
    assert seen[0][0] is harness.held[0]
    replies_before = len(client.received)

    _release_one(harness)  # /a durable: committed; /b's persist handed out, then /a applied
    assert len(seen) == 2
    second, a_applied, replies = seen[1]
    assert len(second.entries) == 1 and second.entries[0].index > seen[0][0].entries[0].index
    assert not a_applied and replies == replies_before  # the hook came first
    assert harness.tree.get("/a") is not None  # and then /a was applied and answered
    answered = [event for event in client.received[replies_before:] if isinstance(event, Reply)]
    assert [reply.opcode for reply in answered] == [OpCode.CREATE]
    assert len(harness.held) == 1 and harness.held[0] is second

    _release_one(harness)
    assert harness.tree.get("/b") is not None
    assert len(seen) == 2 and not harness.held  # nothing more to persist


def test_without_a_hook_the_persists_are_the_same() -> None:
    results = []
    for with_hook in (False, True):
        harness = Harness()
        client = harness.session()
        harness.auto_persist = False
        if with_hook:
            harness.replica.persist_hook = lambda persist: None
        for path in ("/a", "/b", "/c"):
            harness.send(client, OpCode.CREATE, _create(path))
        persists = []
        while harness.held:
            persists.append(harness.held[0])
            harness.release()
        results.append(
            (
                [(p.token, [(e.index, e.data) for e in p.entries], p.hard_state) for p in persists],
                [(type(e).__name__, getattr(e, "xid", None)) for e in client.received],
            )
        )
    assert results[0] == results[1]
