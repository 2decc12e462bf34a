"""One znode as the tree stores it, and the client-visible Stat derived from it.

Rules (server-semantics §1, §3, §12.1):
* `cversion` here is the *persisted* counter: child creations only, never decremented.
  Clients see `2 * cversion - num_children` (int32), which is why fresh built-in nodes
  show negative values.
* `ephemeral_owner` is the internal encoding: a session id, 0 (persistent),
  CONTAINER_OWNER, or TTL_OWNER_BASE | ttl_ms. Clients see 0 for containers and TTL nodes.
* `data` may be None (null), distinct from b"" (empty); `data_length` is 0 for both.
* Version counters are int32 and wrap (3.9: +1 may produce -1); see `int32_increment`.
* A Znode is mutable and owned by the DataTree; nobody else mutates it. Its children
  change only through add_child/remove_child: a leaf shares the one empty NO_CHILDREN
  (an empty set of its own would cost ~200 bytes per znode, most znodes being leaves).
"""

from __future__ import annotations

import struct

from corral.protocol.errors import LocalProtocolError
from corral.protocol.records import ACL, Stat, slot_constructor

CONTAINER_OWNER = -(2**63)  # 0x8000000000000000 as a signed long
TTL_OWNER_BASE = -(2**56)  # 0xFF00000000000000 as a signed long
TTL_OWNER_MASK = 0xFF_FFFF_FFFF  # the low 40 bits hold the TTL in ms
_TTL_OWNER_HIGH_MASK = ~TTL_OWNER_MASK  # top 24 bits: 0xFF0000
NO_CHILDREN: frozenset[str] = frozenset()
_STAT_WIRE = struct.Struct(">qqqqiiiqiiq")  # a Stat on the wire (records.Stat.encode)
# Stat's fields in order, set through their slots: a write's reply builds one per txn,
# and the frozen dataclass __init__ (object.__setattr__ per field) costs 2-3x more.
_new_stat = slot_constructor(Stat)


def int32(value: int) -> int:
    """`value` wrapped to a signed 32-bit int, as Java int arithmetic does."""
    return ((value + 2**31) % 2**32) - 2**31


def int32_increment(value: int) -> int:
    return int32(value + 1)


def ttl_owner(ttl_ms: int) -> int:
    assert 1 <= ttl_ms <= TTL_OWNER_MASK, ttl_ms
    return TTL_OWNER_BASE | ttl_ms


def is_container_owner(owner: int) -> bool:
    return owner == CONTAINER_OWNER


def ttl_of_owner(owner: int) -> int:
    """The TTL in ms of a TTL node's owner encoding, or 0 if `owner` is not one."""
    if owner & _TTL_OWNER_HIGH_MASK == TTL_OWNER_BASE:
        return owner & TTL_OWNER_MASK
    return 0


class Znode:
    """A znode's stored state. Children are names (not paths); order is not kept."""

    __slots__ = (
        "acl",
        "aversion",
        "children",
        "children_peak",
        "ctime_ms",
        "cversion",
        "czxid",
        "data",
        "ephemeral_owner",
        "mtime_ms",
        "mzxid",
        "pzxid",
        "version",
    )

    def __init__(
        self,
        *,
        data: bytes | None,
        acl: tuple[ACL, ...],
        zxid: int,
        time_ms: int,
        ephemeral_owner: int = 0,
    ) -> None:
        self.data = data
        self.acl = acl
        self.czxid = zxid
        self.mzxid = zxid
        self.pzxid = zxid
        self.ctime_ms = time_ms
        self.mtime_ms = time_ms
        self.version = 0
        self.cversion = 0
        self.aversion = 0
        self.ephemeral_owner = ephemeral_owner
        self.children: set[str] | frozenset[str] = NO_CHILDREN
        # Most children ever held at once: the table size of ZooKeeper's HashSet, which
        # decides the order getChildren answers in (javaorder.py). Never decreases.
        self.children_peak = 0

    def copy(self) -> Znode:
        twin = Znode(data=self.data, acl=self.acl, zxid=self.czxid, time_ms=self.ctime_ms)
        twin.mzxid = self.mzxid
        twin.pzxid = self.pzxid
        twin.mtime_ms = self.mtime_ms
        twin.version = self.version
        twin.cversion = self.cversion
        twin.aversion = self.aversion
        twin.ephemeral_owner = self.ephemeral_owner
        twin.children = set(self.children) if self.children else NO_CHILDREN
        twin.children_peak = self.children_peak
        return twin

    def add_child(self, name: str) -> None:
        children = self.children
        if isinstance(children, set):
            assert name not in children, name
            children.add(name)
        else:
            self.children = {name}

    def remove_child(self, name: str) -> None:
        children = self.children
        assert isinstance(children, set), name
        children.remove(name)
        if not children:
            self.children = NO_CHILDREN  # a set keeps the table it once grew to

    @property
    def data_length(self) -> int:
        return 0 if self.data is None else len(self.data)

    @property
    def num_children(self) -> int:
        return len(self.children)

    @property
    def is_container(self) -> bool:
        return is_container_owner(self.ephemeral_owner)

    @property
    def ttl_ms(self) -> int:
        """The node's TTL, 0 unless it is a TTL node."""
        return ttl_of_owner(self.ephemeral_owner)

    @property
    def is_ephemeral(self) -> bool:
        """An ordinary ephemeral: owned by a session (not a container or TTL marker)."""
        owner = self.ephemeral_owner
        return owner != 0 and not is_container_owner(owner) and ttl_of_owner(owner) == 0

    @property
    def visible_owner(self) -> int:
        return self.ephemeral_owner if self.is_ephemeral else 0

    def stat(self) -> Stat:
        owner = self.ephemeral_owner
        child_count = len(self.children)
        return _new_stat(
            self.czxid,
            self.mzxid,
            self.ctime_ms,
            self.mtime_ms,
            self.version,
            int32(2 * self.cversion - child_count),  # cversion
            self.aversion,
            owner if owner and self.is_ephemeral else 0,  # ephemeral_owner: visible_owner
            0 if self.data is None else len(self.data),  # data_length
            child_count,  # num_children
            self.pzxid,
        )

    def stat_bytes(self) -> bytes:
        """`self.stat().to_bytes()`, without building the Stat record: every read reply
        carries one, and a frozen record of 11 fields costs more than packing them."""
        owner = self.ephemeral_owner
        child_count = len(self.children)
        try:
            return _STAT_WIRE.pack(
                self.czxid,
                self.mzxid,
                self.ctime_ms,
                self.mtime_ms,
                self.version,
                int32(2 * self.cversion - child_count),
                self.aversion,
                owner if owner and self.is_ephemeral else 0,
                0 if self.data is None else len(self.data),
                child_count,
                self.pzxid,
            )
        except struct.error as e:
            raise LocalProtocolError(f"stat field out of range: {self.stat()}") from e

    def __repr__(self) -> str:
        return f"Znode({self.stat()}, children={sorted(self.children)})"
