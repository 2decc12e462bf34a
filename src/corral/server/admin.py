"""The AdminServer: ZooKeeper's HTTP commands (`GET /commands/<name>` answers JSON).

Rules:
* Same commands, aliases, JSON keys and value types as ZooKeeper 3.8's AdminServer
  (server-semantics §19); the values are corral's and come from the same data layer as
  the four-letter words (server/fourletter.py), so text and JSON never disagree.
* A minimal, strict HTTP/1.1 server: one request per connection (`Connection: close`),
  GET and HEAD only (anything else 405, as 3.8), the request line and headers bounded by
  limits.ADMIN_REQUEST_HEAD_SIZE_MAX and read within admin.idleTimeout. A request body
  is never read. Malformed input gets a 4xx answer (or none) and closes that one
  connection; nothing a peer sends can stop the server.
* The 4lw whitelist does not apply here (as in ZooKeeper: the admin port is its own
  switch, admin.enableServer).
* Parsing and answering (`parse_request_head`, `respond`) are plain functions over bytes
  and a ServerView; only `start_admin_server` and its connection task do IO, on the
  server's event loop, so commands read the replica without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from corral import limits
from corral.replica.replica import ConnectionInfo
from corral.server import fourletter
from corral.server.fourletter import ServerView
from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import list_snapshots

log = logging.getLogger("corral.server.admin")

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
# Control characters other than horizontal tab may not appear in a field value.
_FIELD_VALUE_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}
_UINT64 = 0xFFFF_FFFF_FFFF_FFFF


class AdminServerError(Exception):
    """The AdminServer could not start (ZooKeeper then exits with code 4)."""


# ---------------------------------------------------------------------- HTTP


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, str]  # the first value of each parameter, as a servlet's getParameter


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        assert self.status in _REASONS, self.status


def _error(status: int, message: str) -> HttpResponse:
    return HttpResponse(
        status=status,
        body=f"{status} {_REASONS[status]}: {message}\n".encode(),
        content_type="text/plain; charset=utf-8",
    )


def parse_request_head(head: bytes) -> HttpRequest | HttpResponse:
    """The request line and headers (ending in CRLF CRLF) -> a request, or the error answer."""
    if len(head) > limits.ADMIN_REQUEST_HEAD_SIZE_MAX:
        return _error(431, f"request head over {limits.ADMIN_REQUEST_HEAD_SIZE_MAX} bytes")
    if not head.endswith(b"\r\n\r\n"):
        return _error(400, "the request head must end with an empty line")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        return _error(400, "malformed request line")
    method, target, version = parts
    if not _VERSION.fullmatch(version):
        return _error(400, "malformed request line")
    if version not in _VERSIONS:
        return _error(505, version.decode("latin-1"))
    if len(lines) - 1 > limits.ADMIN_HEADERS_MAX:
        return _error(431, f"more than {limits.ADMIN_HEADERS_MAX} header fields")
    hosts = 0
    for line in lines[1:]:
        name, colon, field_value = line.partition(b":")
        # No whitespace before the colon, no obsolete line folding (RFC 9112 §5).
        if not colon or not _TOKEN.fullmatch(name) or _FIELD_VALUE_CONTROL.search(field_value):
            return _error(400, "malformed header field")
        hosts += name.lower() == b"host"
    if version == b"HTTP/1.1" and hosts != 1:
        return _error(400, "an HTTP/1.1 request needs exactly one Host header")
    if not target.startswith(b"/") or any(b < 0x21 or b > 0x7E for b in target):
        return _error(400, "the request target must be an absolute path")
    raw_path, _, raw_query = target.decode("ascii").partition("?")
    try:
        pairs = parse_qsl(
            raw_query, keep_blank_values=True, max_num_fields=limits.ADMIN_QUERY_FIELDS_MAX
        )
    except ValueError:
        return _error(400, f"more than {limits.ADMIN_QUERY_FIELDS_MAX} query parameters")
    query: dict[str, str] = {}
    for key, value in pairs:
        query.setdefault(key, value)
    return HttpRequest(method=method.decode("ascii"), path=unquote(raw_path), query=query)


def encode_response(response: HttpResponse, *, with_body: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {_REASONS[response.status]}"]
    if response.content_type is not None:
        lines.append(f"Content-Type: {response.content_type}")
    lines.append(f"Content-Length: {len(response.body)}")
    lines.append("Connection: close")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + response.body if with_body else head


def respond(request: HttpRequest, view: ServerView) -> HttpResponse:
    """The answer to one parsed request."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(
            status=405,
            body=f"405 HTTP method {request.method} is not supported by this URL\n".encode(),
            content_type="text/plain; charset=utf-8",
            headers=(("Allow", "GET, HEAD"),),
        )
    base = view.config.admin_command_url.rstrip("/")
    if request.path in (base, base + "/"):
        return HttpResponse(
            status=200, body=command_list_html(base).encode(), content_type="text/html"
        )
    if not request.path.startswith(base + "/"):
        return _error(404, request.path)
    name = request.path[len(base) + 1 :]
    body = json.dumps(run_command(name, view, request.query), indent=2) + "\n"
    return HttpResponse(status=200, body=body.encode(), content_type="application/json")


