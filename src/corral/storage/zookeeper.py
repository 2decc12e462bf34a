"""Apache ZooKeeper 3.x data directories, read: snapshots, transaction logs, replay.

Formats (ZooKeeper's FileSnap, FileTxnLog, SerializeUtils, DataTree, DataNode; jute,
big-endian). Our own reader, written from the format, not from ZooKeeper's code:

    snapshot.<zxid hex>   FileHeader (int magic "ZKSN", int version 2, long dbid)
                          int count, count x (long session id, int timeout ms)
                          ACL cache: int count, count x (long ref, vector<ACL>)
                          nodes, parent first: ustring path ("" is the root), buffer data,
                          long acl ref, StatPersisted (long czxid, mzxid, ctime, mtime;
                          int version, cversion, aversion; long ephemeralOwner, pzxid);
                          ended by the path "/"
                          long Adler-32 of every byte before it, ustring "/"
                          (3.6+ with digests: a ZxidDigest and a second seal; ignored)
                          A ".gz" suffix means gzip; ".snappy" is not supported.
    log.<zxid hex>        FileHeader ("ZKLG", 2, dbid), then records: long Adler-32,
                          buffer txn (TxnHeader: long session, int cxid, long zxid,
                          long time ms, int type; then the txn record; then, 3.6+, a
                          TxnDigest), byte 'B'. Preallocated zeros end the log (an empty
                          buffer); a partial or bad last record ends it too (ZooKeeper
                          drops it the same way).

Replay (`replay`) follows ZooKeeper's DataTree.processTxn: txns are idempotent against a
fuzzy snapshot (a create that finds its node only moves the parent's cversion/pzxid; a
delete of a missing node is ignored); a multi with an error applies nothing; createSession
and closeSession update the sessions table; closeSession deletes the session's
ephemerals. Stat counters are ZooKeeper's persisted ones (cversion counts creates).

Session passwords are not stored by ZooKeeper: it derives them from the session id
(java.util.Random seeded with id ^ 0xB3415C00, 16 bytes), so we derive the same ones and
ZooKeeper's clients can resume their sessions on corral.

This module knows nothing of corral's tree; cli/data.py converts the result.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field

from corral.protocol.errors import DecodeError
from corral.protocol.jute import Reader
from corral.protocol.records import ACL, OPEN_ACL_UNSAFE
from corral.storage.fs import FileSystem

SNAP_MAGIC = 0x5A4B534E  # "ZKSN"
LOG_MAGIC = 0x5A4B4C47  # "ZKLG"
ZK_VERSION = 2
_SNAP_NAME = re.compile(r"^snapshot\.([0-9a-fA-F]+)(\.gz|\.snappy)?$")
_LOG_NAME = re.compile(r"^log\.([0-9a-fA-F]+)$")
_SUPER_SECRET = 0xB3415C00

# ZooKeeper opcodes that appear in txns.
OP_CREATE = 1
OP_DELETE = 2
OP_SET_DATA = 5
OP_SET_ACL = 7
OP_CHECK = 13
OP_MULTI = 14
OP_CREATE2 = 15
OP_RECONFIG = 16
OP_CREATE_CONTAINER = 19
OP_DELETE_CONTAINER = 20
OP_CREATE_TTL = 21
OP_CREATE_SESSION = -10
OP_CLOSE_SESSION = -11
OP_ERROR = -1
CONTAINER_OWNER = -(2**63)
_TTL_OWNER_BASE = -(2**56)


class ZooKeeperFormatError(Exception):
    """The ZooKeeper files cannot be read; the message names the file and offset."""


@dataclass(slots=True)
class ZkNode:
    data: bytes | None
    acl: tuple[ACL, ...]
    czxid: int
    mzxid: int
    ctime_ms: int
    mtime_ms: int
    version: int
    cversion: int  # persisted: creates of children
    aversion: int
    ephemeral_owner: int
    pzxid: int
    children: set[str] = field(default_factory=set)


@dataclass(slots=True)
class ZkState:
    """ZooKeeper's database: nodes by path ("/" is the root), parent-first insertion."""

    nodes: dict[str, ZkNode]
    sessions: dict[int, int]  # session id -> timeout ms
    last_zxid: int
    snapshot_path: str | None = None
    logs_replayed: list[str] = field(default_factory=list)
    txns_replayed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ZkTxn:
    session_id: int
    cxid: int
    zxid: int
    time_ms: int
    type: int
    body: bytes  # the txn record after the header (digest included, ignored)


