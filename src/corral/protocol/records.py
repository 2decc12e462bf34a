"""Every jute record of the ZooKeeper client protocol, with its codec.

Rules: one frozen, slotted, keyword-only dataclass per record, fields in wire order
(the `_JUTE` table is the wire layout). Records are *wire* records: they carry what
the peer sent, valid or not (an invalid path is the tree's business, answered with
the error code ZooKeeper gives), so they check types, never semantics. Decoding only
raises DecodeError. Nothing here knows about sockets, sessions or the tree.

Field kinds in `_JUTE`:
    int, long, bool      fixed-size big-endian
    buffer               bytes or None (null and empty are distinct)
    string               ustring where null reads as "" (kazoo sends "" as null)
    ustring              ustring where null stays None (only where null means something)
    path                 ustring that must not be null (a null path is undecodable)
    strings              vector<ustring>
    acls                 vector<ACL>
    stat                 a nested Stat (68 bytes)
    client_infos         vector<ClientInfo>
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar

from corral.limits import MULTI_OPS_MAX, PASSWORD_SIZE
from corral.protocol.constants import OpCode
from corral.protocol.errors import DecodeError, LocalProtocolError
from corral.protocol.jute import Reader, Writer

# --------------------------------------------------------------------------- base


class Record:
    """Base of every record: a generic codec driven by the class's `_JUTE` table."""

    __slots__ = ()
    _JUTE: ClassVar[tuple[tuple[str, str], ...]] = ()

    def encode(self, w: Writer) -> None:
        for name, kind in self._JUTE:
            _WRITERS[kind](w, getattr(self, name))

    @classmethod
    def decode(cls, r: Reader) -> Self:
        values = {name: _READERS[kind](r) for name, kind in cls._JUTE}
        return cls(**values)

    def to_bytes(self) -> bytes:
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.decode(Reader(data))


