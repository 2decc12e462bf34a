"""The fast paths of the hot requests and replies give exactly what the generic codec gives.

Rules under test (records.py, "fast decoding" and "fast encoding"): a fast decoder
returns the generic decode's record and end offset, or None (then the generic decode
decides, with its own error); a fast encoder writes the generic encoder's bytes and
refuses what it refuses; ServerConnection's events are the same with and without the
fast decoders, whatever the bytes. Hypothesis prints the failing example; rerun with
the printed @reproduce_failure blob to replay it.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol import connection
from corral.protocol.connection import Request, ServerConnection
from corral.protocol.constants import OpCode
from corral.protocol.errors import DecodeError, LocalProtocolError, ProtocolError
from corral.protocol.jute import Reader, Writer
from corral.protocol.records import (
    CREATOR_ALL_ACL,
    FAST_REQUEST_DECODERS,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    REQUEST_RECORDS,
    Create2Response,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    GetChildren2Response,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    Record,
    SetDataRequest,
    Stat,
    StatResponse,
    slot_constructor,
)

from .strategies import INT32, record_strategy, stats
from .vectors_util import NEW_CONNECT, drain_server

EXAMPLES = 100
FAST_OPCODES = sorted(FAST_REQUEST_DECODERS)
FAST_REPLY_TYPES: list[type[Record]] = [
    StatResponse,
    GetDataResponse,
    GetChildrenResponse,
    GetChildren2Response,
    CreateResponse,
    Create2Response,
    Stat,
]

# The common shape each fast decoder must take (else the tests below prove little).
ascii_paths = st.text(alphabet=st.characters(max_codepoint=127), max_size=40)
known_acls = st.sampled_from([OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, CREATOR_ALL_ACL])
datas = st.none() | st.binary(max_size=64)
common_requests: dict[int, st.SearchStrategy[Any]] = {
    OpCode.EXISTS: st.builds(GetDataRequest, path=ascii_paths, watch=st.booleans()),
    OpCode.SET_DATA: st.builds(SetDataRequest, path=ascii_paths, data=datas, version=INT32),
    OpCode.DELETE: st.builds(DeleteRequest, path=ascii_paths, version=INT32),
    OpCode.CREATE: st.builds(
        CreateRequest, path=ascii_paths, data=datas, acl=known_acls, flags=INT32
    ),
}


def generic_decode(opcode: int, data: bytes, offset: int) -> tuple[Record, int] | DecodeError:
    record_type = REQUEST_RECORDS[opcode]
    assert record_type is not None
    reader = Reader(data, offset)
    try:
        return record_type.decode(reader), reader.offset
    except DecodeError as e:
        return e


def generic_encode(record: Record) -> bytes:
    """The bytes of the `_JUTE` table's field-by-field writer (Stat: its own encode)."""
    w = Writer()
    if isinstance(record, Stat):
        Stat.encode(record, w)
    else:
        Record.encode(record, w)
    return w.getvalue()


def same_decoding(opcode: int, data: bytes, offset: int) -> None:
    fast = FAST_REQUEST_DECODERS[opcode](data, offset)
    generic = generic_decode(opcode, data, offset)
    if fast is not None:
        assert not isinstance(generic, DecodeError), (fast, generic)
        record, end = fast
        assert (type(record), record, end) == (type(generic[0]), generic[0], generic[1])


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("opcode", FAST_OPCODES, ids=lambda op: OpCode(op).name)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data(), head=st.binary(max_size=8), tail=st.binary(max_size=8))
def test_fast_decode_of_any_record_is_the_generic_decode(
    opcode: int, data: st.DataObject, head: bytes, tail: bytes
) -> None:
    record_type = REQUEST_RECORDS[opcode]
    assert record_type is not None
    record = data.draw(record_strategy(record_type))
    same_decoding(opcode, head + record.to_bytes() + tail, len(head))


@pytest.mark.parametrize("opcode", FAST_OPCODES, ids=lambda op: OpCode(op).name)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data(), tail=st.binary(max_size=8))
def test_fast_decode_takes_the_common_shape(opcode: int, data: st.DataObject, tail: bytes) -> None:
    shapes: dict[int, int] = {
        OpCode.GET_DATA: OpCode.EXISTS,
        OpCode.GET_CHILDREN: OpCode.EXISTS,
        OpCode.GET_CHILDREN2: OpCode.EXISTS,
        OpCode.CREATE2: OpCode.CREATE,
        OpCode.CREATE_CONTAINER: OpCode.CREATE,
    }
    record = data.draw(common_requests[shapes.get(opcode, opcode)])
    encoded = record.to_bytes() + tail
    decoded = FAST_REQUEST_DECODERS[opcode](encoded, 0)
    assert decoded is not None
    expected = generic_decode(opcode, encoded, 0)
    assert decoded == expected
    assert type(decoded[0]) is REQUEST_RECORDS[opcode]


