"""Short constructors for scenario steps: `create("a", "/x")` instead of a full Op."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence

from corral.protocol.constants import OpCode
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    AddWatchRequest,
    AuthPacket,
    CheckVersionRequest,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetACLRequest,
    GetChildrenRequest,
    GetDataRequest,
    GetEphemeralsRequest,
    Id,
    MultiRequest,
    PathRecord,
    Record,
    SetACLRequest,
    SetDataRequest,
    SetWatches,
    SetWatches2,
    WatchesRequest,
)
from tests.support.scenario import Known, Op, SideContext

OPEN = OPEN_ACL_UNSAFE
ANY = -1


def acl(perms: int, scheme: str = "world", id: str = "anyone") -> ACL:
    return ACL(perms=perms, id=Id(scheme=scheme, id=id))


def digest_id(user: str, password: str) -> str:
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(raw).decode()}"


def create(
    s: str,
    path: str,
    data: bytes | None = b"",
    *,
    acls: Sequence[ACL] = OPEN,
    flags: int = 0,
    opcode: int = OpCode.CREATE,
    label: str = "",
) -> Op:
    return Op(
        session=s,
        opcode=opcode,
        record=CreateRequest(path=path, data=data, acl=tuple(acls), flags=flags),
        label=label,
    )


def create2(s: str, path: str, data: bytes | None = b"", **kw: object) -> Op:
    return create(s, path, data, opcode=OpCode.CREATE2, **kw)  # type: ignore[arg-type]


def create_container(s: str, path: str, data: bytes | None = b"", flags: int = 4) -> Op:
    return create(s, path, data, flags=flags, opcode=OpCode.CREATE_CONTAINER)


def create_ttl(
    s: str, path: str, ttl_ms: int, *, flags: int = 5, data: bytes | None = b"", acls=OPEN
) -> Op:
    return Op(
        session=s,
        opcode=OpCode.CREATE_TTL,
        record=CreateTTLRequest(path=path, data=data, acl=tuple(acls), flags=flags, ttl_ms=ttl_ms),
    )


def delete(s: str, path: str, version: int = ANY) -> Op:
    return Op(session=s, opcode=OpCode.DELETE, record=DeleteRequest(path=path, version=version))


def exists(s: str, path: str, watch: bool = False, known: Known | None = None) -> Op:
    return Op(
        session=s,
        opcode=OpCode.EXISTS,
        record=ExistsRequest(path=path, watch=watch),
        known=known,
    )


def get_data(s: str, path: str, watch: bool = False) -> Op:
    return Op(session=s, opcode=OpCode.GET_DATA, record=GetDataRequest(path=path, watch=watch))


def set_data(s: str, path: str, data: bytes | None, version: int = ANY) -> Op:
    return Op(
        session=s,
        opcode=OpCode.SET_DATA,
        record=SetDataRequest(path=path, data=data, version=version),
    )


def children(s: str, path: str, watch: bool = False) -> Op:
    return Op(
        session=s, opcode=OpCode.GET_CHILDREN, record=GetChildrenRequest(path=path, watch=watch)
    )


def children2(s: str, path: str, watch: bool = False) -> Op:
    return Op(
        session=s, opcode=OpCode.GET_CHILDREN2, record=GetChildrenRequest(path=path, watch=watch)
    )


def get_acl(s: str, path: str) -> Op:
    return Op(session=s, opcode=OpCode.GET_ACL, record=GetACLRequest(path=path))


def set_acl(s: str, path: str, acls: Sequence[ACL], version: int = ANY) -> Op:
    return Op(
        session=s,
        opcode=OpCode.SET_ACL,
        record=SetACLRequest(path=path, acl=tuple(acls), version=version),
    )


def sync(s: str, path: str) -> Op:
    return Op(session=s, opcode=OpCode.SYNC, record=PathRecord(path=path))


def all_children_number(s: str, path: str) -> Op:
    return Op(session=s, opcode=OpCode.GET_ALL_CHILDREN_NUMBER, record=PathRecord(path=path))


def ephemerals(s: str, prefix: str) -> Op:
    return Op(
        session=s,
        opcode=OpCode.GET_EPHEMERALS,
        record=GetEphemeralsRequest(prefix_path=prefix),
    )


def who_am_i(s: str) -> Op:
    return Op(session=s, opcode=OpCode.WHO_AM_I)


def auth(s: str, scheme: str, credential: bytes) -> Op:
    return Op(
        session=s,
        opcode=OpCode.AUTH,
        record=AuthPacket(type=0, scheme=scheme, auth=credential),
    )


def add_watch(s: str, path: str, mode: int) -> Op:
    return Op(session=s, opcode=OpCode.ADD_WATCH, record=AddWatchRequest(path=path, mode=mode))


def remove_watches(s: str, path: str, type: int, known: Known | None = None) -> Op:
    return Op(
        session=s,
        opcode=OpCode.REMOVE_WATCHES,
        record=WatchesRequest(path=path, type=type),
        known=known,
    )


def check_watches(s: str, path: str, type: int, known: Known | None = None) -> Op:
    return Op(
        session=s,
        opcode=OpCode.CHECK_WATCHES,
        record=WatchesRequest(path=path, type=type),
        known=known,
    )


def set_watches(
    s: str,
    relative_zxid: Callable[[SideContext], int],
    data: Sequence[str] = (),
    exist: Sequence[str] = (),
    child: Sequence[str] = (),
    persistent: Sequence[str] | None = None,
    recursive: Sequence[str] | None = None,
    xid: int = -8,
) -> Op:
    def record(ctx: SideContext) -> Record:
        if persistent is None and recursive is None:
            return SetWatches(
                relative_zxid=relative_zxid(ctx),
                data_watches=tuple(data),
                exist_watches=tuple(exist),
                child_watches=tuple(child),
            )
        return SetWatches2(
            relative_zxid=relative_zxid(ctx),
            data_watches=tuple(data),
            exist_watches=tuple(exist),
            child_watches=tuple(child),
            persistent_watches=tuple(persistent or ()),
            persistent_recursive_watches=tuple(recursive or ()),
        )

    opcode = OpCode.SET_WATCHES if persistent is None and recursive is None else OpCode.SET_WATCHES2
    return Op(session=s, opcode=opcode, record=record, xid=xid)


# --------------------------------------------------------------------------- multi


def m_create(path: str, data: bytes | None = b"", flags: int = 0, acls=OPEN) -> tuple[int, Record]:
    return (OpCode.CREATE, CreateRequest(path=path, data=data, acl=tuple(acls), flags=flags))


def m_create2(path: str, data: bytes | None = b"", flags: int = 0) -> tuple[int, Record]:
    return (OpCode.CREATE2, CreateRequest(path=path, data=data, acl=OPEN, flags=flags))


def m_container(path: str) -> tuple[int, Record]:
    return (OpCode.CREATE_CONTAINER, CreateRequest(path=path, data=b"", acl=OPEN, flags=4))


def m_ttl(path: str, ttl_ms: int) -> tuple[int, Record]:
    return (
        OpCode.CREATE_TTL,
        CreateTTLRequest(path=path, data=b"", acl=OPEN, flags=5, ttl_ms=ttl_ms),
    )


def m_delete(path: str, version: int = ANY) -> tuple[int, Record]:
    return (OpCode.DELETE, DeleteRequest(path=path, version=version))


def m_set(path: str, data: bytes, version: int = ANY) -> tuple[int, Record]:
    return (OpCode.SET_DATA, SetDataRequest(path=path, data=data, version=version))


def m_check(path: str, version: int) -> tuple[int, Record]:
    return (OpCode.CHECK, CheckVersionRequest(path=path, version=version))


def m_get(path: str) -> tuple[int, Record]:
    return (OpCode.GET_DATA, GetDataRequest(path=path, watch=False))


def m_children(path: str) -> tuple[int, Record]:
    return (OpCode.GET_CHILDREN, GetChildrenRequest(path=path, watch=False))


def multi(s: str, *ops: tuple[int, Record], opcode: int = OpCode.MULTI) -> Op:
    return Op(session=s, opcode=opcode, record=MultiRequest(ops=tuple(ops)))


def multi_read(s: str, *ops: tuple[int, Record]) -> Op:
    return multi(s, *ops, opcode=OpCode.MULTI_READ)
