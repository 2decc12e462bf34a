"""Round trips of every record, and the encodings the spec pins down (null vs empty...)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.constants import OpCode
from corral.protocol.errors import DecodeError, LocalProtocolError
from corral.protocol.jute import Reader, Writer
from corral.protocol.records import (
    MULTI_OP_RECORDS,
    MULTI_RESULT_RECORDS,
    OPEN_ACL_UNSAFE,
    CheckVersionRequest,
    ConnectRequest,
    ConnectResponse,
    CreateRequest,
    GetChildrenResponse,
    Id,
    MultiHeader,
    MultiRequest,
    MultiResponse,
    OpResult,
    Record,
    SetDataRequest,
    Stat,
    WatcherEvent,
)

from .strategies import ALL_RECORD_TYPES, op_results, record_strategy, stats
from .vectors_util import h

EXAMPLES = 40


def test_every_record_type_is_covered() -> None:
    names = {t.__name__ for t in ALL_RECORD_TYPES}
    # A spot check that the subclass scan found the whole module, not a part of it.
    assert {"ConnectRequest", "MultiRequest", "MultiResponse", "WatcherEvent", "Stat"} <= names
    assert len(ALL_RECORD_TYPES) >= 40


@pytest.mark.parametrize("record_type", ALL_RECORD_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data())
def test_round_trip(record_type: type[Record], data: st.DataObject) -> None:
    record = data.draw(record_strategy(record_type))
    encoded = record.to_bytes()
    reader = Reader(encoded)
    assert record_type.decode(reader) == record
    assert reader.remaining == 0  # the decoder consumed exactly what the encoder wrote
    assert record_type.from_bytes(encoded).to_bytes() == encoded


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.data())
def test_multi_with_every_op_and_result_type(data: st.DataObject) -> None:
    ops = tuple(
        (opcode, data.draw(record_strategy(record_type)))
        for opcode, record_type in sorted(MULTI_OP_RECORDS.items())
    )
    request = MultiRequest(ops=ops)
    assert MultiRequest.from_bytes(request.to_bytes()) == request
    results = tuple(data.draw(op_results) for _ in range(3))
    body_results = tuple(
        OpResult(
            type=result_type,
            body=None if body_type is None else data.draw(record_strategy(body_type)),
        )
        for result_type, body_type in sorted(MULTI_RESULT_RECORDS.items())
    )
    response = MultiResponse(results=(*results, *body_results, OpResult(type=-1, err=-2)))
    assert MultiResponse.from_bytes(response.to_bytes()) == response


def test_multi_ignores_err_and_type_of_the_done_header() -> None:
    assert MultiRequest.from_bytes(h("00000005 01 00000007")) == MultiRequest(ops=())
    assert MultiResponse.from_bytes(h("0000000d 02 00000000")) == MultiResponse(results=())


def test_multi_rejects_unknown_op_and_missing_terminator() -> None:
    with pytest.raises(DecodeError):
        MultiRequest.from_bytes(h("0000000e 00 ffffffff ffffffff 01 ffffffff"))  # multi in multi
    with pytest.raises(DecodeError):
        MultiRequest.from_bytes(h("0000000d 00 ffffffff 00000001 2f 00000000"))  # no end
    with pytest.raises(DecodeError):
        MultiResponse.from_bytes(h("00000063 00 00000000 ffffffff 01 ffffffff"))


def test_null_and_empty_buffers_are_distinct() -> None:
    for data in (None, b""):
        request = SetDataRequest(path="/a", data=data, version=-1)
        encoded = request.to_bytes()
        assert encoded[6:10] == (h("ffffffff") if data is None else h("00000000"))
        assert SetDataRequest.from_bytes(encoded).data == data


def test_null_strings_read_as_empty() -> None:
    # kazoo sends "" as null; wherever a string is required it reads as "".
    assert Id.from_bytes(h("ffffffff ffffffff")) == Id(scheme="", id="")
    assert WatcherEvent.from_bytes(h("00000001 00000003 ffffffff")).path == ""
    assert GetChildrenResponse.from_bytes(h("00000002 ffffffff 00000001 61")).children == ("", "a")


def test_null_path_is_undecodable() -> None:
    with pytest.raises(DecodeError):
        CreateRequest.from_bytes(h("ffffffff ffffffff 00000000 00000000"))


def test_negative_vector_counts_read_as_empty() -> None:
    # Java treats any negative count as an empty list.
    for count in ("ffffffff", "80000000", "fffffffe"):
        assert GetChildrenResponse.from_bytes(h(count)).children == ()
    request = CreateRequest.from_bytes(h("00000001 2f ffffffff ffffffff 00000000"))
    assert request.acl == ()


def test_open_acl_unsafe_encoding() -> None:
    w = Writer()
    CreateRequest(path="", data=None, acl=OPEN_ACL_UNSAFE, flags=0).encode(w)
    assert h("00000001 0000001f 00000005 776f726c64 00000006 616e796f6e65") in w.getvalue()


@pytest.mark.parametrize("read_only", [None, False, True])
def test_connect_request_read_only_byte(read_only: bool | None) -> None:
    request = ConnectRequest(
        protocol_version=0,
        last_zxid_seen=5,
        timeout_ms=30_000,
        session_id=7,
        password=bytes(16),
        read_only=read_only,
    )
    encoded = request.to_bytes()
    assert len(encoded) == (44 if read_only is None else 45)
    assert ConnectRequest.from_bytes(encoded) == request


def test_connect_request_ignores_extra_trailing_bytes_and_any_nonzero_is_true() -> None:
    base = ConnectRequest(
        protocol_version=0,
        last_zxid_seen=0,
        timeout_ms=1,
        session_id=0,
        password=bytes(16),
        read_only=None,
    ).to_bytes()
    assert ConnectRequest.from_bytes(base + b"\x07junk").read_only is True
    assert ConnectRequest.from_bytes(base + b"\x00junk").read_only is False


@pytest.mark.parametrize("read_only", [None, False, True])
def test_connect_response_read_only_byte(read_only: bool | None) -> None:
    response = ConnectResponse(
        protocol_version=0, timeout_ms=4000, session_id=1, password=bytes(16), read_only=read_only
    )
    encoded = response.to_bytes()
    assert len(encoded) == (36 if read_only is None else 37)
    assert ConnectResponse.from_bytes(encoded) == response


@pytest.mark.parametrize("size", [0, 15, 17])
def test_connect_response_password_must_be_16_bytes(size: int) -> None:
    with pytest.raises(LocalProtocolError):
        ConnectResponse(
            protocol_version=0, timeout_ms=1, session_id=1, password=bytes(size), read_only=None
        )
    encoded = h("00000000 00000001 0000000000000001") + size.to_bytes(4, "big") + bytes(size)
    with pytest.raises(DecodeError):
        ConnectResponse.from_bytes(encoded)


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(stat=stats)
def test_stat_is_68_bytes_at_the_documented_offsets(stat: Stat) -> None:
    encoded = stat.to_bytes()
    assert len(encoded) == 68
    offsets = {
        "czxid": (0, 8),
        "mzxid": (8, 8),
        "ctime_ms": (16, 8),
        "mtime_ms": (24, 8),
        "version": (32, 4),
        "cversion": (36, 4),
        "aversion": (40, 4),
        "ephemeral_owner": (44, 8),
        "data_length": (52, 4),
        "num_children": (56, 4),
        "pzxid": (60, 8),
    }
    for name, (offset, size) in offsets.items():
        value = int.from_bytes(encoded[offset : offset + size], "big", signed=True)
        assert value == getattr(stat, name), name


def test_out_of_range_integers_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        SetDataRequest(path="/a", data=None, version=2**31).to_bytes()
    with pytest.raises(LocalProtocolError):
        Stat(
            czxid=2**63,
            mzxid=0,
            ctime_ms=0,
            mtime_ms=0,
            version=0,
            cversion=0,
            aversion=0,
            ephemeral_owner=0,
            data_length=0,
            num_children=0,
            pzxid=0,
        ).to_bytes()


def test_records_are_frozen_and_keyword_only() -> None:
    request = SetDataRequest(path="/a", data=None, version=-1)
    with pytest.raises(AttributeError):
        request.path = "/b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SetDataRequest("/a", None, -1)  # type: ignore[misc]


def test_opcode_tables_agree() -> None:
    assert set(MULTI_OP_RECORDS) == {
        OpCode.CREATE,
        OpCode.CREATE2,
        OpCode.CREATE_CONTAINER,
        OpCode.CREATE_TTL,
        OpCode.DELETE,
        OpCode.SET_DATA,
        OpCode.CHECK,
        OpCode.GET_DATA,
        OpCode.GET_CHILDREN,
    }


def test_multi_ops_limit_at_max_and_max_plus_one() -> None:
    from corral.limits import MULTI_OPS_MAX

    op = (
        MultiHeader(type=OpCode.CHECK, done=False, err=-1).to_bytes()
        + CheckVersionRequest(path="/", version=0).to_bytes()
    )
    end = MultiHeader(type=-1, done=True, err=-1).to_bytes()
    request = MultiRequest.from_bytes(op * MULTI_OPS_MAX + end)
    assert len(request.ops) == MULTI_OPS_MAX
    with pytest.raises(DecodeError):
        MultiRequest.from_bytes(op * (MULTI_OPS_MAX + 1) + end)
