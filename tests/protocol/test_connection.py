"""ServerConnection and ClientConnection: split invariance, error kinds, 4lw, fuzzing.

Rules under test (STYLE rule 10 and wire-protocol.md §1): any valid stream cut into any
chunks yields the same events; arbitrary bytes raise nothing but ProtocolError; a bad
frame length raises FrameError; an undecodable body is BadRequest(MARSHALLING_ERROR,
close=False); an unknown opcode or a top-level check is BadRequest(UNIMPLEMENTED,
close=True). Hypothesis prints the failing example; rerun with the printed
@reproduce_failure blob to replay it.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.limits import FRAME_SIZE_HARD_MAX, FRAME_SIZE_MAX
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    BadRequest,
    ClientConnection,
    ClientEvent,
    Connect,
    Connected,
    FourLetterWord,
    Notification,
    Reply,
    Request,
    ServerConnection,
    ServerEvent,
    encode_connect_response,
    encode_notification,
    encode_reply,
)
from corral.protocol.constants import FOUR_LETTER_WORDS, ErrorCode, OpCode
from corral.protocol.errors import FrameError, LocalProtocolError, ProtocolError
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    CheckVersionRequest,
    CreateRequest,
    GetDataRequest,
    MultiRequest,
    Record,
    SetDataRequest,
    WatcherEvent,
)

from .strategies import (
    ALL_RECORD_TYPES,
    INT32,
    REQUEST_OPCODES,
    chunks,
    connect_requests,
    connect_responses,
    request_for,
    response_for,
)
from .vectors_util import (
    NEW_CONNECT,
    connected_client,
    connected_server,
    drain_client,
    drain_server,
    h,
)

EXAMPLES = 60

# --------------------------------------------------------------------------- stream builders

# An xid the client can send (not -1) and an opcode with a matching request body.
xids = INT32.filter(lambda xid: xid != -1)
requests = st.sampled_from(REQUEST_OPCODES).flatmap(
    lambda opcode: st.tuples(xids, st.just(opcode), request_for(opcode))
)


def _reply_for(opcode: int) -> st.SearchStrategy[tuple[int, int, int, Record | None]]:
    # (opcode, zxid, err, body): an error reply carries no body.
    return st.one_of(
        st.tuples(st.just(opcode), INT32, st.just(0), response_for(opcode)),
        st.tuples(st.just(opcode), INT32, st.sampled_from(list(ErrorCode)[1:]), st.none()),
    )


replies = st.sampled_from(REQUEST_OPCODES).flatmap(_reply_for)
notifications = st.builds(WatcherEvent, type=INT32, state=INT32, path=st.text(max_size=8))


def server_events(pieces: list[bytes], close: bool = True) -> list[ServerEvent]:
    server = ServerConnection()
    events: list[ServerEvent] = []
    for piece in pieces:
        server.receive_data(piece)
        events.extend(e for e in drain_server(server) if e is not NEED_DATA)
    if close:
        server.receive_data(b"")
        events.extend(drain_server(server))
    return events


def client_events(
    sent: list[tuple[int, int, Record | None]], pieces: list[bytes]
) -> list[ClientEvent]:
    client = ClientConnection()
    client.connect(NEW_CONNECT)
    for xid, opcode, request in sent:
        client.send_request(xid, opcode, request)
    events: list[ClientEvent] = []
    for piece in pieces:
        client.receive_data(piece)
        events.extend(e for e in drain_client(client) if e is not NEED_DATA)
    client.receive_data(b"")
    events.extend(drain_client(client))
    return events


# --------------------------------------------------------------------------- split invariance


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(
    connect=connect_requests,
    sent=st.lists(requests, max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_server_is_split_invariant(
    connect: Any, sent: list[tuple[int, int, Record | None]], cuts: list[int]
) -> None:
    client = ClientConnection()
    stream = client.connect(connect) + b"".join(
        client.send_request(xid, opcode, request) for xid, opcode, request in sent
    )
    whole = server_events([stream])
    assert server_events(chunks(stream, cuts)) == whole
    assert server_events([bytes([b]) for b in stream]) == whole
    # And the events are exactly what was sent.
    assert whole[0] == Connect(request=connect)
    assert [(e.xid, e.opcode, e.request) for e in whole[1:-1] if isinstance(e, Request)] == sent
    assert whole[-1] is PEER_CLOSED


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(
    connected=connect_responses,
    traffic=st.lists(st.tuples(xids, replies) | notifications, max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_client_is_split_invariant(connected: Any, traffic: list[Any], cuts: list[int]) -> None:
    sent: list[tuple[int, int, Record | None]] = []
    stream = encode_connect_response(connected)
    expected: list[ClientEvent] = [Connected(response=connected)]
    for item in traffic:
        if isinstance(item, WatcherEvent):
            stream += encode_notification(item, 7)
            expected.append(Notification(zxid=7, event=item))
            continue
        xid, (opcode, zxid, err, body) = item
        if opcode == OpCode.AUTH:
            continue  # auth replies may overtake: covered by the vector tests
        sent.append((xid, opcode, None))
        reply_xid = -2 if opcode == OpCode.PING else xid
        stream += encode_reply(reply_xid, zxid, err, body)
        expected.append(Reply(xid=reply_xid, opcode=opcode, zxid=zxid, err=err, body=body))
    expected.append(PEER_CLOSED)
    assert client_events(sent, [stream]) == expected
    assert client_events(sent, chunks(stream, cuts)) == expected
    assert client_events(sent, [bytes([b]) for b in stream]) == expected


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(
    connected=connect_responses,
    traffic=st.lists(st.tuples(xids, replies), max_size=8),
    skipped=st.frozensets(st.sampled_from([int(op) for op in OpCode]), max_size=12),
)
def test_client_skips_the_bodies_it_is_told_to(
    connected: Any, traffic: list[Any], skipped: frozenset[int]
) -> None:
    # The same replies with and without skip_bodies: equal but for the skipped bodies.
    plain = ClientConnection()
    lean = ClientConnection(skip_bodies=skipped)
    stream = encode_connect_response(connected)
    for xid, (opcode, zxid, err, body) in traffic:
        if opcode == OpCode.AUTH:
            continue  # auth replies may overtake: covered by the vector tests
        for client in (plain, lean):
            client.send_request(xid, opcode, None)
        stream += encode_reply(-2 if opcode == OpCode.PING else xid, zxid, err, body)
    plain.receive_data(stream)
    lean.receive_data(stream)
    expected = [
        replace(event, body=None) if isinstance(event, Reply) and event.opcode in skipped else event
        for event in drain_client(plain)
    ]
    assert drain_client(lean) == expected


@pytest.mark.parametrize("word", sorted(FOUR_LETTER_WORDS))
def test_four_letter_words_are_split_invariant(word: str) -> None:
    stream = word.encode("ascii") + (b"\x00" * 7 + b"\x2a" if word == "stmk" else b"")
    expected = FourLetterWord(word=word, argument=42 if word == "stmk" else None)
    for size in range(1, len(stream) + 1):
        pieces = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert server_events(pieces, close=False) == [expected]


# --------------------------------------------------------------------------- 4lw, telnet


def test_telnet_interrupt_is_a_close_word() -> None:
    # Was a bug: the unsigned constant never matched the signed length prefix.
    server = ServerConnection()
    server.receive_data(h("fff4fffd"))
    assert server.next_event() == FourLetterWord(word="")


def test_four_letter_word_only_as_the_first_bytes() -> None:
    server = connected_server()
    server.receive_data(b"ruok")
    with pytest.raises(FrameError):
        server.next_event()
    server = connected_server()
    server.receive_data(h("fff4fffd"))
    with pytest.raises(FrameError):
        server.next_event()


def test_four_letter_word_ignores_what_follows() -> None:
    server = ServerConnection()
    server.receive_data(b"srvr\r\nmore bytes")
    assert server.next_event() == FourLetterWord(word="srvr")
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    assert server.next_event() is PEER_CLOSED


def test_stmk_waits_for_its_argument() -> None:
    server = ServerConnection()
    server.receive_data(b"stmk" + bytes(7))
    assert server.next_event() is NEED_DATA
    server.receive_data(b"\xff")
    assert server.next_event() == FourLetterWord(word="stmk", argument=255)


def test_stmk_negative_argument() -> None:
    server = ServerConnection()
    server.receive_data(b"stmk" + h("ffffffffffffffff"))
    assert server.next_event() == FourLetterWord(word="stmk", argument=-1)


# --------------------------------------------------------------------------- frame lengths


@pytest.mark.parametrize("length", [-1, -(2**31), FRAME_SIZE_MAX + 1, 0x7FFFFFFF])
@pytest.mark.parametrize("handshake_done", [False, True])
def test_bad_frame_length_is_frame_error(length: int, handshake_done: bool) -> None:
    server = connected_server() if handshake_done else ServerConnection()
    server.receive_data(struct.pack(">i", length))
    with pytest.raises(FrameError):
        server.next_event()


@pytest.mark.parametrize("handshake_done", [False, True])
def test_frame_length_at_the_limit_is_accepted(handshake_done: bool) -> None:
    server = connected_server() if handshake_done else ServerConnection()
    server.receive_data(struct.pack(">i", FRAME_SIZE_MAX) + bytes(100))
    assert server.next_event() is NEED_DATA


def test_client_frame_length_limits() -> None:
    for length in (-1, FRAME_SIZE_HARD_MAX + 1, 0x7FFFFFFF):
        client = connected_client()
        client.receive_data(struct.pack(">i", length))
        with pytest.raises(FrameError):
            client.next_event()
    client = connected_client()
    client.receive_data(struct.pack(">i", FRAME_SIZE_HARD_MAX))
    assert client.next_event() is NEED_DATA


def test_client_never_sends_a_frame_over_the_limit() -> None:
    client = connected_client()
    data = bytes(FRAME_SIZE_MAX)
    # The largest setData of /big that ZooKeeper accepts (server-semantics §15).
    largest = FRAME_SIZE_MAX - (8 + 4 + 4 + 4 + 4)
    with pytest.raises(LocalProtocolError):
        client.send_request(2, OpCode.SET_DATA, _set_data("/big", data[: largest + 1]))
    assert client.pending_count == 0  # a refused request is not in flight
    frame_bytes = client.send_request(1, OpCode.SET_DATA, _set_data("/big", data[:largest]))
    assert len(frame_bytes) == 4 + FRAME_SIZE_MAX
    assert client.pending_count == 1


def _set_data(path: str, data: bytes) -> Record:
    return SetDataRequest(path=path, data=data, version=-1)


# --------------------------------------------------------------------------- bad requests


def _request_frame(xid: int, opcode: int, body: bytes) -> bytes:
    payload = struct.pack(">ii", xid, opcode) + body
    return struct.pack(">i", len(payload)) + payload


@pytest.mark.parametrize("opcode", [0, 10, 23, 99, 999, -1, -10, 2**31 - 1, OpCode.CHECK])
def test_unknown_opcode_and_top_level_check_are_unimplemented(opcode: int) -> None:
    body = CheckVersionRequest(path="/a", version=1).to_bytes()
    server = connected_server()
    server.receive_data(_request_frame(5, opcode, body))
    event = server.next_event()
    assert isinstance(event, BadRequest)
    assert (event.xid, event.opcode, event.err, event.close) == (
        5,
        opcode,
        ErrorCode.UNIMPLEMENTED,
        True,
    )


@pytest.mark.parametrize(
    ("opcode", "body"),
    [
        (OpCode.GET_DATA, h("00000007 2f636f72")),  # truncated getData (observed -5)
        (OpCode.SET_DATA, h("00000002 2f61 00000010 6e")),  # truncated setData
        (OpCode.CREATE, h("ffffffff")),  # null path
        (OpCode.MULTI, h("00000001 00 ffffffff")),  # multi without its op
        (OpCode.MULTI, h("00000063 00 ffffffff ffffffff 01 ffffffff")),  # op 99 in multi
        (OpCode.AUTH, b""),
    ],
)
def test_undecodable_body_is_marshalling_error_and_connection_lives(
    opcode: int, body: bytes
) -> None:
    server = connected_server()
    server.receive_data(_request_frame(7, opcode, body) + h("00000008 fffffffe 0000000b"))
    event = server.next_event()
    assert isinstance(event, BadRequest)
    assert (event.xid, event.opcode, event.err, event.close) == (
        7,
        opcode,
        ErrorCode.MARSHALLING_ERROR,
        False,
    )
    assert server.next_event() == Request(xid=-2, opcode=OpCode.PING, request=None, size=8)


CREATE_OP = (OpCode.CREATE, CreateRequest(path="/a", data=b"", acl=OPEN_ACL_UNSAFE, flags=0))
READ_OP = (OpCode.GET_DATA, GetDataRequest(path="/a", watch=False))


@pytest.mark.parametrize(
    ("opcode", "ops"),
    [
        (OpCode.MULTI, (CREATE_OP, READ_OP)),
        (OpCode.MULTI, (READ_OP,)),
        (OpCode.MULTI_READ, (READ_OP, CREATE_OP)),
        (OpCode.MULTI_READ, ((OpCode.CHECK, CheckVersionRequest(path="/a", version=0)),)),
    ],
)
def test_multi_with_ops_of_the_other_group_is_marshalling_error(
    opcode: int, ops: tuple[tuple[int, Record], ...]
) -> None:
    # Was a bug: the decoder accepted a mix, which ZooKeeper rejects whole with -5.
    server = connected_server()
    server.receive_data(ClientConnection().send_request(3, opcode, MultiRequest(ops=ops)))
    event = server.next_event()
    assert isinstance(event, BadRequest)
    assert (event.err, event.close) == (ErrorCode.MARSHALLING_ERROR, False)


def test_frame_shorter_than_a_request_header_is_fatal() -> None:
    server = connected_server()
    server.receive_data(h("00000004 00000001"))
    with pytest.raises(ProtocolError):
        server.next_event()


def test_undecodable_connect_request_is_fatal() -> None:
    server = ServerConnection()
    server.receive_data(h("00000004 00000000"))
    with pytest.raises(ProtocolError):
        server.next_event()


def test_server_waits_for_the_whole_handshake_before_requests() -> None:
    client = ClientConnection()
    stream = client.connect(NEW_CONNECT) + client.send_request(1, OpCode.PING)
    server = ServerConnection()
    server.receive_data(stream)
    assert server.next_event() == Connect(request=NEW_CONNECT)
    assert server.next_event() == Request(xid=1, opcode=OpCode.PING, request=None, size=8)


def test_client_rejects_replies_out_of_order_or_unasked() -> None:
    client = connected_client()
    client.receive_data(encode_reply(1, 1, 0))
    with pytest.raises(ProtocolError):
        client.next_event()
    client = connected_client()
    client.send_request(1, OpCode.PING)
    client.send_request(2, OpCode.DELETE, None)
    client.receive_data(encode_reply(2, 1, 0))
    with pytest.raises(ProtocolError):
        client.next_event()


def test_client_refuses_to_send_xid_minus_one() -> None:
    with pytest.raises(LocalProtocolError):
        ClientConnection().send_request(-1, OpCode.PING)


# --------------------------------------------------------------------------- only ProtocolError


def _events_or_protocol_error(next_event: Any, limit: int) -> None:
    """Pull events until NEED_DATA/PEER_CLOSED or a ProtocolError; anything else fails."""
    for _ in range(limit):
        try:
            event = next_event()
        except ProtocolError:
            return
        if event is NEED_DATA or event is PEER_CLOSED:
            return
    raise AssertionError("no end of events")


@settings(max_examples=EXAMPLES * 3, deadline=None, print_blob=True)
@given(data=st.binary(max_size=200), handshake_done=st.booleans(), close=st.booleans())
def test_server_raises_only_protocol_errors(data: bytes, handshake_done: bool, close: bool) -> None:
    server = connected_server() if handshake_done else ServerConnection()
    server.receive_data(data)
    if close:
        server.receive_data(b"")
    _events_or_protocol_error(server.next_event, len(data) + 2)


@settings(max_examples=EXAMPLES * 3, deadline=None, print_blob=True)
@given(xid=INT32, opcode=st.sampled_from(REQUEST_OPCODES) | INT32, body=st.binary(max_size=120))
def test_well_framed_request_never_raises(xid: int, opcode: int, body: bytes) -> None:
    # A frame holding a whole request header is always answerable: never an exception.
    server = connected_server()
    server.receive_data(_request_frame(xid, opcode, body))
    event = server.next_event()
    assert isinstance(event, Request | BadRequest)
    if isinstance(event, BadRequest):
        assert event.err in (ErrorCode.MARSHALLING_ERROR, ErrorCode.UNIMPLEMENTED)
        assert event.close == (event.err == ErrorCode.UNIMPLEMENTED)
    assert server.next_event() is NEED_DATA


@settings(max_examples=EXAMPLES * 3, deadline=None, print_blob=True)
@given(
    data=st.binary(max_size=200),
    connected=st.booleans(),
    sent=st.lists(st.tuples(xids, st.sampled_from(REQUEST_OPCODES)), max_size=4),
)
def test_client_raises_only_protocol_errors(
    data: bytes, connected: bool, sent: list[tuple[int, int]]
) -> None:
    client = connected_client() if connected else ClientConnection()
    for xid, opcode in sent:
        client.send_request(xid, opcode)
    client.receive_data(data)
    _events_or_protocol_error(client.next_event, len(data) + 2)


@settings(max_examples=EXAMPLES * 3, deadline=None, print_blob=True)
@given(
    opcode=st.sampled_from(REQUEST_OPCODES),
    zxid=INT32,
    err=st.just(0) | INT32,
    body=st.binary(max_size=120),
)
def test_client_reply_with_arbitrary_body_raises_only_protocol_errors(
    opcode: int, zxid: int, err: int, body: bytes
) -> None:
    client = connected_client()
    client.send_request(3, opcode)
    payload = struct.pack(">iqi", -2 if opcode == OpCode.PING else 3, zxid, err) + body
    client.receive_data(struct.pack(">i", len(payload)) + payload)
    _events_or_protocol_error(client.next_event, 3)


@pytest.mark.parametrize("record_type", ALL_RECORD_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True)
@given(data=st.binary(max_size=100))
def test_record_decode_raises_only_decode_errors(record_type: type[Record], data: bytes) -> None:
    from corral.protocol.errors import DecodeError

    with contextlib.suppress(DecodeError):
        record_type.from_bytes(data)


@pytest.mark.parametrize("flags", [-1, 7, 2**31 - 1])
@pytest.mark.parametrize("opcode", [OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER])
def test_multi_create_with_invalid_flags_is_marshalling_error(opcode: int, flags: int) -> None:
    # ZooKeeper 3.9+ builds the CreateMode while decoding a multi (server-semantics 7.1).
    op = CreateRequest(path="/a", data=b"", acl=OPEN_ACL_UNSAFE, flags=flags)
    server = connected_server()
    server.receive_data(
        ClientConnection().send_request(3, OpCode.MULTI, MultiRequest(ops=((opcode, op),)))
    )
    event = server.next_event()
    assert isinstance(event, BadRequest)
    assert (event.err, event.close) == (ErrorCode.MARSHALLING_ERROR, False)


def test_multi_create_with_every_valid_flag_decodes() -> None:
    ops = tuple(
        (OpCode.CREATE, CreateRequest(path=f"/a{flags}", data=b"", acl=(), flags=flags))
        for flags in range(7)
    )
    server = connected_server()
    server.receive_data(ClientConnection().send_request(3, OpCode.MULTI, MultiRequest(ops=ops)))
    event = server.next_event()
    assert isinstance(event, Request)
    assert event.request == MultiRequest(ops=ops)


def test_nothing_is_decoded_after_an_unimplemented_request() -> None:
    server = connected_server()
    server.receive_data(_request_frame(1, 999, b"") + h("00000008 fffffffe 0000000b"))
    event = server.next_event()
    assert isinstance(event, BadRequest)
    assert event.close
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    assert server.next_event() is PEER_CLOSED


def test_bytes_after_the_end_are_dropped() -> None:
    server = ServerConnection()
    server.receive_data(b"ruok")
    assert server.next_event() == FourLetterWord(word="ruok")
    server.receive_data(bytes(1000))
    assert len(server._frames) == 4  # only the word itself was ever buffered
    assert server.next_event() is NEED_DATA
