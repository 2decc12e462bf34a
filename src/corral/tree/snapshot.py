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
  Both handle the per-node part with struct directly (a million znodes take seconds
  through Reader/Writer) and encode/decode each distinct ACL once; the bytes are the
  same jute, checked as strictly (every length against what remains).
* decode_snapshot(encode_snapshot(t)) reproduces t exactly (Stats, data, ACLs,
  sessions, counters, quota registrations); bad or inconsistent bytes raise DecodeError.
* The watch table is replica-local and never part of a snapshot.
"""

from __future__ import annotations

import struct

from corral.protocol.errors import DecodeError
from corral.protocol.jute import Reader, Writer
from corral.protocol.records import ACL
from corral.tree.tree import DataTree, SessionInfo
from corral.tree.znode import Znode

SNAPSHOT_FORMAT = 1


_INT = struct.Struct(">i")
_NULL = _INT.pack(-1)
# czxid, mzxid, pzxid, ctime_ms, mtime_ms, version, cversion, aversion, owner, peak
_NODE_TAIL = struct.Struct(">qqqqqiiiqi")


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
    # Per node: the same jute as Writer would produce, built with struct directly (a
    # million znodes). Most nodes share a handful of ACLs: each is encoded once.
    parts = [w.getvalue()]
    append = parts.append
    pack_int, pack_tail = _INT.pack, _NODE_TAIL.pack
    acl_bytes: dict[tuple[ACL, ...], bytes] = {}
    for path, znode in tree.walk():
        raw_path = path.encode("utf-8", errors="surrogatepass")
        append(pack_int(len(raw_path)))
        append(raw_path)
        data = znode.data
        if data is None:
            append(_NULL)
        else:
            append(pack_int(len(data)))
            append(data)
        acl = znode.acl
        encoded = acl_bytes.get(acl)
        if encoded is None:
            acl_writer = Writer()
            acl_writer.int32(len(acl))
            for entry in acl:
                entry.encode(acl_writer)
            encoded = acl_bytes[acl] = acl_writer.getvalue()
        append(encoded)
        append(
            pack_tail(
                znode.czxid,
                znode.mzxid,
                znode.pzxid,
                znode.ctime_ms,
                znode.mtime_ms,
                znode.version,
                znode.cversion,
                znode.aversion,
                znode.ephemeral_owner,
                znode.children_peak,
            )
        )
    return b"".join(parts)


def _read_nodes(data: bytes, offset: int, count: int) -> tuple[list[tuple[str, Znode]], int]:
    """`count` nodes from `offset`: the layout `encode_snapshot` writes, read with struct
    directly; every length is checked against what remains. Identical ACLs (most of them)
    decode once and are shared. Returns the nodes and the offset after them."""
    size = len(data)
    unpack_int, unpack_tail = _INT.unpack_from, _NODE_TAIL.unpack_from
    tail_size = _NODE_TAIL.size
    acls: dict[bytes, tuple[ACL, ...]] = {}
    nodes: list[tuple[str, Znode]] = []
    for _ in range(count):
        if offset + 4 > size:
            raise DecodeError(f"snapshot cut short at offset {offset}")
        (length,) = unpack_int(data, offset)
        offset += 4
        if not 0 <= length <= size - offset:
            raise DecodeError(f"bad path length {length} at offset {offset - 4}")
        try:
            path = data[offset : offset + length].decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"path at offset {offset} is not UTF-8") from e
        offset += length
        if offset + 4 > size:
            raise DecodeError(f"snapshot cut short at offset {offset}")
        (length,) = unpack_int(data, offset)
        offset += 4
        value: bytes | None = None
        if length != -1:
            if not 0 <= length <= size - offset:
                raise DecodeError(f"bad data length {length} at offset {offset - 4}")
            value = data[offset : offset + length]
            offset += length
        # The ACL vector: find its end without decoding, then decode once per distinct one.
        acl_start = offset
        if offset + 4 > size:
            raise DecodeError(f"snapshot cut short at offset {offset}")
        (acl_count,) = unpack_int(data, offset)
        offset += 4
        if not 0 <= acl_count <= size - offset:
            raise DecodeError(f"bad ACL count {acl_count} at offset {offset - 4}")
        for _ in range(acl_count):
            offset += 4  # perms
            for _ in range(2):  # scheme, id
                if offset + 4 > size:
                    raise DecodeError(f"snapshot cut short at offset {offset}")
                (length,) = unpack_int(data, offset)
                offset += 4 if length < 0 else 4 + length
        if offset > size:
            raise DecodeError(f"snapshot cut short in an ACL before offset {offset}")
        key = data[acl_start:offset]
        acl = acls.get(key)
        if acl is None:
            r = Reader(key)
            acl = acls[key] = tuple(ACL.decode(r) for _ in range(r.count()))
        if offset + tail_size > size:
            raise DecodeError(f"snapshot cut short at offset {offset}")
        (czxid, mzxid, pzxid, ctime_ms, mtime_ms, version, cversion, aversion, owner, peak) = (
            unpack_tail(data, offset)
        )
        offset += tail_size
        znode = Znode(data=value, acl=acl, zxid=czxid, time_ms=ctime_ms, ephemeral_owner=owner)
        znode.mzxid, znode.pzxid, znode.mtime_ms = mzxid, pzxid, mtime_ms
        znode.version, znode.cversion, znode.aversion = version, cversion, aversion
        znode.children_peak = peak
        nodes.append((path, znode))
    return nodes, offset


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
    node_count = r.int32()
    if node_count < 0:
        raise DecodeError(f"negative node count {node_count}")
    nodes, end = _read_nodes(data, r.offset, node_count)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after the snapshot")
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
