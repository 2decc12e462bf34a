"""tree/txn.py: the txn codec round-trips exactly and rejects bad bytes."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.limits import PASSWORD_SIZE
from corral.protocol.connection import Connect, Request, ServerConnection
from corral.protocol.constants import OpCode
from corral.protocol.errors import DecodeError, LocalProtocolError
from corral.protocol.frames import frame
from corral.protocol.records import ConnectRequest, CreateRequest, DeleteRequest, Id
from corral.tree.txn import (
    CLIENT_TXN_OPS,
    ClientTxn,
    CloseSessionTxn,
    CreateSessionTxn,
    Origin,
    ReapTxn,
    Txn,
    decode_origin,
    decode_txn,
    encode_entry_data,
    encode_identities,
    encode_txn,
    new_client_txn,
)
from tests.protocol.strategies import INT32, INT64, TEXT, ids, request_for

client_txns = st.sampled_from(sorted(CLIENT_TXN_OPS)).flatmap(
    lambda opcode: st.builds(
        ClientTxn,
        session_id=INT64,
        opcode=st.just(opcode),
        request=request_for(opcode),
        identities=st.lists(ids, max_size=4).map(tuple),
        time_ms=INT64,
    )
)
txns: st.SearchStrategy[Txn] = st.one_of(
    client_txns,
    st.builds(
        CreateSessionTxn,
        session_id=INT64,
        password=st.binary(min_size=PASSWORD_SIZE, max_size=PASSWORD_SIZE),
        timeout_ms=INT32,
        time_ms=INT64,
    ),
    st.builds(CloseSessionTxn, session_id=INT64, time_ms=INT64),
    st.builds(ReapTxn, path=TEXT, time_ms=INT64, max_never_used_ms=INT64),
)


@settings(max_examples=300, deadline=None)
@given(txn=txns)
def test_round_trip_is_exact(txn: Txn) -> None:
    data = encode_txn(txn)
    assert decode_txn(data) == txn
    assert encode_txn(decode_txn(data)) == data


@settings(max_examples=200, deadline=None)
@given(txn=client_txns, token=INT64)
def test_given_identities_bytes_encode_the_same(txn: ClientTxn, token: int) -> None:
    given = dataclasses.replace(
        txn,
        identities_bytes=encode_identities(txn.identities),
        request_bytes=None if txn.request is None else txn.request.to_bytes(),
    )
    assert given == txn  # not part of the txn's value
    assert encode_txn(given) == encode_txn(txn)
    origin = Origin(replica_id=3, token=token)
    data = encode_entry_data(given, origin)
    assert data == encode_entry_data(txn, origin)
    assert decode_origin(data) == origin
    assert decode_txn(data) == txn


@settings(max_examples=200, deadline=None)
@given(txn=txns, data=st.data())
def test_truncated_or_extended_bytes_are_rejected(txn: Txn, data: st.DataObject) -> None:
    encoded = encode_txn(txn)
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(DecodeError):
        decode_txn(encoded[:cut])
    with pytest.raises(DecodeError):
        decode_txn(encoded + b"\x00")


def test_unknown_kind_and_opcode_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        decode_txn(b"\x00\x00\x00\x09")
    close = encode_txn(
        ClientTxn(session_id=1, opcode=OpCode.CLOSE_SESSION, request=None, identities=(), time_ms=5)
    )
    bad_opcode = close[:12] + (OpCode.GET_DATA).to_bytes(4, "big") + close[16:]
    with pytest.raises(DecodeError):
        decode_txn(bad_opcode)


def test_client_txn_checks_opcode_and_request_type() -> None:
    with pytest.raises(LocalProtocolError):
        ClientTxn(session_id=1, opcode=OpCode.GET_DATA, request=None, identities=(), time_ms=0)
    with pytest.raises(LocalProtocolError):
        ClientTxn(
            session_id=1,
            opcode=OpCode.CREATE,
            request=DeleteRequest(path="/a", version=-1),
            identities=(),
            time_ms=0,
        )
    with pytest.raises(LocalProtocolError):
        ClientTxn(
            session_id=1,
            opcode=OpCode.CLOSE_SESSION,
            request=CreateRequest(path="/a", data=None, acl=(), flags=0),
            identities=(),
            time_ms=0,
        )


@settings(max_examples=200, deadline=None)
@given(txn=client_txns)
def test_new_client_txn_is_the_record(txn: ClientTxn) -> None:
    built = new_client_txn(
        txn.session_id, txn.opcode, txn.request, txn.identities, txn.time_ms, b"r", b"i"
    )
    assert built == txn
    assert (built.request_bytes, built.identities_bytes) == (b"r", b"i")
    assert hash(built) == hash(txn)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.session_id = 2  # type: ignore[misc]


def test_new_client_txn_checks_as_the_record() -> None:
    delete = DeleteRequest(path="/a", version=-1)
    for opcode, request, identities in (
        (OpCode.GET_DATA, None, ()),
        (OpCode.CREATE, delete, ()),
        (OpCode.DELETE, delete, (Id(scheme="ip", id="1.2.3.4"),) * 100),
    ):
        with pytest.raises(LocalProtocolError):
            ClientTxn(
                session_id=1, opcode=opcode, request=request, identities=identities, time_ms=0
            )
        with pytest.raises(LocalProtocolError):
            new_client_txn(1, opcode, request, identities, 0, None, None)


def test_session_password_must_be_16_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        CreateSessionTxn(session_id=1, password=b"short", timeout_ms=4000, time_ms=0)


def test_identities_limit_at_max_and_max_plus_one() -> None:
    from corral.limits import AUTH_IDS_PER_CONNECTION_MAX
    from corral.protocol.records import Id

    def txn(count: int) -> ClientTxn:
        identities = tuple(Id(scheme="digest", id=f"u{i}:h") for i in range(count))
        return ClientTxn(
            session_id=1,
            opcode=OpCode.CLOSE_SESSION,
            request=None,
            identities=identities,
            time_ms=0,
        )

    at_max = txn(AUTH_IDS_PER_CONNECTION_MAX)
    assert decode_txn(encode_txn(at_max)) == at_max
    with pytest.raises(LocalProtocolError):
        txn(AUTH_IDS_PER_CONNECTION_MAX + 1)
    # A log entry written by a buggy or hostile peer is still refused when decoded.
    encoded = bytearray(encode_txn(at_max))
    count_offset = 4 + 8 + 4
    encoded[count_offset : count_offset + 4] = (AUTH_IDS_PER_CONNECTION_MAX + 1).to_bytes(4, "big")
    with pytest.raises(DecodeError):
        decode_txn(bytes(encoded))


def _request_body(opcode: int) -> st.SearchStrategy[bytes]:
    """A request record as a client may send it: a valid encoding followed by bytes
    ZooKeeper ignores, or arbitrary bytes (whatever decodes is logged as received)."""
    valid = st.tuples(request_for(opcode), st.binary(max_size=8)).map(
        lambda pair: (b"" if pair[0] is None else pair[0].to_bytes()) + pair[1]
    )
    return st.one_of(valid, st.binary(max_size=64))


@settings(max_examples=300, deadline=None)
@given(
    opcode_and_body=st.sampled_from(sorted(CLIENT_TXN_OPS - {OpCode.CLOSE_SESSION})).flatmap(
        lambda opcode: st.tuples(st.just(opcode), _request_body(opcode))
    ),
    identities=st.lists(ids, max_size=4).map(tuple),
)
def test_a_write_logged_as_received_decodes_to_the_request_read(
    opcode_and_body: tuple[int, bytes], identities: tuple[Id, ...]
) -> None:
    opcode, body = opcode_and_body
    codec = ServerConnection()
    codec.receive_data(
        frame(
            ConnectRequest(
                protocol_version=0,
                last_zxid_seen=0,
                timeout_ms=10_000,
                session_id=0,
                password=bytes(PASSWORD_SIZE),
                read_only=False,
            ).to_bytes()
        )
    )
    assert isinstance(codec.next_event(), Connect)
    codec.receive_data(frame(struct.pack(">ii", 7, opcode) + body))
    event = codec.next_event()
    if not isinstance(event, Request):
        return  # undecodable: answered with an error, never logged
    assert event.request_bytes is not None
    assert body.startswith(event.request_bytes)
    txn = ClientTxn(
        session_id=1,
        opcode=opcode,
        request=event.request,
        identities=identities,
        time_ms=0,
        request_bytes=event.request_bytes,
    )
    decoded = decode_txn(encode_txn(txn))
    assert isinstance(decoded, ClientTxn)
    assert decoded.request == event.request
    assert decoded == txn
