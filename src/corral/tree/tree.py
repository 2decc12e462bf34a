"""The ZooKeeper data tree: znodes, sessions table, and the deterministic apply of txns.

Rules (server-semantics §1-§14; ZooKeeper 3.9 where 3.8 and 3.9 differ):
* `apply(txn, zxid)` is a pure function of (tree, txn, zxid): no clock, no randomness,
  no iteration over unordered collections that could reach the result. Every replica
  applying the same log computes the same tree, replies and events.
* A client write is validated at apply time, in ZooKeeper's check order (§6.2): the
  first failing check wins and nothing changes. A failing write still consumed its zxid
  (the log did that); `last_zxid` advances for every txn.
* multi is atomic: ops run in order against the state left by the earlier ops, each
  mutation records an undo closure, and the first failure rolls them back in reverse.
  No event leaves a failed multi and sequential counters do not advance.
* The persisted cversion counts child creations only; clients see 2*cversion -
  numChildren (znode.py). Versions are int32 and wrap (3.9: +1 may produce -1).
* Reads never mutate. Watch registration is the caller's (WatchTable in watches.py):
  this module only returns events, each with the ACL that decides its delivery.
* Paths are stored only in valid form; "" answers as the root for reads.
* No recursion over the tree: subtree walks use an explicit stack.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from corral.limits import (
    ACL_LISTS_SHARED_MAX,
    CHILDREN_ORDER_CACHE_ENTRIES_MAX,
    CHILDREN_REPLY_CACHE_BYTES_MAX,
    SEQUENCE_DIGITS,
    TTL_MAX_MS,
    TTL_MIN_MS,
)
from corral.protocol.constants import (
    ANY_VERSION,
    MULTI_READ_OPS,
    MULTI_WRITE_OPS,
    CreateMode,
    ErrorCode,
    EventType,
    OpCode,
    Perm,
)
from corral.protocol.jute import Writer
from corral.protocol.paths import is_valid_path
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    CheckVersionRequest,
    Create2Response,
    CreateRequest,
    CreateResponse,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetACLRequest,
    GetACLResponse,
    GetAllChildrenNumberResponse,
    GetChildren2Response,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    Id,
    MultiRequest,
    MultiResponse,
    OpResult,
    PathRecord,
    Record,
    SetACLRequest,
    SetDataRequest,
    Stat,
    StatResponse,
    slot_constructor,
)
from corral.tree import javaorder, quota
from corral.tree.acl import check_acl, fix_acl, mask_digests
from corral.tree.txn import ClientTxn, CloseSessionTxn, CreateSessionTxn, ReapTxn, Txn
from corral.tree.znode import (
    CONTAINER_OWNER,
    NO_CHILDREN,
    Znode,
    int32_increment,
    ttl_owner,
)

ROOT_PATH = "/"
ZOOKEEPER_PATH = "/zookeeper"
QUOTA_PATH = quota.QUOTA_ROOT
CONFIG_PATH = "/zookeeper/config"
# Nobody, not even super, may delete these (§6.2 delete, §13).
PROTECTED_PATHS = frozenset({ROOT_PATH, ZOOKEEPER_PATH, QUOTA_PATH, CONFIG_PATH})

_INT32 = struct.Struct(">i")
_NULL_DATA = _INT32.pack(-1)  # a null buffer on the wire
_CREATE_OPS = frozenset({OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL})
_VALID_FLAGS = frozenset(mode.value for mode in CreateMode)
# The flags of each kind of mode, so that a create asks a set, not CreateMode properties.
_TTL_FLAGS = frozenset(mode.value for mode in CreateMode if mode.is_ttl)
_SEQUENTIAL_FLAGS = frozenset(mode.value for mode in CreateMode if mode.is_sequential)
_EPHEMERAL_FLAGS = frozenset(mode.value for mode in CreateMode if mode.is_ephemeral)
_CHILDREN_CAPACITY = 8  # ZooKeeper's DataNode makes its child set with new HashSet<>(8)


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeEvent:
    """A change that may fire watches. `acl` decides delivery (§10.5): the node's ACL for
    NODE_CREATED / NODE_DATA_CHANGED / NODE_DELETED, the parent's for
    NODE_CHILDREN_CHANGED (whose `path` is the parent's)."""

    type: EventType
    path: str
    acl: tuple[ACL, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    """What the client gets (err, body per RESPONSE_RECORDS) and the events, in order."""

    err: ErrorCode
    body: Record | None
    events: tuple[TreeEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    session_id: int
    timeout_ms: int
    password: bytes


@dataclass(frozen=True, slots=True)
class _Context:
    """Who is writing, and the zxid and time every change of this txn carries."""

    session_id: int
    identities: tuple[Id, ...]
    zxid: int
    time_ms: int


_Outcome = tuple[ErrorCode, Record | None]

# Positional constructors that skip the frozen dataclass __init__ (one object.__setattr__
# per field): a write builds a context, an event, a result and a reply per txn.
_new_context = slot_constructor(_Context)  # (session_id, identities, zxid, time_ms)
_new_event = slot_constructor(TreeEvent)  # (type, path, acl)
_new_result = slot_constructor(ApplyResult)  # (err, body, events)
_new_stat_response = slot_constructor(StatResponse)  # (stat)


class WireBody(Record):
    """A reply body already in wire form, from `DataTree.read_wire`: the hot reads build
    their bytes directly instead of a Stat and a response record per reply, and
    getChildren's list is encoded once per change of the children instead of once per
    read. Only the reply encoder sees it (`to_bytes`/`encode`); it compares by identity."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def encode(self, w: Writer) -> None:
        w.raw(self.payload)

    def to_bytes(self) -> bytes:
        return self.payload

    def __repr__(self) -> str:
        return f"WireBody({self.payload!r})"


def _parent_of(path: str) -> str:
    """ZooKeeper's parent: everything before the last '/', '' meaning the root."""
    index = path.rfind("/")
    assert index >= 0, path
    return path[:index] if index > 0 else ROOT_PATH


# Java's %010d: a negative counter keeps its sign inside the width (printf-style, as
# Python's; a constant format string is parsed faster than a nested f-string spec).
_SEQUENCE_FORMAT = f"%0{SEQUENCE_DIGITS}d"


def _sequence_suffix(counter: int) -> str:
    return _SEQUENCE_FORMAT % counter


class DataTree:
    """The replicated state machine: znodes and sessions."""

    def __init__(
        self,
        *,
        extended_types_enabled: bool = False,
        skip_acl: bool = False,
        enforce_quota: bool = False,
        super_digest: str | None = None,
    ) -> None:
        self.extended_types_enabled = extended_types_enabled
        self.skip_acl = skip_acl
        self.enforce_quota = enforce_quota
        # Unused: super arrives as Id("super", "") among the caller's identities. Kept
        # because docs/architecture.md names it in the constructor.
        self.super_digest = super_digest
        self.last_zxid = 0
        self._nodes: dict[str, Znode] = {}
        self._sessions: dict[int, SessionInfo] = {}
        self._ephemerals: dict[int, set[str]] = {}
        # Most ephemerals each session ever held at once: the table size of ZooKeeper's
        # HashSet, which decides the order of deletions on close (javaorder.py).
        self._ephemeral_peaks: dict[int, int] = {}
        self._reapable: set[str] = set()  # containers and TTL nodes
        self._quota_paths: set[str] = set()  # P for every QUOTA_ROOT + P + /zookeeper_limits
        self._data_size = 0
        # getChildren's order by parent path, for parents read since their children last
        # changed (computing it sorts and hashes every child name). Every change to a
        # `children` set drops its parent's entry; the oldest entry goes when full.
        self._children_order: dict[str, tuple[str, ...]] = {}
        # getChildren's encoded list, for some of those parents (CHILDREN_REPLY_CACHE_*);
        # dropped with the parent's order.
        self._children_wire: dict[str, bytes] = {}
        self._children_wire_bytes = 0
        # Equal ACL lists share one tuple: most znodes carry one of a few lists, and a
        # list of its own (decoded from the request) costs a znode ~250 bytes. Lists are
        # never dropped; past ACL_LISTS_SHARED_MAX distinct ones, new lists are not kept.
        self._acl_lists: dict[tuple[ACL, ...], tuple[ACL, ...]] = {}
        self._open_acl: tuple[ACL, ...] | None = None
        self._open_acl = self._shared_acl(OPEN_ACL_UNSAFE)
        self._events: list[TreeEvent] = []
        self._undo_log: list[Callable[[], None]] | None = None  # set only inside a multi
        self._init_special_nodes()
        self.sessions: Mapping[int, SessionInfo] = MappingProxyType(self._sessions)

    def set_config_data(self, data: bytes) -> None:
        """The data of /zookeeper/config: an ensemble's membership text, set by the
        replica at start and after a snapshot install, not by a txn. Data version -1 as
        in ZooKeeper; zxids and times stay 0 (ZooKeeper stamps the start-up time as
        mtime, which would differ between members)."""
        assert self._undo_log is None, "not inside a multi"
        znode = self._nodes[CONFIG_PATH]
        self._replace_data(CONFIG_PATH, znode, data)
        znode.version = -1

    def _init_special_nodes(self) -> None:
        # §1.1: all zxids and times 0, empty (not null) data; children are attached
        # without counting creations, hence the negative visible cversions.
        for path, acl in (
            (ROOT_PATH, OPEN_ACL_UNSAFE),
            (ZOOKEEPER_PATH, OPEN_ACL_UNSAFE),
            (QUOTA_PATH, OPEN_ACL_UNSAFE),
            (CONFIG_PATH, READ_ACL_UNSAFE),
        ):
            znode = Znode(data=b"", acl=self._shared_acl(acl), zxid=0, time_ms=0)
            self._nodes[path] = znode
            self._index_add(path, znode)
            if path != ROOT_PATH:
                parent = self._nodes[_parent_of(path)]
                parent.add_child(path[path.rfind("/") + 1 :])
                parent.children_peak = len(parent.children)
        self._nodes[CONFIG_PATH].aversion = -1

    # ------------------------------------------------------------------ public views

    def get(self, path: str) -> Znode | None:
        """The stored znode ("" is the root). Callers must not mutate it."""
        return self._nodes.get(ROOT_PATH if path == "" else path)

    def stat(self, path: str) -> Stat | None:
        znode = self.get(path)
        return None if znode is None else znode.stat()

    def ephemerals(self, session_id: int) -> frozenset[str]:
        return frozenset(self._ephemerals.get(session_id, ()))

    def ephemeral_peak(self, session_id: int) -> int:
        """Most ephemerals the session ever held at once (snapshots keep it)."""
        return self._ephemeral_peaks.get(session_id, 0)

    @property
    def node_count(self) -> int:
        # ZooKeeper's node map also holds "" as an alias of the root.
        return len(self._nodes) + 1

    @property
    def ephemeral_count(self) -> int:
        return sum(len(paths) for paths in self._ephemerals.values())

    @property
    def approximate_data_size(self) -> int:
        """Sum of path lengths and data lengths over ZooKeeper's node map, which also
        holds "" -> root: the root's data counts twice."""
        return self._data_size + self._nodes[ROOT_PATH].data_length

    def reap_candidates(self, now_ms: int, *, max_never_used_ms: int = 0) -> list[str]:
        """Containers and TTL nodes the reaper should delete now (§12.3), sorted."""
        return sorted(
            path
            for path in self._reapable
            if self._is_reap_candidate(self._nodes[path], now_ms, max_never_used_ms)
        )

    @staticmethod
    def _is_reap_candidate(znode: Znode, now_ms: int, max_never_used_ms: int) -> bool:
        if znode.children:
            return False
        if znode.is_container:
            if znode.cversion > 0:
                return True
            return max_never_used_ms != 0 and now_ms - znode.mtime_ms > max_never_used_ms
        ttl_ms = znode.ttl_ms
        return ttl_ms != 0 and now_ms - znode.mtime_ms > ttl_ms

    def walk(self) -> Iterator[tuple[str, Znode]]:
        """Every (path, znode), parents before children, children in name order.
        Iterative (no recursion); for snapshots. Do not apply txns while walking."""
        stack = [ROOT_PATH]
        while stack:
            path = stack.pop()
            znode = self._nodes[path]
            yield path, znode
            prefix = "/" if path == ROOT_PATH else path + "/"
            stack.extend(prefix + name for name in sorted(znode.children, reverse=True))

    @classmethod
    def restore(
        cls,
        *,
        nodes: Iterable[tuple[str, Znode]],
        sessions: Iterable[SessionInfo],
        ephemeral_peaks: Mapping[int, int],
        last_zxid: int,
        extended_types_enabled: bool = False,
        skip_acl: bool = False,
        enforce_quota: bool = False,
    ) -> DataTree | str:
        """A tree rebuilt from a snapshot's parts (parents first; `children` of the given
        znodes are ignored and rebuilt, `children_peak` kept). Returns why the parts are
        inconsistent, if so."""
        tree = cls(
            extended_types_enabled=extended_types_enabled,
            skip_acl=skip_acl,
            enforce_quota=enforce_quota,
        )
        for info in sessions:
            if info.session_id in tree._sessions:
                return f"session {info.session_id:#x} appears twice"
            tree._sessions[info.session_id] = info
        for path in list(tree._nodes):
            tree._index_remove(path, tree._nodes.pop(path))
        tree.last_zxid = last_zxid
        for path, znode in nodes:
            if path in tree._nodes:
                return f"{path!r} appears twice"
            znode.children = NO_CHILDREN
            if path != ROOT_PATH:
                if not is_valid_path(path):
                    return f"invalid path {path!r}"
                parent = tree._nodes.get(_parent_of(path))
                if parent is None:
                    return f"{path!r} comes before its parent"
                if parent.is_ephemeral:
                    return f"{path!r} is the child of an ephemeral"
                parent.add_child(path[path.rfind("/") + 1 :])
            elif tree._nodes:
                return "the root is not first"
            if znode.is_ephemeral and znode.ephemeral_owner not in tree._sessions:
                return f"{path!r} belongs to unknown session {znode.ephemeral_owner:#x}"
            if max(znode.czxid, znode.mzxid, znode.pzxid) > last_zxid:
                return f"{path!r} has a zxid beyond the snapshot's {last_zxid}"
            znode.acl = tree._shared_acl(znode.acl)
            tree._nodes[path] = znode
            tree._index_add(path, znode)
        for path in PROTECTED_PATHS:
            if path not in tree._nodes:
                return f"{path!r} is missing"
        for path, znode in tree._nodes.items():
            if znode.children_peak < len(znode.children):
                return f"{path!r} has a children peak below its children"
        for session_id, peak in ephemeral_peaks.items():
            if session_id not in tree._sessions:
                return f"ephemeral peak for unknown session {session_id:#x}"
            if peak < tree._ephemeral_peaks.get(session_id, 0):
                return f"ephemeral peak {peak} of {session_id:#x} below its ephemerals"
            tree._ephemeral_peaks[session_id] = peak
        return tree

    def check_invariants(self) -> None:
        """Recompute every index from the nodes and assert it matches. O(nodes): for
        tests and the simulator, not the request path."""
        assert self._undo_log is None
        data_size = 0
        ephemerals: dict[int, set[str]] = {}
        reapable: set[str] = set()
        quota_paths: set[str] = set()
        child_count = 0
        for path, znode in self._nodes.items():
            assert path == ROOT_PATH or is_valid_path(path), path
            data_size += len(path) + znode.data_length
            if znode.is_ephemeral:
                assert not znode.children, path
                assert znode.ephemeral_owner in self._sessions, path
                ephemerals.setdefault(znode.ephemeral_owner, set()).add(path)
            elif znode.is_container or znode.ttl_ms:
                reapable.add(path)
            quota_path = quota.quota_path_of(path, quota.LIMITS_NODE)
            if quota_path is not None:
                quota_paths.add(quota_path)
            if path != ROOT_PATH:
                parent = self._nodes[_parent_of(path)]
                assert path[path.rfind("/") + 1 :] in parent.children, path
            child_count += len(znode.children)
            assert znode.children or znode.children is NO_CHILDREN, path  # no empty set kept
            assert znode.children_peak >= len(znode.children), path
            assert znode.mzxid <= self.last_zxid, path
            assert znode.czxid <= znode.mzxid, path
            assert znode.czxid <= znode.pzxid <= self.last_zxid, path
        assert child_count == len(self._nodes) - 1
        assert data_size == self._data_size, (data_size, self._data_size)
        assert ephemerals == self._ephemerals
        for session_id, owned in ephemerals.items():
            assert self._ephemeral_peaks[session_id] >= len(owned), session_id
        assert set(self._ephemeral_peaks) <= set(self._sessions)
        assert reapable == self._reapable
        assert quota_paths == self._quota_paths
        for path in PROTECTED_PATHS:
            assert path in self._nodes, path
        assert len(self._children_order) <= CHILDREN_ORDER_CACHE_ENTRIES_MAX
        for path, order in self._children_order.items():
            assert order == self._compute_children_order(path, self._nodes[path]), path
        assert self._children_wire.keys() <= self._children_order.keys()
        for path, wire in self._children_wire.items():
            assert wire == GetChildrenResponse(children=self._children_order[path]).to_bytes()
        assert self._children_wire_bytes == sum(map(len, self._children_wire.values()))
        assert self._children_wire_bytes <= CHILDREN_REPLY_CACHE_BYTES_MAX

    # ------------------------------------------------------------------ indexes

    def _index_add(self, path: str, znode: Znode) -> None:
        self._data_size += len(path) + znode.data_length
        if znode.is_ephemeral:
            owned = self._ephemerals.setdefault(znode.ephemeral_owner, set())
            owned.add(path)
            peak = self._ephemeral_peaks.get(znode.ephemeral_owner, 0)
            self._ephemeral_peaks[znode.ephemeral_owner] = max(peak, len(owned))
        elif znode.is_container or znode.ttl_ms:
            self._reapable.add(path)
        quota_path = quota.quota_path_of(path, quota.LIMITS_NODE)
        if quota_path is not None:
            self._quota_paths.add(quota_path)

    def children_in_order(self, path: str, znode: Znode) -> tuple[str, ...]:
        """Child names in the order ZooKeeper's getChildren lists them (its HashSet,
        created with capacity 8); insertion order is approximated by czxid, then name."""
        assert self._nodes.get(path) is znode, path
        cached = self._children_order.get(path)
        if cached is not None:
            return cached
        order = self._compute_children_order(path, znode)
        if len(self._children_order) >= CHILDREN_ORDER_CACHE_ENTRIES_MAX:
            self._children_changed(next(iter(self._children_order)))
        self._children_order[path] = order
        return order

    def _children_changed(self, path: str) -> None:
        """Forget what is cached about the children of `path` (they changed)."""
        self._children_order.pop(path, None)
        wire = self._children_wire.pop(path, None)
        if wire is not None:
            self._children_wire_bytes -= len(wire)

    def _children_reply(self, path: str, znode: Znode) -> bytes:
        """getChildren's body on the wire (cached while the children stay the same)."""
        wire = self._children_wire.get(path)
        if wire is not None:
            return wire
        wire = GetChildrenResponse(children=self.children_in_order(path, znode)).to_bytes()
        size = len(wire)
        if self._children_wire_bytes + size <= CHILDREN_REPLY_CACHE_BYTES_MAX:
            self._children_wire[path] = wire
            self._children_wire_bytes += size
        return wire

    def _compute_children_order(self, path: str, znode: Znode) -> tuple[str, ...]:
        prefix = "/" if path == ROOT_PATH else path + "/"
        members = [(name, self._nodes[prefix + name].czxid) for name in sorted(znode.children)]
        return tuple(
            javaorder.hash_set_order(
                members, peak_size=znode.children_peak, initial_capacity=_CHILDREN_CAPACITY
            )
        )

    def _ephemeral_order(self, session_id: int) -> list[str]:
        """The session's ephemerals in the order ZooKeeper iterates its copy of them."""
        owned = self._ephemerals.get(session_id, ())
        members = [(path, self._nodes[path].czxid) for path in sorted(owned)]
        peak = self._ephemeral_peaks.get(session_id, 0)
        return javaorder.cloned_hash_set_order(members, peak_size=peak)

    def _index_remove(self, path: str, znode: Znode) -> None:
        self._data_size -= len(path) + znode.data_length
        if znode.is_ephemeral:
            owned = self._ephemerals[znode.ephemeral_owner]
            owned.remove(path)
            if not owned:
                del self._ephemerals[znode.ephemeral_owner]
        self._reapable.discard(path)
        quota_path = quota.quota_path_of(path, quota.LIMITS_NODE)
        if quota_path is not None:
            self._quota_paths.discard(quota_path)

    def _shared_acl(self, acl: tuple[ACL, ...]) -> tuple[ACL, ...]:
        if acl is OPEN_ACL_UNSAFE and self._open_acl is not None:
            return self._open_acl  # the common list: no hash of its records per create
        shared = self._acl_lists.get(acl)
        if shared is not None:
            return shared
        if len(self._acl_lists) < ACL_LISTS_SHARED_MAX:
            self._acl_lists[acl] = acl
        return acl

    # ------------------------------------------------------------------ primitive mutations
    # Every change to the tree goes through these, so that a multi can undo it.

    def _attach(self, path: str, znode: Znode, ctx: _Context) -> None:
        parent_path = _parent_of(path)
        parent = self._nodes[parent_path]
        name = path[path.rfind("/") + 1 :]
        assert path not in self._nodes, path
        assert name not in parent.children, path
        old_cversion, old_pzxid = parent.cversion, parent.pzxid
        old_peak = self._ephemeral_peaks.get(znode.ephemeral_owner)
        old_children_peak = parent.children_peak
        self._nodes[path] = znode
        self._index_add(path, znode)
        parent.add_child(name)
        self._children_changed(parent_path)
        parent.children_peak = max(old_children_peak, len(parent.children))
        parent.cversion = int32_increment(parent.cversion)
        parent.pzxid = ctx.zxid

        if self._undo_log is not None:  # inside a multi: record how to undo it

            def undo() -> None:
                self._detach_raw(path)
                parent.cversion, parent.pzxid = old_cversion, old_pzxid
                parent.children_peak = old_children_peak
                if znode.is_ephemeral:
                    if old_peak is None:
                        del self._ephemeral_peaks[znode.ephemeral_owner]
                    else:
                        self._ephemeral_peaks[znode.ephemeral_owner] = old_peak

            self._undo_log.append(undo)

    def _detach_raw(self, path: str) -> Znode:
        znode = self._nodes.pop(path)
        self._index_remove(path, znode)
        parent_path = _parent_of(path)
        self._nodes[parent_path].remove_child(path[path.rfind("/") + 1 :])
        self._children_changed(parent_path)
        self._children_changed(path)
        return znode

    def _detach(self, path: str, ctx: _Context) -> Znode:
        parent = self._nodes[_parent_of(path)]
        old_pzxid = parent.pzxid
        znode = self._detach_raw(path)
        parent.pzxid = ctx.zxid

        if self._undo_log is not None:  # inside a multi: record how to undo it

            def undo() -> None:
                self._nodes[path] = znode
                self._index_add(path, znode)
                parent.add_child(path[path.rfind("/") + 1 :])
                self._children_changed(_parent_of(path))
                parent.pzxid = old_pzxid

            self._undo_log.append(undo)
        return znode

    def _replace_data(self, path: str, znode: Znode, data: bytes | None) -> None:
        """Change data only (quota stats are rewritten in place, §14.2)."""
        old_data = znode.data
        self._data_size += (0 if data is None else len(data)) - znode.data_length
        znode.data = data

        if self._undo_log is not None:  # inside a multi: record how to undo it

            def undo() -> None:
                self._data_size += (0 if old_data is None else len(old_data)) - znode.data_length
                znode.data = old_data

            self._undo_log.append(undo)

    def _write_data(self, path: str, znode: Znode, data: bytes | None, ctx: _Context) -> None:
        old = (znode.mzxid, znode.mtime_ms, znode.version)
        self._replace_data(path, znode, data)
        znode.mzxid, znode.mtime_ms = ctx.zxid, ctx.time_ms
        znode.version = int32_increment(znode.version)

        if self._undo_log is not None:  # inside a multi: record how to undo it

            def undo() -> None:
                znode.mzxid, znode.mtime_ms, znode.version = old

            self._undo_log.append(undo)

    def _write_acl(self, znode: Znode, acl: tuple[ACL, ...]) -> None:
        old = (znode.acl, znode.aversion)
        znode.acl = acl
        znode.aversion = int32_increment(znode.aversion)

        if self._undo_log is not None:  # inside a multi: record how to undo it

            def undo() -> None:
                znode.acl, znode.aversion = old

            self._undo_log.append(undo)

    # ------------------------------------------------------------------ composite changes

    def _create_node(self, path: str, znode: Znode, ctx: _Context) -> None:
        self._attach(path, znode, ctx)
        parent_path = _parent_of(path)
        parent = self._nodes[parent_path]
        # Quota bookkeeping (§14.2): a stats node is filled in place when created.
        stats_of = quota.quota_path_of(path, quota.STATS_NODE)
        if stats_of is not None:
            self._recompute_quota(stats_of)
        if self._quota_paths:  # (the guards before the quota calls spare a call per write)
            self._quota_update(path, bytes_delta=znode.data_length, count_delta=1)
        self._events.append(_new_event(EventType.NODE_CREATED, path, znode.acl))
        self._events.append(_new_event(EventType.NODE_CHILDREN_CHANGED, parent_path, parent.acl))

    def _delete_node(self, path: str, ctx: _Context) -> None:
        znode = self._detach(path, ctx)
        parent_path = _parent_of(path)
        parent = self._nodes[parent_path]
        if self._quota_paths:
            self._quota_update(path, bytes_delta=-znode.data_length, count_delta=-1)
        self._events.append(_new_event(EventType.NODE_DELETED, path, znode.acl))
        self._events.append(_new_event(EventType.NODE_CHILDREN_CHANGED, parent_path, parent.acl))

    # ------------------------------------------------------------------ quotas

    def _quota_path_for(self, path: str) -> str | None:
        """The deepest quota root that is `path` or an ancestor of it (never `/`)."""
        if not self._quota_paths:
            return None
        for candidate in quota.ancestors_or_self(path):
            if candidate in self._quota_paths:
                return candidate
        return None

    def _quota_update(self, path: str, *, bytes_delta: int, count_delta: int) -> None:
        quota_path = self._quota_path_for(path)
        if quota_path is None:
            return
        stats_path = quota.stats_path(quota_path)
        stats_node = self._nodes.get(stats_path)
        if stats_node is None:
            return
        track = quota.parse_stats(stats_node.data)
        updated = track.with_usage(
            count=track.count + count_delta, bytes_=track.bytes + bytes_delta
        )
        self._replace_data(stats_path, stats_node, quota.format_stats(updated))

    def _recompute_quota(self, quota_path: str) -> None:
        stats_path = quota.stats_path(quota_path)
        stats_node = self._nodes[stats_path]
        count = 0
        size = 0
        root = self._nodes.get(quota_path)
        stack = [(quota_path, root)] if root is not None else []
        while stack:
            path, znode = stack.pop()
            assert znode is not None
            count += 1
            size += znode.data_length
            for name in znode.children:
                child_path = path + "/" + name if path != ROOT_PATH else "/" + name
                stack.append((child_path, self._nodes[child_path]))
        track = quota.StatsTrack().with_usage(count=count, bytes_=size)
        self._replace_data(stats_path, stats_node, quota.format_stats(track))

    def _quota_exceeded(self, path: str, *, bytes_delta: int, count_delta: int) -> bool:
        """Whether a hard limit forbids the change (only with enforce_quota, §14.2)."""
        if not self.enforce_quota:
            return False
        quota_path = self._quota_path_for(path)
        if quota_path is None:
            return False
        limits_node = self._nodes.get(quota.limits_path(quota_path))
        stats_node = self._nodes.get(quota.stats_path(quota_path))
        if limits_node is None or stats_node is None:
            return False
        limits = quota.parse_stats(limits_node.data)
        usage = quota.parse_stats(stats_node.data)
        # Soft limits (and hard limits when not enforcing) would only log a warning.
        count_hard_limit = limits.count_hard_limit
        if count_delta != 0 and -1 < count_hard_limit < usage.count + count_delta:
            return True
        byte_hard_limit = limits.byte_hard_limit
        return bytes_delta != 0 and -1 < byte_hard_limit < usage.bytes + bytes_delta

    # ------------------------------------------------------------------ apply

    def apply(self, txn: Txn, zxid: int) -> ApplyResult:
        """Apply one committed txn. Deterministic; the only entry point for changes."""
        assert zxid > self.last_zxid, (zxid, self.last_zxid)
        assert self._undo_log is None
        assert not self._events
        self.last_zxid = zxid
        try:
            match txn:
                case ClientTxn():
                    err, body = self._apply_client(txn, zxid)
                case CreateSessionTxn():
                    self._sessions[txn.session_id] = SessionInfo(
                        session_id=txn.session_id,
                        timeout_ms=txn.timeout_ms,
                        password=txn.password,
                    )
                    err, body = ErrorCode.OK, None
                case CloseSessionTxn():
                    ctx = _new_context(txn.session_id, (), zxid, txn.time_ms)
                    err, body = self._close_session(ctx)
                case ReapTxn():
                    err, body = self._reap(txn, zxid)
            events = tuple(self._events) if err == ErrorCode.OK else ()
        finally:
            self._events.clear()
        return _new_result(err, body, events)

    def _apply_client(self, txn: ClientTxn, zxid: int) -> _Outcome:
        if txn.session_id not in self._sessions:
            return ErrorCode.SESSION_EXPIRED, None
        ctx = _new_context(txn.session_id, txn.identities, zxid, txn.time_ms)
        if txn.opcode == OpCode.CLOSE_SESSION:
            return self._close_session(ctx)
        if txn.opcode == OpCode.RECONFIG:
            return ErrorCode.RECONFIG_DISABLED, None
        assert txn.request is not None
        if txn.opcode == OpCode.MULTI:
            assert isinstance(txn.request, MultiRequest)
            return self._multi(txn.request, ctx)
        return self._write(txn.opcode, txn.request, ctx)

    def _write(self, opcode: int, request: Record, ctx: _Context) -> _Outcome:
        """One write op; on error nothing has changed."""
        if opcode in _CREATE_OPS:
            assert isinstance(request, CreateRequest | CreateTTLRequest)
            return self._create(opcode, request, ctx)
        if opcode == OpCode.DELETE:
            assert isinstance(request, DeleteRequest)
            return self._delete(request, ctx)
        if opcode == OpCode.SET_DATA:
            assert isinstance(request, SetDataRequest)
            return self._set_data(request, ctx)
        if opcode == OpCode.SET_ACL:
            assert isinstance(request, SetACLRequest)
            return self._set_acl(request, ctx)
        if opcode == OpCode.CHECK:
            assert isinstance(request, CheckVersionRequest)
            return self._check(request, ctx)
        raise AssertionError(f"not a write op: {opcode}")

    def _allowed(self, acl: tuple[ACL, ...], perm: Perm, ctx: _Context) -> bool:
        return check_acl(acl, perm, ctx.identities, skip_acl=self.skip_acl)

    def _create(
        self, opcode: int, request: CreateRequest | CreateTTLRequest, ctx: _Context
    ) -> _Outcome:
        ttl_ms = request.ttl_ms if isinstance(request, CreateTTLRequest) else -1
        if request.flags not in _VALID_FLAGS:
            return ErrorCode.BAD_ARGUMENTS, None
        flags = request.flags
        is_ttl = flags in _TTL_FLAGS
        if is_ttl and not self.extended_types_enabled:
            return ErrorCode.UNIMPLEMENTED, None
        if is_ttl:
            if not TTL_MIN_MS <= ttl_ms <= TTL_MAX_MS:
                return ErrorCode.BAD_ARGUMENTS, None
        elif ttl_ms >= 0 or opcode == OpCode.CREATE_TTL:
            # createTTL with a non-TTL mode and a negative ttl kills Java's server (§24);
            # it is simply a bad argument.
            return ErrorCode.BAD_ARGUMENTS, None
        path = request.path
        last_slash = path.rfind("/")
        if last_slash == -1 or "\0" in path:
            return ErrorCode.BAD_ARGUMENTS, None
        acl = fix_acl(request.acl, ctx.identities)
        if acl is None:
            return ErrorCode.INVALID_ACL, None
        parent_path = path[:last_slash] if last_slash > 0 else ROOT_PATH
        parent = self._nodes.get(parent_path)
        if parent is None:
            return ErrorCode.NO_NODE, None
        if not self._allowed(parent.acl, Perm.CREATE, ctx):
            return ErrorCode.NO_AUTH, None
        if flags in _SEQUENTIAL_FLAGS:
            path += _sequence_suffix(parent.cversion)
        if not is_valid_path(path):
            return ErrorCode.BAD_ARGUMENTS, None
        if path in self._nodes:
            return ErrorCode.NODE_EXISTS, None
        if parent.is_ephemeral:
            return ErrorCode.NO_CHILDREN_FOR_EPHEMERALS, None
        data_length = 0 if request.data is None else len(request.data)
        if self.enforce_quota and self._quota_exceeded(
            path, bytes_delta=data_length, count_delta=1
        ):
            return ErrorCode.QUOTA_EXCEEDED, None
        # The opcode, not the flags, makes containers and TTL nodes; create/create2 with
        # flags 4 make a plain persistent node (§6.2).
        if opcode == OpCode.CREATE_CONTAINER:
            owner = CONTAINER_OWNER
        elif opcode == OpCode.CREATE_TTL:
            owner = ttl_owner(ttl_ms)
        elif flags in _EPHEMERAL_FLAGS:
            owner = ctx.session_id
        else:
            owner = 0
        znode = Znode(
            data=request.data,
            acl=self._shared_acl(acl),
            zxid=ctx.zxid,
            time_ms=ctx.time_ms,
            ephemeral_owner=owner,
        )
        self._create_node(path, znode, ctx)
        if opcode == OpCode.CREATE:
            return ErrorCode.OK, CreateResponse(path=path)
        return ErrorCode.OK, Create2Response(path=path, stat=znode.stat())

    def _delete(self, request: DeleteRequest, ctx: _Context) -> _Outcome:
        path = request.path
        last_slash = path.rfind("/")
        if last_slash == -1 or "\0" in path or path in PROTECTED_PATHS:
            return ErrorCode.BAD_ARGUMENTS, None
        parent = self._nodes.get(path[:last_slash] if last_slash > 0 else ROOT_PATH)
        if parent is None:
            return ErrorCode.NO_NODE, None
        if not self._allowed(parent.acl, Perm.DELETE, ctx):
            return ErrorCode.NO_AUTH, None
        znode = self._nodes.get(path)
        if znode is None:
            return ErrorCode.NO_NODE, None
        if request.version != ANY_VERSION and request.version != znode.version:
            return ErrorCode.BAD_VERSION, None
        if znode.children:
            return ErrorCode.NOT_EMPTY, None
        self._delete_node(path, ctx)
        return ErrorCode.OK, None

    def _set_data(self, request: SetDataRequest, ctx: _Context) -> _Outcome:
        path = request.path
        znode = self._nodes.get(path)
        if znode is None:
            # Only now is the path checked: one found in the tree is valid (module rules).
            return (ErrorCode.NO_NODE if is_valid_path(path) else ErrorCode.BAD_ARGUMENTS), None
        if not self._allowed(znode.acl, Perm.WRITE, ctx):
            return ErrorCode.NO_AUTH, None
        new_length = 0 if request.data is None else len(request.data)
        if self.enforce_quota and self._quota_exceeded(
            path, bytes_delta=new_length - znode.data_length, count_delta=0
        ):
            return ErrorCode.QUOTA_EXCEEDED, None
        if request.version != ANY_VERSION and request.version != znode.version:
            return ErrorCode.BAD_VERSION, None
        old_length = znode.data_length
        self._write_data(path, znode, request.data, ctx)
        if self._quota_paths:
            self._quota_update(path, bytes_delta=new_length - old_length, count_delta=0)
        self._events.append(_new_event(EventType.NODE_DATA_CHANGED, path, znode.acl))
        return ErrorCode.OK, _new_stat_response(znode.stat())

    def _set_acl(self, request: SetACLRequest, ctx: _Context) -> _Outcome:
        path = request.path
        if not is_valid_path(path):
            return ErrorCode.BAD_ARGUMENTS, None
        acl = fix_acl(request.acl, ctx.identities)
        if acl is None:
            return ErrorCode.INVALID_ACL, None
        znode = self._nodes.get(path)
        if znode is None:
            return ErrorCode.NO_NODE, None
        if not self._allowed(znode.acl, Perm.ADMIN, ctx):
            return ErrorCode.NO_AUTH, None
        if request.version != ANY_VERSION and request.version != znode.aversion:
            return ErrorCode.BAD_VERSION, None
        self._write_acl(znode, self._shared_acl(acl))
        return ErrorCode.OK, StatResponse(stat=znode.stat())

    def _check(self, request: CheckVersionRequest, ctx: _Context) -> _Outcome:
        path = request.path
        znode = self._nodes.get(path)
        if znode is None:
            # Only now is the path checked: one found in the tree is valid (module rules).
            return (ErrorCode.NO_NODE if is_valid_path(path) else ErrorCode.BAD_ARGUMENTS), None
        if not self._allowed(znode.acl, Perm.READ, ctx):
            return ErrorCode.NO_AUTH, None
        if request.version != ANY_VERSION and request.version != znode.version:
            return ErrorCode.BAD_VERSION, None
        return ErrorCode.OK, None

    def _multi(self, request: MultiRequest, ctx: _Context) -> _Outcome:
        for opcode, op in request.ops:
            if opcode not in MULTI_WRITE_OPS:
                return ErrorCode.MARSHALLING_ERROR, None
            # 3.9: an invalid create flag fails the whole request while decoding.
            if opcode in _CREATE_OPS:
                assert isinstance(op, CreateRequest | CreateTTLRequest)
                if op.flags not in _VALID_FLAGS:
                    return ErrorCode.MARSHALLING_ERROR, None
        self._undo_log = []
        try:
            results: list[OpResult] = []
            for index, (opcode, op) in enumerate(request.ops):
                err, body = self._write(opcode, op, ctx)
                if err != ErrorCode.OK:
                    self._rollback()
                    return ErrorCode.OK, MultiResponse(
                        results=_failed_results(len(request.ops), index, err)
                    )
                results.append(_multi_result(opcode, body))
        finally:
            self._undo_log = None
        return ErrorCode.OK, MultiResponse(results=tuple(results))

    def _rollback(self) -> None:
        undo_log = self._undo_log
        assert undo_log is not None
        for undo in reversed(undo_log):
            undo()
        undo_log.clear()
        self._events.clear()

    def _close_session(self, ctx: _Context) -> _Outcome:
        if ctx.session_id not in self._sessions:
            return ErrorCode.SESSION_EXPIRED, None
        # ZooKeeper's order (a HashSet copy), computed deterministically.
        for path in self._ephemeral_order(ctx.session_id):
            self._delete_node(path, ctx)
        del self._sessions[ctx.session_id]
        self._ephemeral_peaks.pop(ctx.session_id, None)
        assert ctx.session_id not in self._ephemerals
        return ErrorCode.OK, None

    def _reap(self, txn: ReapTxn, zxid: int) -> _Outcome:
        """The reaper's internal delete: re-check the candidate, no session or ACL check."""
        path = txn.path
        if path in PROTECTED_PATHS or not is_valid_path(path):
            return ErrorCode.BAD_ARGUMENTS, None
        znode = self._nodes.get(path)
        if znode is None:
            return ErrorCode.NO_NODE, None
        if znode.children:
            return ErrorCode.NOT_EMPTY, None
        if not (znode.is_container or znode.ttl_ms):
            # An ordinary node (ephemeral or persistent) is never reaped.
            return ErrorCode.BAD_VERSION, None
        if not self._is_reap_candidate(znode, txn.time_ms, txn.max_never_used_ms):
            return ErrorCode.BAD_VERSION, None
        self._delete_node(path, _new_context(0, (), zxid, txn.time_ms))
        return ErrorCode.OK, None

    # ------------------------------------------------------------------ reads

    def read(
        self,
        opcode: int,
        request: Record | None,
        identities: tuple[Id, ...],
        session_id: int,
    ) -> tuple[ErrorCode, Record | None]:
        """Answer a read from the current tree. Never mutates; arms no watch."""
        if opcode == OpCode.MULTI_READ:
            assert isinstance(request, MultiRequest)
            return self._multi_read(request, identities)
        if opcode == OpCode.GET_EPHEMERALS:
            assert isinstance(request, GetEphemeralsRequest)
            prefix = request.prefix_path
            owned = self._ephemeral_order(session_id)
            if prefix in ("", ROOT_PATH) or prefix.strip() == "":
                matching = owned
            else:
                matching = [path for path in owned if path.startswith(prefix)]
            return ErrorCode.OK, GetEphemeralsResponse(ephemerals=tuple(matching))
        assert isinstance(
            request,
            ExistsRequest | GetDataRequest | GetACLRequest | GetChildrenRequest | PathRecord,
        ), (opcode, request)
        path = request.path
        if opcode == OpCode.EXISTS and "\0" in path:
            return ErrorCode.BAD_ARGUMENTS, None
        znode = self.get(path)
        if znode is None:
            return ErrorCode.NO_NODE, None
        can_read = check_acl(znode.acl, Perm.READ, identities, skip_acl=self.skip_acl)
        if opcode == OpCode.GET_ACL:
            can_admin = check_acl(znode.acl, Perm.ADMIN, identities, skip_acl=self.skip_acl)
            if not (can_read or can_admin):
                return ErrorCode.NO_AUTH, None
            acl = znode.acl if can_admin else mask_digests(znode.acl)
            return ErrorCode.OK, GetACLResponse(acl=acl, stat=znode.stat())
        if not can_read:
            return ErrorCode.NO_AUTH, None
        if opcode == OpCode.EXISTS:
            return ErrorCode.OK, StatResponse(stat=znode.stat())
        if opcode == OpCode.GET_DATA:
            return ErrorCode.OK, GetDataResponse(data=znode.data, stat=znode.stat())
        if opcode == OpCode.GET_CHILDREN:
            children = self.children_in_order(path or ROOT_PATH, znode)
            return ErrorCode.OK, GetChildrenResponse(children=children)
        if opcode == OpCode.GET_CHILDREN2:
            children = self.children_in_order(path or ROOT_PATH, znode)
            return ErrorCode.OK, GetChildren2Response(children=children, stat=znode.stat())
        if opcode == OpCode.GET_ALL_CHILDREN_NUMBER:
            return ErrorCode.OK, GetAllChildrenNumberResponse(
                total_number=self._descendant_count(path or ROOT_PATH, znode)
            )
        raise AssertionError(f"not a read op: {opcode}")

    def read_wire(
        self,
        opcode: int,
        request: Record | None,
        identities: tuple[Id, ...],
        session_id: int,
    ) -> tuple[ErrorCode, Record | None]:
        """`read` for exists, getData, getChildren and getChildren2 with the body as a
        `WireBody`: the bytes `read`'s body encodes to (tests/tree/test_read_wire.py). A
        path that names no znode (including "") or a znode the caller may not read goes
        through `read` itself."""
        assert isinstance(request, ExistsRequest | GetDataRequest | GetChildrenRequest), request
        path = request.path
        znode = self._nodes.get(path)
        if znode is None or not check_acl(znode.acl, Perm.READ, identities, skip_acl=self.skip_acl):
            return self.read(opcode, request, identities, session_id)
        if opcode == OpCode.GET_DATA:
            data = znode.data
            if data is None:
                return ErrorCode.OK, WireBody(_NULL_DATA + znode.stat_bytes())
            return ErrorCode.OK, WireBody(
                b"".join((_INT32.pack(len(data)), data, znode.stat_bytes()))
            )
        if opcode == OpCode.EXISTS:
            return ErrorCode.OK, WireBody(znode.stat_bytes())
        if opcode == OpCode.GET_CHILDREN:
            return ErrorCode.OK, WireBody(self._children_reply(path, znode))
        assert opcode == OpCode.GET_CHILDREN2, opcode
        return ErrorCode.OK, WireBody(self._children_reply(path, znode) + znode.stat_bytes())

    def _descendant_count(self, path: str, znode: Znode) -> int:
        if path == ROOT_PATH:
            return len(self._nodes) - 1
        count = 0
        stack = [(path, znode)]
        while stack:
            current_path, current = stack.pop()
            for name in current.children:
                child_path = current_path + "/" + name
                stack.append((child_path, self._nodes[child_path]))
                count += 1
        return count

    def _multi_read(self, request: MultiRequest, identities: tuple[Id, ...]) -> _Outcome:
        if any(opcode not in MULTI_READ_OPS for opcode, _ in request.ops):
            return ErrorCode.MARSHALLING_ERROR, None
        results = []
        for opcode, op in request.ops:
            err, body = self.read(opcode, op, identities, 0)
            if err == ErrorCode.OK:
                results.append(OpResult(type=opcode, err=0, body=body))
            else:
                results.append(OpResult(type=-1, err=err))
        return ErrorCode.OK, MultiResponse(results=tuple(results))


def _multi_result(opcode: int, body: Record | None) -> OpResult:
    """A successful op's entry in a MultiResponse (3.9: create2 answers type 15)."""
    if opcode == OpCode.CREATE:
        return OpResult(type=OpCode.CREATE, body=body)
    if opcode in _CREATE_OPS:
        return OpResult(type=OpCode.CREATE2, body=body)
    if opcode == OpCode.SET_DATA:
        return OpResult(type=OpCode.SET_DATA, body=body)
    assert body is None, (opcode, body)
    return OpResult(type=opcode)


def _failed_results(count: int, failed_index: int, err: ErrorCode) -> tuple[OpResult, ...]:
    """Ops before the failure OK, the failing one its code, later ones RUNTIMEINCONSISTENCY."""
    results = []
    for index in range(count):
        if index < failed_index:
            code = ErrorCode.OK
        elif index == failed_index:
            code = err
        else:
            code = ErrorCode.RUNTIME_INCONSISTENCY
        results.append(OpResult(type=-1, err=int(code)))
    return tuple(results)
