"""tree/snapshot.py's decoder on damaged content: the storage layer's checksums catch
damage first, but the decoder must never fail with anything but DecodeError (the signal
recovery uses to fall back to an older snapshot), whatever bytes it is given."""

from __future__ import annotations

import random

import pytest

from corral.protocol.constants import CreateMode, OpCode
from corral.protocol.errors import DecodeError
from corral.protocol.records import ACL, OPEN_ACL_UNSAFE, CreateRequest, Id
from corral.tree.snapshot import decode_snapshot, encode_snapshot
from corral.tree.tree import DataTree
from corral.tree.txn import ClientTxn, CreateSessionTxn

CASES = 300


def sample_tree() -> DataTree:
    tree = DataTree(extended_types_enabled=True)
    tree.apply(CreateSessionTxn(session_id=7, password=bytes(16), timeout_ms=9000, time_ms=1), 1)
    acls = (OPEN_ACL_UNSAFE, (ACL(perms=1, id=Id(scheme="digest", id="u:x")),))
    for i in range(40):
        path = f"/a{i % 5}" if i < 5 else f"/a{i % 5}/b{i}"
        request = CreateRequest(
            path=path,
            data=None if i % 4 == 0 else b"d%d" % i,
            acl=acls[i % 2] if i >= 5 else OPEN_ACL_UNSAFE,
            flags=CreateMode.EPHEMERAL if i % 9 == 8 else 0,
        )
        txn = ClientTxn(
            session_id=7, opcode=OpCode.CREATE, request=request, identities=(), time_ms=i
        )
        tree.apply(txn, i + 2)
    return tree


def test_round_trip() -> None:
    content = encode_snapshot(sample_tree())
    assert encode_snapshot(decode_snapshot(content, extended_types_enabled=True)) == content


@pytest.mark.parametrize("seed", range(4))
def test_damaged_content_raises_decode_error_only(seed: int) -> None:
    rng = random.Random(seed)
    content = encode_snapshot(sample_tree())
    for _ in range(CASES):
        damaged = bytearray(content)
        if rng.random() < 0.3:
            damaged = damaged[: rng.randrange(len(damaged))]
        else:
            for _ in range(rng.randrange(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            decode_snapshot(bytes(damaged), extended_types_enabled=True)
        except DecodeError:
            pass
        except Exception as e:
            raise AssertionError(f"seed={seed}: {type(e).__name__}: {e}") from e
