"""The two ends of a client connection, sans-IO: bytes in, events out.

Rules: no sockets, no clock. The driver feeds received bytes with `receive_data`
(b"" means the peer closed) and pulls events with `next_event` until it gets
NEED_DATA. Encoding returns whole frames as bytes for the driver to write.

ServerConnection event sequence:
    FourLetterWord                          (then the driver answers and closes), or
    Connect, then Request | BadRequest ...  until PEER_CLOSED
A bad frame length raises FrameError, and a frame too short for its header (or an
undecodable ConnectRequest) raises RemoteProtocolError: the driver logs it and closes
the connection, sending nothing. An undecodable body is not fatal: it yields
BadRequest(MARSHALLING_ERROR, close=False), and so does a multi whose ops ZooKeeper
rejects while decoding (a read op in multi, a write op in multiRead, a bad create flag).
An unknown opcode, or check (13) outside multi, yields BadRequest(UNIMPLEMENTED,
close=True), as ZooKeeper does; the connection then decodes nothing more. Only
ProtocolError subclasses escape, whatever the bytes.

ClientConnection event sequence:
    Connected, then Reply | Notification ...  until PEER_CLOSED
The client must know which opcode each xid was, to decode the body: it keeps the
FIFO of requests in flight (ZooKeeper answers in order).
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass, field

from corral.limits import FRAME_SIZE_HARD_MAX, FRAME_SIZE_MAX
from corral.protocol.constants import (
    FOUR_LETTER_WORDS,
    MULTI_READ_OPS,
    MULTI_WRITE_OPS,
    TELNET_INTERRUPT,
    CreateMode,
    ErrorCode,
    OpCode,
    SpecialXid,
)
from corral.protocol.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from corral.protocol.frames import FrameBuffer, frame
from corral.protocol.jute import Reader, Writer
from corral.protocol.records import (
    FAST_REQUEST_DECODERS,
    REQUEST_RECORDS,
    RESPONSE_RECORDS,
    ConnectRequest,
    ConnectResponse,
    MultiRequest,
    Record,
    ReplyHeader,
    RequestHeader,
    WatcherEvent,
    slot_constructor,
)

_INT = struct.Struct(">i")
_REQUEST_HEADER = struct.Struct(">ii")  # xid, opcode
_REQUEST_HEADER_SIZE = _REQUEST_HEADER.size
_REPLY_FRAME_HEAD = struct.Struct(">iiqi")  # frame length; xid, zxid, err
_REPLY_HEADER_SIZE = 16  # xid, zxid, err
_FOUR_LETTER_CODES: dict[int, str] = {
    _INT.unpack(word.encode("ascii"))[0]: word for word in FOUR_LETTER_WORDS
}


class Sentinel(enum.Enum):
    NEED_DATA = "need data"
    PEER_CLOSED = "peer closed"


NEED_DATA = Sentinel.NEED_DATA
PEER_CLOSED = Sentinel.PEER_CLOSED


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True, slots=True, kw_only=True)
class FourLetterWord:
    word: str  # one of FOUR_LETTER_WORDS, or "" for the telnet interrupt (just close)
    argument: int | None = None  # stmk's trace mask


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    request: ConnectRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    xid: int
    opcode: int
    request: Record | None
    size: int  # payload bytes of the frame, for statistics
    # The bytes `request` was decoded from (trailing bytes cut off), so that a write can
    # be logged without encoding it again; None when the request was built in memory.
    request_bytes: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class BadRequest:
    xid: int
    opcode: int
    err: ErrorCode
    close: bool
    reason: str


ServerEvent = FourLetterWord | Connect | Request | BadRequest | Sentinel

# Request(xid, opcode, request, size, request_bytes), once per request: see slot_constructor.
_new_request = slot_constructor(Request)


class _ServerState(enum.Enum):
    AWAITING_CONNECT = "awaiting connect"
    CONNECTED = "connected"
    DONE = "done"  # four-letter word answered, peer closed, or fatal error


class ServerConnection:
    """The server's end: decodes the handshake, requests and four-letter words."""

    __slots__ = ("_frames", "_peer_closed", "_state")

    def __init__(self, frame_size_max: int = FRAME_SIZE_MAX) -> None:
        self._frames = FrameBuffer(frame_size_max)
        self._state = _ServerState.AWAITING_CONNECT
        self._peer_closed = False

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._peer_closed = True
            return
        if self._state is _ServerState.DONE:
            return  # nothing more will be decoded: don't let a closing peer fill memory
        self._frames.feed(data)

    def next_event(self) -> ServerEvent:
        state = self._state
        if state is _ServerState.CONNECTED:  # the usual case first: once per request
            event = self._next_request_event()
        elif state is _ServerState.DONE:
            return PEER_CLOSED if self._peer_closed else NEED_DATA
        else:
            event = self._next_handshake_event()
        if event is NEED_DATA and self._peer_closed:
            self._state = _ServerState.DONE
            return PEER_CLOSED
        return event

    def _next_handshake_event(self) -> ServerEvent:
        head = self._frames.peek(4)
        if head is None:
            return NEED_DATA
        (code,) = _INT.unpack(head)
        # The interrupt is defined as an unsigned word; the length prefix reads signed.
        if code == TELNET_INTERRUPT - 2**32:
            self._state = _ServerState.DONE
            return FourLetterWord(word="")
        word = _FOUR_LETTER_CODES.get(code)
        if word is not None:
            if word == "stmk":
                raw = self._frames.peek(12)
                if raw is None:
                    return NEED_DATA
                (argument,) = struct.unpack(">q", raw[4:])
                self._state = _ServerState.DONE
                return FourLetterWord(word=word, argument=argument)
            self._state = _ServerState.DONE
            return FourLetterWord(word=word)
        payload = self._frames.next_frame()
        if payload is None:
            return NEED_DATA
        try:
            request = ConnectRequest.decode(Reader(payload))
        except DecodeError as e:
            self._state = _ServerState.DONE
            raise RemoteProtocolError(f"undecodable ConnectRequest: {e}") from e
        self._state = _ServerState.CONNECTED
        return Connect(request=request)

    def _next_request_event(self) -> ServerEvent:
        payload = self._frames.next_frame()
        if payload is None:
            return NEED_DATA
        if len(payload) < _REQUEST_HEADER_SIZE:
            self._state = _ServerState.DONE
            raise RemoteProtocolError(f"frame too short for a request header: {len(payload)} bytes")
        # The header's two ints without a RequestHeader record: once per request.
        xid, opcode = _REQUEST_HEADER.unpack_from(payload)
        fast = FAST_REQUEST_DECODERS.get(opcode)
        if fast is not None:
            decoded = fast(payload, _REQUEST_HEADER_SIZE)
            if decoded is not None:
                request, end = decoded
                return _new_request(
                    xid, opcode, request, len(payload), payload[_REQUEST_HEADER_SIZE:end]
                )
        if opcode not in REQUEST_RECORDS or opcode == OpCode.CHECK:
            # Unknown opcodes, and check outside multi (ZooKeeper 3.9.3+ behaviour). The
            # connection is closed after the reply, so nothing after it is decoded.
            self._state = _ServerState.DONE
            return BadRequest(
                xid=xid,
                opcode=opcode,
                err=ErrorCode.UNIMPLEMENTED,
                close=True,
                reason=f"unknown opcode {opcode}",
            )
        record_type = REQUEST_RECORDS[opcode]
        if record_type is None:
            return Request(xid=xid, opcode=opcode, request=None, size=len(payload))
        reader = Reader(payload, _REQUEST_HEADER_SIZE)
        try:
            request = record_type.decode(reader)
        except DecodeError as e:
            return BadRequest(
                xid=xid,
                opcode=opcode,
                err=ErrorCode.MARSHALLING_ERROR,
                close=False,
                reason=str(e),
            )
        if isinstance(request, MultiRequest):
            reason = _multi_error(opcode, request)
            if reason is not None:
                return BadRequest(
                    xid=xid,
                    opcode=opcode,
                    err=ErrorCode.MARSHALLING_ERROR,
                    close=False,
                    reason=reason,
                )
        return Request(
            xid=xid,
            opcode=opcode,
            request=request,
            size=len(payload),
            request_bytes=payload[_REQUEST_HEADER_SIZE : reader.offset],
        )


