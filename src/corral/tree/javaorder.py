"""Java collection iteration orders that leak into ZooKeeper's observable behaviour.

Rules: ZooKeeper answers some lists in the iteration order of Java hash collections
(a connection's auth ids; a session's ephemerals when it closes or on getEphemerals).
Clients see that order (getACL after an `auth` expansion, whoAmI, the order of
NodeDeleted events on session close), so corral reproduces it from the same inputs:
Java's String/Id hash codes and the table sizes and bin order of HashMap and
ConcurrentHashMap. Pure functions, deterministic; nothing here is a Python set order.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence
from typing import TypeVar

from corral.protocol.records import Id

T = TypeVar("T")

_DEFAULT_CAPACITY = 16
STRING_HASH_CACHE_ENTRIES_MAX = 1 << 17  # strings; bounds string_hash's memo


@functools.lru_cache(maxsize=STRING_HASH_CACHE_ENTRIES_MAX)
def string_hash(text: str) -> int:
    """Java's String.hashCode over UTF-16 code units, as an unsigned 32-bit value.
    Cached: getChildren hashes every child name on each call."""
    if text.isascii():
        units: Iterable[int] = text.encode("ascii")
    else:
        raw = text.encode("utf-16-be", errors="surrogatepass")
        units = struct.unpack(f">{len(raw) // 2}H", raw)
    value = 0
    for unit in units:
        value = (31 * value + unit) & 0xFFFFFFFF
    return value


def id_hash(identity: Id) -> int:
    """The jute-generated Id.hashCode (17, then 37*h + field hash per field)."""
    value = 17
    value = (37 * value + string_hash(identity.scheme)) & 0xFFFFFFFF
    return (37 * value + string_hash(identity.id)) & 0xFFFFFFFF


def spread(h: int) -> int:
    """HashMap.hash / ConcurrentHashMap.spread: fold the high half into the low half."""
    return (h ^ (h >> 16)) & 0x7FFFFFFF


def hash_map_capacity(peak_size: int) -> int:
    """A HashMap's table size after holding `peak_size` entries (it never shrinks)."""
    capacity = _DEFAULT_CAPACITY
    while peak_size > capacity * 3 // 4:
        capacity *= 2
    return capacity


def hash_set_order(
    members: Sequence[tuple[str, int]], *, peak_size: int, initial_capacity: int
) -> list[str]:
    """Iteration order of a HashSet<String> created with `initial_capacity` that once
    held `peak_size` entries: by bin, then insertion (`members` are (string, insertion
    key)); HashMap's resize keeps the relative order of entries that share a bin."""
    capacity = initial_capacity
    while peak_size > capacity * 3 // 4:
        capacity *= 2
    mask = capacity - 1
    keyed = sorted(members, key=lambda item: (spread(string_hash(item[0])) & mask, item[1]))
    return [text for text, _ in keyed]


def clone_capacity(size: int) -> int:
    """The table size of a HashSet.clone() of `size` entries (putMapEntries sizing)."""
    wanted = int(size / 0.75 + 1.0)
    capacity = 1
    while capacity < wanted:
        capacity *= 2
    return capacity


def cloned_hash_set_order(members: Sequence[tuple[str, int]], *, peak_size: int) -> list[str]:
    """Iteration order of `new HashSet(source).clone()` style copies of a HashSet<String>.

    `members` are (string, insertion key) of the source set; `peak_size` is the most
    entries the source ever held (its table size). The source iterates by bin, then
    insertion order; the clone re-bins that sequence into a table sized for its size.
    """
    source_mask = hash_map_capacity(peak_size) - 1
    keyed = [(spread(string_hash(text)), insertion, text) for text, insertion in members]
    keyed.sort(key=lambda item: (item[0] & source_mask, item[1]))
    clone_mask = clone_capacity(len(keyed)) - 1
    keyed.sort(key=lambda item: item[0] & clone_mask)  # stable: keeps the source order
    return [text for _, _, text in keyed]


def concurrent_set_order(identities: Iterable[Id]) -> tuple[Id, ...]:
    """Identities in the order ZooKeeper iterates a connection's auth set.

    ZooKeeper keeps them in a ConcurrentHashMap-backed set, so `auth` ACL expansion and
    whoAmI list them in hash-table order, not insertion order. `identities` is in
    insertion order; this replays the inserts into a model of the map (16 bins, doubling
    at 3/4 load, Java's split-and-prepend transfer).
    """
    bins: list[list[tuple[int, Id]]] = [[] for _ in range(_DEFAULT_CAPACITY)]
    size_ctl = _DEFAULT_CAPACITY * 3 // 4
    count = 0
    for identity in identities:
        h = spread(id_hash(identity))
        slot = bins[h & (len(bins) - 1)]
        if any(existing == identity for _, existing in slot):
            continue
        slot.append((h, identity))
        count += 1
        if count >= size_ctl:
            bins = _transfer(bins)
            size_ctl = len(bins) * 3 // 4
    return tuple(identity for slot in bins for _, identity in slot)


def _transfer(bins: list[list[tuple[int, T]]]) -> list[list[tuple[int, T]]]:
    """ConcurrentHashMap.transfer for list bins: split each bin on the new hash bit; the
    run after the last bit change keeps its order, earlier nodes are prepended."""
    n = len(bins)
    grown: list[list[tuple[int, T]]] = [[] for _ in range(2 * n)]
    for index, slot in enumerate(bins):
        if not slot:
            continue
        last_run = 0
        for position in range(1, len(slot)):
            if slot[position][0] & n != slot[last_run][0] & n:
                last_run = position
        low: list[tuple[int, T]] = []
        high: list[tuple[int, T]] = []
        if slot[last_run][0] & n:
            high = list(slot[last_run:])
        else:
            low = list(slot[last_run:])
        for node in slot[:last_run]:
            (high if node[0] & n else low).insert(0, node)
        grown[index] = low
        grown[index + n] = high
    return grown
