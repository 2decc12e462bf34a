"""server-semantics §27 edge cases 77-88: session timeouts, ids, re-attach, expiry, close."""

from __future__ import annotations

import pytest

from tests.differential.ops import children, create, exists, get_data
from tests.support.scenario import (
    CloseSession,
    Disconnect,
    Drain,
    ExpectClosed,
    KeepAlive,
    Open,
    Restart,
    WaitEvents,
)
from tests.support.servers import SHARED_SPEC

pytestmark = pytest.mark.zookeeper


def test_edge_077_timeout_negotiation(diff) -> None:
    steps = []
    for i, timeout_ms in enumerate([1, 40001, 100000, 0, -5, 10000, 4000, 40000]):
        steps.append(Open(session=f"s{i}", timeout_ms=timeout_ms))
    diff.run(steps, pristine=True)


def test_edge_078_session_id_layout(diff) -> None:
    diff.run(
        [
            Open(session="a", id_layout=True),
            Open(session="b", id_layout=True),
            Open(session="c", id_layout=True),
        ],
        pristine=True,
    )


def test_edge_079_resume_with_wrong_password(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/e", flags=1),
            Open(session="a2", resume="a", password="wrong"),
            ExpectClosed(session="a2"),
            Drain(session="a"),
            exists("a", f"{ns}/e"),
        ]
    )


def test_edge_080_resume_moves_the_session(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a", timeout_ms=10_000),
            create("a", f"{ns}/e", flags=1),
            Open(session="a2", resume="a", timeout_ms=20_000),
            ExpectClosed(session="a"),
            exists("a2", f"{ns}/e"),
            create("a2", f"{ns}/f", flags=1),
            exists("a2", f"{ns}/f"),
        ]
    )


def test_edge_081_resume_closed_session(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="keep"),
            create("a", f"{ns}/e", flags=1),
            Open(session="a-copy", resume="a"),  # moves the session; "a" is closed by the server
            CloseSession(session="a-copy"),
            Open(session="a2", resume="a"),
            ExpectClosed(session="a2"),
            exists("keep", f"{ns}/e"),
        ]
    )


def test_edge_082_last_zxid_seen_in_the_future(diff) -> None:
    diff.run(
        [Open(session="a"), Open(session="b", last_zxid_seen="far"), Drain(session="a")],
        pristine=True,
    )


def test_edge_083_connect_without_read_only_byte(diff) -> None:
    diff.run(
        [
            Open(session="a", read_only=None),
            Open(session="b", read_only=True),
            get_data("a", "/"),
        ],
        pristine=True,
    )


def test_edge_084_expiry_removes_ephemerals_and_closes(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="short", timeout_ms=4_000),
            Open(session="w"),
            create("short", f"{ns}/e", flags=1),
            exists("w", f"{ns}/e", watch=True),
            children("w", ns, watch=True),
            WaitEvents(session="w", count=2, wait_ms=15_000),
            ExpectClosed(session="short", wait_ms=5_000),
            exists("w", f"{ns}/e"),
            Open(session="again", resume="short"),
            ExpectClosed(session="again"),
        ]
    )


def test_edge_085_pings_keep_a_session_alive(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a", timeout_ms=4_000),
            Open(session="w"),
            create("a", f"{ns}/e", flags=1),
            KeepAlive(session="a", duration_ms=8_000, interval_ms=1_000),
            exists("w", f"{ns}/e"),
            exists("a", f"{ns}/e"),
        ]
    )


def test_edge_086_close_session(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="b"),
            create("a", f"{ns}/e1", flags=1),
            create("a", f"{ns}/e2", flags=3),
            CloseSession(session="a"),
            children("b", ns),
            create("b", f"{ns}/after"),
            exists("b", ns),
        ]
    )


def test_edge_087_others_see_ephemerals_go(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create("a", f"{ns}/e1", flags=1),
            create("a", f"{ns}/e2", flags=1),
            exists("w", f"{ns}/e1", watch=True),
            get_data("w", f"{ns}/e2", watch=True),
            children("w", ns, watch=True),
            CloseSession(session="a"),
            Drain(session="w", unordered_events=True),
        ]
    )


def test_edge_088_no_handshake_is_dropped(diff) -> None:
    diff.run(
        [Open(session="idle", handshake=False), ExpectClosed(session="idle", wait_ms=20_000)],
        pristine=True,
    )


def test_session_disconnect_keeps_session_until_resumed(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a", timeout_ms=10_000),
            create("a", f"{ns}/e", flags=1),
            Disconnect(session="a"),
            Open(session="w"),
            exists("w", f"{ns}/e"),
            Open(session="a2", resume="a"),
            exists("a2", f"{ns}/e"),
            CloseSession(session="a2"),
            exists("w", f"{ns}/e"),
        ]
    )


def test_edge_133_restart_keeps_data_and_sessions(diff) -> None:
    diff.run(
        [
            Open(session="a", timeout_ms=10_000),
            Open(session="b", timeout_ms=4_000),
            create("a", "/p", b"kept"),
            create("a", "/e", flags=1),
            create("b", "/eb", flags=1),
            Restart(),
            Open(session="a2", resume="a", timeout_ms=10_000),
            get_data("a2", "/p"),
            exists("a2", "/e"),
            exists("a2", "/eb", watch=True),
            create("a2", "/after"),
            WaitEvents(session="a2", count=1, wait_ms=20_000),
            exists("a2", "/eb"),
            Open(session="b2", resume="b"),
            ExpectClosed(session="b2"),
        ],
        spec=SHARED_SPEC,
    )
