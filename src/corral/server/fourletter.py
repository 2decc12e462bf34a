"""Four-letter words: the text answers ZooKeeper gives on the client port.

Rules: output formats follow ZooKeeper's (server-semantics §18) so that monitoring
tools and `zkServer.sh status` parse them; values are corral's. A known word that is
not whitelisted gets ZooKeeper's refusal line; a server without a quorum (and without
read-only mode) answers the words about its serving state with ZooKeeper's
not-serving line. Pure formatting over a ServerView; the
only state changes are the two reset words (crst, srst) and the trace mask (stmk).

The public functions below the formatters (`conf_pairs`, `environment_pairs`,
`monitor_metrics`, `dir_size`, `last_operation`, `reset_*`) are the data layer that the
AdminServer (server/admin.py) shares: the same numbers in text here and in JSON there.
"""

from __future__ import annotations

import getpass
import os
import platform
import resource
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Protocol

from corral import __version__
from corral.protocol.constants import OpCode
from corral.replica.replica import ConnectionInfo, Replica
from corral.server.config import ServerConfig

ZOOKEEPER_COMPAT_VERSION = "3.9.3"
VERSION_LINE = (
    f"Zookeeper version: {ZOOKEEPER_COMPAT_VERSION}-corral-{__version__}"
    ", built on 2026-11-26 00:00 UTC"
)

_LAST_OP_CODES: dict[int, str] = {
    OpCode.CREATE: "CREA",
    OpCode.CREATE2: "CREA",
    OpCode.CREATE_CONTAINER: "CREA",
    OpCode.CREATE_TTL: "CREA",
    OpCode.DELETE: "DELE",
    OpCode.SET_DATA: "SETD",
    OpCode.GET_DATA: "GETD",
    OpCode.EXISTS: "EXIS",
    OpCode.GET_CHILDREN: "GETC",
    OpCode.GET_CHILDREN2: "GETC",
    OpCode.GET_ACL: "GETA",
    OpCode.SET_ACL: "SETA",
    OpCode.SYNC: "SYNC",
    OpCode.PING: "PING",
    OpCode.CREATE_SESSION: "SESS",
    OpCode.CLOSE_SESSION: "CLOS",
    OpCode.MULTI: "MULT",
    OpCode.MULTI_READ: "MLTR",
    OpCode.CHECK: "CHEC",
    OpCode.SET_WATCHES: "SETW",
    OpCode.SET_WATCHES2: "STW2",
    OpCode.ADD_WATCH: "ADDW",
    OpCode.CHECK_WATCHES: "CHKW",
    OpCode.REMOVE_WATCHES: "REMW",
    OpCode.GET_EPHEMERALS: "GETE",
    OpCode.GET_ALL_CHILDREN_NUMBER: "GETACN",
    OpCode.WHO_AM_I: "HOMI",
    OpCode.RECONFIG: "RECO",
}

DEFAULT_TRACE_MASK = 306


class ServerView(Protocol):
    """What the words need from the running server."""

    @property
    def replica(self) -> Replica: ...
    @property
    def config(self) -> ServerConfig: ...
    @property
    def started_ms(self) -> int: ...
    @property
    def bound_port(self) -> int: ...  # the client port actually bound (0 before)
    def now_ms(self) -> int: ...
    def wall_ms(self) -> int: ...

    trace_mask: int


@dataclass(frozen=True, slots=True)
class _Refused:
    word: str


def server_mode(view: ServerView) -> str:
    """`Mode:` of srvr/stat: standalone, or the replica's role in its ensemble."""
    replica = view.replica
    if not view.config.is_ensemble:
        return "standalone"
    if replica.read_only:
        return "read-only"
    if replica.is_leader:
        return "leader"
    if replica.config.replica_id in replica.config.learners:
        return "observer"
    return "follower"


def java_double(value: float) -> str:
    """A double as Java prints it after ZooKeeper rounds it half-up to 4 decimals."""
    rounded = Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    text = format(rounded.normalize(), "f")
    return text if "." in text else text + ".0"


