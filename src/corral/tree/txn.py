"""Txns: the payloads of NORMAL log entries, and their byte encoding.

Rules:
* A client write enters the log as the request itself (`ClientTxn`), validated and
  executed at apply time by `DataTree.apply`; so every write, failed or not, consumes
  one zxid, and every replica computes the same answer.
* Anything that is not a pure function of (tree, entry) is decided by the leader and
  written here: session ids/passwords/timeouts, expiry, reaping, and every timestamp.
* Encoding is jute: an int kind first, then the fields in declaration order. Decoding
  is exact (`decode_txn(encode_txn(t)) == t`); bad bytes raise DecodeError.
* Nothing here knows about the tree's state, sockets or the clock.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from corral.limits import AUTH_IDS_PER_CONNECTION_MAX, PASSWORD_SIZE
from corral.protocol.constants import WRITE_OPS
from corral.protocol.errors import DecodeError, LocalProtocolError
from corral.protocol.jute import Reader, Writer
from corral.protocol.records import REQUEST_RECORDS, Id, Record

# Opcodes a ClientTxn may carry: the writes that go through the log.
CLIENT_TXN_OPS: frozenset[int] = frozenset(WRITE_OPS)


class TxnKind(enum.IntEnum):
    CLIENT = 1
    CREATE_SESSION = 2
    CLOSE_SESSION = 3
    REAP = 4
    ORIGIN = 5  # not a txn: the origin tag before one (encode_entry_data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTxn:
    """A client write with the context it needs at apply time."""

    session_id: int
    opcode: int
    request: Record | None  # None only for CLOSE_SESSION
    identities: tuple[Id, ...]  # the connection's auth ids when the request was read
    time_ms: int  # the leader's wall clock: ctime/mtime of what this txn touches
    # The bytes `request` was decoded from, when it came from the wire: logged as they
    # are instead of encoding `request` again. Decoding is deterministic, so the entry
    # decodes to this very request.
    request_bytes: bytes | None = field(default=None, compare=False, repr=False)
    # `encode_identities(identities)`, when the caller has it already (a connection's
    # identities stay the same for all its requests).
    identities_bytes: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Checked here so that an entry that could not be decoded is never proposed.
        if len(self.identities) > AUTH_IDS_PER_CONNECTION_MAX:
            raise LocalProtocolError(
                f"{len(self.identities)} identities, max {AUTH_IDS_PER_CONNECTION_MAX}"
            )
        if self.opcode not in CLIENT_TXN_OPS:
            raise LocalProtocolError(f"opcode {self.opcode} is not a logged write")
        record_type = REQUEST_RECORDS[self.opcode]
        if record_type is None:
            if self.request is not None:
                raise LocalProtocolError(f"opcode {self.opcode} takes no request")
        elif not isinstance(self.request, record_type):
            raise LocalProtocolError(
                f"opcode {self.opcode} needs {record_type.__name__}, got {self.request!r}"
            )


_new_object = object.__new__
(
    _set_session_id,
    _set_opcode,
    _set_request,
    _set_identities,
    _set_time_ms,
    _set_request_bytes,
    _set_identities_bytes,
) = (
    getattr(ClientTxn, name).__set__
    for name in (
        "session_id",
        "opcode",
        "request",
        "identities",
        "time_ms",
        "request_bytes",
        "identities_bytes",
    )
)


def new_client_txn(
    session_id: int,
    opcode: int,
    request: Record | None,
    identities: tuple[Id, ...],
    time_ms: int,
    request_bytes: bytes | None,
    identities_bytes: bytes | None,
) -> ClientTxn:
    """`ClientTxn(...)`, checks included, built through its slots: the frozen __init__
    (object.__setattr__ per field) cost more than the rest of queueing a write."""
    txn = _new_object(ClientTxn)
    _set_session_id(txn, session_id)
    _set_opcode(txn, opcode)
    _set_request(txn, request)
    _set_identities(txn, identities)
    _set_time_ms(txn, time_ms)
    _set_request_bytes(txn, request_bytes)
    _set_identities_bytes(txn, identities_bytes)
    txn.__post_init__()
    return txn


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSessionTxn:
    session_id: int
    password: bytes
    timeout_ms: int  # negotiated
    time_ms: int

    def __post_init__(self) -> None:
        if len(self.password) != PASSWORD_SIZE:
            raise LocalProtocolError(f"password must be {PASSWORD_SIZE} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseSessionTxn:
    """Session expiry decided by the leader (an explicit close is a ClientTxn)."""

    session_id: int
    time_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReapTxn:
    """Container/TTL reaper: delete `path` if it is still a candidate at `time_ms`.

    `max_never_used_ms` carries the reaper's setting so that the re-check at apply time
    accepts the never-used containers it chose (0 = never reap those, ZooKeeper 3.9).
    """

    path: str
    time_ms: int
    max_never_used_ms: int = 0


Txn = ClientTxn | CreateSessionTxn | CloseSessionTxn | ReapTxn


# One struct call per fixed-size run of fields: a write's entry is encoded once per
# proposal, and a Writer call per field cost more than the rest of the encoding.
_ORIGIN_TAG = struct.Struct(">iiq")  # ORIGIN, replica id, token
_CLIENT_HEAD = struct.Struct(">iqii")  # CLIENT, session id, opcode, identity count
_CLIENT_HEAD_NO_IDENTITIES = struct.Struct(">iqiiq")  # the same, then time_ms
_TIME = struct.Struct(">q")
_TAGGED_CLIENT_HEAD = struct.Struct(">iiqiqii")  # _ORIGIN_TAG, then _CLIENT_HEAD


def encode_identities(identities: tuple[Id, ...]) -> bytes:
    """The identities of a ClientTxn as its encoding lays them out (after their count)."""
    w = Writer()
    for identity in identities:
        identity.encode(w)
    return w.getvalue()


def _encode_client_txn(txn: ClientTxn, prefix: bytes = b"") -> bytes:
    """`prefix` (an origin tag) and the txn, joined in one copy."""
    head: tuple[bytes, ...]
    if txn.identities:
        identities = txn.identities_bytes
        if identities is None:
            identities = encode_identities(txn.identities)
        head = (
            _CLIENT_HEAD.pack(TxnKind.CLIENT, txn.session_id, txn.opcode, len(txn.identities)),
            identities,
            _TIME.pack(txn.time_ms),
        )
    else:
        head = (
            _CLIENT_HEAD_NO_IDENTITIES.pack(
                TxnKind.CLIENT, txn.session_id, txn.opcode, 0, txn.time_ms
            ),
        )
    if txn.request_bytes is not None:
        request = txn.request_bytes
    elif txn.request is not None:
        request = txn.request.to_bytes()
    else:
        request = b""
    return b"".join((prefix, *head, request))


def encode_txn(txn: Txn) -> bytes:
    if isinstance(txn, ClientTxn):
        return _encode_client_txn(txn)
    w = Writer()
    match txn:
        case CreateSessionTxn():
            w.int32(TxnKind.CREATE_SESSION)
            w.int64(txn.session_id)
            w.buffer(txn.password)
            w.int32(txn.timeout_ms)
            w.int64(txn.time_ms)
        case CloseSessionTxn():
            w.int32(TxnKind.CLOSE_SESSION)
            w.int64(txn.session_id)
            w.int64(txn.time_ms)
        case ReapTxn():
            w.int32(TxnKind.REAP)
            w.ustring(txn.path)
            w.int64(txn.time_ms)
            w.int64(txn.max_never_used_ms)
    return w.getvalue()


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Who proposed an entry: the replica holding the client's connection, and its
    token for the request. Only that replica replies when the entry is applied; for
    the tree an entry with an origin is just its txn."""

    replica_id: int
    token: int


