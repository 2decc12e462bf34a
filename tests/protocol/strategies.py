"""Hypothesis strategies for every protocol record, built from the records' wire tables.

A record with a `_JUTE` table gets its strategy from the field kinds; the few records
with a hand-written codec (ACL, Stat, the Connect pair, multi) have their own below.
Generated values are exactly those a decode can give back: "string" fields are never
None (null reads as ""), vectors are tuples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st

from corral.protocol import records
from corral.protocol.constants import OpCode
from corral.protocol.records import (
    ACL,
    MULTI_OP_RECORDS,
    MULTI_RESULT_RECORDS,
    REQUEST_RECORDS,
    RESPONSE_RECORDS,
    ClientInfo,
    ConnectRequest,
    ConnectResponse,
    Id,
    MultiRequest,
    MultiResponse,
    OpResult,
    Record,
    Stat,
)

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=12)  # hypothesis' default alphabet has no surrogates
BUFFER = st.none() | st.binary(max_size=16)
VECTOR_SIZE_MAX = 4

ids = st.builds(Id, scheme=TEXT, id=TEXT)
acls = st.builds(ACL, perms=INT32, id=ids)
stats = st.builds(
    Stat,
    czxid=INT64,
    mzxid=INT64,
    ctime_ms=INT64,
    mtime_ms=INT64,
    version=INT32,
    cversion=INT32,
    aversion=INT32,
    ephemeral_owner=INT64,
    data_length=INT32,
    num_children=INT32,
    pzxid=INT64,
)
client_infos = st.builds(ClientInfo, auth_scheme=TEXT, user=TEXT)
connect_requests = st.builds(
    ConnectRequest,
    protocol_version=INT32,
    last_zxid_seen=INT64,
    timeout_ms=INT32,
    session_id=INT64,
    password=st.binary(max_size=20),  # a null password reads as b""
    read_only=st.none() | st.booleans(),
)
connect_responses = st.builds(
    ConnectResponse,
    protocol_version=INT32,
    timeout_ms=INT32,
    session_id=INT64,
    password=st.binary(min_size=16, max_size=16),
    read_only=st.none() | st.booleans(),
)

_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "int": INT32,
    "long": INT64,
    "bool": st.booleans(),
    "buffer": BUFFER,
    "string": TEXT,
    "ustring": st.none() | TEXT,
    "path": TEXT,
    "strings": st.lists(TEXT, max_size=VECTOR_SIZE_MAX).map(tuple),
    "acls": st.lists(acls, max_size=VECTOR_SIZE_MAX).map(tuple),
    "stat": stats,
    "client_infos": st.lists(client_infos, max_size=VECTOR_SIZE_MAX).map(tuple),
}


def _from_table(cls: type[Record]) -> st.SearchStrategy[Record]:
    return st.builds(cls, **{name: _KINDS[kind] for name, kind in cls._JUTE})


def _multi_request(opcodes: list[int]) -> st.SearchStrategy[MultiRequest]:
    op = st.sampled_from(opcodes).flatmap(
        lambda opcode: st.tuples(st.just(opcode), record_strategy(MULTI_OP_RECORDS[opcode]))
    )
    return st.lists(op, max_size=VECTOR_SIZE_MAX).map(lambda ops: MultiRequest(ops=tuple(ops)))


def _op_result(result_type: int) -> st.SearchStrategy[OpResult]:
    if result_type == -1:
        return st.builds(OpResult, type=st.just(-1), err=INT32)
    body_type = MULTI_RESULT_RECORDS[result_type]
    body = st.none() if body_type is None else record_strategy(body_type)
    return st.builds(OpResult, type=st.just(result_type), err=st.just(0), body=body)


op_results = st.sampled_from([-1, *MULTI_RESULT_RECORDS]).flatmap(_op_result)
multi_responses = st.lists(op_results, max_size=VECTOR_SIZE_MAX).map(
    lambda results: MultiResponse(results=tuple(results))
)

_SPECIAL: dict[type[Record], st.SearchStrategy[Any]] = {
    Id: ids,
    ACL: acls,
    Stat: stats,
    ClientInfo: client_infos,
    ConnectRequest: connect_requests,
    ConnectResponse: connect_responses,
    MultiResponse: multi_responses,
}


def record_strategy(cls: type[Record]) -> st.SearchStrategy[Any]:
    if cls in _SPECIAL:
        return _SPECIAL[cls]
    if cls is MultiRequest:
        return _multi_request(sorted(MULTI_OP_RECORDS))
    return _from_table(cls)


def request_for(opcode: int) -> st.SearchStrategy[Record | None]:
    """A request body that a server accepts for `opcode` (multi ops of the right group)."""
    record_type = REQUEST_RECORDS[opcode]
    if record_type is None:
        return st.none()
    if opcode == OpCode.MULTI:
        # Create flags outside CreateMode fail a 3.9+ multi while decoding: keep them valid.
        return _multi_request(sorted(op for op in MULTI_OP_RECORDS if op not in _READ_OPS)).map(
            _with_valid_flags
        )
    if opcode == OpCode.MULTI_READ:
        return _multi_request(sorted(_READ_OPS))
    return record_strategy(record_type)


def _with_valid_flags(request: MultiRequest) -> MultiRequest:
    ops = tuple(
        (opcode, dataclasses.replace(op, flags=op.flags % 7) if hasattr(op, "flags") else op)
        for opcode, op in request.ops
    )
    return MultiRequest(ops=ops)


def response_for(opcode: int) -> st.SearchStrategy[Record | None]:
    record_type = RESPONSE_RECORDS[opcode]
    return st.none() if record_type is None else record_strategy(record_type)


_READ_OPS = (OpCode.GET_DATA, OpCode.GET_CHILDREN)

# Opcodes a server accepts as requests (check only inside multi).
REQUEST_OPCODES = sorted(op for op in REQUEST_RECORDS if op != OpCode.CHECK)
# Every record class of records.py. `dataclass(slots=True)` replaces each class, so the
# pre-slots originals are subclasses too: keep only the classes the module exports.
ALL_RECORD_TYPES: list[type[Record]] = sorted(
    (t for t in Record.__subclasses__() if getattr(records, t.__name__, None) is t),
    key=lambda t: t.__name__,
)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length, sorted): how a stream
    may arrive in reads."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return [piece for piece in pieces if piece]