def _check_jute(cls: type[Record]) -> type[Record]:
    """Class decorator: the `_JUTE` table must name exactly the dataclass fields."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    assert names == tuple(name for name, _ in cls._JUTE), (cls.__name__, names)
    return cls


# --------------------------------------------------------------------------- data records


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class Id(Record):
    scheme: str
    id: str
    _JUTE = (("scheme", "string"), ("id", "string"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ACL(Record):
    perms: int
    id: Id

    def encode(self, w: Writer) -> None:
        w.int32(self.perms)
        w.ustring(self.id.scheme)
        w.ustring(self.id.id)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        perms = r.int32()
        return cls(perms=perms, id=Id(scheme=r.string(), id=r.string()))


OPEN_ACL_UNSAFE: tuple[ACL, ...] = (ACL(perms=31, id=Id(scheme="world", id="anyone")),)
READ_ACL_UNSAFE: tuple[ACL, ...] = (ACL(perms=1, id=Id(scheme="world", id="anyone")),)
CREATOR_ALL_ACL: tuple[ACL, ...] = (ACL(perms=31, id=Id(scheme="auth", id="")),)

_STAT = struct.Struct(">qqqqiiiqiiq")
assert _STAT.size == 68
_LENGTH = struct.Struct(">i")  # of a buffer, a ustring or a vector
_NULL_LENGTH = _LENGTH.pack(-1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat(Record):
    czxid: int
    mzxid: int
    ctime_ms: int
    mtime_ms: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    def to_bytes(self) -> bytes:
        try:
            return _STAT.pack(
                self.czxid,
                self.mzxid,
                self.ctime_ms,
                self.mtime_ms,
                self.version,
                self.cversion,
                self.aversion,
                self.ephemeral_owner,
                self.data_length,
                self.num_children,
                self.pzxid,
            )
        except struct.error as e:
            raise LocalProtocolError(f"stat field out of range: {self}") from e

    @classmethod
    def decode(cls, r: Reader) -> Self:
        raw = r.raw(_STAT.size)
        (czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, length, n, pzxid) = (
            _STAT.unpack(raw)
        )
        return cls(
            czxid=czxid,
            mzxid=mzxid,
            ctime_ms=ctime,
            mtime_ms=mtime,
            version=version,
            cversion=cversion,
            aversion=aversion,
            ephemeral_owner=owner,
            data_length=length,
            num_children=n,
            pzxid=pzxid,
        )


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientInfo(Record):
    auth_scheme: str
    user: str
    _JUTE = (("auth_scheme", "string"), ("user", "string"))


# --------------------------------------------------------------------------- handshake


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectRequest(Record):
    protocol_version: int
    last_zxid_seen: int
    timeout_ms: int
    session_id: int
    password: bytes
    read_only: bool | None  # None: the client did not send the trailing byte (old client)

    def encode(self, w: Writer) -> None:
        w.int32(self.protocol_version)
        w.int64(self.last_zxid_seen)
        w.int32(self.timeout_ms)
        w.int64(self.session_id)
        w.buffer(self.password)
        if self.read_only is not None:
            w.boolean(self.read_only)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        protocol_version = r.int32()
        last_zxid_seen = r.int64()
        timeout_ms = r.int32()
        session_id = r.int64()
        password = r.buffer() or b""
        read_only = r.boolean() if r.remaining >= 1 else None
        return cls(
            protocol_version=protocol_version,
            last_zxid_seen=last_zxid_seen,
            timeout_ms=timeout_ms,
            session_id=session_id,
            password=password,
            read_only=read_only,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectResponse(Record):
    protocol_version: int
    timeout_ms: int  # 0: the session is invalid or expired
    session_id: int
    password: bytes
    read_only: bool | None  # present iff the request carried the read-only byte

    def __post_init__(self) -> None:
        if len(self.password) != PASSWORD_SIZE:
            raise LocalProtocolError(f"password must be {PASSWORD_SIZE} bytes")

    def encode(self, w: Writer) -> None:
        w.int32(self.protocol_version)
        w.int32(self.timeout_ms)
        w.int64(self.session_id)
        w.buffer(self.password)
        if self.read_only is not None:
            w.boolean(self.read_only)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        protocol_version = r.int32()
        timeout_ms = r.int32()
        session_id = r.int64()
        password = r.buffer() or b""
        if len(password) != PASSWORD_SIZE:
            raise DecodeError(f"password is {len(password)} bytes, want {PASSWORD_SIZE}")
        read_only = r.boolean() if r.remaining >= 1 else None
        return cls(
            protocol_version=protocol_version,
            timeout_ms=timeout_ms,
            session_id=session_id,
            password=password,
            read_only=read_only,
        )


# --------------------------------------------------------------------------- headers


_REQUEST_HEADER = struct.Struct(">ii")
_REPLY_HEADER = struct.Struct(">iqi")


# The headers frame every request and reply: one struct call each instead of the
# generic codec's call per field.
@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHeader(Record):
    xid: int
    opcode: int
    _JUTE = (("xid", "int"), ("opcode", "int"))

    def encode(self, w: Writer) -> None:
        try:
            w.raw(_REQUEST_HEADER.pack(self.xid, self.opcode))
        except struct.error as e:
            raise LocalProtocolError(f"request header field out of range: {self}") from e

    @classmethod
    def decode(cls, r: Reader) -> Self:
        xid, opcode = _REQUEST_HEADER.unpack(r.raw(_REQUEST_HEADER.size))
        return cls(xid=xid, opcode=opcode)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyHeader(Record):
    xid: int
    zxid: int
    err: int
    _JUTE = (("xid", "int"), ("zxid", "long"), ("err", "int"))

    def encode(self, w: Writer) -> None:
        try:
            w.raw(_REPLY_HEADER.pack(self.xid, self.zxid, self.err))
        except struct.error as e:
            raise LocalProtocolError(f"reply header field out of range: {self}") from e

    @classmethod
    def decode(cls, r: Reader) -> Self:
        xid, zxid, err = _REPLY_HEADER.unpack(r.raw(_REPLY_HEADER.size))
        return cls(xid=xid, zxid=zxid, err=err)


_MULTI_HEADER = struct.Struct(">iBi")  # type, done (jute bool: one byte), err


def _read_multi_header(r: Reader) -> tuple[int, bool, int]:
    """A MultiHeader's fields without the record: a multi reads one per op."""
    type_, done, err = _MULTI_HEADER.unpack(r.raw(_MULTI_HEADER.size))
    return type_, done != 0, err