# ---------------------------------------------------------------------- commands

Fields = dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandError:
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    name: str  # the primary name, reported as "command"
    aliases: tuple[str, ...]
    run: Callable[[ServerView, dict[str, str]], Fields | CommandError]


def run_command(name: str, view: ServerView, query: dict[str, str]) -> Fields:
    """The JSON object for `name` (an alias answers with its primary name)."""
    command = COMMANDS_BY_NAME.get(name)
    if command is None:
        return {"command": name, "error": f"Unknown command: {name}"}
    result = command.run(view, query)
    if isinstance(result, CommandError):
        return {"command": command.name, "error": result.message}
    assert "command" not in result, command.name
    return {**result, "command": command.name, "error": None}


def command_list_html(base: str) -> str:
    """ZooKeeper's listing: a link per primary name, sorted, each followed by `<br/>`."""
    return "".join(f'<a href="{base}/{name}">{name}</a>\n<br/>\n' for name in sorted(PRIMARY_NAMES))


def _signed64(value: int) -> int:
    """A 64-bit id as Java prints a long (session ids with the top bit set are negative)."""
    value &= _UINT64
    return value - (1 << 64) if value >> 63 else value


def _java_average(total_ms: int, count: int) -> float:
    return float(fourletter.java_double(fourletter.latency_average_ms(total_ms, count)))


def _connection_info(view: ServerView, connection: ConnectionInfo, *, brief: bool) -> Fields:
    info: Fields = {
        "remote_socket_address": f"{connection.address}:{connection.port}",
        "interest_ops": 1 if connection.handshake_done else 0,
        "outstanding_requests": len(connection.queue),
        "packets_received": connection.packets_received,
        "packets_sent": connection.packets_sent,
    }
    if brief or not connection.session_id:
        return info
    now_wall, now = view.wall_ms(), view.now_ms()
    last_response = now_wall - (now - connection.last_response_ms)
    info.update(
        session_id=_signed64(connection.session_id),
        last_operation=fourletter.last_operation(connection),
        established=now_wall - (now - connection.established_ms),
        session_timeout=connection.timeout_ms,
        last_cxid=connection.last_xid,
        last_zxid=connection.last_zxid,
        last_response_time=last_response if connection.latency_count else 0,
        last_latency=connection.last_latency_ms,
        min_latency=connection.latency_min_ms,
        # ZooKeeper's per-connection average is a long (integer division).
        avg_latency=(
            connection.latency_total_ms // connection.latency_count
            if connection.latency_count
            else 0
        ),
        max_latency=connection.latency_max_ms,
    )
    return info


def _connections(view: ServerView, *, brief: bool) -> list[Fields]:
    return [
        _connection_info(view, connection, brief=brief)
        for connection in view.replica.connections.values()
    ]