def answer(word: str, view: ServerView, argument: int | None = None) -> str:
    """The full text to write back for `word` (the connection is closed afterwards)."""
    whitelist = view.config.four_letter_whitelist
    always = word == "isro" and view.config.read_only_mode_enabled  # as in ZooKeeper
    if word not in whitelist and "*" not in whitelist and not always:
        return f"{word} is not executed because it is not in the whitelist.\n"
    handler = _HANDLERS.get(word)
    if handler is None:
        return ""
    if word in _NEED_SERVING and not view.replica.serving:
        return NOT_SERVING + "\n"
    if word == "stmk":
        view.trace_mask = argument if argument is not None else view.trace_mask
    return handler(view)


def latency_average_ms(total_ms: int, count: int) -> float:
    return total_ms / count if count else 0.0


def last_operation(connection: ConnectionInfo) -> str:
    """The `lop` code of a connection's last request (`NA` before the first)."""
    return _LAST_OP_CODES.get(connection.last_opcode or 0, "NA")


def _latency_line(view: ServerView) -> str:
    stats = view.replica.stats
    average = latency_average_ms(stats.latency_total_ms, stats.latency_count)
    low, high = stats.latency_min_ms, stats.latency_max_ms
    return f"Latency min/avg/max: {low}/{java_double(average)}/{high}\n"


def _counters(view: ServerView) -> str:
    replica = view.replica
    return (
        _latency_line(view)
        + f"Received: {replica.stats.packets_received}\n"
        + f"Sent: {replica.stats.packets_sent}\n"
        + f"Connections: {len(replica.connections)}\n"
        + f"Outstanding: {replica.outstanding_requests}\n"
        + f"Zxid: 0x{replica.last_zxid:x}\n"
        + f"Mode: {server_mode(view)}\n"
        + f"Node count: {replica.tree.node_count}\n"
        + _proposal_line(view)
    )


def _proposal_line(view: ServerView) -> str:
    """ZooKeeper's leader adds its proposal sizes to srvr/stat."""
    if not (view.config.is_ensemble and view.replica.is_leader):
        return ""
    f = view.replica.ensemble_figures()
    low, high = f.proposal_size_min, f.proposal_size_max
    return f"Proposal sizes last/min/max: {f.proposal_size_last}/{low}/{high}\n"


def _version_lines(view: ServerView) -> str:
    if view.replica.read_only:
        return VERSION_LINE + "\nREAD-ONLY mode; serving only read-only clients\n"
    return VERSION_LINE + "\n"


def _srvr(view: ServerView) -> str:
    return _version_lines(view) + _counters(view)


def _connection_brief(connection: ConnectionInfo) -> str:
    queued = len(connection.queue)
    # ZooKeeper shows the interest set; a connection still in its first packet shows 0.
    interest = 1 if connection.handshake_done else 0
    return (
        f" /{connection.address}:{connection.port}[{interest}]"
        f"(queued={queued},recved={connection.packets_received},sent={connection.packets_sent}"
    )


def _stat(view: ServerView) -> str:
    lines = ["Clients:"]
    for connection in view.replica.connections.values():
        lines.append(_connection_brief(connection) + ")")
    return _version_lines(view) + "\n".join(lines) + "\n\n" + _counters(view)


def _cons(view: ServerView) -> str:
    now_wall = view.wall_ms()
    now = view.now_ms()
    lines = []
    for connection in view.replica.connections.values():
        text = _connection_brief(connection)
        if connection.session_id:
            average = latency_average_ms(connection.latency_total_ms, connection.latency_count)
            last_op = last_operation(connection)
            established = now_wall - (now - connection.established_ms)
            last_response = now_wall - (now - connection.last_response_ms)
            text += (
                f",sid=0x{connection.session_id & 0xFFFFFFFFFFFFFFFF:x},lop={last_op}"
                f",est={established},to={connection.timeout_ms}"
                f",lcxid=0x{connection.last_xid & 0xFFFFFFFF:x}"
                f",lzxid=0x{connection.last_zxid & 0xFFFFFFFFFFFFFFFF:x}"
                f",lresp={last_response if connection.latency_count else 0}"
                f",llat={connection.last_latency_ms},minlat={connection.latency_min_ms}"
                f",avglat={java_double(average)},maxlat={connection.latency_max_ms}"
            )
        lines.append(text + ")")
    return "\n".join(lines) + "\n\n"


