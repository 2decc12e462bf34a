"""The replica-local watch table (server-semantics §10), keyed by connection.

Rules:
* Two tables keyed by exact path, as in ZooKeeper: the data table (exists/getData
  standard watches, persistent, persistent-recursive) and the child table (getChildren
  standard watches, persistent). An entry maps a connection to its set of modes; a standard
  and a persistent registration of one connection on one path coexist (3.9 behaviour,
  §10.3; 3.8's ZOOKEEPER-4466 replacement is not reproduced).
* `trigger(event_type, path)` returns the connections to notify, each at most once, in
  a deterministic order: entries at the path in registration order, then recursive
  watches from the parent up to "/", then (NODE_DELETED only) the child table at the path.
  Standard modes that fire are consumed; persistent modes stay (§10.3).
* Which entries an event reaches (§10.2): NODE_CREATED / NODE_DATA_CHANGED / NODE_DELETED
  at P reach the data table at P and recursive watches at every ancestor of P;
  NODE_DELETED also reaches the child table at P; NODE_CHILDREN_CHANGED at P (the parent
  whose child list changed) reaches only the child table at P — never a recursive watch.
* Recursive lookups walk the ancestors of P in a separate index of recursive watches, so
  a trigger costs O(depth + notified), never a scan of all watches; with no recursive
  watch at all the walk is skipped.
* Nothing here knows about ACLs, sessions or sockets: ACL filtering of deliveries
  (§10.5) and per-connection bounds belong to the caller. Paths are not validated
  (removeWatches accepts any string, §10.8); a path that was never registered simply
  has no watches.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

from corral.protocol.constants import EventType, WatcherType


class WatchKind(enum.Enum):
    DATA = "data"  # exists / getData standard (one-shot) watch
    CHILD = "child"  # getChildren standard (one-shot) watch
    PERSISTENT = "persistent"  # addWatch mode 0: data and child tables
    PERSISTENT_RECURSIVE = "persistent_recursive"  # addWatch mode 1: data table only


class _Mode(enum.Enum):
    STANDARD = "standard"
    PERSISTENT = "persistent"
    RECURSIVE = "recursive"


class _Table:
    """path -> connection -> modes, with a per-connection index; orders are insertion."""

    __slots__ = ("by_connection", "by_path")

    def __init__(self) -> None:
        self.by_path: dict[str, dict[int, set[_Mode]]] = {}
        self.by_connection: dict[int, dict[str, None]] = {}

    def modes(self, path: str, connection_id: int) -> set[_Mode]:
        entries = self.by_path.get(path)
        if entries is None:
            return set()
        return entries.get(connection_id, set())

    def add(self, path: str, connection_id: int, mode: _Mode) -> None:
        self.by_path.setdefault(path, {}).setdefault(connection_id, set()).add(mode)
        self.by_connection.setdefault(connection_id, {})[path] = None

    def discard(self, path: str, connection_id: int, mode: _Mode) -> bool:
        """Remove one mode; whether it was there."""
        entries = self.by_path.get(path)
        if entries is None:
            return False
        modes = entries.get(connection_id)
        if modes is None or mode not in modes:
            return False
        modes.remove(mode)
        if not modes:
            self._forget(path, connection_id)
        return True

    def discard_all(self, path: str, connection_id: int) -> bool:
        """Remove every mode of one connection on one path; whether there was any."""
        entries = self.by_path.get(path)
        if entries is None or connection_id not in entries:
            return False
        self._forget(path, connection_id)
        return True

    def _forget(self, path: str, connection_id: int) -> None:
        entries = self.by_path[path]
        del entries[connection_id]
        if not entries:
            del self.by_path[path]
        paths = self.by_connection[connection_id]
        del paths[path]
        if not paths:
            del self.by_connection[connection_id]


def _ancestors(path: str) -> Iterator[str]:
    """The parent of `path`, its parent, ... up to "/" (iterative, no recursion)."""
    end = path.rfind("/")
    while end > 0:
        yield path[:end]
        end = path.rfind("/", 0, end)
    if end == 0 and path != "/":
        yield "/"


_PATH_EVENTS = (EventType.NODE_CREATED, EventType.NODE_DATA_CHANGED, EventType.NODE_DELETED)


class WatchTable:
    """All watches of one replica's connections."""

    def __init__(self) -> None:
        self._data = _Table()
        self._child = _Table()
        # Mirror of the RECURSIVE modes of the data table, for the ancestor walk.
        self._recursive = _Table()

    # -- registration -----------------------------------------------------------------

    def add(self, connection_id: int, path: str, kind: WatchKind) -> None:
        if kind == WatchKind.DATA:
            self._data.add(path, connection_id, _Mode.STANDARD)
        elif kind == WatchKind.CHILD:
            self._child.add(path, connection_id, _Mode.STANDARD)
        elif kind == WatchKind.PERSISTENT:
            # §10.1: one persistent watch lives in both tables.
            self._data.add(path, connection_id, _Mode.PERSISTENT)
            self._child.add(path, connection_id, _Mode.PERSISTENT)
        else:
            assert kind == WatchKind.PERSISTENT_RECURSIVE, kind
            self._data.add(path, connection_id, _Mode.RECURSIVE)
            self._recursive.add(path, connection_id, _Mode.RECURSIVE)
        self._check_recursive_mirror(path, connection_id)

    # -- firing -----------------------------------------------------------------------

    def trigger(self, event_type: EventType, path: str) -> list[int]:
        """Connections to notify of `event_type` at `path`, one-shot entries consumed."""
        if (
            path not in self._data.by_path
            and path not in self._child.by_path
            and not self._recursive.by_path
        ):
            return []  # nobody watches here (most writes): no table needs a look
        notified: dict[int, None] = {}  # an ordered set
        if event_type in _PATH_EVENTS:
            self._fire(self._data, path, notified)
            if self._recursive.by_path:
                for ancestor in _ancestors(path):
                    connections = self._recursive.by_path.get(ancestor)
                    if connections is not None:
                        for connection_id in connections:
                            notified.setdefault(connection_id)
            if event_type == EventType.NODE_DELETED:
                # §10.2: the child table hears of the deletion too, but a connection
                # already notified through the data table gets no second event.
                self._fire(self._child, path, notified)
        else:
            assert event_type == EventType.NODE_CHILDREN_CHANGED, event_type
            self._fire(self._child, path, notified)
        return list(notified)

    @staticmethod
    def _fire(table: _Table, path: str, notified: dict[int, None]) -> None:
        entries = table.by_path.get(path)
        if entries is None:
            return
        for connection_id, modes in list(entries.items()):
            notified.setdefault(connection_id)
            if _Mode.STANDARD in modes:
                table.discard(path, connection_id, _Mode.STANDARD)

    # -- checkWatches / removeWatches (§10.8, 3.9 semantics) --------------------------

    def check(self, connection_id: int, path: str, watcher_type: WatcherType) -> bool:
        """Whether this connection has a watch of `watcher_type` at exactly `path`."""
        data = self._data.modes(path, connection_id)
        child = self._child.modes(path, connection_id)
        if watcher_type == WatcherType.CHILDREN:
            return _Mode.STANDARD in child
        if watcher_type == WatcherType.DATA:
            return _Mode.STANDARD in data
        if watcher_type == WatcherType.ANY:
            return bool(data) or bool(child)
        if watcher_type == WatcherType.PERSISTENT:
            return _Mode.PERSISTENT in data or _Mode.PERSISTENT in child
        assert watcher_type == WatcherType.PERSISTENT_RECURSIVE, watcher_type
        return _Mode.RECURSIVE in data

    def remove(self, connection_id: int, path: str, watcher_type: WatcherType) -> bool:
        """Remove what `check` would match; whether anything was removed."""
        if watcher_type == WatcherType.CHILDREN:
            removed = self._child.discard(path, connection_id, _Mode.STANDARD)
        elif watcher_type == WatcherType.DATA:
            removed = self._data.discard(path, connection_id, _Mode.STANDARD)
        elif watcher_type == WatcherType.ANY:
            removed_data = self._data.discard_all(path, connection_id)
            removed_child = self._child.discard_all(path, connection_id)
            self._recursive.discard_all(path, connection_id)
            removed = removed_data or removed_child
        elif watcher_type == WatcherType.PERSISTENT:
            removed_data = self._data.discard(path, connection_id, _Mode.PERSISTENT)
            removed_child = self._child.discard(path, connection_id, _Mode.PERSISTENT)
            removed = removed_data or removed_child
        else:
            assert watcher_type == WatcherType.PERSISTENT_RECURSIVE, watcher_type
            removed = self._data.discard(path, connection_id, _Mode.RECURSIVE)
            self._recursive.discard_all(path, connection_id)
        self._check_recursive_mirror(path, connection_id)
        return removed

    # -- connections ------------------------------------------------------------------

    def drop_connection(self, connection_id: int) -> None:
        """Forget every watch of a closed connection (§10.7)."""
        for table in (self._data, self._child, self._recursive):
            for path in list(table.by_connection.get(connection_id, ())):
                table.discard_all(path, connection_id)
        assert not self.has_watches(connection_id), connection_id

    def has_watches(self, connection_id: int) -> bool:
        return connection_id in self._data.by_connection or (
            connection_id in self._child.by_connection
        )

    # -- reporting: the data table only (§10.9) ---------------------------------------

    def data_watch_paths_by_connection(self) -> dict[int, list[str]]:
        return {
            connection_id: list(paths) for connection_id, paths in self._data.by_connection.items()
        }

    def data_watch_connections_by_path(self) -> dict[str, list[int]]:
        return {path: list(entries) for path, entries in self._data.by_path.items()}

    @property
    def watch_count(self) -> int:
        """(path, connection) pairs in the data table, as `wchs` counts them."""
        return sum(len(entries) for entries in self._data.by_path.values())

    @property
    def path_count(self) -> int:
        """Paths with at least one entry in the data table."""
        return len(self._data.by_path)

    def _check_recursive_mirror(self, path: str, connection_id: int) -> None:
        has_recursive = _Mode.RECURSIVE in self._data.modes(path, connection_id)
        mirrored = bool(self._recursive.modes(path, connection_id))
        assert has_recursive == mirrored, (path, connection_id)