def _server_stats(view: ServerView, query: dict[str, str]) -> Fields:
    replica, config = view.replica, view.config
    stats = replica.stats
    response_sizes = {
        "last_buffer_size": stats.last_response_size,
        "min_buffer_size": stats.min_response_size,
        "max_buffer_size": stats.max_response_size,
    }
    return {
        "version": fourletter.VERSION_LINE.removeprefix("Zookeeper version: "),
        "read_only": False,
        "server_stats": {
            "packets_sent": stats.packets_sent,
            "packets_received": stats.packets_received,
            "fsync_threshold_exceed_count": 0,
            "client_response_stats": dict(response_sizes),
            "data_dir_size": fourletter.dir_size(config.data_dir),
            "log_dir_size": fourletter.dir_size(config.log_dir),
            "provider_null": False,
            "server_state": fourletter.server_mode(view),
            "last_processed_zxid": replica.last_zxid,
            "outstanding_requests": replica.outstanding_requests,
            "avg_latency": _java_average(stats.latency_total_ms, stats.latency_count),
            "max_latency": stats.latency_max_ms,
            "min_latency": stats.latency_min_ms,
            "num_alive_client_connections": len(replica.connections),
            "uptime": view.now_ms() - view.started_ms,
            "auth_failed_count": stats.auth_failed_count,
            "non_mtlsremote_conn_count": 0,
            "non_mtlslocal_conn_count": 0,
        },
        "client_response": response_sizes,
        "node_count": replica.tree.node_count,
    }


def _stats(view: ServerView, query: dict[str, str]) -> Fields:
    fields = _server_stats(view, query)
    fields["connections"] = _connections(view, brief=True)
    fields["secure_connections"] = []
    return fields


def _monitor(view: ServerView, query: dict[str, str]) -> Fields:
    return {
        key.removeprefix("zk_"): (
            float(fourletter.java_double(value)) if isinstance(value, float) else value
        )
        for key, value in fourletter.monitor_metrics(view)
    }


# The JSON names of the `conf` keys (ZooKeeper's JSON leaves out the sizes and the
# secure port).
_CONFIGURATION_KEYS = {
    "clientPort": "client_port",
    "dataDir": "data_dir",
    "dataLogDir": "data_log_dir",
    "tickTime": "tick_time",
    "maxClientCnxns": "max_client_cnxns",
    "minSessionTimeout": "min_session_timeout",
    "maxSessionTimeout": "max_session_timeout",
    "serverId": "server_id",
    "clientPortListenBacklog": "client_port_listen_backlog",
}


def _configuration(view: ServerView, query: dict[str, str]) -> Fields:
    pairs = dict(fourletter.conf_pairs(view))
    return {json_key: pairs[key] for key, json_key in _CONFIGURATION_KEYS.items()}


def _dirs(view: ServerView, query: dict[str, str]) -> Fields:
    return {
        "datadir_size": fourletter.dir_size(view.config.data_dir),
        "logdir_size": fourletter.dir_size(view.config.log_dir),
    }


def _session_of(view: ServerView, connection_id: int) -> int:
    connection = view.replica.connections.get(connection_id)
    return _signed64(connection.session_id) if connection is not None else 0


def _watch_summary(view: ServerView, query: dict[str, str]) -> Fields:
    by_connection = view.replica.watches.data_watch_paths_by_connection()
    by_path = view.replica.watches.data_watch_connections_by_path()
    return {
        "num_connections": len(by_connection),
        "num_paths": len(by_path),
        "num_total_watches": sum(len(paths) for paths in by_connection.values()),
    }


def _watches(view: ServerView, query: dict[str, str]) -> Fields:
    by_session: dict[str, list[str]] = {}
    for connection_id, paths in view.replica.watches.data_watch_paths_by_connection().items():
        by_session.setdefault(str(_session_of(view, connection_id)), []).extend(paths)
    return {"session_id_to_watched_paths": by_session}


def _watches_by_path(view: ServerView, query: dict[str, str]) -> Fields:
    by_path = view.replica.watches.data_watch_connections_by_path()
    return {
        "path_to_session_ids": {
            path: [_session_of(view, cid) for cid in connection_ids]
            for path, connection_ids in by_path.items()
        }
    }


def _dump(view: ServerView, query: dict[str, str]) -> Fields:
    tree = view.replica.tree
    by_deadline: dict[int, list[int]] = {}
    for session_id in tree.sessions:
        deadline_ms = view.replica.session_deadline_ms(session_id)
        if deadline_ms is not None:
            by_deadline.setdefault(deadline_ms, []).append(_signed64(session_id))
    ephemerals = {
        str(_signed64(session_id)): sorted(tree.ephemerals(session_id))
        for session_id in tree.sessions
        if tree.ephemerals(session_id)
    }
    return {
        "expiry_time_to_session_ids": {
            str(deadline_ms): by_deadline[deadline_ms] for deadline_ms in sorted(by_deadline)
        },
        "session_id_to_ephemeral_paths": ephemerals,
    }