def dir_size(path: str) -> int:
    total = 0
    root = Path(path)
    if not root.exists():
        return 0
    for file in root.rglob("*"):
        try:
            if file.is_file():
                total += file.stat().st_size
        except OSError:
            continue
    return total


def conf_pairs(view: ServerView) -> list[tuple[str, int | str]]:
    """The `conf` keys and values, in ZooKeeper's order."""
    config = view.config
    data_dir = str(Path(config.data_dir).resolve() / "version-2")
    log_dir = str(Path(config.log_dir).resolve() / "version-2")
    pairs: list[tuple[str, int | str]] = [
        ("clientPort", view.bound_port or config.client_port),  # clientPort=0: the one bound
        ("secureClientPort", -1),
        ("dataDir", data_dir),
        ("dataDirSize", dir_size(config.data_dir)),
        ("dataLogDir", log_dir),
        ("dataLogSize", dir_size(config.log_dir)),
        ("tickTime", config.tick_time_ms),
        ("maxClientCnxns", config.max_client_cnxns),
        ("minSessionTimeout", config.min_session_timeout_effective_ms),
        ("maxSessionTimeout", config.max_session_timeout_effective_ms),
        ("clientPortListenBacklog", -1),
        ("serverId", config.my_id if config.is_ensemble else 0),
    ]
    if config.is_ensemble:
        me = next(m for m in config.members if m.replica_id == config.my_id)
        pairs += [
            ("initLimit", config.init_limit_ticks),
            ("syncLimit", config.sync_limit_ticks),
            ("electionAlg", 3),  # ZooKeeper's only one (fast leader election)
            ("electionPort", me.election_port),
            ("quorumPort", me.quorum_port),
            ("peerType", 1 if me.observer else 0),  # ZooKeeper's LearnerType ordinal
        ]
    return pairs


def _conf(view: ServerView) -> str:
    text = "".join(f"{key}={value}\n" for key, value in conf_pairs(view))
    if view.config.is_ensemble:
        text += "membership: \n" + view.config.membership_text() + "\n"
    return text


def environment_pairs() -> list[tuple[str, str]]:
    """The `envi` keys and values: Python/OS equivalents of ZooKeeper's Java ones."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * page
        total = os.sysconf("SC_PHYS_PAGES") * page
    except (ValueError, OSError):
        free = total = 0
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    pairs = [
        ("zookeeper.version", VERSION_LINE.removeprefix("Zookeeper version: ")),
        ("host.name", socket.gethostname()),
        ("python.version", platform.python_version()),
        ("python.implementation", platform.python_implementation()),
        ("python.executable", sys.executable),
        ("os.name", platform.system()),
        ("os.arch", platform.machine()),
        ("os.version", platform.release()),
        ("user.name", user),
        ("user.home", str(Path.home())),
        ("user.dir", os.getcwd()),
        ("os.memory.free", f"{free // (1024 * 1024)}MB"),
        ("os.memory.max", f"{total // (1024 * 1024)}MB"),
        ("os.memory.total", f"{total // (1024 * 1024)}MB"),
    ]
    return pairs


def _envi(view: ServerView) -> str:
    return "Environment:\n" + "".join(f"{key}={value}\n" for key, value in environment_pairs())


def _dirs(view: ServerView) -> str:
    config = view.config
    return f"datadir_size: {dir_size(config.data_dir)}\nlogdir_size: {dir_size(config.log_dir)}\n"


def _wchs(view: ServerView) -> str:
    by_connection = view.replica.watches.data_watch_paths_by_connection()
    by_path = view.replica.watches.data_watch_connections_by_path()
    total = sum(len(paths) for paths in by_connection.values())
    return (
        f"{len(by_connection)} connections watching {len(by_path)} paths\nTotal watches:{total}\n"
    )


def _session_of(view: ServerView, connection_id: int) -> int:
    connection = view.replica.connections.get(connection_id)
    return connection.session_id & 0xFFFFFFFFFFFFFFFF if connection is not None else 0


def _wchc(view: ServerView) -> str:
    lines = []
    for connection_id, paths in view.replica.watches.data_watch_paths_by_connection().items():
        lines.append(f"0x{_session_of(view, connection_id):x}")
        lines.extend(f"\t{path}" for path in paths)
    return "\n".join(lines) + "\n\n" if lines else "\n"


def _wchp(view: ServerView) -> str:
    lines = []
    for path, connection_ids in view.replica.watches.data_watch_connections_by_path().items():
        lines.append(path)
        lines.extend(f"\t0x{_session_of(view, cid):x}" for cid in connection_ids)
    return "\n".join(lines) + "\n\n" if lines else "\n"


def java_date(wall_ms: int) -> str:
    """A time as Java's Date.toString() prints it: `Thu Nov 26 10:30:41 UTC 2026`."""
    return time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(wall_ms / 1000))