@pytest.mark.parametrize("opcode", FAST_OPCODES, ids=lambda op: OpCode(op).name)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.binary(max_size=80), offset=st.integers(0, 8))
def test_fast_decode_of_any_bytes_is_none_or_the_generic_decode(
    opcode: int, data: bytes, offset: int
) -> None:
    same_decoding(opcode, data, min(offset, len(data)))


@pytest.mark.parametrize("opcode", FAST_OPCODES, ids=lambda op: OpCode(op).name)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data(), cut=st.integers(0, 200), flip=st.integers(0, 200), byte=st.integers(0, 255))
def test_fast_decode_of_damaged_records_is_none_or_the_generic_decode(
    opcode: int, data: st.DataObject, cut: int, flip: int, byte: int
) -> None:
    # Near misses of valid encodings: cut short, or one byte changed.
    record_type = REQUEST_RECORDS[opcode]
    assert record_type is not None
    encoded = bytearray(data.draw(record_strategy(record_type)).to_bytes())
    if encoded:
        encoded[flip % len(encoded)] = byte
    same_decoding(opcode, bytes(encoded[: cut % (len(encoded) + 1)]), 0)
    same_decoding(opcode, bytes(encoded), 0)


def _framed(xid: int, opcode: int, body: bytes) -> bytes:
    payload = struct.pack(">ii", xid, opcode) + body
    return struct.pack(">i", len(payload)) + payload


def _events(stream: bytes) -> list[Any]:
    server = ServerConnection()
    server.receive_data(_frame_connect() + stream)
    server.receive_data(b"")
    events: list[Any] = []
    try:
        events.extend(drain_server(server))
    except ProtocolError as e:
        events.append((type(e), str(e)))
    # request_bytes does not take part in equality: compare it too.
    return [
        (event, event.request_bytes) if isinstance(event, Request) else event for event in events
    ]


def _frame_connect() -> bytes:
    payload = NEW_CONNECT.to_bytes()
    return struct.pack(">i", len(payload)) + payload


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(
    frames=st.lists(
        st.tuples(
            INT32,
            st.sampled_from(FAST_OPCODES),
            st.data(),
            st.integers(0, 200),
            st.integers(0, 255),
            st.booleans(),
        ),
        max_size=5,
    )
)
def test_server_events_are_the_same_without_the_fast_decoders(
    frames: list[tuple[int, int, st.DataObject, int, int, bool]],
) -> None:
    stream = b""
    for xid, opcode, data, flip, byte, damage in frames:
        record_type = REQUEST_RECORDS[opcode]
        assert record_type is not None
        body = bytearray(data.draw(record_strategy(record_type)).to_bytes())
        if damage and body:
            body[flip % len(body)] = byte
        stream += _framed(xid, opcode, bytes(body))
    fast = _events(stream)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection, "FAST_REQUEST_DECODERS", {})
        generic = _events(stream)
    assert fast == generic


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("record_type", FAST_REPLY_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data())
def test_fast_encode_is_the_generic_encode(record_type: type[Record], data: st.DataObject) -> None:
    record = data.draw(record_strategy(record_type))
    expected = generic_encode(record)
    assert record.to_bytes() == expected
    w = Writer()
    w.raw(b"head")
    record.encode(w)
    assert w.getvalue() == b"head" + expected


@pytest.mark.parametrize("record_type", FAST_REPLY_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data(), field=st.sampled_from(["version", "czxid", "num_children"]))
def test_fast_encode_refuses_a_stat_out_of_range(
    record_type: type[Record], data: st.DataObject, field: str
) -> None:
    stat = dataclasses.replace(data.draw(stats), **{field: 2**64})
    if record_type is Stat:
        record: Record = stat
    elif "stat" in {f.name for f in dataclasses.fields(record_type)}:  # type: ignore[arg-type]
        record = dataclasses.replace(data.draw(record_strategy(record_type)), stat=stat)
    else:
        return  # no Stat in this reply
    with pytest.raises(LocalProtocolError):
        generic_encode(record)
    with pytest.raises(LocalProtocolError):
        record.to_bytes()


def test_null_data_and_null_path_encode_as_minus_one() -> None:
    stat = Stat(
        czxid=1,
        mzxid=2,
        ctime_ms=3,
        mtime_ms=4,
        version=5,
        cversion=6,
        aversion=7,
        ephemeral_owner=8,
        data_length=9,
        num_children=10,
        pzxid=11,
    )
    record = GetDataResponse(data=None, stat=stat)
    assert record.to_bytes() == generic_encode(record) == b"\xff\xff\xff\xff" + stat.to_bytes()
    empty = GetDataResponse(data=b"", stat=stat)
    assert empty.to_bytes() == b"\x00\x00\x00\x00" + stat.to_bytes()


# --------------------------------------------------------------------------- construction


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data())
def test_slot_constructor_builds_the_same_frozen_record(data: st.DataObject) -> None:
    record = data.draw(record_strategy(CreateRequest))
    build = slot_constructor(CreateRequest)
    built = build(record.path, record.data, record.acl, record.flags)
    assert type(built) is CreateRequest
    assert built == record
    assert hash(built) == hash(record)
    assert repr(built) == repr(record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.path = "/other"  # type: ignore[misc]