_CREATE_OPS = frozenset({OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL})
_CREATE_FLAGS = frozenset(int(mode) for mode in CreateMode)


def _multi_error(opcode: int, request: MultiRequest) -> str | None:
    """Why ZooKeeper (3.9+) would fail this multi whole with MARSHALLINGERROR, or None.

    multi takes only write ops and multiRead only read ops (server-semantics 7.1); 3.9+
    also builds each create op's CreateMode while decoding, so a bad flag fails there.
    """
    allowed = MULTI_WRITE_OPS if opcode == OpCode.MULTI else MULTI_READ_OPS
    for op_opcode, op in request.ops:
        if op_opcode not in allowed:
            return f"opcode {op_opcode} is not allowed in opcode {opcode}"
        if op_opcode in _CREATE_OPS and getattr(op, "flags", None) not in _CREATE_FLAGS:
            return f"create flags {getattr(op, 'flags', None)} inside multi"
    return None


def encode_connect_response(response: ConnectResponse) -> bytes:
    return frame(response.to_bytes(), FRAME_SIZE_HARD_MAX)


def encode_reply(xid: int, zxid: int, err: int, body: Record | None = None) -> bytes:
    """A reply frame. Error replies are header-only, whatever `body` is."""
    payload = body.to_bytes() if err == 0 and body is not None else b""
    size = _REPLY_HEADER_SIZE + len(payload)
    # The server does not cap what it sends (ZooKeeper doesn't either): a znode whose
    # data fitted in a request must stay readable.
    if size > FRAME_SIZE_HARD_MAX:
        raise LocalProtocolError(f"frame payload {size} exceeds {FRAME_SIZE_HARD_MAX}")
    try:
        # The frame's length and the reply header in one struct call (once per reply).
        return _REPLY_FRAME_HEAD.pack(size, xid, zxid, err) + payload
    except struct.error as e:
        raise LocalProtocolError(f"reply header out of range: {xid}, {zxid}, {err}") from e