def _write_multi_header(w: Writer, type_: int, done: bool, err: int) -> None:
    try:
        w.raw(_MULTI_HEADER.pack(type_, 1 if done else 0, err))
    except struct.error as e:
        raise LocalProtocolError(f"multi header field out of range: {type_}, {err}") from e


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class MultiHeader(Record):
    type: int
    done: bool
    err: int
    _JUTE = (("type", "int"), ("done", "bool"), ("err", "int"))

    def encode(self, w: Writer) -> None:
        _write_multi_header(w, self.type, self.done, self.err)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        type_, done, err = _read_multi_header(r)
        return cls(type=type_, done=done, err=err)


# --------------------------------------------------------------------------- requests/responses


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest(Record):
    path: str
    data: bytes | None
    acl: tuple[ACL, ...]
    flags: int
    _JUTE = (("path", "path"), ("data", "buffer"), ("acl", "acls"), ("flags", "int"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTTLRequest(Record):
    path: str
    data: bytes | None
    acl: tuple[ACL, ...]
    flags: int
    ttl_ms: int
    _JUTE = (
        ("path", "path"),
        ("data", "buffer"),
        ("acl", "acls"),
        ("flags", "int"),
        ("ttl_ms", "long"),
    )


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResponse(Record):
    path: str
    _JUTE = (("path", "path"),)

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    def to_bytes(self) -> bytes:
        return _ustring_bytes(self.path)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class Create2Response(Record):
    path: str
    stat: Stat
    _JUTE = (("path", "path"), ("stat", "stat"))

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    def to_bytes(self) -> bytes:
        return _ustring_bytes(self.path) + self.stat.to_bytes()


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRequest(Record):
    path: str
    version: int
    _JUTE = (("path", "path"), ("version", "int"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class ExistsRequest(Record):
    path: str
    watch: bool
    _JUTE = (("path", "path"), ("watch", "bool"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class StatResponse(Record):
    """ExistsResponse, SetDataResponse and SetACLResponse: a Stat alone."""

    stat: Stat
    _JUTE = (("stat", "stat"),)

    def encode(self, w: Writer) -> None:
        w.raw(self.stat.to_bytes())

    def to_bytes(self) -> bytes:
        return self.stat.to_bytes()


ExistsResponse = StatResponse
SetDataResponse = StatResponse
SetACLResponse = StatResponse


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetDataRequest(Record):
    path: str
    watch: bool
    _JUTE = (("path", "path"), ("watch", "bool"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetDataResponse(Record):
    data: bytes | None
    stat: Stat
    _JUTE = (("data", "buffer"), ("stat", "stat"))

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    def to_bytes(self) -> bytes:
        data = self.data
        if data is None:
            return _NULL_LENGTH + self.stat.to_bytes()
        return b"".join((_LENGTH.pack(len(data)), data, self.stat.to_bytes()))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class SetDataRequest(Record):
    path: str
    data: bytes | None
    version: int
    _JUTE = (("path", "path"), ("data", "buffer"), ("version", "int"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetACLRequest(Record):
    path: str
    _JUTE = (("path", "path"),)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetACLResponse(Record):
    acl: tuple[ACL, ...]
    stat: Stat
    _JUTE = (("acl", "acls"), ("stat", "stat"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class SetACLRequest(Record):
    path: str
    acl: tuple[ACL, ...]
    version: int
    _JUTE = (("path", "path"), ("acl", "acls"), ("version", "int"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetChildrenRequest(Record):
    """getChildren (8) and getChildren2 (12) share this request layout."""

    path: str
    watch: bool
    _JUTE = (("path", "path"), ("watch", "bool"))


GetChildren2Request = GetChildrenRequest


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetChildrenResponse(Record):
    children: tuple[str, ...]
    _JUTE = (("children", "strings"),)

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    def to_bytes(self) -> bytes:
        return _strings_bytes(self.children)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetChildren2Response(Record):
    children: tuple[str, ...]
    stat: Stat
    _JUTE = (("children", "strings"), ("stat", "stat"))

    def encode(self, w: Writer) -> None:
        w.raw(self.to_bytes())

    def to_bytes(self) -> bytes:
        return _strings_bytes(self.children) + self.stat.to_bytes()


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class PathRecord(Record):
    """A record holding one path: sync request and response, getACL... (see aliases)."""

    path: str
    _JUTE = (("path", "path"),)


SyncRequest = PathRecord
SyncResponse = PathRecord
GetAllChildrenNumberRequest = PathRecord


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckVersionRequest(Record):
    path: str
    version: int
    _JUTE = (("path", "path"), ("version", "int"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class ReconfigRequest(Record):
    """Unused strings are null on the wire, and ZooKeeper tells null from "" here."""

    joining_servers: str | None
    leaving_servers: str | None
    new_members: str | None
    cur_config_id: int
    _JUTE = (
        ("joining_servers", "ustring"),
        ("leaving_servers", "ustring"),
        ("new_members", "ustring"),
        ("cur_config_id", "long"),
    )


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class WatchesRequest(Record):
    """checkWatches (17) and removeWatches (18): `type` is a WatcherType value."""

    path: str
    type: int
    _JUTE = (("path", "path"), ("type", "int"))


CheckWatchesRequest = WatchesRequest
RemoveWatchesRequest = WatchesRequest


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class AddWatchRequest(Record):
    path: str
    mode: int
    _JUTE = (("path", "path"), ("mode", "int"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class SetWatches(Record):
    relative_zxid: int
    data_watches: tuple[str, ...]
    exist_watches: tuple[str, ...]
    child_watches: tuple[str, ...]
    _JUTE = (
        ("relative_zxid", "long"),
        ("data_watches", "strings"),
        ("exist_watches", "strings"),
        ("child_watches", "strings"),
    )


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class SetWatches2(Record):
    relative_zxid: int
    data_watches: tuple[str, ...]
    exist_watches: tuple[str, ...]
    child_watches: tuple[str, ...]
    persistent_watches: tuple[str, ...]
    persistent_recursive_watches: tuple[str, ...]
    _JUTE = (
        ("relative_zxid", "long"),
        ("data_watches", "strings"),
        ("exist_watches", "strings"),
        ("child_watches", "strings"),
        ("persistent_watches", "strings"),
        ("persistent_recursive_watches", "strings"),
    )


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class AuthPacket(Record):
    type: int
    scheme: str
    auth: bytes | None
    _JUTE = (("type", "int"), ("scheme", "string"), ("auth", "buffer"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class SaslToken(Record):
    """GetSASLRequest and SetSASLResponse: one buffer."""

    token: bytes | None
    _JUTE = (("token", "buffer"),)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetEphemeralsRequest(Record):
    prefix_path: str  # null, "" or "/" mean every ephemeral of the session
    _JUTE = (("prefix_path", "string"),)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetEphemeralsResponse(Record):
    ephemerals: tuple[str, ...]
    _JUTE = (("ephemerals", "strings"),)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class GetAllChildrenNumberResponse(Record):
    total_number: int
    _JUTE = (("total_number", "int"),)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class WhoAmIResponse(Record):
    client_info: tuple[ClientInfo, ...]
    _JUTE = (("client_info", "client_infos"),)


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class WatcherEvent(Record):
    type: int
    state: int
    path: str
    _JUTE = (("type", "int"), ("state", "int"), ("path", "string"))


@_check_jute
@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse(Record):
    err: int
    _JUTE = (("err", "int"),)


# --------------------------------------------------------------------------- multi

MultiOp = tuple[int, Record]  # (opcode, request record)


@dataclass(frozen=True, slots=True, kw_only=True)
class MultiRequest(Record):
    """multi (14) and multiRead (22): ops, then a `done` header. No count on the wire."""

    ops: tuple[MultiOp, ...] = field(default=())

    def encode(self, w: Writer) -> None:
        for opcode, op in self.ops:
            _write_multi_header(w, opcode, False, -1)
            op.encode(w)
        _write_multi_header(w, -1, True, -1)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        ops: list[MultiOp] = []
        while True:
            op_type, done, _ = _read_multi_header(r)
            if done:
                return cls(ops=tuple(ops))
            if len(ops) >= MULTI_OPS_MAX:
                raise DecodeError(f"multi has more than {MULTI_OPS_MAX} ops")
            record_type = MULTI_OP_RECORDS.get(op_type)
            if record_type is None:
                raise DecodeError(f"opcode {op_type} is not allowed inside multi")
            ops.append((op_type, record_type.decode(r)))


@dataclass(frozen=True, slots=True, kw_only=True)
class OpResult:
    """One entry of a MultiResponse. `type` -1 is an error result carrying `err`."""

    type: int
    err: int = 0
    body: Record | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MultiResponse(Record):
    results: tuple[OpResult, ...] = field(default=())

    def encode(self, w: Writer) -> None:
        for result in self.results:
            _write_multi_header(w, result.type, False, result.err)
            if result.type == -1:
                ErrorResponse(err=result.err).encode(w)
            elif result.body is not None:
                result.body.encode(w)
        _write_multi_header(w, -1, True, -1)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        results: list[OpResult] = []
        while True:
            header = MultiHeader.decode(r)
            if header.done:
                return cls(results=tuple(results))
            if header.type == -1:
                err = ErrorResponse.decode(r).err
                results.append(OpResult(type=-1, err=err))
                continue
            body_type = MULTI_RESULT_RECORDS.get(header.type, _MISSING)
            if body_type is _MISSING:
                raise DecodeError(f"unknown multi result type {header.type}")
            body = None if body_type is None else body_type.decode(r)  # type: ignore[union-attr]
            results.append(OpResult(type=header.type, err=header.err, body=body))


_MISSING: Any = object()

# --------------------------------------------------------------------------- registries

# Request body by opcode; None = the request has no body.
REQUEST_RECORDS: dict[int, type[Record] | None] = {
    OpCode.CREATE: CreateRequest,
    OpCode.DELETE: DeleteRequest,
    OpCode.EXISTS: ExistsRequest,
    OpCode.GET_DATA: GetDataRequest,
    OpCode.SET_DATA: SetDataRequest,
    OpCode.GET_ACL: GetACLRequest,
    OpCode.SET_ACL: SetACLRequest,
    OpCode.GET_CHILDREN: GetChildrenRequest,
    OpCode.SYNC: SyncRequest,
    OpCode.PING: None,
    OpCode.GET_CHILDREN2: GetChildrenRequest,
    OpCode.CHECK: CheckVersionRequest,
    OpCode.MULTI: MultiRequest,
    OpCode.CREATE2: CreateRequest,
    OpCode.RECONFIG: ReconfigRequest,
    OpCode.CHECK_WATCHES: WatchesRequest,
    OpCode.REMOVE_WATCHES: WatchesRequest,
    OpCode.CREATE_CONTAINER: CreateRequest,
    OpCode.DELETE_CONTAINER: PathRecord,
    OpCode.CREATE_TTL: CreateTTLRequest,
    OpCode.MULTI_READ: MultiRequest,
    OpCode.AUTH: AuthPacket,
    OpCode.SET_WATCHES: SetWatches,
    OpCode.SASL: SaslToken,
    OpCode.GET_EPHEMERALS: GetEphemeralsRequest,
    OpCode.GET_ALL_CHILDREN_NUMBER: PathRecord,
    OpCode.SET_WATCHES2: SetWatches2,
    OpCode.ADD_WATCH: AddWatchRequest,
    OpCode.WHO_AM_I: None,
    OpCode.CLOSE_SESSION: None,
}

# Response body by opcode (err == 0); None = header only.
RESPONSE_RECORDS: dict[int, type[Record] | None] = {
    OpCode.CREATE: CreateResponse,
    OpCode.DELETE: None,
    OpCode.EXISTS: StatResponse,
    OpCode.GET_DATA: GetDataResponse,
    OpCode.SET_DATA: StatResponse,
    OpCode.GET_ACL: GetACLResponse,
    OpCode.SET_ACL: StatResponse,
    OpCode.GET_CHILDREN: GetChildrenResponse,
    OpCode.SYNC: PathRecord,
    OpCode.PING: None,
    OpCode.GET_CHILDREN2: GetChildren2Response,
    OpCode.CHECK: None,
    OpCode.MULTI: MultiResponse,
    OpCode.CREATE2: Create2Response,
    OpCode.RECONFIG: GetDataResponse,
    OpCode.CHECK_WATCHES: None,
    OpCode.REMOVE_WATCHES: None,
    OpCode.CREATE_CONTAINER: Create2Response,
    OpCode.DELETE_CONTAINER: None,
    OpCode.CREATE_TTL: Create2Response,
    OpCode.MULTI_READ: MultiResponse,
    OpCode.AUTH: None,
    OpCode.SET_WATCHES: None,
    OpCode.SASL: SaslToken,
    OpCode.GET_EPHEMERALS: GetEphemeralsResponse,
    OpCode.GET_ALL_CHILDREN_NUMBER: GetAllChildrenNumberResponse,
    OpCode.SET_WATCHES2: None,
    OpCode.ADD_WATCH: ErrorResponse,
    OpCode.WHO_AM_I: WhoAmIResponse,
    OpCode.CLOSE_SESSION: None,
}

# Op records allowed inside multi / multiRead.
MULTI_OP_RECORDS: dict[int, type[Record]] = {
    OpCode.CREATE: CreateRequest,
    OpCode.CREATE2: CreateRequest,
    OpCode.CREATE_CONTAINER: CreateRequest,
    OpCode.CREATE_TTL: CreateTTLRequest,
    OpCode.DELETE: DeleteRequest,
    OpCode.SET_DATA: SetDataRequest,
    OpCode.CHECK: CheckVersionRequest,
    OpCode.GET_DATA: GetDataRequest,
    OpCode.GET_CHILDREN: GetChildrenRequest,
}

# Success result bodies inside a MultiResponse, by result type.
MULTI_RESULT_RECORDS: dict[int, type[Record] | None] = {
    OpCode.CREATE: CreateResponse,
    OpCode.CREATE2: Create2Response,
    OpCode.DELETE: None,
    OpCode.SET_DATA: StatResponse,
    OpCode.CHECK: None,
    OpCode.GET_DATA: GetDataResponse,
    OpCode.GET_CHILDREN: GetChildrenResponse,
}

# --------------------------------------------------------------------------- kind tables


def _read_path(r: Reader) -> str:
    value = r.ustring()
    if value is None:
        raise DecodeError("null path")
    return value


def _read_acls(r: Reader) -> tuple[ACL, ...]:
    return tuple(ACL.decode(r) for _ in range(r.count()))


def _write_acls(w: Writer, acls: tuple[ACL, ...]) -> None:
    w.int32(len(acls))
    for acl in acls:
        acl.encode(w)


def _read_client_infos(r: Reader) -> tuple[ClientInfo, ...]:
    return tuple(ClientInfo.decode(r) for _ in range(r.count()))


def _write_records(w: Writer, records: tuple[Record, ...]) -> None:
    w.int32(len(records))
    for record in records:
        record.encode(w)


_READERS: dict[str, Callable[[Reader], Any]] = {
    "int": Reader.int32,
    "long": Reader.int64,
    "bool": Reader.boolean,
    "buffer": Reader.buffer,
    "string": Reader.string,
    "ustring": Reader.ustring,
    "path": _read_path,
    "strings": Reader.string_vector,
    "acls": _read_acls,
    "stat": Stat.decode,
    "client_infos": _read_client_infos,
}

_WRITERS: dict[str, Callable[[Writer, Any], None]] = {
    "int": Writer.int32,
    "long": Writer.int64,
    "bool": Writer.boolean,
    "buffer": Writer.buffer,
    "string": Writer.ustring,
    "ustring": Writer.ustring,
    "path": Writer.ustring,
    "strings": Writer.string_vector,
    "acls": _write_acls,
    "stat": lambda w, stat: stat.encode(w),
    "client_infos": _write_records,
}


# --------------------------------------------------------------------------- fast decoding

_R = TypeVar("_R")


def slot_constructor(cls: type[_R]) -> Callable[..., _R]:
    """A positional constructor of the frozen dataclass `cls` that sets each slot through
    its descriptor: the dataclass __init__ calls object.__setattr__ per field, which
    made building records 2-3x slower on the request path. The instance is the same
    (type, fields, equality, immutability); only for records without __post_init__."""
    assert not hasattr(cls, "__post_init__"), cls  # its checks would be skipped
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def build({', '.join(names)}):", "    record = _new(_cls)"]
    for name in names:
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        lines.append(f"    _set_{name}(record, {name})")
    lines.append("    return record")
    exec("\n".join(lines), namespace)  # as dataclasses builds __init__
    build: Callable[..., _R] = namespace["build"]
    return build


# The hot requests decode straight from the frame's bytes. A fast decoder handles the
# common shape only (ASCII path, no odd lengths, an ACL list ZooKeeper defines) and
# returns None for anything else, so the generic decode, with its exact errors, decides
# every other case. It returns the record and the offset after it.
FastDecoder = Callable[[bytes, int], tuple[Record, int] | None]


def _fast_path(data: bytes, offset: int) -> tuple[str, int] | None:
    """An ASCII path at `offset` and the offset after it, or None."""
    if offset + 4 > len(data):
        return None
    (size,) = _LENGTH.unpack_from(data, offset)
    start = offset + 4
    end = start + size
    if size < 0 or end > len(data):
        return None
    raw = data[start:end]
    if not raw.isascii():
        return None  # the lenient UTF-8 decoding is the Reader's
    return raw.decode("ascii"), end


def _fast_path_watch(build: Callable[[str, bool], Record]) -> FastDecoder:
    """exists, getData, getChildren, getChildren2: a path and a watch flag."""

    def decode(data: bytes, offset: int) -> tuple[Record, int] | None:
        # _fast_path inlined: these are the most frequent requests.
        if offset + 4 > len(data):
            return None
        (size,) = _LENGTH.unpack_from(data, offset)
        start = offset + 4
        end = start + size
        if size < 0 or end >= len(data):  # the watch flag follows the path
            return None
        raw = data[start:end]
        if not raw.isascii():
            return None
        return build(raw.decode("ascii"), data[end] != 0), end + 1

    return decode


_new_delete = slot_constructor(DeleteRequest)
_new_set_data = slot_constructor(SetDataRequest)
_new_create = slot_constructor(CreateRequest)


def _fast_delete(data: bytes, offset: int) -> tuple[Record, int] | None:
    path = _fast_path(data, offset)
    if path is None or path[1] + 4 > len(data):
        return None
    end = path[1]
    (version,) = _LENGTH.unpack_from(data, end)
    return _new_delete(path[0], version), end + 4


def _fast_buffer(data: bytes, offset: int) -> tuple[bytes | None, int] | None:
    if offset + 4 > len(data):
        return None
    (size,) = _LENGTH.unpack_from(data, offset)
    start = offset + 4
    if size == -1:
        return None, start
    end = start + size
    if size < 0 or end > len(data):
        return None
    return data[start:end], end


def _fast_set_data(data: bytes, offset: int) -> tuple[Record, int] | None:
    path = _fast_path(data, offset)
    if path is None:
        return None
    value = _fast_buffer(data, path[1])
    if value is None or value[1] + 4 > len(data):
        return None
    end = value[1]
    (version,) = _LENGTH.unpack_from(data, end)
    return _new_set_data(path[0], value[0], version), end + 4


def _acl_list_bytes(acls: tuple[ACL, ...]) -> bytes:
    w = Writer()
    _write_acls(w, acls)
    return w.getvalue()


# The ACL lists ZooKeeper defines, by their encoding: a create names one of them almost
# always, and sharing the constant skips decoding three records.
_KNOWN_ACL_LISTS: tuple[tuple[bytes, tuple[ACL, ...]], ...] = tuple(
    (_acl_list_bytes(acls), acls) for acls in (OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, CREATOR_ALL_ACL)
)


def _fast_create(data: bytes, offset: int) -> tuple[Record, int] | None:
    """create, create2 and createContainer: path, data, ACL list, flags."""
    path = _fast_path(data, offset)
    if path is None:
        return None
    value = _fast_buffer(data, path[1])
    if value is None:
        return None
    start = value[1]
    for encoded, acls in _KNOWN_ACL_LISTS:
        if data.startswith(encoded, start):
            end = start + len(encoded)
            if end + 4 > len(data):
                return None
            (flags,) = _LENGTH.unpack_from(data, end)
            return _new_create(path[0], value[0], acls, flags), end + 4
    return None


FAST_REQUEST_DECODERS: dict[int, FastDecoder] = {
    OpCode.EXISTS: _fast_path_watch(slot_constructor(ExistsRequest)),
    OpCode.GET_DATA: _fast_path_watch(slot_constructor(GetDataRequest)),
    OpCode.GET_CHILDREN: _fast_path_watch(slot_constructor(GetChildrenRequest)),
    OpCode.GET_CHILDREN2: _fast_path_watch(slot_constructor(GetChildrenRequest)),
    OpCode.SET_DATA: _fast_set_data,
    OpCode.DELETE: _fast_delete,
    OpCode.CREATE: _fast_create,
    OpCode.CREATE2: _fast_create,
    OpCode.CREATE_CONTAINER: _fast_create,
}
assert all(REQUEST_RECORDS[opcode] is not None for opcode in FAST_REQUEST_DECODERS)

# --------------------------------------------------------------------------- fast encoding

# The replies of the hot requests (Stat-bearing replies, getData, getChildren, create)
# encode straight to bytes instead of through a Writer call per field: the same bytes
# (tests/protocol/test_fast_paths.py checks them against the generic codec).


def _ustring_bytes(value: str | None) -> bytes:
    """Writer.ustring's bytes, as one value."""
    if value is None:
        return _NULL_LENGTH
    encoded = value.encode("utf-8", errors="surrogatepass")
    return _LENGTH.pack(len(encoded)) + encoded


def _strings_bytes(values: tuple[str, ...]) -> bytes:
    """Writer.string_vector's bytes, as one value: one join instead of two appends per
    string (a getChildren reply of 100 names took half the time of the request)."""
    pack = _LENGTH.pack
    parts = [pack(len(values))]
    for value in values:
        encoded = value.encode("utf-8", errors="surrogatepass")
        parts.append(pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)
