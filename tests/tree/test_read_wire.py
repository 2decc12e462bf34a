"""DataTree.read_wire answers exactly what read answers, body byte for byte, while the
tree changes under it (its cached getChildren bodies follow every change)."""

from __future__ import annotations

import random

import pytest

from corral.protocol.constants import CreateMode, ErrorCode, OpCode, Perm
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    ExistsRequest,
    GetChildrenRequest,
    GetDataRequest,
    Id,
    Record,
)
from corral.tree import tree as tree_module
from corral.tree.tree import WireBody
from tests.tree.harness import IP, S1, SUPER, Harness, acl, create_op, delete_op, digest_id

ALICE = digest_id("alice:secret")
_PATHS = ["/", "", "/a", "/a/b", "/a/b/c", "/e", "/q", "/t", "/missing", "bad", "/a\0b", "/a/"]
_IDENTITIES = [(IP,), (IP, ALICE), (IP, SUPER), ()]
_ACLS = [
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    (acl(Perm.ALL, "digest", ALICE.id),),
    (acl(Perm.WRITE, "world", "anyone"),),
    (acl(Perm.READ, "ip", "127.0.0.0/8"),),
]
_READS = [OpCode.EXISTS, OpCode.GET_DATA, OpCode.GET_CHILDREN, OpCode.GET_CHILDREN2]


def _paths(h: Harness) -> list[str]:
    return [path for path, _ in h.tree.walk()]


def _request(opcode: int, path: str) -> Record:
    if opcode == OpCode.EXISTS:
        return ExistsRequest(path=path, watch=False)
    if opcode == OpCode.GET_DATA:
        return GetDataRequest(path=path, watch=False)
    return GetChildrenRequest(path=path, watch=False)


def _check_reads(h: Harness, rng: random.Random, count: int) -> None:
    for _ in range(count):
        opcode = rng.choice(_READS)
        path = rng.choice(_PATHS + _paths(h))
        ids = rng.choice(_IDENTITIES)
        request = _request(opcode, path)
        err, body = h.tree.read(opcode, request, ids, S1)
        wire_err, wire_body = h.tree.read_wire(opcode, request, ids, S1)
        assert wire_err == err, (opcode, path, ids)
        if body is None:
            assert wire_body is None, (opcode, path, ids)
        else:
            assert wire_body is not None
            assert wire_body.to_bytes() == body.to_bytes(), (opcode, path, ids)
            if err == ErrorCode.OK and path in _paths(h):
                assert isinstance(wire_body, WireBody)


def _random_write(h: Harness, rng: random.Random) -> None:
    parent = rng.choice(["/", "/a", "/a/b", "/e", "/q", "/t"])
    name = rng.choice(["a", "b", "c", "e", "q", "t", "n"])
    path = ("" if parent == "/" else parent) + "/" + name
    choice = rng.randrange(7)
    ids = rng.choice(_IDENTITIES)
    if choice <= 1:
        flags = rng.choice(list(CreateMode))
        opcode = OpCode.CREATE2
        ttl_ms = -1
        if flags.is_ttl:
            opcode, ttl_ms = OpCode.CREATE_TTL, 5_000
        elif rng.random() < 0.2:
            opcode = OpCode.CREATE_CONTAINER
            flags = CreateMode.CONTAINER
        data = rng.choice([None, b"", b"data", bytes(300)])
        h.create(path, data, acl=rng.choice(_ACLS), flags=flags, opcode=opcode, ttl_ms=ttl_ms)
    elif choice == 2:
        h.delete(rng.choice(_paths(h)), ids=ids)
    elif choice == 3:
        h.set_data(path, rng.choice([None, b"", b"x" * rng.randrange(50)]), ids=ids)
    elif choice == 4:
        h.set_acl(path, rng.choice(_ACLS), ids=ids)
    elif choice == 5:
        # A multi that may fail half way: its rollback must drop what it cached, too.
        h.multi((OpCode.CREATE, create_op(path + "m")), delete_op(path), ids=ids)
    else:
        h.expire(S1)
        h.open_session(S1)


@pytest.mark.parametrize("seed", range(8))
def test_read_wire_matches_read(seed: int) -> None:
    print(f"reproduce: test_read_wire_matches_read[{seed}]")
    rng = random.Random(seed)
    h = Harness(extended_types_enabled=True)
    for path in ("/a", "/a/b", "/e", "/q", "/t"):
        h.create(path, b"v")
    for _ in range(150):
        _random_write(h, rng)
        _check_reads(h, rng, 8)
        h.tree.check_invariants()


def test_cached_children_replies_stay_within_their_byte_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tree_module, "CHILDREN_REPLY_CACHE_BYTES_MAX", 100)
    h = Harness()
    for parent in ("/a", "/b"):
        h.create(parent)
        for index in range(5):
            h.create(f"{parent}/child-{index}")
    request_a = GetChildrenRequest(path="/a", watch=False)
    request_b = GetChildrenRequest(path="/b", watch=False)
    ids: tuple[Id, ...] = (IP,)
    first = h.tree.read_wire(OpCode.GET_CHILDREN, request_a, ids, S1)
    second = h.tree.read_wire(OpCode.GET_CHILDREN, request_b, ids, S1)  # over the budget
    h.tree.check_invariants()
    assert first[1] is not None and second[1] is not None
    for request, (_, body) in ((request_a, first), (request_b, second)):
        _, expected = h.tree.read(OpCode.GET_CHILDREN, request, ids, S1)
        assert body is not None and expected is not None
        assert body.to_bytes() == expected.to_bytes()
    h.delete("/a/child-0")  # frees /a's entry
    h.tree.check_invariants()
    _, body = h.tree.read_wire(OpCode.GET_CHILDREN, request_b, ids, S1)
    _, expected = h.tree.read(OpCode.GET_CHILDREN, request_b, ids, S1)
    assert body is not None and expected is not None
    assert body.to_bytes() == expected.to_bytes()
    h.tree.check_invariants()