def session_password(session_id: int) -> bytes:
    """ZooKeeperServer.generatePasswd: java.util.Random(id ^ superSecret).nextBytes(16)."""
    mask = (1 << 48) - 1
    seed = ((session_id ^ _SUPER_SECRET) ^ 0x5DEECE66D) & mask
    out = bytearray()
    while len(out) < 16:
        seed = (seed * 0x5DEECE66D + 0xB) & mask
        value = seed >> 16  # next(32)
        for _ in range(min(4, 16 - len(out))):
            out.append(value & 0xFF)
            value >>= 8
    return bytes(out)


def list_zk_files(
    fs: FileSystem, directory: str
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(snapshots newest first, logs oldest first) as (zxid, path), in `directory`."""
    snapshots, logs = [], []
    for name in fs.listdir(directory):
        if (match := _SNAP_NAME.match(name)) is not None:
            snapshots.append((int(match.group(1), 16), f"{directory}/{name}"))
        elif (match := _LOG_NAME.match(name)) is not None:
            logs.append((int(match.group(1), 16), f"{directory}/{name}"))
    return sorted(snapshots, reverse=True), sorted(logs)


def _acl_vector(r: Reader) -> tuple[ACL, ...]:
    return tuple(ACL.decode(r) for _ in range(r.count()))


def read_zk_snapshot(fs: FileSystem, path: str) -> ZkState:
    raw = fs.read(path)
    if path.endswith(".snappy"):
        raise ZooKeeperFormatError(f"{path}: snappy-compressed snapshots are not supported")
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ZooKeeperFormatError(f"{path}: bad gzip data: {e}") from e
    r = Reader(raw)
    try:
        magic, version, _dbid = r.int32(), r.int32(), r.int64()
        if magic != SNAP_MAGIC or version != ZK_VERSION:
            raise ZooKeeperFormatError(f"{path} offset 0: not a ZooKeeper v2 snapshot")
        sessions = {}
        for _ in range(r.count()):
            session_id = r.int64()
            sessions[session_id] = r.int32()
        acl_cache: dict[int, tuple[ACL, ...]] = {}
        for _ in range(r.count()):
            ref = r.int64()
            acl_cache[ref] = _acl_vector(r)
        acl_cache.setdefault(-1, OPEN_ACL_UNSAFE)  # ZooKeeper's OPEN_UNSAFE_ACL_ID
        nodes: dict[str, ZkNode] = {}
        while True:
            offset = r.offset
            node_path = r.ustring()
            if node_path == "/":
                break
            if node_path is None:
                raise ZooKeeperFormatError(f"{path} offset {offset}: null path")
            data = r.buffer()
            acl_ref = r.int64()
            czxid, mzxid, ctime, mtime = r.int64(), r.int64(), r.int64(), r.int64()
            version, cversion, aversion = r.int32(), r.int32(), r.int32()
            owner, pzxid = r.int64(), r.int64()
            if acl_ref not in acl_cache:
                raise ZooKeeperFormatError(f"{path} offset {offset}: unknown ACL ref {acl_ref}")
            key = node_path or "/"
            if key != "/":
                parent = nodes.get(key[: key.rfind("/")] or "/")
                if parent is None:
                    raise ZooKeeperFormatError(f"{path} offset {offset}: {key} before its parent")
                parent.children.add(key[key.rfind("/") + 1 :])
            nodes[key] = ZkNode(
                data=data,
                acl=acl_cache[acl_ref],
                czxid=czxid,
                mzxid=mzxid,
                ctime_ms=ctime,
                mtime_ms=mtime,
                version=version,
                cversion=cversion,
                aversion=aversion,
                ephemeral_owner=owner,
                pzxid=pzxid,
            )
        sealed_at = r.offset
        checksum = r.int64() & 0xFFFF_FFFF_FFFF_FFFF
        if checksum != zlib.adler32(raw[:sealed_at]) or r.ustring() != "/":
            raise ZooKeeperFormatError(f"{path} offset {sealed_at}: Adler-32 seal mismatch")
    except DecodeError as e:
        raise ZooKeeperFormatError(f"{path}: truncated or corrupt: {e}") from e
    if "/" not in nodes:
        raise ZooKeeperFormatError(f"{path}: no root node")
    zxid = int(_SNAP_NAME.match(path.rpartition("/")[2]).group(1), 16)  # type: ignore[union-attr]
    return ZkState(nodes=nodes, sessions=sessions, last_zxid=zxid, snapshot_path=path)


def read_zk_log(fs: FileSystem, path: str) -> tuple[list[ZkTxn], str]:
    """Txns of one log file, and how it ended ("" for a clean end, else why)."""
    raw = fs.read(path)
    r = Reader(raw)
    txns: list[ZkTxn] = []
    try:
        magic, version, _dbid = r.int32(), r.int32(), r.int64()
    except DecodeError as e:
        raise ZooKeeperFormatError(f"{path}: no file header") from e
    if magic != LOG_MAGIC or version != ZK_VERSION:
        raise ZooKeeperFormatError(f"{path} offset 0: not a ZooKeeper v2 transaction log")
    while True:
        offset = r.offset
        try:
            checksum = r.int64() & 0xFFFF_FFFF_FFFF_FFFF
            body = r.buffer()
            if not body:
                return txns, ""  # preallocated zeros: the end
            if r.raw(1) != b"B":
                return txns, f"partial record at offset {offset}"
        except DecodeError:
            return txns, "" if raw[offset:].count(0) == len(raw) - offset else (
                f"partial record at offset {offset}"
            )
        if checksum != zlib.adler32(body):
            return txns, f"Adler-32 mismatch at offset {offset}"
        h = Reader(body)
        try:
            txns.append(
                ZkTxn(
                    session_id=h.int64(),
                    cxid=h.int32(),
                    zxid=h.int64(),
                    time_ms=h.int64(),
                    type=h.int32(),
                    body=body[h.offset :],
                )
            )
        except DecodeError as e:
            raise ZooKeeperFormatError(f"{path} offset {offset}: bad txn header: {e}") from e


# ---------------------------------------------------------------------- replay


def _parent(path: str) -> str:
    return path[: path.rfind("/")] or "/"


def _create(
    state: ZkState,
    txn: ZkTxn,
    path: str,
    data: bytes | None,
    acl: tuple[ACL, ...],
    owner: int,
    parent_cversion: int,
    fix_parent_on_exists: bool,
) -> int:
    parent = state.nodes.get(_parent(path))
    if parent is None:
        return -101  # NONODE
    existing = state.nodes.get(path)
    if existing is not None:
        # Already in the (fuzzy) snapshot: ZooKeeper gives it the txn's ACL and, for a
        # plain create (type 1) only, moves the parent's counters.
        existing.acl = acl
        if fix_parent_on_exists:
            target = parent.cversion + 1 if parent_cversion == -1 else parent_cversion
            if target > parent.cversion:
                parent.cversion, parent.pzxid = target, txn.zxid
        return -110  # NODEEXISTS
    target = parent.cversion + 1 if parent_cversion == -1 else parent_cversion
    if target > parent.cversion:
        parent.cversion, parent.pzxid = target, txn.zxid
    parent.children.add(path[path.rfind("/") + 1 :])
    state.nodes[path] = ZkNode(
        data=data,
        acl=acl,
        czxid=txn.zxid,
        mzxid=txn.zxid,
        ctime_ms=txn.time_ms,
        mtime_ms=txn.time_ms,
        version=0,
        cversion=0,
        aversion=0,
        ephemeral_owner=owner,
        pzxid=txn.zxid,
    )
    return 0


def _delete(state: ZkState, zxid: int, path: str) -> int:
    # As ZooKeeper: the parent's pzxid moves even when the child is already gone.
    parent = state.nodes.get(_parent(path))
    if parent is None:
        return -101
    parent.children.discard(path[path.rfind("/") + 1 :])
    parent.pzxid = max(parent.pzxid, zxid)
    if state.nodes.pop(path, None) is None:
        return -101
    return 0


def _apply_one(state: ZkState, txn: ZkTxn, op_type: int, r: Reader) -> int:
    """One txn (or one op of a multi) on the tree; ZooKeeper's error code or 0."""
    if op_type in (OP_CREATE, OP_CREATE2):
        path, data, acl, ephemeral = r.string(), r.buffer(), _acl_vector(r), r.boolean()
        parent_cversion = r.int32() if r.remaining >= 4 else -1  # CreateTxnV0 has none
        owner = txn.session_id if ephemeral else 0
        return _create(state, txn, path, data, acl, owner, parent_cversion, op_type == OP_CREATE)
    if op_type == OP_CREATE_TTL:
        path, data, acl = r.string(), r.buffer(), _acl_vector(r)
        parent_cversion, ttl_ms = r.int32(), r.int64()
        owner = _TTL_OWNER_BASE | ttl_ms
        return _create(state, txn, path, data, acl, owner, parent_cversion, False)
    if op_type == OP_CREATE_CONTAINER:
        path, data, acl, parent_cversion = r.string(), r.buffer(), _acl_vector(r), r.int32()
        return _create(state, txn, path, data, acl, CONTAINER_OWNER, parent_cversion, False)
    if op_type in (OP_DELETE, OP_DELETE_CONTAINER):
        return _delete(state, txn.zxid, r.string())
    if op_type in (OP_SET_DATA, OP_RECONFIG):
        path, data, version = r.string(), r.buffer(), r.int32()
        node = state.nodes.get(path)
        if node is None:
            return -101
        node.data, node.mtime_ms, node.mzxid, node.version = data, txn.time_ms, txn.zxid, version
        return 0
    if op_type == OP_SET_ACL:
        path, acl, version = r.string(), _acl_vector(r), r.int32()
        node = state.nodes.get(path)
        if node is None:
            return -101
        node.acl, node.aversion = acl, version
        return 0
    if op_type == OP_CHECK:
        return 0
    if op_type == OP_ERROR:
        return r.int32()
    raise ZooKeeperFormatError(f"txn {txn.zxid:#x}: unknown op type {op_type}")


def apply_txn(state: ZkState, txn: ZkTxn) -> None:
    """ZooKeeper's processTxn (plus the sessions table), for replay."""
    r = Reader(txn.body)
    if txn.type == OP_CREATE_SESSION:
        state.sessions[txn.session_id] = r.int32()
    elif txn.type == OP_CLOSE_SESSION:
        state.sessions.pop(txn.session_id, None)
        listed = r.string_vector() if r.remaining >= 4 else ()
        owned = [p for p, n in state.nodes.items() if n.ephemeral_owner == txn.session_id]
        for path in sorted(set(listed) | set(owned), key=lambda p: -p.count("/")):
            _delete(state, txn.zxid, path)
    elif txn.type == OP_MULTI:
        ops = []
        for _ in range(r.count()):
            op_type = r.int32()
            ops.append((op_type, r.buffer() or b""))
        if not any(op_type == OP_ERROR for op_type, _ in ops):
            for op_type, body in ops:
                _apply_one(state, txn, op_type, Reader(body))
    else:
        _apply_one(state, txn, txn.type, r)
    state.last_zxid = max(state.last_zxid, txn.zxid)
    state.txns_replayed += 1


def _version_dir(fs: FileSystem, directory: str) -> str:
    return f"{directory}/version-2" if fs.listdir(f"{directory}/version-2") else directory


def load_zk_data_dir(fs: FileSystem, directory: str, log_directory: str | None = None) -> ZkState:
    """The newest readable snapshot of `directory` (ZooKeeper's dataDir, or its version-2)
    plus every txn logged after it (in `log_directory`: dataLogDir, if not dataDir)."""
    directory = _version_dir(fs, directory)
    snapshots, logs = list_zk_files(fs, directory)
    if log_directory is not None:
        logs = list_zk_files(fs, _version_dir(fs, log_directory))[1]
    if not snapshots and not logs:
        raise ZooKeeperFormatError(f"{directory}: no snapshot.* or log.* files")
    state: ZkState | None = None
    problems = []
    for _, path in snapshots:
        try:
            state = read_zk_snapshot(fs, path)
            break
        except ZooKeeperFormatError as e:
            problems.append(str(e))
    if state is None:
        if snapshots:
            raise ZooKeeperFormatError("no readable snapshot: " + "; ".join(problems))
        raise ZooKeeperFormatError(f"{directory}: logs without any snapshot")
    snapshot_zxid = state.last_zxid
    # The log holding the first txn after the snapshot, and every later one.
    start = 0
    for position, (first_zxid, _) in enumerate(logs):
        if first_zxid <= snapshot_zxid + 1:
            start = position
    for _, path in logs[start:]:
        txns, ending = read_zk_log(fs, path)
        replayed = False
        for txn in txns:
            if txn.zxid > state.last_zxid:
                apply_txn(state, txn)
                replayed = True
        if replayed:
            state.logs_replayed.append(path)
        if ending and path != logs[-1][1]:
            raise ZooKeeperFormatError(f"{path}: {ending} (not the newest log)")
    return state
