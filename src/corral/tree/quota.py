"""Quota bookkeeping: the text format of limits/stats nodes and their paths.

Rules (server-semantics §14):
* A quota on path P lives in two znodes: QUOTA_ROOT + P + "/zookeeper_limits" (limits,
  written by clients) and QUOTA_ROOT + P + "/zookeeper_stats" (usage, kept by the tree).
* Text: `count=<n>,bytes=<n>` then, only if there are other keys, `=;key=value;...` in
  sorted key order. Pairs split on `,` or `;`, each pair on `=`; a missing key or an
  empty value means -1 (no limit). A value that is not an integer also reads as -1
  (ZooKeeper would throw mid-apply; we must not).
* `/` is never a quota root; the deepest registered ancestor-or-self of a path wins.
* Pure functions; the DataTree owns the state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUOTA_ROOT = "/zookeeper/quota"
LIMITS_NODE = "zookeeper_limits"
STATS_NODE = "zookeeper_stats"

COUNT_KEY = "count"
BYTES_KEY = "bytes"
COUNT_HARD_LIMIT_KEY = "countHardLimit"
BYTE_HARD_LIMIT_KEY = "byteHardLimit"

_PAIR_SEPARATORS = re.compile("[,;]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsTrack:
    """Parsed quota text: key -> value; absent keys read as -1."""

    values: tuple[tuple[str, int], ...] = ()

    def get(self, key: str) -> int:
        for name, value in self.values:
            if name == key:
                return value
        return -1

    @property
    def count(self) -> int:
        return self.get(COUNT_KEY)

    @property
    def bytes(self) -> int:
        return self.get(BYTES_KEY)

    @property
    def count_hard_limit(self) -> int:
        return self.get(COUNT_HARD_LIMIT_KEY)

    @property
    def byte_hard_limit(self) -> int:
        return self.get(BYTE_HARD_LIMIT_KEY)

    def with_usage(self, *, count: int, bytes_: int) -> StatsTrack:
        others = tuple((k, v) for k, v in self.values if k not in (COUNT_KEY, BYTES_KEY))
        return StatsTrack(values=((COUNT_KEY, count), (BYTES_KEY, bytes_), *others))


def parse_stats(data: bytes | None) -> StatsTrack:
    if not data:
        return StatsTrack()
    text = data.decode("utf-8", errors="replace")
    values: dict[str, int] = {}
    for pair in _PAIR_SEPARATORS.split(text):
        if pair == "":
            continue
        parts = pair.split("=")
        while len(parts) > 1 and parts[-1] == "":  # Java's split drops trailing empties
            parts.pop()
        key = parts[0]
        raw = parts[1] if len(parts) > 1 else ""
        try:
            values[key] = int(raw) if raw.strip() else -1
        except ValueError:
            values[key] = -1
    return StatsTrack(values=tuple(values.items()))


def format_stats(track: StatsTrack) -> bytes:
    text = f"{COUNT_KEY}={track.count},{BYTES_KEY}={track.bytes}"
    others = sorted((k, v) for k, v in track.values if k not in (COUNT_KEY, BYTES_KEY))
    if others:
        text += "=" + "".join(f";{key}={value}" for key, value in others)
    return text.encode("utf-8")


def limits_path(quota_path: str) -> str:
    return QUOTA_ROOT + quota_path + "/" + LIMITS_NODE


def stats_path(quota_path: str) -> str:
    return QUOTA_ROOT + quota_path + "/" + STATS_NODE


def quota_path_of(path: str, node_name: str) -> str | None:
    """For QUOTA_ROOT + P + "/" + node_name, return P; otherwise None."""
    suffix = "/" + node_name
    if not path.endswith(suffix):
        return None
    parent = path[: -len(suffix)]
    if parent != QUOTA_ROOT and not parent.startswith(QUOTA_ROOT + "/"):
        return None
    return parent[len(QUOTA_ROOT) :]


def ancestors_or_self(path: str) -> list[str]:
    """`/a/b/c` -> [`/a/b/c`, `/a/b`, `/a`] (never `/`), deepest first."""
    result = []
    current = path
    while current not in ("", "/"):
        result.append(current)
        current = current[: current.rfind("/")]
    return result
