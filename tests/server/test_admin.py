"""The AdminServer (HTTP commands): parsing, routing, the commands, and shapes vs ZooKeeper.

The comparison with Apache ZooKeeper 3.8 (the oracle) checks the shape of every answer
(keys and JSON value types), not values. It skips without ZooKeeper, and fails in CI.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from kazoo.client import KazooClient

from corral import limits
from corral.cli import launch
from corral.cli.launch import CorralServer, ServerStartError, free_port
from corral.server import admin
from corral.server.admin import AdminServerError, HttpRequest, HttpResponse, parse_request_head
from corral.server.config import ConfigError, ServerConfig, build_config
from tests.server.conftest import RunningServer, start_server, stop_server
from tests.support.servers import in_ci, require_zookeeper

HTTP_TIMEOUT_S = 10
SERVLET_API_JAR = Path("/usr/share/java/servlet-api.jar")


# ---------------------------------------------------------------------- helpers


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def command(port: int, name: str) -> dict[str, object]:
    status, headers, body = http_get(port, f"/commands/{name}")
    assert status == 200, (name, status, body)
    assert headers["Content-Type"] == "application/json", headers
    answer = json.loads(body)
    assert isinstance(answer, dict), answer
    return answer


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send bytes, half-close, and read until the server closes (bounded in size and time)."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close before taking everything (oversized head)
        for _ in range(1_000):
            try:
                chunk = sock.recv(65_536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running, thread = start_server(
        tmp_path,
        **{
            "admin.enableServer": "true",
            "admin.serverAddress": "127.0.0.1",
            "admin.serverPort": "0",
        },
    )
    try:
        yield running
    finally:
        stop_server(running, thread)


def admin_port(running: RunningServer) -> int:
    assert running.server.admin is not None
    return running.server.admin.bound_port


# ---------------------------------------------------------------------- parsing


def test_parse_a_request() -> None:
    head = b"GET /commands/set_trace_mask?traceMask=7&traceMask=8&x= HTTP/1.1\r\nHost: h\r\n\r\n"
    request = parse_request_head(head)
    assert request == HttpRequest(
        method="GET", path="/commands/set_trace_mask", query={"traceMask": "7", "x": ""}
    )
    # HTTP/1.0 needs no Host; the path is percent-decoded.
    assert parse_request_head(b"GET /commands/%72uok HTTP/1.0\r\n\r\n") == HttpRequest(
        method="GET", path="/commands/ruok", query={}
    )


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"GET /x HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost : h\r\n\r\n", 400),  # space before the colon
        (b"GET /x HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),
        (b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost: h\x00\r\n\r\n", 400),  # a control character
        (b"GET /x HTTP/1.1\nHost: h\r\n\r\n", 400),  # a bare LF
        (b"GET /x HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET /x HTTP/1.1\r\nHost: h\r\n" + b"A: b\r\n" * 200 + b"\r\n", 431),
        (b"GET /x?" + b"a=1&" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ],
)
def test_parse_rejects(head: bytes, status: int) -> None:
    answer = parse_request_head(head)
    assert isinstance(answer, HttpResponse), answer
    assert answer.status == status


def test_run_command_alias_unknown_and_listing(server: RunningServer) -> None:
    view = server.server
    assert server.call(lambda: admin.run_command("stat", view, {}))["command"] == "stats"
    assert server.call(lambda: admin.run_command("nope", view, {})) == {
        "command": "nope",
        "error": "Unknown command: nope",
    }
    html = admin.command_list_html("/commands")
    names = [line.split(">")[1].split("<")[0] for line in html.splitlines() if "href" in line]
    assert names == sorted(admin.PRIMARY_NAMES)
    assert "stat" not in names


# ---------------------------------------------------------------------- config


def test_config_defaults_and_keys() -> None:
    default = ServerConfig()
    assert default.admin_enabled
    assert (default.admin_server_address, default.admin_server_port) == ("0.0.0.0", 8080)
    assert default.admin_idle_timeout_ms == 30_000
    assert default.admin_command_url == "/commands"
    config = build_config(
        {
            "admin.enableServer": "false",
            "zookeeper.admin.serverPort": "9090",
            "admin.serverAddress": "127.0.0.1",
            "admin.idleTimeout": "500",
            "admin.commandURL": "/admin/",
        }
    )
    assert not config.admin_enabled
    assert config.admin_server_port == 9090
    assert config.admin_server_address == "127.0.0.1"
    assert config.admin_idle_timeout_ms == 500
    assert config.admin_command_url == "/admin"
    assert "admin.serverPort" not in config.unknown
    for bad in (
        {"admin.enableServer": "maybe"},
        {"admin.serverPort": "70000"},
        {"admin.idleTimeout": "0"},
        {"admin.commandURL": "commands"},
    ):
        with pytest.raises(ConfigError):
            build_config(bad)


# ---------------------------------------------------------------------- over HTTP


def test_edge_cases_131_132(server: RunningServer) -> None:
    port = admin_port(server)
    assert command(port, "ruok") == {"command": "ruok", "error": None}
    assert command(port, "stat")["command"] == "stats"
    assert command(port, "no_such")["error"] == "Unknown command: no_such"
    for path in ("/commands", "/commands/"):
        status, _, body = http_get(port, path)
        assert status == 200
        expected = "".join(
            f'<a href="/commands/{name}">{name}</a>\n<br/>\n'
            for name in sorted(admin.PRIMARY_NAMES)
        )
        assert body.decode() == expected


def test_every_alias_answers_with_its_primary_name(server: RunningServer) -> None:
    port = admin_port(server)
    for name, cmd in admin.COMMANDS_BY_NAME.items():
        if cmd.name in ("connection_stat_reset", "stat_reset", "set_trace_mask"):
            continue  # state-changing: covered below
        answer = command(port, name)
        assert answer["command"] == cmd.name, name
        expected_error = "server is not initialized" if cmd.name == "leader" else None
        assert answer["error"] == expected_error, (name, answer)


def test_values_follow_the_server(server: RunningServer) -> None:
    port = admin_port(server)
    client = KazooClient(hosts=server.hosts, timeout=10)
    client.start(timeout=10)
    try:
        client.create("/eph", b"x", ephemeral=True)
        client.get("/eph", watch=lambda event: None)
        session_id = client.client_id[0]
        connections = command(port, "connections")["connections"]
        assert isinstance(connections, list)
        assert [c["session_id"] for c in connections] == [session_id]
        assert connections[0]["last_operation"] == "GETD"
        assert command(port, "watches")["session_id_to_watched_paths"] == {
            str(session_id): ["/eph"]
        }
        assert command(port, "watches_by_path")["path_to_session_ids"] == {"/eph": [session_id]}
        summary = command(port, "wchs")
        assert (summary["num_connections"], summary["num_paths"]) == (1, 1)
        dump = command(port, "dump")
        assert dump["session_id_to_ephemeral_paths"] == {str(session_id): ["/eph"]}
        expiring = dump["expiry_time_to_session_ids"]
        assert isinstance(expiring, dict)
        assert [sid for sids in expiring.values() for sid in sids] == [session_id]
        stats = command(port, "server_stats")
        node_count = server.call(lambda: server.server.replica.tree.node_count)
        assert stats["node_count"] == node_count
        monitor = command(port, "mntr")
        assert monitor["ephemerals_count"] == 1
        assert monitor["znode_count"] == node_count
        assert monitor["server_state"] == "standalone"
        brief = command(port, "stats")["connections"]
        assert isinstance(brief, list)
        assert [c["remote_socket_address"] for c in brief] == [
            connections[0]["remote_socket_address"]
        ]
        assert set(brief[0]) == {
            "remote_socket_address",
            "interest_ops",
            "outstanding_requests",
            "packets_received",
            "packets_sent",
        }
    finally:
        client.stop()
        client.close()
    config = command(port, "configuration")
    assert config["client_port"] == server.port
    assert config["tick_time"] == 2000
    assert config["min_session_timeout"] == 4000
    assert config["data_dir"] == str(Path(server.server.config.data_dir).resolve() / "version-2")


def test_state_changing_commands(server: RunningServer) -> None:
    port = admin_port(server)
    assert command(port, "gtmk")["tracemask"] == 306
    assert command(port, "set_trace_mask?traceMask=7")["tracemask"] == 7
    assert command(port, "get_trace_mask")["tracemask"] == 7
    assert server.call(lambda: server.server.trace_mask) == 7
    assert command(port, "stmk")["error"] == "setTraceMask requires long traceMask argument"
    bad = command(port, "stmk?traceMask=0x1")
    assert bad["error"] == "setTraceMask requires long traceMask argument, got 0x1"
    assert "tracemask" not in bad
    assert server.call(lambda: server.server.trace_mask) == 7
    client = KazooClient(hosts=server.hosts, timeout=10)
    client.start(timeout=10)
    try:
        client.get("/")
        assert server.call(lambda: server.server.replica.stats.packets_received) > 0
        assert command(port, "srst") == {"command": "stat_reset", "error": None}
        assert server.call(lambda: server.server.replica.stats.packets_received) == 0
        assert command(port, "crst") == {"command": "connection_stat_reset", "error": None}
        assert [c["packets_received"] for c in command(port, "cons")["connections"]] == [0]  # type: ignore[union-attr]
    finally:
        client.stop()
        client.close()


def test_http_errors_and_bad_input(server: RunningServer) -> None:
    port = admin_port(server)
    status, _, _ = http_get(port, "/")
    assert status == 404
    # A body is never read, yet the answer arrives whole (the server lingers).
    body = b"x" * 200_000
    post = b"POST /commands/ruok HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body)
    reply = raw_exchange(port, post + body)
    assert reply.startswith(b"HTTP/1.1 405 "), reply
    head = raw_exchange(port, b"HEAD /commands/ruok HTTP/1.1\r\nHost: h\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n"), head
    assert raw_exchange(port, b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(port, b"GET / HTTP/1.1\r\n") == b""  # peer left mid-head
    oversized = b"GET /commands/ruok HTTP/1.1\r\nHost: h\r\nX: " + b"a" * (
        2 * limits.ADMIN_REQUEST_HEAD_SIZE_MAX
    )
    reply = raw_exchange(port, oversized + b"\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431 "), reply[:100]
    # The server lives on: both ports still answer.
    assert command(port, "ruok")["error"] is None
    assert launch.four_letter_word(server.host, server.port, "ruok") == "imok"


def test_connections_over_the_limit_are_closed(server: RunningServer) -> None:
    port = admin_port(server)
    idle = [
        socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S)
        for _ in range(limits.ADMIN_CONNECTIONS_MAX)
    ]
    try:
        # The server may not have accepted every idle one yet: an extra connection is
        # answered until it has, then refused (closed unanswered).
        refused = False
        for _ in range(100):
            with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S) as extra:
                try:
                    extra.sendall(b"GET /commands/ruok HTTP/1.0\r\n\r\n")
                    refused = extra.recv(100) == b""
                except ConnectionResetError:  # closed with our request unread
                    refused = True
                if refused:
                    break
        assert refused
    finally:
        for sock in idle:
            sock.close()
    # Once the server has seen the idle ones go, it answers again.
    for _ in range(100):
        reply = raw_exchange(port, b"GET /commands/ruok HTTP/1.0\r\n\r\n")
        if reply:
            break
        time.sleep(0.05)
    assert reply.startswith(b"HTTP/1.1 200 "), reply


def test_idle_connection_is_closed(tmp_path: Path) -> None:
    running, thread = start_server(
        tmp_path,
        **{
            "admin.enableServer": "true",
            "admin.serverAddress": "127.0.0.1",
            "admin.serverPort": "0",
            "admin.idleTimeout": "200",
        },
    )
    try:
        with socket.create_connection(("127.0.0.1", admin_port(running)), timeout=10) as sock:
            sock.sendall(b"GET /commands/ruok HTTP/1.1\r\n")  # and nothing more
            assert sock.recv(100) == b""  # closed by the server, well before our timeout
    finally:
        stop_server(running, thread)


def test_custom_command_url(tmp_path: Path) -> None:
    running, thread = start_server(
        tmp_path,
        **{
            "admin.enableServer": "true",
            "admin.serverAddress": "127.0.0.1",
            "admin.serverPort": "0",
            "admin.commandURL": "/zk",
        },
    )
    try:
        port = admin_port(running)
        status, _, body = http_get(port, "/zk/ruok")
        assert (status, json.loads(body)["command"]) == (200, "ruok")
        assert http_get(port, "/commands/ruok")[0] == 404
        assert b'<a href="/zk/ruok">ruok</a>' in http_get(port, "/zk")[2]
    finally:
        stop_server(running, thread)


def test_disabled_admin_server_listens_nowhere(corral: RunningServer) -> None:
    assert corral.server.admin is not None
    assert corral.server.admin.listener is None


def test_busy_admin_port_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = build_config(
            {
                "admin.serverAddress": "127.0.0.1",
                "admin.serverPort": str(port),
            }
        )
        view = SimpleNamespace(config=config)  # all that binding reads
        with pytest.raises(AdminServerError, match="cannot listen on"):
            asyncio.run(admin.start_admin_server(view))  # type: ignore[arg-type]
        # As a process: ZooKeeper's exit code 4 and its message.
        server = CorralServer(
            config={
                "admin.enableServer": "true",
                "admin.serverAddress": "127.0.0.1",
                "admin.serverPort": str(port),
            },
            start_timeout_ms=30_000,
        )
        with pytest.raises(ServerStartError, match="exited with code 4") as error:
            server.start()
        assert "Unable to start AdminServer" in str(error.value)


def test_the_server_command_serves_admin() -> None:
    port = free_port()
    settings = {
        "admin.enableServer": "true",
        "admin.serverAddress": "127.0.0.1",
        "admin.serverPort": str(port),
    }
    with CorralServer(config=settings, start_timeout_ms=30_000) as server:
        assert command(port, "srvr")["server_stats"]["server_state"] == "standalone"  # type: ignore[index]
        assert command(port, "configuration")["client_port"] == server.port


# ---------------------------------------------------------------------- vs ZooKeeper


class _ZooKeeperWithAdmin(launch.ApacheZooKeeper):
    """Debian's zookeeper.jar manifest lacks the servlet API that Jetty needs."""

    def _command(self, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv, env = super()._command(workdir)
        classpath = argv.index("-cp") + 1
        argv[classpath] += f":{SERVLET_API_JAR}"
        return argv, env


def _shape(value: object) -> object:
    """Keys and JSON types, recursively; a list's shape is the set of its items' shapes.

    Numeric keys (session ids, expiry times) are values, not names: they become `<n>`.
    """
    if isinstance(value, dict):
        return {
            ("<n>" if re.fullmatch(r"-?[0-9]+", key) else key): _shape(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        shapes: list[object] = []
        for item in value:
            if _shape(item) not in shapes:
                shapes.append(_shape(item))
        return ["list", *shapes]
    return type(value).__name__


# Commands whose whole shape must be equal (values differ by nature). Not compared:
# environment and system_properties (Java properties; corral has Python equivalents,
# docs/compatibility.md) and monitor (ZooKeeper has ~580 metrics; corral's keys must be
# among them, with the same types).
_SAME_SHAPE = (
    "ruok",
    "is_read_only",
    "server_stats",
    "stats",
    "configuration",
    "dirs",
    "connections",
    "watch_summary",
    "watches",
    "watches_by_path",
    "dump",
    "get_trace_mask",
    "set_trace_mask?traceMask=306",
    "set_trace_mask",
    "set_trace_mask?traceMask=abc",
    "hash",
    "initial_configuration",
    "last_snapshot",
    "leader",
    "no_such_command",
    "voting_view",
    "zabstate",
    "observers",
    "observer_connection_stat_reset",
    "connection_stat_reset",
    "stat_reset",
)


def _answers(port: int, client_hosts: str) -> dict[str, object]:
    """Every answer while one client holds a session, an ephemeral and a data watch."""
    client = KazooClient(hosts=client_hosts, timeout=10)
    client.start(timeout=30)
    try:
        client.create("/shape", b"x", ephemeral=True)
        client.get("/shape", watch=lambda event: None)
        answers: dict[str, object] = {"": http_get(port, "/commands")[2].decode()}
        for name in (*_SAME_SHAPE, "monitor", "environment", "system_properties"):
            answers[name] = command(port, name)
        return answers
    finally:
        client.stop()
        client.close()


def test_shapes_match_zookeeper(tmp_path: Path) -> None:
    require_zookeeper()
    if not SERVLET_API_JAR.is_file():
        message = f"{SERVLET_API_JAR} is missing (ZooKeeper's AdminServer needs it)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    zk_admin_port = free_port()
    zookeeper = _ZooKeeperWithAdmin(
        config={
            "admin.enableServer": "true",
            "admin.serverAddress": "127.0.0.1",
            "admin.serverPort": str(zk_admin_port),
        },
        system_properties={"zookeeper.admin.enableServer": "true"},
    )
    with zookeeper:
        expected = _answers(zk_admin_port, zookeeper.address)
    running, thread = start_server(
        tmp_path,
        **{
            "admin.enableServer": "true",
            "admin.serverAddress": "127.0.0.1",
            "admin.serverPort": "0",
        },
    )
    try:
        actual = _answers(admin_port(running), running.hosts)
    finally:
        stop_server(running, thread)
    assert actual[""] == expected[""], "the command listing differs"
    for name in _SAME_SHAPE:
        assert _shape(actual[name]) == _shape(expected[name]), name
    zk_monitor, monitor = expected["monitor"], actual["monitor"]
    assert isinstance(zk_monitor, dict)
    assert isinstance(monitor, dict)
    assert {k: _shape(v) for k, v in monitor.items()} == {k: _shape(zk_monitor[k]) for k in monitor}
    for name in ("environment", "system_properties"):
        answer = actual[name]
        assert isinstance(answer, dict)
        assert answer["error"] is None
        assert all(isinstance(v, str) for k, v in answer.items() if k not in ("error",))
