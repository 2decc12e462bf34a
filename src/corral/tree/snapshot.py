"""Snapshot encoding of the replicated state: the data tree and the sessions table.

Rules:
* Jute, versioned: int SNAPSHOT_FORMAT, long last_zxid; int session count + sessions
  (long id, int timeout_ms, buffer password, int ephemeral peak); int node count +
  nodes in parent-first order (ustring path, buffer data, vector<ACL>, long czxid,
  mzxid, pzxid, ctime_ms, mtime_ms, int version, cversion (persisted), aversion, long
  ephemeral_owner (internal encoding), int children peak). Children are not stored:
  the paths imply them. The peaks keep ZooKeeper's list orders identical on replicas
  that restored a snapshot and replicas that replayed the log.
* Encoding walks the tree iteratively (DataTree.walk); decoding never recurses either.
* decode_snapshot(encode_snapshot(t)) reproduces t exactly (Stats, data, ACLs,
  sessions, counters, quota registrations); bad or inconsistent bytes raise DecodeError.
* The watch table is replica-local and never part of a snapshot.
"""

from __future__ import annotations

from corral.protocol.errors import DecodeError
from corral.protocol.jute import Reader, Writer
from corral.protocol.records import ACL
from corral.tree.tree import DataTree, SessionInfo
from corral.tree.znode import Znode

SNAPSHOT_FORMAT = 1


def encode_snapshot(tree: DataTree) -> bytes:
    w = Writer()
    w.int32(SNAPSHOT_FORMAT)
    w.int64(tree.last_zxid)
    sessions = sorted(tree.sessions.values(), key=lambda info: info.session_id)
    w.int32(len(sessions))
    for info in sessions:
        w.int64(info.session_id)
        w.int32(info.timeout_ms)
        w.buffer(info.password)
        w.int32(tree.ephemeral_peak(info.session_id))
    # node_count includes ZooKeeper's "" alias of the root; the walk does not.
    w.int32(tree.node_count - 1)
    for path, znode in tree.walk():
        w.ustring(path)
        w.buffer(znode.data)
        w.int32(len(znode.acl))
        for entry in znode.acl:
            entry.encode(w)
        w.int64(znode.czxid)
        w.int64(znode.mzxid)
        w.int64(znode.pzxid)
        w.int64(znode.ctime_ms)
        w.int64(znode.mtime_ms)
        w.int32(znode.version)
        w.int32(znode.cversion)
        w.int32(znode.aversion)
        w.int64(znode.ephemeral_owner)
        w.int32(znode.children_peak)
    return w.getvalue()


def _read_node(r: Reader) -> tuple[str, Znode]:
    path = r.ustring()
    if path is None:
        raise DecodeError("null path in snapshot")
    data = r.buffer()
    acl = tuple(ACL.decode(r) for _ in range(r.count()))
    czxid, mzxid, pzxid = r.int64(), r.int64(), r.int64()
    ctime_ms, mtime_ms = r.int64(), r.int64()
    version, cversion, aversion = r.int32(), r.int32(), r.int32()
    owner = r.int64()
    children_peak = r.int32()
    znode = Znode(data=data, acl=acl, zxid=czxid, time_ms=ctime_ms, ephemeral_owner=owner)
    znode.mzxid, znode.pzxid, znode.mtime_ms = mzxid, pzxid, mtime_ms
    znode.version, znode.cversion, znode.aversion = version, cversion, aversion
    znode.children_peak = children_peak
    return path, znode


def decode_snapshot(
    data: bytes,
    *,
    extended_types_enabled: bool = False,
    skip_acl: bool = False,
    enforce_quota: bool = False,
) -> DataTree:
    r = Reader(data)
    snapshot_format = r.int32()
    if snapshot_format != SNAPSHOT_FORMAT:
        raise DecodeError(f"unknown snapshot format {snapshot_format}")
    last_zxid = r.int64()
    sessions = []
    peaks: dict[int, int] = {}
    for _ in range(r.count()):
        session_id, timeout_ms, password = r.int64(), r.int32(), r.buffer()
        if password is None:
            raise DecodeError(f"session {session_id:#x} has a null password")
        sessions.append(
            SessionInfo(session_id=session_id, timeout_ms=timeout_ms, password=password)
        )
        peaks[session_id] = r.int32()
    nodes = [_read_node(r) for _ in range(r.count())]
    if r.remaining != 0:
        raise DecodeError(f"{r.remaining} trailing bytes after the snapshot")
    tree = DataTree.restore(
        nodes=nodes,
        sessions=sessions,
        ephemeral_peaks=peaks,
        last_zxid=last_zxid,
        extended_types_enabled=extended_types_enabled,
        skip_acl=skip_acl,
        enforce_quota=enforce_quota,
    )
    if isinstance(tree, str):
        raise DecodeError(f"inconsistent snapshot: {tree}")
    return tree
