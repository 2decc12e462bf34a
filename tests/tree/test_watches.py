"""WatchTable: server-semantics §10 rules and the table-level §27 edge cases (89-106)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.constants import EventType, WatcherType
from corral.tree.watches import WatchKind, WatchTable

CREATED = EventType.NODE_CREATED
DELETED = EventType.NODE_DELETED
CHANGED = EventType.NODE_DATA_CHANGED
CHILDREN = EventType.NODE_CHILDREN_CHANGED


def _events_for_create(path: str, parent: str) -> list[tuple[EventType, str]]:
    """The triggers a tree emits for a create, in §10.4 order."""
    return [(CREATED, path), (CHILDREN, parent)]


def _events_for_delete(path: str, parent: str) -> list[tuple[EventType, str]]:
    return [(DELETED, path), (CHILDREN, parent)]


def _deliveries(
    table: WatchTable, connection_id: int, events: list[tuple[EventType, str]]
) -> list[tuple[EventType, str]]:
    return [(event, path) for event, path in events if connection_id in table.trigger(event, path)]


# -- §27 edge cases that are about the table ------------------------------------------


def test_89_exists_watch_on_a_missing_path_fires_on_create() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.DATA)
    assert table.trigger(CREATED, "/a") == [1]
    assert table.trigger(CHANGED, "/a") == []  # consumed


def test_91_data_and_child_watch_then_delete_gives_one_event_and_consumes_both() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.DATA)
    table.add(1, "/a", WatchKind.CHILD)
    assert table.trigger(DELETED, "/a") == [1]
    assert not table.has_watches(1)


def test_delete_notifies_child_only_watchers_after_data_watchers() -> None:
    table = WatchTable()
    table.add(2, "/a", WatchKind.CHILD)
    table.add(1, "/a", WatchKind.DATA)
    table.add(2, "/a", WatchKind.DATA)
    table.add(3, "/a", WatchKind.CHILD)
    assert table.trigger(DELETED, "/a") == [1, 2, 3]
    assert table.trigger(DELETED, "/a") == []


def test_92_child_watch_fires_on_children_changed_not_on_child_data() -> None:
    table = WatchTable()
    table.add(1, "/p", WatchKind.CHILD)
    assert table.trigger(CHANGED, "/p/c") == []
    assert table.trigger(CREATED, "/p/c") == []
    assert table.trigger(CHANGED, "/p") == []  # a child watch does not see data changes
    assert table.trigger(CHILDREN, "/p") == [1]
    assert table.trigger(CHILDREN, "/p") == []


def test_94_repeated_data_watches_fire_once() -> None:
    table = WatchTable()
    for _ in range(3):  # getData twice + exists
        table.add(1, "/a", WatchKind.DATA)
    assert table.watch_count == 1
    assert table.trigger(CHANGED, "/a") == [1]
    assert table.trigger(CHANGED, "/a") == []


def test_95_persistent_watch_sees_its_node_and_direct_children_only() -> None:
    table = WatchTable()
    table.add(1, "/p", WatchKind.PERSISTENT)
    events = [
        (CHANGED, "/p"),
        *_events_for_create("/p/c", "/p"),
        (CHANGED, "/p/c"),
        *_events_for_create("/p/c/d", "/p/c"),
        *_events_for_delete("/p/c/d", "/p/c"),
        *_events_for_delete("/p/c", "/p"),
    ]
    assert _deliveries(table, 1, events) == [(CHANGED, "/p"), (CHILDREN, "/p"), (CHILDREN, "/p")]


def test_96_persistent_watch_survives_delete_and_recreate() -> None:
    table = WatchTable()
    table.add(1, "/p", WatchKind.PERSISTENT)
    events = [*_events_for_delete("/p", "/"), *_events_for_create("/p", "/"), (CHANGED, "/p")]
    assert _deliveries(table, 1, events) == [(DELETED, "/p"), (CREATED, "/p"), (CHANGED, "/p")]
    assert table.check(1, "/p", WatcherType.PERSISTENT)


def test_97_recursive_watch_sees_every_descendant_never_children_changed() -> None:
    table = WatchTable()
    table.add(1, "/r", WatchKind.PERSISTENT_RECURSIVE)
    events = [
        (CHANGED, "/r"),
        *_events_for_create("/r/a", "/r"),
        *_events_for_create("/r/a/b", "/r/a"),
        (CHANGED, "/r/a/b"),
        *_events_for_delete("/r/a/b", "/r/a"),
        *_events_for_delete("/r", "/"),
        (CHANGED, "/rx"),  # a sibling with the same prefix is not a descendant
        (CREATED, "/"),
    ]
    assert _deliveries(table, 1, events) == [
        (CHANGED, "/r"),
        (CREATED, "/r/a"),
        (CREATED, "/r/a/b"),
        (CHANGED, "/r/a/b"),
        (DELETED, "/r/a/b"),
        (DELETED, "/r"),
    ]


def test_98_recursive_watch_on_a_missing_path_fires_for_it_and_descendants() -> None:
    table = WatchTable()
    table.add(1, "/m", WatchKind.PERSISTENT_RECURSIVE)
    assert table.trigger(CREATED, "/m") == [1]
    assert table.trigger(CREATED, "/m/x") == [1]


def test_99_recursive_watches_on_root_and_child_give_one_event() -> None:
    table = WatchTable()
    table.add(1, "/", WatchKind.PERSISTENT_RECURSIVE)
    table.add(1, "/a", WatchKind.PERSISTENT_RECURSIVE)
    table.add(2, "/", WatchKind.PERSISTENT_RECURSIVE)
    assert table.trigger(CREATED, "/a/b") == [1, 2]
    assert table.trigger(CHANGED, "/a") == [1, 2]
    assert table.trigger(CHANGED, "/") == [1, 2]
    assert table.trigger(CHILDREN, "/a") == []


def test_100_recursive_and_child_watch_are_separate_triggers() -> None:
    table = WatchTable()
    table.add(1, "/r", WatchKind.PERSISTENT_RECURSIVE)
    table.add(1, "/r/k", WatchKind.CHILD)
    assert _deliveries(table, 1, _events_for_create("/r/k/z", "/r/k")) == [
        (CREATED, "/r/k/z"),
        (CHILDREN, "/r/k"),
    ]


def test_101_standard_and_persistent_data_watch_coexist() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.PERSISTENT)
    table.add(1, "/a", WatchKind.DATA)
    assert table.check(1, "/a", WatcherType.DATA)
    assert table.trigger(CHANGED, "/a") == [1]  # one event for two matching modes
    assert not table.check(1, "/a", WatcherType.DATA)  # the standard one was consumed
    assert table.check(1, "/a", WatcherType.PERSISTENT)
    assert table.trigger(CHANGED, "/a") == [1]


def test_103_remove_data_watch_then_nothing_left() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.DATA)
    assert table.check(1, "/a", WatcherType.DATA)
    assert table.remove(1, "/a", WatcherType.DATA)
    assert not table.remove(1, "/a", WatcherType.DATA)
    assert not table.remove(1, "/nowhere", WatcherType.DATA)
    assert not table.check(1, "/nowhere", WatcherType.ANY)
    assert table.trigger(CHANGED, "/a") == []


def test_104_remove_persistent_and_recursive_by_their_own_types_only() -> None:
    table = WatchTable()
    table.add(1, "/p", WatchKind.PERSISTENT)
    table.add(1, "/r", WatchKind.PERSISTENT_RECURSIVE)
    assert not table.check(1, "/p", WatcherType.DATA)
    assert not table.remove(1, "/p", WatcherType.DATA)
    assert not table.remove(1, "/p", WatcherType.CHILDREN)
    assert not table.remove(1, "/r", WatcherType.PERSISTENT)
    assert not table.remove(1, "/p", WatcherType.PERSISTENT_RECURSIVE)
    assert table.remove(1, "/p", WatcherType.PERSISTENT)
    # Removal cleared both tables.
    assert table.trigger(CHILDREN, "/p") == []
    assert table.trigger(CHANGED, "/p") == []
    assert table.remove(1, "/r", WatcherType.PERSISTENT_RECURSIVE)
    assert table.trigger(CREATED, "/r/x") == []
    assert not table.has_watches(1)


def test_106_other_connections_are_never_touched() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.DATA)
    table.add(1, "/a", WatchKind.PERSISTENT)
    for watcher_type in WatcherType:
        assert not table.check(2, "/a", watcher_type)
        assert not table.remove(2, "/a", watcher_type)
    assert table.check(1, "/a", WatcherType.DATA)
    assert table.check(1, "/a", WatcherType.PERSISTENT)


# -- other rules ---------------------------------------------------------------------


def test_remove_any_clears_every_mode_in_both_tables() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.DATA)
    table.add(1, "/a", WatchKind.CHILD)
    table.add(1, "/a", WatchKind.PERSISTENT)
    table.add(1, "/a", WatchKind.PERSISTENT_RECURSIVE)
    table.add(1, "/b", WatchKind.DATA)
    assert table.check(1, "/a", WatcherType.ANY)
    assert table.remove(1, "/a", WatcherType.ANY)
    assert not table.check(1, "/a", WatcherType.ANY)
    assert table.trigger(CREATED, "/a/x") == []  # the recursive index was cleared too
    assert table.trigger(CHILDREN, "/a") == []
    assert table.check(1, "/b", WatcherType.DATA)


def test_remove_children_takes_only_the_standard_child_watch() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.CHILD)
    table.add(1, "/a", WatchKind.DATA)
    assert table.check(1, "/a", WatcherType.CHILDREN)
    assert table.remove(1, "/a", WatcherType.CHILDREN)
    assert not table.check(1, "/a", WatcherType.CHILDREN)
    assert table.check(1, "/a", WatcherType.DATA)


def test_children_changed_fires_child_and_persistent_but_not_data_watches() -> None:
    table = WatchTable()
    table.add(1, "/p", WatchKind.DATA)
    table.add(2, "/p", WatchKind.PERSISTENT)
    table.add(3, "/p", WatchKind.PERSISTENT_RECURSIVE)
    table.add(4, "/p", WatchKind.CHILD)
    assert table.trigger(CHILDREN, "/p") == [2, 4]
    assert table.check(1, "/p", WatcherType.DATA)


def test_trigger_order_is_registration_order_then_ancestors_nearest_first() -> None:
    table = WatchTable()
    table.add(5, "/", WatchKind.PERSISTENT_RECURSIVE)
    table.add(4, "/a", WatchKind.PERSISTENT_RECURSIVE)
    table.add(3, "/a/b", WatchKind.DATA)
    table.add(9, "/a/b", WatchKind.PERSISTENT_RECURSIVE)
    table.add(1, "/a/b", WatchKind.DATA)
    assert table.trigger(CHANGED, "/a/b") == [3, 9, 1, 4, 5]
    # The one-shot entries are gone, the recursive ones stay.
    assert table.trigger(CHANGED, "/a/b") == [9, 4, 5]


def test_drop_connection_forgets_everything_of_that_connection_only() -> None:
    table = WatchTable()
    for kind in WatchKind:
        table.add(1, "/a", kind)
        table.add(2, "/a", kind)
    table.add(1, "/b/c", WatchKind.PERSISTENT_RECURSIVE)
    table.drop_connection(1)
    table.drop_connection(7)  # unknown: nothing to do
    assert not table.has_watches(1)
    assert table.has_watches(2)
    assert table.trigger(CREATED, "/b/c/d") == []
    assert table.trigger(CHILDREN, "/a") == [2]
    assert table.data_watch_paths_by_connection() == {2: ["/a"]}


def test_reporting_shows_the_data_table_only() -> None:
    table = WatchTable()
    table.add(1, "/a", WatchKind.DATA)
    table.add(2, "/a", WatchKind.PERSISTENT_RECURSIVE)
    table.add(2, "/b", WatchKind.PERSISTENT)
    table.add(3, "/c", WatchKind.CHILD)  # invisible to wchs/wchc/wchp (§10.9)
    assert table.data_watch_paths_by_connection() == {1: ["/a"], 2: ["/a", "/b"]}
    assert table.data_watch_connections_by_path() == {"/a": [1, 2], "/b": [2]}
    assert table.watch_count == 3
    assert table.path_count == 2
    assert table.has_watches(3)


# -- model test ----------------------------------------------------------------------

_PATHS = ("/", "/a", "/a/b", "/a/b/c", "/b", "/ab")
_CONNECTIONS = (1, 2, 3)
_DATA_MODES = {
    WatchKind.DATA: "std",
    WatchKind.PERSISTENT: "per",
    WatchKind.PERSISTENT_RECURSIVE: "rec",
}
_CHILD_MODES = {WatchKind.CHILD: "std", WatchKind.PERSISTENT: "per"}


class _Model:
    """A deliberately naive table: a set of (table, path, connection, mode) and full scans."""

    def __init__(self) -> None:
        self.entries: set[tuple[str, str, int, str]] = set()

    def add(self, connection_id: int, path: str, kind: WatchKind) -> None:
        if kind in _DATA_MODES:
            self.entries.add(("data", path, connection_id, _DATA_MODES[kind]))
        if kind in _CHILD_MODES:
            self.entries.add(("child", path, connection_id, _CHILD_MODES[kind]))

    def trigger(self, event_type: EventType, path: str) -> set[int]:
        matched = set()
        for entry in self.entries:
            table, entry_path, _, mode = entry
            if event_type == CHILDREN:
                hit = table == "child" and entry_path == path
            else:
                at_path = entry_path == path and (table == "data" or event_type == DELETED)
                below = (
                    table == "data"
                    and mode == "rec"
                    and (entry_path == "/" or path.startswith(entry_path + "/"))
                    and path != entry_path
                )
                hit = at_path or below
            if hit:
                matched.add(entry)
        self.entries -= {e for e in matched if e[3] == "std" and e[1] == path}
        return {e[2] for e in matched}

    def matching(self, connection_id: int, path: str, watcher_type: WatcherType) -> set[tuple]:
        mine = {e for e in self.entries if e[1] == path and e[2] == connection_id}
        wanted = {
            WatcherType.CHILDREN: {("child", "std")},
            WatcherType.DATA: {("data", "std")},
            WatcherType.ANY: None,
            WatcherType.PERSISTENT: {("data", "per"), ("child", "per")},
            WatcherType.PERSISTENT_RECURSIVE: {("data", "rec")},
        }[watcher_type]
        return {e for e in mine if wanted is None or (e[0], e[3]) in wanted}


_actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from(_CONNECTIONS),
            st.sampled_from(_PATHS),
            st.sampled_from(list(WatchKind)),
        ),
        st.tuples(
            st.just("trigger"),
            st.sampled_from([CREATED, DELETED, CHANGED, CHILDREN]),
            st.sampled_from(_PATHS),
        ),
        st.tuples(
            st.sampled_from(["check", "remove"]),
            st.sampled_from(_CONNECTIONS),
            st.sampled_from(_PATHS),
            st.sampled_from(list(WatcherType)),
        ),
        st.tuples(st.just("drop"), st.sampled_from(_CONNECTIONS)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, print_blob=True)
@given(actions=_actions)
def test_table_matches_a_naive_model(actions: list[tuple]) -> None:  # type: ignore[type-arg]
    table = WatchTable()
    model = _Model()
    for action in actions:
        if action[0] == "add":
            _, connection_id, path, kind = action
            table.add(connection_id, path, kind)
            model.add(connection_id, path, kind)
        elif action[0] == "trigger":
            _, event_type, path = action
            notified = table.trigger(event_type, path)
            assert len(notified) == len(set(notified))
            assert set(notified) == model.trigger(event_type, path), action
        elif action[0] == "check":
            _, connection_id, path, watcher_type = action
            expected = bool(model.matching(connection_id, path, watcher_type))
            assert table.check(connection_id, path, watcher_type) == expected, action
        elif action[0] == "remove":
            _, connection_id, path, watcher_type = action
            matched = model.matching(connection_id, path, watcher_type)
            model.entries -= matched
            assert table.remove(connection_id, path, watcher_type) == bool(matched), action
        else:
            _, connection_id = action
            table.drop_connection(connection_id)
            model.entries = {e for e in model.entries if e[2] != connection_id}
        for connection_id in _CONNECTIONS:
            assert table.has_watches(connection_id) == any(
                e[2] == connection_id for e in model.entries
            )
        data_pairs = {(e[1], e[2]) for e in model.entries if e[0] == "data"}
        by_path = table.data_watch_connections_by_path()
        assert {(p, c) for p, cs in by_path.items() for c in cs} == data_pairs
        assert table.watch_count == len(data_pairs)
        assert table.path_count == len({p for p, _ in data_pairs})