def encode_entry_data(txn: Txn, origin: Origin | None) -> bytes:
    """A NORMAL entry's data: the txn, after an origin tag when there is one."""
    if origin is None:
        return encode_txn(txn)
    if isinstance(txn, ClientTxn):
        identities = txn.identities_bytes
        request = txn.request_bytes
        if txn.identities and identities is not None and request is not None:
            # A client write as the replica proposes it: every part at hand, one pack.
            head = _TAGGED_CLIENT_HEAD.pack(
                TxnKind.ORIGIN,
                origin.replica_id,
                origin.token,
                TxnKind.CLIENT,
                txn.session_id,
                txn.opcode,
                len(txn.identities),
            )
            return b"".join((head, identities, _TIME.pack(txn.time_ms), request))
        return _encode_client_txn(
            txn, _ORIGIN_TAG.pack(TxnKind.ORIGIN, origin.replica_id, origin.token)
        )
    return _ORIGIN_TAG.pack(TxnKind.ORIGIN, origin.replica_id, origin.token) + encode_txn(txn)


def decode_origin(data: bytes) -> Origin | None:
    r = Reader(data)
    if r.int32() != TxnKind.ORIGIN:
        return None
    return Origin(replica_id=r.int32(), token=r.int64())


def decode_txn(data: bytes) -> Txn:
    """The txn of a NORMAL entry's data (an origin tag, if any, is skipped)."""
    r = Reader(data)
    kind = r.int32()
    if kind == TxnKind.ORIGIN:
        r.int32()
        r.int64()
        kind = r.int32()
    txn: Txn
    try:
        if kind == TxnKind.CLIENT:
            session_id = r.int64()
            opcode = r.int32()
            if opcode not in CLIENT_TXN_OPS:
                raise DecodeError(f"opcode {opcode} is not a logged write")
            count = r.count()
            if count > AUTH_IDS_PER_CONNECTION_MAX:
                raise DecodeError(f"{count} identities, max {AUTH_IDS_PER_CONNECTION_MAX}")
            identities = tuple(Id.decode(r) for _ in range(count))
            time_ms = r.int64()
            record_type = REQUEST_RECORDS[opcode]
            request = None if record_type is None else record_type.decode(r)
            txn = ClientTxn(
                session_id=session_id,
                opcode=opcode,
                request=request,
                identities=identities,
                time_ms=time_ms,
            )
        elif kind == TxnKind.CREATE_SESSION:
            session_id = r.int64()
            password = r.buffer()
            if password is None:
                raise DecodeError("null session password")
            txn = CreateSessionTxn(
                session_id=session_id, password=password, timeout_ms=r.int32(), time_ms=r.int64()
            )
        elif kind == TxnKind.CLOSE_SESSION:
            txn = CloseSessionTxn(session_id=r.int64(), time_ms=r.int64())
        elif kind == TxnKind.REAP:
            path = r.ustring()
            if path is None:
                raise DecodeError("null reap path")
            txn = ReapTxn(path=path, time_ms=r.int64(), max_never_used_ms=r.int64())
        else:
            raise DecodeError(f"unknown txn kind {kind}")
    except LocalProtocolError as e:
        raise DecodeError(str(e)) from e
    if r.remaining != 0:
        raise DecodeError(f"{r.remaining} trailing bytes after txn kind {kind}")
    return txn
