"""A thin driver for DataTree tests: numbers zxids, advances time, builds requests."""

from __future__ import annotations

from corral.protocol.constants import ErrorCode, OpCode
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    CheckVersionRequest,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetACLRequest,
    GetChildrenRequest,
    GetDataRequest,
    Id,
    MultiRequest,
    PathRecord,
    Record,
    SetACLRequest,
    SetDataRequest,
    Stat,
)
from corral.tree.acl import digest
from corral.tree.tree import ApplyResult, DataTree
from corral.tree.txn import ClientTxn, CloseSessionTxn, CreateSessionTxn, ReapTxn, Txn

IP = Id(scheme="ip", id="127.0.0.1")
SUPER = Id(scheme="super", id="")
S1 = 0x0100_0000_0000_0001
S2 = 0x0100_0000_0000_0002
PASSWORD = bytes(range(16))


def digest_id(credential: str) -> Id:
    return Id(scheme="digest", id=digest(credential))


def acl(perms: int, scheme: str, identity: str) -> ACL:
    return ACL(perms=perms, id=Id(scheme=scheme, id=identity))


class Harness:
    """Applies txns with consecutive zxids; every txn is 10 ms after the previous one."""

    def __init__(self, *, sessions: tuple[int, ...] = (S1,), **tree_options: bool) -> None:
        self.tree = DataTree(**tree_options)
        self.zxid = 0
        self.time_ms = 1_000_000
        for session_id in sessions:
            self.open_session(session_id)

    def apply(self, txn: Txn) -> ApplyResult:
        self.zxid += 1
        return self.tree.apply(txn, self.zxid)

    def now(self) -> int:
        self.time_ms += 10
        return self.time_ms

    def open_session(self, session_id: int, timeout_ms: int = 4_000) -> ApplyResult:
        return self.apply(
            CreateSessionTxn(
                session_id=session_id, password=PASSWORD, timeout_ms=timeout_ms, time_ms=self.now()
            )
        )

    def expire(self, session_id: int) -> ApplyResult:
        return self.apply(CloseSessionTxn(session_id=session_id, time_ms=self.now()))

    def reap(self, path: str, time_ms: int, max_never_used_ms: int = 0) -> ApplyResult:
        return self.apply(ReapTxn(path=path, time_ms=time_ms, max_never_used_ms=max_never_used_ms))

    def write(
        self,
        opcode: int,
        request: Record | None,
        *,
        session: int = S1,
        ids: tuple[Id, ...] = (IP,),
    ) -> ApplyResult:
        return self.apply(
            ClientTxn(
                session_id=session,
                opcode=opcode,
                request=request,
                identities=ids,
                time_ms=self.now(),
            )
        )

    def create(
        self,
        path: str,
        data: bytes | None = b"",
        *,
        acl: tuple[ACL, ...] = OPEN_ACL_UNSAFE,
        flags: int = 0,
        opcode: int = OpCode.CREATE2,
        ttl_ms: int = -1,
        session: int = S1,
        ids: tuple[Id, ...] = (IP,),
    ) -> ApplyResult:
        return self.write(
            opcode,
            create_op(path, data, acl=acl, flags=flags, opcode=opcode, ttl_ms=ttl_ms),
            session=session,
            ids=ids,
        )

    def delete(
        self, path: str, version: int = -1, *, session: int = S1, ids: tuple[Id, ...] = (IP,)
    ) -> ApplyResult:
        request = DeleteRequest(path=path, version=version)
        return self.write(OpCode.DELETE, request, session=session, ids=ids)

    def set_data(
        self,
        path: str,
        data: bytes | None,
        version: int = -1,
        *,
        session: int = S1,
        ids: tuple[Id, ...] = (IP,),
    ) -> ApplyResult:
        request = SetDataRequest(path=path, data=data, version=version)
        return self.write(OpCode.SET_DATA, request, session=session, ids=ids)

    def set_acl(
        self,
        path: str,
        acl: tuple[ACL, ...],
        version: int = -1,
        *,
        session: int = S1,
        ids: tuple[Id, ...] = (IP,),
    ) -> ApplyResult:
        request = SetACLRequest(path=path, acl=acl, version=version)
        return self.write(OpCode.SET_ACL, request, session=session, ids=ids)

    def multi(
        self, *ops: tuple[int, Record], session: int = S1, ids: tuple[Id, ...] = (IP,)
    ) -> ApplyResult:
        return self.write(OpCode.MULTI, MultiRequest(ops=ops), session=session, ids=ids)

    def read(
        self,
        opcode: int,
        request: Record | None,
        *,
        ids: tuple[Id, ...] = (IP,),
        session: int = S1,
    ) -> tuple[ErrorCode, Record | None]:
        return self.tree.read(opcode, request, ids, session)

    def exists(self, path: str, ids: tuple[Id, ...] = (IP,)) -> tuple[ErrorCode, Record | None]:
        return self.read(OpCode.EXISTS, ExistsRequest(path=path, watch=False), ids=ids)

    def get_data(self, path: str, ids: tuple[Id, ...] = (IP,)) -> tuple[ErrorCode, Record | None]:
        return self.read(OpCode.GET_DATA, GetDataRequest(path=path, watch=False), ids=ids)

    def get_children(
        self, path: str, ids: tuple[Id, ...] = (IP,)
    ) -> tuple[ErrorCode, Record | None]:
        return self.read(OpCode.GET_CHILDREN, GetChildrenRequest(path=path, watch=False), ids=ids)

    def get_children2(
        self, path: str, ids: tuple[Id, ...] = (IP,)
    ) -> tuple[ErrorCode, Record | None]:
        request = GetChildrenRequest(path=path, watch=False)
        return self.read(OpCode.GET_CHILDREN2, request, ids=ids)

    def get_acl(self, path: str, ids: tuple[Id, ...] = (IP,)) -> tuple[ErrorCode, Record | None]:
        return self.read(OpCode.GET_ACL, GetACLRequest(path=path), ids=ids)

    def all_children_number(
        self, path: str, ids: tuple[Id, ...] = (IP,)
    ) -> tuple[ErrorCode, Record | None]:
        return self.read(OpCode.GET_ALL_CHILDREN_NUMBER, PathRecord(path=path), ids=ids)

    def stat(self, path: str) -> Stat:
        stat = self.tree.stat(path)
        assert stat is not None, path
        return stat


def create_op(
    path: str,
    data: bytes | None = b"",
    *,
    acl: tuple[ACL, ...] = OPEN_ACL_UNSAFE,
    flags: int = 0,
    opcode: int = OpCode.CREATE,
    ttl_ms: int = -1,
) -> CreateRequest | CreateTTLRequest:
    if opcode == OpCode.CREATE_TTL:
        return CreateTTLRequest(path=path, data=data, acl=acl, flags=flags, ttl_ms=ttl_ms)
    return CreateRequest(path=path, data=data, acl=acl, flags=flags)


def check_op(path: str, version: int) -> tuple[int, Record]:
    return (OpCode.CHECK, CheckVersionRequest(path=path, version=version))


def delete_op(path: str, version: int = -1) -> tuple[int, Record]:
    return (OpCode.DELETE, DeleteRequest(path=path, version=version))


def set_data_op(path: str, data: bytes | None, version: int = -1) -> tuple[int, Record]:
    return (OpCode.SET_DATA, SetDataRequest(path=path, data=data, version=version))