def encode_notification(event: WatcherEvent, zxid: int) -> bytes:
    return encode_reply(SpecialXid.NOTIFICATION, zxid, 0, event)


# --------------------------------------------------------------------------- client side


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected:
    response: ConnectResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    xid: int
    opcode: int
    zxid: int
    err: int
    body: Record | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    zxid: int
    event: WatcherEvent


ClientEvent = Connected | Reply | Notification | Sentinel


class ClientConnection:
    """The client's end: encodes requests, decodes replies in FIFO order.

    `skip_bodies`: opcodes whose successful replies come without their body (`Reply.body`
    None, the header still checked): a load generator that only counts replies need
    not decode, say, a hundred child names per getChildren.
    """

    __slots__ = (
        "_connected",
        "_frame_size_max",
        "_frames",
        "_peer_closed",
        "_pending",
        "_skip_bodies",
    )

    def __init__(
        self,
        frame_size_max: int = FRAME_SIZE_HARD_MAX,
        *,
        skip_bodies: frozenset[int] = frozenset(),
    ) -> None:
        self._frames = FrameBuffer(frame_size_max)
        self._frame_size_max = FRAME_SIZE_MAX
        self._connected = False
        self._peer_closed = False
        self._pending: deque[tuple[int, int]] = deque()  # (xid, opcode) awaiting replies
        self._skip_bodies = skip_bodies

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def connect(self, request: ConnectRequest) -> bytes:
        return frame(request.to_bytes(), self._frame_size_max)

    def send_request(self, xid: int, opcode: int, request: Record | None = None) -> bytes:
        if xid == SpecialXid.NOTIFICATION:
            raise LocalProtocolError("xid -1 is reserved for notifications")
        w = Writer()
        RequestHeader(xid=xid, opcode=opcode).encode(w)
        if request is not None:
            request.encode(w)
        data = frame(w.getvalue(), self._frame_size_max)
        self._pending.append((xid, opcode))
        return data

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._peer_closed = True
            return
        self._frames.feed(data)

    def next_event(self) -> ClientEvent:
        payload = self._frames.next_frame()
        if payload is None:
            return PEER_CLOSED if self._peer_closed else NEED_DATA
        reader = Reader(payload)
        if not self._connected:
            response = ConnectResponse.decode(reader)
            self._connected = True
            return Connected(response=response)
        header = ReplyHeader.decode(reader)
        if header.xid == SpecialXid.NOTIFICATION:
            return Notification(zxid=header.zxid, event=WatcherEvent.decode(reader))
        if not self._pending:
            raise RemoteProtocolError(f"reply xid {header.xid} with no request in flight")
        if header.xid == SpecialXid.AUTH and self._pending[0][0] != SpecialXid.AUTH:
            # ZooKeeper answers auth packets as they arrive, ahead of queued requests.
            for index, (pending_xid, _) in enumerate(self._pending):
                if pending_xid == SpecialXid.AUTH:
                    del self._pending[index]
                    return Reply(
                        xid=header.xid,
                        opcode=OpCode.AUTH,
                        zxid=header.zxid,
                        err=header.err,
                        body=None,
                    )
        xid, opcode = self._pending.popleft()
        if header.xid != xid and not (opcode == OpCode.PING and header.xid == SpecialXid.PING):
            raise RemoteProtocolError(f"reply xid {header.xid} out of order, expected {xid}")
        body: Record | None = None
        record_type = RESPONSE_RECORDS.get(opcode)
        if header.err == 0 and record_type is not None and opcode not in self._skip_bodies:
            body = record_type.decode(reader)
        return Reply(xid=header.xid, opcode=opcode, zxid=header.zxid, err=header.err, body=body)