def _buckets(view: ServerView, deadlines: list[tuple[int, str]]) -> list[str]:
    """ZooKeeper's ExpiryQueue dump: `Sets (buckets)/(items):`, then each bucket in time order."""
    by_deadline: dict[int, list[str]] = {}
    for deadline_ms, item in deadlines:
        by_deadline.setdefault(deadline_ms, []).append(item)
    lines = [f"Sets ({len(by_deadline)})/({len(deadlines)}):"]
    offset_ms = view.wall_ms() - view.now_ms()
    for deadline_ms in sorted(by_deadline):
        items = by_deadline[deadline_ms]
        lines.append(f"{len(items)} expire at {java_date(deadline_ms + offset_ms)}:")
        lines.extend(f"\t{item}" for item in items)
    return lines


def _dump(view: ServerView) -> str:
    replica = view.replica
    sessions: list[tuple[int, str]] = []
    for session_id in replica.tree.sessions:
        deadline_ms = replica.session_deadline_ms(session_id)
        if deadline_ms is not None:
            sessions.append((deadline_ms, f"0x{session_id & 0xFFFFFFFFFFFFFFFF:x}"))
    lines = [
        "SessionTracker dump:",
        "Session " + _buckets(view, sessions)[0],
        *_buckets(view, sessions)[1:],
    ]
    lines.append("ephemeral nodes dump:")
    owners = [s for s in replica.tree.sessions.values() if replica.tree.ephemerals(s.session_id)]
    lines.append(f"Sessions with Ephemerals ({len(owners)}):")
    for session in owners:
        lines.append(f"0x{session.session_id & 0xFFFFFFFFFFFFFFFF:x}:")
        lines.extend(f"\t{path}" for path in sorted(replica.tree.ephemerals(session.session_id)))
    connections: list[tuple[int, str]] = []
    for connection in replica.connections.values():
        deadline_ms = (
            replica.session_deadline_ms(connection.session_id) if connection.session_id else None
        )
        if deadline_ms is None:
            deadline_ms = connection.opened_ms + replica.config.handshake_timeout_ms
        sid = connection.session_id & 0xFFFFFFFFFFFFFFFF
        connections.append(
            (deadline_ms, f"ip: /{connection.address}:{connection.port} sessionId: 0x{sid:x}")
        )
    buckets = _buckets(view, connections)
    lines += ["Connections dump:", "Connections " + buckets[0], *buckets[1:]]
    return "\n".join(lines) + "\n"