def _set_trace_mask(view: ServerView, query: dict[str, str]) -> Fields | CommandError:
    text = query.get("traceMask")
    if text is None:
        return CommandError(message="setTraceMask requires long traceMask argument")
    # Java's Long.parseLong: an optional sign and decimal digits, within 64 bits.
    if re.fullmatch(r"[+-]?[0-9]{1,19}", text) is None or not (-(1 << 63) <= int(text) < 1 << 63):
        return CommandError(message=f"setTraceMask requires long traceMask argument, got {text}")
    view.trace_mask = int(text)
    return {"tracemask": view.trace_mask}


def _last_snapshot(view: ServerView, query: dict[str, str]) -> Fields:
    snapshots = list_snapshots(OsFileSystem(), view.config.data_dir)
    for index, path in snapshots:
        with contextlib.suppress(OSError):
            return {"zxid": f"{index:x}", "timestamp": int(os.stat(path).st_mtime)}
    # No snapshot yet (corral writes none at start-up): the empty tree as of the start.
    started_wall_ms = view.wall_ms() - (view.now_ms() - view.started_ms)
    return {"zxid": "0", "timestamp": started_wall_ms // 1000}


def _system_properties(view: ServerView, query: dict[str, str]) -> Fields:
    # There is no JVM: the `envi` pairs, plus ZooKeeper's system-property spelling of
    # the zoo.cfg keys corral does not interpret (ZooKeeper turns those into
    # `zookeeper.<key>` properties). Never the process environment: it may hold secrets.
    properties: dict[str, str] = dict(fourletter.environment_pairs())
    for key, value in view.config.unknown.items():
        properties[key if key.startswith("zookeeper.") else f"zookeeper.{key}"] = value
    return dict(sorted(properties.items()))


def _connection_stat_reset(view: ServerView, query: dict[str, str]) -> Fields:
    fourletter.reset_connection_stats(view)
    return {}


def _stat_reset(view: ServerView, query: dict[str, str]) -> Fields:
    view.replica.stats.reset()
    return {}


def _fields(make: Callable[[ServerView], Fields]) -> Callable[[ServerView, dict[str, str]], Fields]:
    return lambda view, query: make(view)


COMMANDS: tuple[Command, ...] = (
    Command(name="configuration", aliases=("conf", "config"), run=_configuration),
    Command(name="connection_stat_reset", aliases=("crst",), run=_connection_stat_reset),
    Command(
        name="connections",
        aliases=("cons",),
        run=_fields(
            lambda view: {
                "connections": _connections(view, brief=False),
                "secure_connections": [],
            }
        ),
    ),
    Command(name="dirs", aliases=(), run=_dirs),
    Command(name="dump", aliases=(), run=_dump),
    Command(
        name="environment",
        aliases=("env", "envi"),
        run=_fields(lambda view: dict(fourletter.environment_pairs())),
    ),
    Command(
        name="get_trace_mask",
        aliases=("gtmk",),
        run=_fields(lambda view: {"tracemask": view.trace_mask}),
    ),
    # corral keeps no tree digests (docs/compatibility.md): an empty list.
    Command(name="hash", aliases=(), run=_fields(lambda view: {"digests": []})),
    Command(
        name="initial_configuration",
        aliases=("icfg",),
        run=_fields(
            # The ensemble secret stays out: the AdminServer listens on every interface.
            lambda view: {"initial_configuration": view.config.source_text_redacted}
        ),
    ),
    Command(
        name="is_read_only",
        aliases=("isro",),
        run=_fields(lambda view: {"read_only": view.replica.read_only}),
    ),
    Command(name="last_snapshot", aliases=("lsnp",), run=_last_snapshot),
    Command(
        name="leader",
        aliases=("lead",),
        # A standalone server is no quorum peer: ZooKeeper's answer.
        run=lambda view, query: CommandError(message="server is not initialized"),
    ),
    Command(name="monitor", aliases=("mntr",), run=_monitor),
    Command(name="observer_connection_stat_reset", aliases=("orst",), run=_fields(lambda view: {})),
    Command(
        name="observers",
        aliases=("obsr",),
        run=_fields(lambda view: {"synced_observers": 0, "observers": []}),
    ),
    Command(name="ruok", aliases=(), run=_fields(lambda view: {})),
    Command(name="server_stats", aliases=("srvr",), run=_server_stats),
    Command(name="set_trace_mask", aliases=("stmk",), run=_set_trace_mask),
    Command(name="stat_reset", aliases=("srst",), run=_stat_reset),
    Command(name="stats", aliases=("stat",), run=_stats),
    Command(name="system_properties", aliases=("sysp",), run=_system_properties),
    Command(name="voting_view", aliases=(), run=_fields(lambda view: {"current_config": {}})),
    Command(name="watch_summary", aliases=("wchs",), run=_watch_summary),
    Command(name="watches", aliases=("wchc",), run=_watches),
    Command(name="watches_by_path", aliases=("wchp",), run=_watches_by_path),
    Command(
        name="zabstate",
        aliases=(),
        run=_fields(lambda view: {"voting": False, "zabstate": ""}),
    ),
)
PRIMARY_NAMES: frozenset[str] = frozenset(command.name for command in COMMANDS)
COMMANDS_BY_NAME: dict[str, Command] = {
    name: command for command in COMMANDS for name in (command.name, *command.aliases)
}
assert len(COMMANDS_BY_NAME) == sum(1 + len(c.aliases) for c in COMMANDS), "a name twice"


# ---------------------------------------------------------------------- IO


@dataclass(slots=True)
class AdminServer:
    """The listener (None when admin.enableServer=false); `aclose()` stops accepting and
    ends the open connections."""

    view: ServerView
    listener: asyncio.Server | None = None
    bound_port: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def aclose(self) -> None:
        if self.listener is None:
            return
        self.listener.close()
        for writer in list(self._writers):
            writer.close()
        await self.listener.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if len(self._writers) >= limits.ADMIN_CONNECTIONS_MAX:
            log.warning("admin: more than %d connections; closing one", len(self._writers))
            writer.close()
            return
        self._writers.add(writer)
        timeout_s = self.view.config.admin_idle_timeout_ms / 1000
        try:
            answer = await asyncio.wait_for(self._answer(reader), timeout_s)
            if answer:
                writer.write(answer)
                await asyncio.wait_for(writer.drain(), timeout_s)
                await self._linger(reader, writer)
        except (ConnectionError, OSError, TimeoutError) as e:
            log.debug("admin connection: %r", e)
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then take what the peer still sends (a body we never read, bounded
        in bytes and time): closing with unread input would reset the connection and
        could destroy the answer before the peer reads it."""
        if not writer.can_write_eof():
            return
        writer.write_eof()
        received = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limits.ADMIN_LINGER_MS / 1000):
                while received <= limits.ADMIN_LINGER_SIZE_MAX:
                    data = await reader.read(65_536)
                    if not data:
                        return
                    received += len(data)

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        """The bytes to send back (b"" when the peer left before a whole request)."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return b""
        except asyncio.LimitOverrunError:
            size = limits.ADMIN_REQUEST_HEAD_SIZE_MAX
            return encode_response(_error(431, f"request head over {size} bytes"))
        request = parse_request_head(head)
        if isinstance(request, HttpResponse):
            log.info("admin: bad request: %s", request.body.decode().strip())
            return encode_response(request)
        response = respond(request, self.view)
        return encode_response(response, with_body=request.method != "HEAD")


async def start_admin_server(view: ServerView) -> AdminServer:
    """Bind the admin listener if admin.enableServer; AdminServerError if it cannot bind."""
    config = view.config
    admin = AdminServer(view=view)
    if not config.admin_enabled:
        return admin
    try:
        admin.listener = await asyncio.start_server(
            admin._serve_connection,
            host=config.admin_server_address,
            port=config.admin_server_port,
            reuse_address=True,
            limit=limits.ADMIN_REQUEST_HEAD_SIZE_MAX,
        )
    except OSError as e:
        raise AdminServerError(
            f"cannot listen on {config.admin_server_address}:{config.admin_server_port}"
            f" ({e.strerror or e}); set admin.serverPort, or admin.enableServer=false"
        ) from None
    sockets = admin.listener.sockets or ()
    admin.bound_port = sockets[0].getsockname()[1] if sockets else config.admin_server_port
    log.info(
        "AdminServer on http://%s:%d%s",
        config.admin_server_address,
        admin.bound_port,
        config.admin_command_url,
    )
    return admin
