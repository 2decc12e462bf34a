"""Replica.on_requests: a run of requests from one read answers exactly as on_request,
one at a time, does (same frames, same order, same tree), in one Outbox."""

from __future__ import annotations

import random

import pytest

from corral.protocol.connection import Request
from corral.protocol.constants import CreateMode, OpCode
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    CreateRequest,
    DeleteRequest,
    ExistsRequest,
    GetChildrenRequest,
    GetDataRequest,
    PathRecord,
    Record,
    SetDataRequest,
)
from corral.replica.replica import ReplicaConfig
from tests.replica.harness import FakeClient, Harness


def _random_request(rng: random.Random) -> tuple[int, Record | None]:
    path = rng.choice(["/a", "/a/x", "/b", "/missing", "bad"])
    choice = rng.randrange(10)
    if choice == 0:
        flags = rng.choice([CreateMode.PERSISTENT, CreateMode.EPHEMERAL_SEQUENTIAL])
        return OpCode.CREATE, CreateRequest(path=path, data=b"v", acl=OPEN_ACL_UNSAFE, flags=flags)
    if choice == 1:
        return OpCode.DELETE, DeleteRequest(path=path, version=-1)
    if choice == 2:
        return OpCode.SET_DATA, SetDataRequest(path=path, data=b"d", version=rng.choice([-1, 0]))
    if choice == 3:
        return OpCode.EXISTS, ExistsRequest(path=path, watch=rng.random() < 0.5)
    if choice == 4:
        return OpCode.GET_CHILDREN, GetChildrenRequest(path=path, watch=rng.random() < 0.5)
    if choice == 5:
        return OpCode.SYNC, PathRecord(path=path)
    if choice == 6:
        return OpCode.PING, None
    return OpCode.GET_DATA, GetDataRequest(path=path, watch=rng.random() < 0.5)


def _setup(config: ReplicaConfig | None = None) -> tuple[Harness, FakeClient, FakeClient]:
    harness = Harness(config)
    client = harness.session()
    watcher = harness.session()
    for path in ("/a", "/b"):
        harness.send(
            client, OpCode.CREATE, CreateRequest(path=path, data=b"", acl=OPEN_ACL_UNSAFE, flags=0)
        )
    for path in ("/a", "/b", "/missing"):
        harness.send(watcher, OpCode.EXISTS, ExistsRequest(path=path, watch=True))
    harness.auto_persist = False
    return harness, client, watcher


def _events(client: FakeClient, requests: list[tuple[int, Record | None]]) -> list[Request]:
    events = []
    for opcode, record in requests:
        xid = client.next_xid
        client.next_xid += 1
        client.codec.send_request(xid, opcode, record)
        events.append(Request(xid=xid, opcode=opcode, request=record, size=0))
    return events


@pytest.mark.parametrize("seed", range(6))
def test_a_run_answers_as_one_at_a_time(seed: int) -> None:
    print(f"reproduce: test_a_run_answers_as_one_at_a_time[{seed}]")
    rng = random.Random(seed)
    runs = [[_random_request(rng) for _ in range(rng.randrange(1, 30))] for _ in range(8)]
    one, one_client, one_watcher = _setup()
    run, run_client, run_watcher = _setup()
    for requests in runs:
        for event in _events(one_client, requests):
            one.execute(one.replica.on_request(one_client.connection_id, event, 0, one.wall_ms))
        out = run.replica.on_requests(
            run_client.connection_id, _events(run_client, requests), 0, run.wall_ms
        )
        run.execute(out)
        # Persists complete between reads, sometimes with the next run already queued.
        if rng.random() < 0.7:
            one.release()
            run.release()
    one.release()
    run.release()
    assert one_client.received == run_client.received
    assert one_watcher.received == run_watcher.received
    assert one_client.received, "the run answered something"
    assert [(p, z.stat()) for p, z in one.tree.walk()] == [
        (p, z.stat()) for p, z in run.tree.walk()
    ]


def test_the_writes_of_a_run_share_one_persist() -> None:
    harness, client, _ = _setup()
    requests: list[tuple[int, Record | None]] = [
        (OpCode.SET_DATA, SetDataRequest(path="/a", data=b"1", version=-1)),
        (OpCode.GET_DATA, GetDataRequest(path="/a", watch=False)),
        (OpCode.SET_DATA, SetDataRequest(path="/b", data=b"2", version=-1)),
    ]
    out = harness.replica.on_requests(
        client.connection_id, _events(client, requests), 0, harness.wall_ms
    )
    assert out.persist is not None
    assert len(out.persist.entries) == 2
    harness.execute(out)
    harness.release()
    assert [r.xid for r in harness.replies(client)][-3:] == [
        client.next_xid - 3,
        client.next_xid - 2,
        client.next_xid - 1,
    ]


def test_requests_after_a_close_in_the_same_run_are_ignored() -> None:
    harness, client, _ = _setup()
    requests: list[tuple[int, Record | None]] = [
        (OpCode.GET_DATA, GetDataRequest(path="/a", watch=False)),
        (OpCode.DELETE_CONTAINER, PathRecord(path="/a")),  # internal: closes the connection
        (OpCode.SET_DATA, SetDataRequest(path="/a", data=b"1", version=-1)),
    ]
    out = harness.replica.on_requests(
        client.connection_id, _events(client, requests), 0, harness.wall_ms
    )
    assert out.close == [client.connection_id]
    assert out.persist is None  # the write after the close never reached the log
    assert len(out.reply) == 2