def monitor_metrics(view: ServerView) -> list[tuple[str, int | float | str]]:
    """The `mntr` keys (with their `zk_` prefix) and typed values; floats are averages."""
    replica = view.replica
    stats = replica.stats
    average = latency_average_ms(stats.latency_total_ms, stats.latency_count)
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = -1
    max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    by_connection = replica.watches.data_watch_paths_by_connection()
    metrics: list[tuple[str, int | float | str]] = [
        ("zk_version", VERSION_LINE.removeprefix("Zookeeper version: ")),
        ("zk_server_state", server_mode(view)),
        ("zk_avg_latency", average),
        ("zk_max_latency", stats.latency_max_ms),
        ("zk_min_latency", stats.latency_min_ms),
        ("zk_packets_received", stats.packets_received),
        ("zk_packets_sent", stats.packets_sent),
        ("zk_num_alive_connections", len(replica.connections)),
        ("zk_outstanding_requests", replica.outstanding_requests),
        ("zk_znode_count", replica.tree.node_count),
        ("zk_watch_count", sum(len(p) for p in by_connection.values())),
        ("zk_ephemerals_count", replica.tree.ephemeral_count),
        ("zk_approximate_data_size", replica.tree.approximate_data_size),
        ("zk_open_file_descriptor_count", open_fds),
        ("zk_max_file_descriptor_count", max_fds),
        ("zk_global_sessions", len(replica.tree.sessions)),
        ("zk_local_sessions", 0),
        ("zk_uptime", view.now_ms() - view.started_ms),
        ("zk_last_client_response_size", stats.last_response_size),
        ("zk_max_client_response_size", stats.max_response_size),
        ("zk_min_client_response_size", stats.min_response_size),
        ("zk_connection_drop_probability", 0.0),
        ("zk_outstanding_tls_handshake", 0),
        ("zk_auth_failed_count", stats.auth_failed_count),
        ("zk_non_mtls_remote_conn_count", 0),
        ("zk_non_mtls_local_conn_count", 0),
    ]
    if view.config.is_ensemble:
        figures = replica.ensemble_figures()
        mode = server_mode(view)
        metrics += [
            ("zk_quorum_size", figures.quorum_size),
            ("zk_peer_state", f"{_PEER_STATES.get(mode, 'looking')} - broadcast"),
        ]
        if replica.is_leader:
            metrics += [
                ("zk_learners", figures.followers),
                ("zk_synced_followers", figures.synced_followers),
                ("zk_synced_non_voting_followers", 0),
                ("zk_synced_observers", figures.synced_observers),
                ("zk_pending_syncs", figures.pending_syncs),
                ("zk_last_proposal_size", figures.proposal_size_last),
                ("zk_max_proposal_size", figures.proposal_size_max),
                ("zk_min_proposal_size", figures.proposal_size_min),
            ]
    return metrics


_PEER_STATES = {"leader": "leading", "follower": "following", "observer": "observing"}


def _mntr(view: ServerView) -> str:
    return "".join(
        f"{key}\t{java_double(value) if isinstance(value, float) else value}\n"
        for key, value in monitor_metrics(view)
    )


def reset_connection_stats(view: ServerView) -> None:
    for connection in view.replica.connections.values():
        connection.packets_received = connection.packets_sent = 0
        connection.latency_min_ms = connection.latency_max_ms = 0
        connection.latency_total_ms = connection.latency_count = 0


def _crst(view: ServerView) -> str:
    reset_connection_stats(view)
    return "Connection stats reset.\n"


def _srst(view: ServerView) -> str:
    view.replica.stats.reset()
    return "Server stats reset.\n"


def _isro(view: ServerView) -> str:
    if not view.replica.serving:
        return "null"
    return "ro" if view.replica.read_only else "rw"


# What a server without a quorum (and without read-only mode) answers to the words that
# describe the serving state, as ZooKeeper's do when its server is not running.
NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
_NEED_SERVING = frozenset(
    {"srvr", "stat", "cons", "conf", "dirs", "dump", "mntr", "crst", "srst", "wchs", "wchc"}
    | {"wchp", "hash"}
)

_HANDLERS: dict[str, Callable[[ServerView], str]] = {
    "ruok": lambda view: "imok",
    "isro": _isro,
    "srvr": _srvr,
    "stat": _stat,
    "cons": _cons,
    "conf": _conf,
    "envi": _envi,
    "dirs": _dirs,
    "wchs": _wchs,
    "wchc": _wchc,
    "wchp": _wchp,
    "dump": _dump,
    "mntr": _mntr,
    "crst": _crst,
    "srst": _srst,
    "gtmk": lambda view: f"{view.trace_mask}",
    "stmk": lambda view: f"{view.trace_mask}",
    "hash": lambda view: "",
}
