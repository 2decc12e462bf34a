"""Differential scenarios: the same steps against two servers, every reply compared.

Rules:
- A scenario is a list of steps (open/close sessions, requests, raw bytes, waits for
  notifications, four-letter words). It runs over the wire with RawClient against
  server A (Apache ZooKeeper, the oracle) and server B (corral, or a second
  ZooKeeper with CORRAL_DIFF_SELF=1), each side in its own thread.
- Each side produces a transcript: per step, everything each connection received, in
  arrival order (replies, notifications, closes), flattened into (field, value)
  pairs. The transcripts are compared entry by entry, field by field.
- Values that legitimately differ between two servers are normalised by mapping,
  never ignored: zxids (the n-th distinct zxid of A must pair with the n-th of B,
  equal stays equal, order is kept), session ids and passwords (one-to-one), times
  (a time belongs to its txn's zxid: the same zxid always has the same time on one
  side, times never decrease with zxids, zero stays zero). Child lists, ephemeral
  lists and identity lists are compared as sets (their order is unspecified).
- Deliberate differences between ZooKeeper 3.8 and corral (corral follows 3.9 where
  3.8 has a known bug) are accepted only where a step names them (`known=`), or, for
  two of them, globally; each is described in docs/compatibility.md. In self mode no
  difference is accepted.
- Every wait is bounded; every server-side session a scenario opens is closed at the
  end so nothing expires later and disturbs the next scenario on a shared server.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from corral.cli.launch import four_letter_word
from corral.protocol.connection import Connected, Notification, Reply
from corral.protocol.constants import ErrorCode, EventType, OpCode
from corral.protocol.records import (
    ConnectResponse,
    CreateResponse,
    GetChildren2Response,
    GetChildrenResponse,
    GetEphemeralsResponse,
    MultiRequest,
    MultiResponse,
    OpResult,
    Record,
    Stat,
    WhoAmIResponse,
)
from tests.support.raw_client import (
    ZERO_PASSWORD,
    Closed,
    ConnectionClosed,
    RawClient,
    ReadTimeout,
)

STEP_WAIT_MS = 10_000  # bound on any single step's wait for a reply
CLOSE_WAIT_MS = 5_000
TIME_WINDOW_SLACK_MS = 5_000  # a ctime/mtime must lie within the run, give or take this


class Known(enum.Enum):
    """Deliberate differences (docs/compatibility.md), accepted where a step names them."""

    EXISTS_WITHOUT_READ = "exists on a node without READ: 3.8.0 returns the Stat, corral NOAUTH"
    TOP_LEVEL_CHECK = "top-level check (13): 3.8.0 answers it, corral UNIMPLEMENTED + close"
    REMOVE_WATCHES_PERSISTENT_TYPES = (
        "removeWatches/checkWatches types 4 and 5: 3.8 MARSHALLINGERROR, corral supports them"
    )
    STANDARD_PLUS_PERSISTENT = (
        "standard + persistent watch on one path: 3.8 loses the persistent data watch, "
        "corral keeps both (3.9)"
    )
    REMOVE_WATCHES_EXACT_MODE = (
        "removeWatches Data/Children match only standard watches in corral (3.9), any in 3.8"
    )
    DELETE_CONTAINER_FROM_CLIENT = (
        "client-sent deleteContainer (20): 3.8 BADARGUMENTS, corral UNIMPLEMENTED + close"
    )
    CHECK_WATCHES_OTHER_SESSION = (
        "checkWatches by a session without a watch on a path another session watches: "
        "3.8.0 OK, corral NOWATCHER (server-semantics §27 #106)"
    )


# --------------------------------------------------------------------------- steps


RecordSource = Record | Callable[["SideContext"], Record] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    label: str = ""
    known: Known | None = None
    # The order of this step's notifications is unspecified (e.g. the ephemerals of a
    # closed session are deleted in hash order, server-semantics §9): compare them as
    # a sorted list, still in their places among the replies.
    unordered_events: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Open(Step):
    """Open a connection `session` and handshake.

    resume: name of an earlier connection whose session to re-attach;
    password: "right", "wrong" or "zero" for a resume;
    last_zxid_seen: an int, or "last" (the highest zxid this side has seen), or "far".
    """

    session: str
    timeout_ms: int = 10_000
    resume: str | None = None
    password: str = "right"
    read_only: bool | None = False
    last_zxid_seen: int | str = 0
    id_layout: bool = False  # also record the id's top byte and its delta to the last id
    handshake: bool = True  # False: connect the socket but send no ConnectRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class Op(Step):
    """Send one request and wait for its reply (recording notifications before it)."""

    session: str
    opcode: int
    record: RecordSource = None
    xid: int | None = None

    def to_request(self) -> tuple[int, RecordSource]:
        """(opcode, record), for a Pipeline."""
        return (self.opcode, self.record)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pipeline(Step):
    """Send several requests back to back, then wait for all their replies."""

    session: str
    requests: tuple[tuple[int, RecordSource], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Raw(Step):
    """Send raw bytes; record what comes back within `wait_ms` (and whether it closes).

    reply_to: (xid, opcode) when the bytes are a request frame the server may answer,
    so the reply can be decoded.
    """

    session: str
    data: bytes | Callable[[SideContext], bytes]
    wait_ms: int = 1_000
    reply_to: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark(Step):
    """Remember the highest zxid this side has seen so far, as `name` (for setWatches)."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain(Step):
    """A ping round trip: records every notification queued for `session` before it."""

    session: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitEvents(Step):
    """Wait (bounded) for `count` notifications on `session`."""

    session: str
    count: int
    wait_ms: int = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectClosed(Step):
    """Wait (bounded) for the server to close `session`'s connection; records whether it did."""

    session: str
    wait_ms: int = CLOSE_WAIT_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseSession(Step):
    """closeSession (-11): reply, then the server closes the socket."""

    session: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect(Step):
    """Drop the socket without closing the session."""

    session: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Sleep(Step):
    ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive(Step):
    """Ping every `interval_ms` for `duration_ms` (keeps the session alive)."""

    session: str
    duration_ms: int
    interval_ms: int = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart(Step):
    """Restart the server cleanly (same port and data); every connection drops."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FourLetter(Step):
    word: str
    data: bytes | None = None  # raw bytes to send instead of the word (e.g. b"xxxx")


# --------------------------------------------------------------------------- transcripts


class Kind(enum.Enum):
    LITERAL = "literal"
    ZXID = "zxid"
    NOTIFICATION_ZXID = "notification zxid"
    TIME = "time"  # value: (time_ms, zxid of the txn that set it)
    SESSION = "session id"
    PASSWORD = "password"
    SET = "set"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    value: Any


@dataclass(slots=True)
class Entry:
    step: int
    session: str
    what: str  # "connected", "reply", "notification", "closed", "open", "timeout", "4lw", ...
    fields: list[Field] = field(default_factory=list)

    def get(self, name: str) -> Any:
        for f in self.fields:
            if f.name == name:
                return f.value
        return None


@dataclass(slots=True)
class SideContext:
    """One side's state while a scenario runs; callables in steps may read it."""

    host: str
    port: int
    clients: dict[str, RawClient] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)  # how much of `received` is recorded
    credentials: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    last_zxid: int = 0  # highest zxid seen in any reply header
    last_session_id: int | None = None
    marks: dict[str, int] = field(default_factory=dict)
    restart: Callable[[], None] | None = None  # restarts this side's server (fresh pairs)
    entries: list[Entry] = field(default_factory=list)
    start_ms: int = 0
    end_ms: int = 0
    error: BaseException | None = None

    def session_id(self, name: str) -> int:
        return self.credentials[name][0]

    def password(self, name: str) -> bytes:
        return self.credentials[name][1]


def _stat_fields(prefix: str, stat: Stat) -> list[Field]:
    return [
        Field(f"{prefix}czxid", Kind.ZXID, stat.czxid),
        Field(f"{prefix}mzxid", Kind.ZXID, stat.mzxid),
        Field(f"{prefix}ctime_ms", Kind.TIME, (stat.ctime_ms, stat.czxid)),
        Field(f"{prefix}mtime_ms", Kind.TIME, (stat.mtime_ms, stat.mzxid)),
        Field(f"{prefix}version", Kind.LITERAL, stat.version),
        Field(f"{prefix}cversion", Kind.LITERAL, stat.cversion),
        Field(f"{prefix}aversion", Kind.LITERAL, stat.aversion),
        Field(f"{prefix}ephemeral_owner", Kind.SESSION, stat.ephemeral_owner),
        Field(f"{prefix}data_length", Kind.LITERAL, stat.data_length),
        Field(f"{prefix}num_children", Kind.LITERAL, stat.num_children),
        Field(f"{prefix}pzxid", Kind.ZXID, stat.pzxid),
    ]


def flatten(prefix: str, value: Any) -> list[Field]:
    """Every leaf of a record as a Field, with the kind that says how to compare it."""
    if isinstance(value, Stat):
        return _stat_fields(prefix, value)
    if isinstance(value, GetChildrenResponse | GetChildren2Response):
        out = [Field(f"{prefix}children", Kind.SET, frozenset(value.children))]
        if isinstance(value, GetChildren2Response):
            out += _stat_fields(f"{prefix}stat.", value.stat)
        return out
    if isinstance(value, GetEphemeralsResponse):
        return [Field(f"{prefix}ephemerals", Kind.SET, frozenset(value.ephemerals))]
    if isinstance(value, WhoAmIResponse):
        ids = frozenset((info.auth_scheme, info.user) for info in value.client_info)
        return [Field(f"{prefix}client_info", Kind.SET, ids)]
    if isinstance(value, ConnectResponse):
        return [
            Field(f"{prefix}protocol_version", Kind.LITERAL, value.protocol_version),
            Field(f"{prefix}timeout_ms", Kind.LITERAL, value.timeout_ms),
            Field(f"{prefix}session_id", Kind.SESSION, value.session_id),
            Field(f"{prefix}password", Kind.PASSWORD, value.password),
            Field(f"{prefix}read_only", Kind.LITERAL, value.read_only),
        ]
    if isinstance(value, MultiResponse):
        out = [Field(f"{prefix}results.count", Kind.LITERAL, len(value.results))]
        for i, result in enumerate(value.results):
            out += flatten(f"{prefix}results.{i}.", result)
        return out
    if isinstance(value, OpResult):
        out = [
            Field(f"{prefix}type", Kind.LITERAL, value.type),
            Field(f"{prefix}err", Kind.LITERAL, value.err),
        ]
        if value.body is not None:
            out += flatten(f"{prefix}body.", value.body)
        return out
    if is_dataclass(value) and not isinstance(value, type):
        out = [Field(f"{prefix}record", Kind.LITERAL, type(value).__name__)]
        for f in fields(value):
            out += flatten(f"{prefix}{f.name}.", getattr(value, f.name))
        return out
    if isinstance(value, tuple) and value and is_dataclass(value[0]):
        out = [Field(f"{prefix}count", Kind.LITERAL, len(value))]
        for i, item in enumerate(value):
            out += flatten(f"{prefix}{i}.", item)
        return out
    return [Field(prefix.rstrip("."), Kind.LITERAL, value)]


def _reply_entry(step: int, session: str, reply: Reply) -> Entry:
    entry = Entry(step, session, "reply")
    entry.fields = [
        Field("xid", Kind.LITERAL, reply.xid),
        Field("opcode", Kind.LITERAL, reply.opcode),
        Field("err", Kind.LITERAL, _error_name(reply.err)),
        Field("zxid", Kind.ZXID, reply.zxid),
    ]
    if reply.body is not None:
        entry.fields += flatten("body.", reply.body)
    return entry


def _notification_entry(step: int, session: str, n: Notification) -> Entry:
    return Entry(
        step,
        session,
        "notification",
        [
            Field("type", Kind.LITERAL, _event_name(n.event.type)),
            Field("state", Kind.LITERAL, n.event.state),
            Field("path", Kind.LITERAL, n.event.path),
            Field("zxid", Kind.NOTIFICATION_ZXID, n.zxid),
        ],
    )


def _error_name(err: int) -> str:
    try:
        return ErrorCode(err).name
    except ValueError:
        return str(err)


def _event_name(event_type: int) -> str:
    try:
        return EventType(event_type).name
    except ValueError:
        return str(event_type)


# --------------------------------------------------------------------------- running one side


def _resolve(source: RecordSource, ctx: SideContext) -> Record | None:
    if callable(source):
        return source(ctx)
    return source


def _record_events(ctx: SideContext, step: int, session: str, events: Sequence[Any]) -> None:
    for event in events:
        if isinstance(event, Reply):
            ctx.entries.append(_reply_entry(step, session, event))
            if event.zxid > ctx.last_zxid:
                ctx.last_zxid = event.zxid
        elif isinstance(event, Notification):
            ctx.entries.append(_notification_entry(step, session, event))
        elif isinstance(event, Connected):
            ctx.entries += [Entry(step, session, "connected", flatten("", event.response))]
        elif isinstance(event, Closed):
            ctx.entries.append(Entry(step, session, "closed"))


def _flush(
    ctx: SideContext,
    step: int,
    name: str,
    *,
    skip_pings: bool = False,
    through: object | None = None,
) -> None:
    """Record what connection `name` received since the last flush, in arrival order.

    through: stop after this event (the reply a step waited for). What arrived after
    it in the same read (a close, say) belongs to the next step that looks at this
    connection; otherwise timing would decide which step records it.
    """
    client = ctx.clients[name]
    start = ctx.cursors.get(name, 0)
    end = len(client.received)
    if through is not None:
        for i in range(start, end):
            if client.received[i] is through:
                end = i + 1
                break
    events = client.received[start:end]
    ctx.cursors[name] = end
    if skip_pings:
        events = [e for e in events if not _is_ping_reply(e)]
    _record_events(ctx, step, name, events)


def _wait_for_replies(ctx: SideContext, step: int, name: str, count: int) -> None:
    client = ctx.clients[name]
    timed_out = False
    last: Reply | None = None
    for _ in range(count):
        try:
            last = client.wait_reply(wait_ms=STEP_WAIT_MS)
        except ConnectionClosed:
            last = None  # record everything, the close included
            break
        except ReadTimeout:
            timed_out = True
            break
    _flush(ctx, step, name, through=last)
    if timed_out:
        ctx.entries.append(Entry(step, name, "timeout"))


def _open(ctx: SideContext, index: int, step: Open) -> None:
    client = RawClient(ctx.host, ctx.port, read_timeout_ms=STEP_WAIT_MS)
    old = ctx.clients.get(step.session)
    if old is not None:
        old.close()
    ctx.clients[step.session] = client
    ctx.cursors[step.session] = 0
    if not step.handshake:
        return
    session_id, password = 0, ZERO_PASSWORD
    if step.resume is not None:
        session_id, real_password = ctx.credentials[step.resume]
        password = {
            "right": real_password,
            "wrong": bytes(b ^ 0x5A for b in real_password),
            "zero": ZERO_PASSWORD,
        }[step.password]
    if step.last_zxid_seen == "last":
        last_zxid_seen = ctx.last_zxid
    elif step.last_zxid_seen == "far":
        last_zxid_seen = ctx.last_zxid + 1_000_000
    else:
        assert isinstance(step.last_zxid_seen, int)
        last_zxid_seen = step.last_zxid_seen
    response = client.connect(
        timeout_ms=step.timeout_ms,
        session_id=session_id,
        password=password,
        read_only=step.read_only,
        last_zxid_seen=last_zxid_seen,
        wait_ms=STEP_WAIT_MS,
    )
    connected = next((e for e in client.received if isinstance(e, Connected)), None)
    _flush(ctx, index, step.session, through=connected)
    if response is None:
        ctx.entries.append(Entry(index, step.session, "no connect response"))
        return
    if response.session_id != 0:
        if step.id_layout:
            top_byte = (response.session_id >> 56) & 0xFF
            connected = next(e for e in reversed(ctx.entries) if e.what == "connected")
            connected.fields.append(Field("session_id.top_byte", Kind.LITERAL, top_byte))
            delta = None
            if ctx.last_session_id is not None:
                delta = response.session_id - ctx.last_session_id
            connected.fields.append(Field("session_id.delta", Kind.LITERAL, delta))
        ctx.last_session_id = response.session_id
        ctx.credentials[step.session] = (response.session_id, response.password)


def _run_step(ctx: SideContext, index: int, step: Step) -> None:
    match step:
        case Open():
            _open(ctx, index, step)
        case Op(session=name, opcode=opcode, record=source, xid=xid):
            client = ctx.clients[name]
            try:
                client.send(opcode, _resolve(source, ctx), xid=xid)
            except ConnectionClosed:
                ctx.entries.append(Entry(index, name, "send failed: closed"))
                return
            _wait_for_replies(ctx, index, name, 1)
        case Pipeline(session=name, requests=requests):
            client = ctx.clients[name]
            for opcode, source in requests:
                client.send(opcode, _resolve(source, ctx))
            _wait_for_replies(ctx, index, name, len(requests))
        case Raw(session=name, data=data):
            client = ctx.clients[name]
            raw = data(ctx) if callable(data) else data
            with contextlib.suppress(ConnectionClosed):
                if step.reply_to is not None:
                    client.send_raw_request(step.reply_to[0], step.reply_to[1], raw)
                else:
                    client.send_raw(raw)
            client.poll(step.wait_ms)
            _flush(ctx, index, name)
            if client.closed is None:
                ctx.entries.append(Entry(index, name, "open"))
        case Drain(session=name):
            client = ctx.clients[name]
            try:
                client.send(OpCode.PING)
            except ConnectionClosed:
                _flush(ctx, index, name)
                return
            _wait_for_replies(ctx, index, name, 1)
        case WaitEvents(session=name, count=count, wait_ms=wait_ms):
            client = ctx.clients[name]
            with contextlib.suppress(ConnectionClosed, ReadTimeout):
                client.wait_notifications(count, wait_ms=wait_ms)
            _flush(ctx, index, name)
        case ExpectClosed(session=name, wait_ms=wait_ms):
            client = ctx.clients[name]
            closed = client.wait_closed(wait_ms)
            _flush(ctx, index, name)
            if not closed:
                ctx.entries.append(Entry(index, name, "open"))
        case CloseSession(session=name):
            client = ctx.clients[name]
            client.send(OpCode.CLOSE_SESSION)
            with contextlib.suppress(ConnectionClosed, ReadTimeout):
                client.wait_reply(wait_ms=STEP_WAIT_MS)
            closed = client.wait_closed(CLOSE_WAIT_MS)
            _flush(ctx, index, name)
            if not closed:
                ctx.entries.append(Entry(index, name, "open"))
            ctx.credentials.pop(name, None)
        case Disconnect(session=name):
            ctx.clients[name].close()
        case Restart():
            assert ctx.restart is not None, "Restart needs a fresh pair (diff.run(spec=...))"
            for client in ctx.clients.values():
                client.close()
            ctx.restart()
            ctx.entries.append(Entry(index, "-", "restarted"))
        case Mark(name=mark):
            ctx.marks[mark] = ctx.last_zxid
        case Sleep(ms=ms):
            time.sleep(ms / 1000)
        case KeepAlive(session=name, duration_ms=duration_ms, interval_ms=interval_ms):
            client = ctx.clients[name]
            pings = max(1, duration_ms // interval_ms)
            for _ in range(pings):
                time.sleep(interval_ms / 1000)
                try:
                    client.request(OpCode.PING, wait_ms=STEP_WAIT_MS)
                except (ConnectionClosed, ReadTimeout):
                    break
            # Pings are housekeeping: only what else arrived (and a close) is recorded.
            _flush(ctx, index, name, skip_pings=True)
            ctx.entries.append(Entry(index, name, "open" if client.closed is None else "closed"))
        case FourLetter(word=word, data=data):
            ctx.entries.append(_four_letter(ctx, index, word, data))
        case _:
            raise AssertionError(f"unknown step {step!r}")


def _is_ping_reply(event: Any) -> bool:
    return isinstance(event, Reply) and event.opcode == OpCode.PING


def _cleanup(ctx: SideContext) -> None:
    """Close every session still alive, so none expires later on a shared server."""
    for client in ctx.clients.values():
        client.close()
    for session_id, password in list(ctx.credentials.values()):
        try:
            with RawClient(ctx.host, ctx.port, read_timeout_ms=CLOSE_WAIT_MS) as client:
                response = client.connect(
                    session_id=session_id, password=password, wait_ms=CLOSE_WAIT_MS
                )
                if response is not None and response.timeout_ms > 0:
                    client.request(OpCode.CLOSE_SESSION, wait_ms=CLOSE_WAIT_MS)
                    client.wait_closed(CLOSE_WAIT_MS)
        except (OSError, ConnectionClosed, ReadTimeout):
            pass


def run_side(
    host: str,
    port: int,
    steps: Sequence[Step],
    restart: Callable[[], None] | None = None,
) -> SideContext:
    ctx = SideContext(host=host, port=port, restart=restart)
    ctx.start_ms = int(time.time() * 1000)
    try:
        for index, step in enumerate(steps):
            _run_step(ctx, index, step)
            if ctx.entries and ctx.entries[-1].what == "timeout":
                # A server that stopped answering would make every later step wait
                # STEP_WAIT_MS too; the comparison reports where it happened.
                break
    except BaseException as e:  # reported by the comparison, with the step
        ctx.error = e
    finally:
        ctx.end_ms = int(time.time() * 1000)
        _cleanup(ctx)
    return ctx


# --------------------------------------------------------------------------- four-letter words

_SRVR_LITERAL = {"Mode", "Node count", "Outstanding"}
_MNTR_CLASSIC_KEYS = (
    "zk_avg_latency zk_max_latency zk_min_latency zk_packets_received zk_packets_sent "
    "zk_num_alive_connections zk_outstanding_requests zk_znode_count zk_watch_count "
    "zk_ephemerals_count zk_approximate_data_size zk_open_file_descriptor_count "
    "zk_max_file_descriptor_count zk_global_sessions zk_local_sessions zk_uptime"
).split()
_MNTR_LITERAL = {
    "zk_server_state",
    "zk_znode_count",
    "zk_ephemerals_count",
    "zk_watch_count",
    "zk_outstanding_requests",
    "zk_global_sessions",
}
_CONF_LITERAL = {
    "secureClientPort",
    "tickTime",
    "maxClientCnxns",
    "minSessionTimeout",
    "maxSessionTimeout",
    "clientPortListenBacklog",
    "serverId",
}


def shape(value: str) -> str:
    """A value's format with its digits erased: '0/1.25/7' -> '9/9.9/9'."""
    return re.sub(r"[0-9]+", "9", value)


def _four_letter(ctx: SideContext, index: int, word: str, data: bytes | None) -> Entry:
    entry = Entry(index, "4lw", "4lw", [Field("word", Kind.LITERAL, word)])
    try:
        if data is None:
            text = four_letter_word(ctx.host, ctx.port, word, timeout_ms=STEP_WAIT_MS)
        else:
            text = _raw_four_letter(ctx.host, ctx.port, data)
    except OSError as e:
        entry.fields.append(Field("error", Kind.LITERAL, type(e).__name__))
        return entry
    entry.fields += normalise_four_letter(word, text)
    return entry


def _raw_four_letter(host: str, port: int, data: bytes) -> str:
    import socket

    with socket.create_connection((host, port), timeout=STEP_WAIT_MS / 1000) as sock:
        sock.sendall(data)
        chunks = []
        for _ in range(1_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def normalise_four_letter(word: str, text: str) -> list[Field]:
    """The parts of a 4lw answer that must agree: keys, formats, the stable values."""
    lines = text.split("\n")
    out: list[Field] = [Field("ends with newline", Kind.LITERAL, text.endswith("\n"))]
    if "not in the whitelist" in text or word in ("ruok", "isro", "gtmk", "srst", "crst"):
        return [*out, Field("text", Kind.LITERAL, text)]
    if word in ("srvr", "stat"):
        keys = []
        for i, line in enumerate(lines):
            if ": " not in line:
                out.append(Field(f"line {i}", Kind.LITERAL, shape(line)))
                continue
            key, value = line.split(": ", 1)
            keys.append(key)
            if key == "Zookeeper version":
                continue  # corral names its own version
            if key == "Zxid":
                out.append(
                    Field("Zxid format", Kind.LITERAL, bool(re.fullmatch("0x[0-9a-f]+", value)))
                )
                out.append(Field("Zxid", Kind.ZXID, int(value, 16)))
            elif key in _SRVR_LITERAL:
                out.append(Field(key, Kind.LITERAL, value))
            else:
                out.append(Field(key, Kind.LITERAL, shape(value)))
        out.append(Field("keys", Kind.LITERAL, tuple(keys)))
        return out
    if word == "mntr":
        pairs = [line.split("\t", 1) for line in lines if line]
        out.append(
            Field(
                "every line zk_key<TAB>value",
                Kind.LITERAL,
                all(len(p) == 2 and re.fullmatch(r"zk_\w+", p[0]) is not None for p in pairs),
            )
        )
        out.append(Field("first keys", Kind.LITERAL, tuple(p[0] for p in pairs[:2])))
        values = {p[0]: p[1] for p in pairs if len(p) == 2}
        for key in _MNTR_CLASSIC_KEYS:
            out.append(Field(f"{key} present", Kind.LITERAL, key in values))
            if key in values and key in _MNTR_LITERAL:
                out.append(Field(key, Kind.LITERAL, values[key]))
            elif key in values:
                out.append(Field(f"{key} format", Kind.LITERAL, shape(values[key])))
        out.append(Field("zk_server_state", Kind.LITERAL, values.get("zk_server_state")))
        return out
    if word == "conf":
        pairs = [line.split("=", 1) for line in lines if line]
        out.append(Field("keys", Kind.LITERAL, tuple(p[0] for p in pairs)))
        for p in pairs:
            if len(p) == 2 and p[0] in _CONF_LITERAL:
                out.append(Field(p[0], Kind.LITERAL, p[1]))
        return out
    if word == "wchs":
        return [*out, Field("text", Kind.LITERAL, text)]
    if word in ("wchc", "wchp"):
        # Blocks: an unindented head line, then tab-indented members.
        blocks: dict[str, set[str]] = {}
        head = ""
        for line in lines:
            if not line:
                continue
            if line.startswith("\t"):
                blocks.setdefault(head, set()).add(line[1:])
            else:
                head = line
                blocks.setdefault(head, set())
        if word == "wchc":
            # Session ids differ between servers: order blocks by their path sets.
            ordered = sorted(blocks.items(), key=lambda kv: sorted(kv[1]))
            for i, (head, members) in enumerate(ordered):
                out.append(Field(f"connection {i}", Kind.SESSION, int(head, 16)))
                out.append(Field(f"paths of connection {i}", Kind.SET, frozenset(members)))
        else:
            for head, members in sorted(blocks.items()):
                out.append(Field(f"watchers of {head}", Kind.LITERAL, len(members)))
        out.append(Field("blocks", Kind.LITERAL, len(blocks)))
        return out
    if word == "dirs":
        return [
            *out,
            Field("keys", Kind.LITERAL, tuple(line.split(":")[0] for line in lines if line)),
        ]
    if word == "envi":
        # java.* keys describe the JVM; corral has none and prints Python's instead
        # (docs/compatibility.md, "envi"). The rest must be there in both.
        keys = {line.split("=", 1)[0] for line in lines[1:] if "=" in line}
        common = tuple(sorted(k for k in keys if not k.startswith(("java.", "python."))))
        well_formed = all("=" in line for line in lines[1:] if line)
        return [
            *out,
            Field("first line", Kind.LITERAL, lines[0]),
            Field("every line key=value", Kind.LITERAL, well_formed),
            Field("non-java keys", Kind.LITERAL, common),
        ]
    if word == "cons":
        keys = sorted(tuple(re.findall(r"(\w+)=", line)) for line in lines if line.strip())
        return [*out, Field("per-connection keys", Kind.LITERAL, tuple(keys))]
    if word == "dump":
        # Section heads only; lines naming sessions or expiry dates are values.
        heads = tuple(
            shape(line)
            for line in lines
            if line.endswith(":") and not line.startswith(("\t", "0x")) and "expire" not in line
        )
        return [*out, Field("section heads", Kind.LITERAL, heads)]
    return [*out, Field("text", Kind.LITERAL, text)]


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True, slots=True)
class Mismatch:
    step: int
    step_text: str
    session: str
    field: str
    a: Any
    b: Any

    def __str__(self) -> str:
        return (
            f"step {self.step} [{self.step_text}] session {self.session!r} "
            f"field {self.field}: A={self.a!r} B={self.b!r}"
        )


class _Bijection:
    """Pairs values of A with values of B one-to-one; optionally keeps their order."""

    def __init__(self, ordered: bool) -> None:
        self.ordered = ordered
        self.a_to_b: dict[Any, Any] = {}
        self.b_to_a: dict[Any, Any] = {}

    def check(self, a: Any, b: Any) -> str | None:
        if a in self.a_to_b or b in self.b_to_a:
            if self.a_to_b.get(a, _NONE) == b and self.b_to_a.get(b, _NONE) == a:
                return None
            return (
                f"mapping broken: A {a!r} was paired with B {self.a_to_b.get(a, '-')!r}, "
                f"B {b!r} with A {self.b_to_a.get(b, '-')!r}"
            )
        if self.ordered:
            for a2, b2 in self.a_to_b.items():
                if (a < a2) != (b < b2):
                    return f"order differs: A {a} vs {a2}, B {b} vs {b2}"
        self.a_to_b[a] = b
        self.b_to_a[b] = a
        return None


_NONE = object()


@dataclass(slots=True)
class Comparison:
    mismatches: list[Mismatch] = field(default_factory=list)
    fields_compared: int = 0


def _differences_accepted(known: Known, a: list[Entry], b: list[Entry]) -> bool:
    """True if A's and B's entries of a step differ exactly as the known difference says."""

    def replies(entries: list[Entry]) -> list[Entry]:
        return [e for e in entries if e.what == "reply"]

    match known:
        case Known.EXISTS_WITHOUT_READ:
            ra, rb = replies(a), replies(b)
            return (
                len(ra) == len(rb) == 1
                and ra[0].get("err") == "OK"
                and rb[0].get("err") == "NO_AUTH"
            )
        case Known.TOP_LEVEL_CHECK:
            ra, rb = replies(a), replies(b)
            return (
                len(ra) == len(rb) == 1
                and rb[0].get("err") == "UNIMPLEMENTED"
                and ra[0].get("err") != "OK"
            ) or ([e.what for e in a] == ["open"] and [e.what for e in b] in (["closed"], []))
        case Known.REMOVE_WATCHES_PERSISTENT_TYPES:
            ra, rb = replies(a), replies(b)
            return (
                len(ra) == len(rb) == 1
                and ra[0].get("err") == "MARSHALLING_ERROR"
                and rb[0].get("err") in ("OK", "NO_WATCHER")
            )
        case Known.STANDARD_PLUS_PERSISTENT:
            na = [e for e in a if e.what == "notification"]
            nb = [e for e in b if e.what == "notification"]
            return len(nb) == len(na) + 1 and all(e.get("type") == "NODE_DATA_CHANGED" for e in nb)
        case Known.DELETE_CONTAINER_FROM_CLIENT:
            ra, rb = replies(a), replies(b)
            return (
                len(ra) == len(rb) == 1
                and ra[0].get("err") == "BAD_ARGUMENTS"
                and rb[0].get("err") == "UNIMPLEMENTED"
            ) or ([e.what for e in a] == ["open"] and [e.what for e in b] in (["closed"], []))
        case Known.REMOVE_WATCHES_EXACT_MODE | Known.CHECK_WATCHES_OTHER_SESSION:
            ra, rb = replies(a), replies(b)
            return (
                len(ra) == len(rb) == 1
                and ra[0].get("err") == "OK"
                and rb[0].get("err") == "NO_WATCHER"
            )
    return False


def _create2_positions(step: Step | None) -> set[int]:
    """Indexes of the create2 ops of a multi step (empty if not a literal multi)."""
    if not isinstance(step, Op) or not isinstance(step.record, MultiRequest):
        return set()
    return {i for i, (opcode, _) in enumerate(step.record.ops) if opcode == OpCode.CREATE2}


def _rewrite_known_globally(a: Entry, b: Entry, step: Step | None) -> None:
    """corral-vs-3.8 differences accepted everywhere (docs/compatibility.md).

    create2 inside multi: 3.8 answers result type 1 (path only), corral type 15 (path +
    Stat) as 3.9 does. For the ops that *were* create2, B's result (type 15, a
    Create2Response) is reduced to A's shape; the paths are still compared. A plain
    create answered with type 15 stays a mismatch.
    """
    if a.what != "reply" or b.what != "reply" or a.get("opcode") != OpCode.MULTI:
        return
    positions = _create2_positions(step)
    if not positions:
        return
    a_names = {f.name: f.value for f in a.fields}
    b_names = {f.name: f.value for f in b.fields}
    kept: list[Field] = []
    for f in b.fields:
        m = re.fullmatch(r"body\.results\.(\d+)\.(.*)", f.name)
        if m is not None and int(m.group(1)) in positions:
            prefix = f"body.results.{m.group(1)}."
            if (
                a_names.get(f"{prefix}type") == OpCode.CREATE
                and b_names.get(f"{prefix}type") == OpCode.CREATE2
            ):
                rest = m.group(2)
                if rest == "type":
                    kept.append(Field(f.name, f.kind, int(OpCode.CREATE)))
                    continue
                if rest == "body.record":
                    kept.append(Field(f.name, f.kind, CreateResponse.__name__))
                    continue
                if rest.startswith("body.stat."):
                    continue
        kept.append(f)
    b.fields = kept


def compare(
    steps: Sequence[Step],
    a: SideContext,
    b: SideContext,
    *,
    known_differences: bool,
    literal_zxids: bool = False,
) -> Comparison:
    result = Comparison()
    zxids = _Bijection(ordered=True)
    sessions = _Bijection(ordered=False)
    passwords = _Bijection(ordered=False)
    times_a: dict[int, int] = {}
    times_b: dict[int, int] = {}

    def mismatch(step: int, session: str, name: str, va: Any, vb: Any) -> None:
        text = _describe(steps[step]) if 0 <= step < len(steps) else "end"
        result.mismatches.append(Mismatch(step, text, session, name, va, vb))

    for side, ctx in (("A", a), ("B", b)):
        if ctx.error is not None:
            step = ctx.entries[-1].step if ctx.entries else -1
            mismatch(step, "-", f"side {side} raised", repr(ctx.error), None)

    by_step_a = _group(a.entries)
    by_step_b = _group(b.entries)
    for step in sorted(set(by_step_a) | set(by_step_b)):
        ea, eb = by_step_a.get(step, []), by_step_b.get(step, [])
        known = steps[step].known if step < len(steps) else None
        if known is not None and known_differences and _differences_accepted(known, ea, eb):
            continue
        if step < len(steps) and steps[step].unordered_events:
            ea, eb = _sort_notifications(ea), _sort_notifications(eb)
        if len(ea) != len(eb) or [e.what for e in ea] != [e.what for e in eb]:
            mismatch(step, "-", "entries", _summary(ea), _summary(eb))
            continue
        for x, y in zip(ea, eb, strict=True):
            if x.session != y.session:
                mismatch(step, x.session, "session", x.session, y.session)
                continue
            if known_differences:
                _rewrite_known_globally(x, y, steps[step] if step < len(steps) else None)
            fa = {f.name: f for f in x.fields}
            fb = {f.name: f for f in y.fields}
            for name in sorted(
                set(fa) | set(fb), key=lambda n: list(fa).index(n) if n in fa else 1 << 30
            ):
                if name not in fa or name not in fb:
                    mismatch(
                        step,
                        x.session,
                        f"{x.what}.{name}",
                        fa[name].value if name in fa else "<absent>",
                        fb[name].value if name in fb else "<absent>",
                    )
                    continue
                f, g = fa[name], fb[name]
                result.fields_compared += 1
                if literal_zxids and f.kind is Kind.ZXID:
                    problem = None if f.value == g.value else "zxids must be equal here"
                else:
                    problem = _compare_field(
                        f, g, zxids, sessions, passwords, times_a, times_b, known_differences
                    )
                if problem is not None:
                    mismatch(
                        step, x.session, f"{x.what}.{name}", f.value, f"{g.value!r} ({problem})"
                    )

    for side, ctx, times in (("A", a, times_a), ("B", b, times_b)):
        problem = _check_times(ctx, times)
        if problem is not None:
            mismatch(len(steps), "-", f"times on {side}", problem, None)
    return result


def _compare_field(
    f: Field,
    g: Field,
    zxids: _Bijection,
    sessions: _Bijection,
    passwords: _Bijection,
    times_a: dict[int, int],
    times_b: dict[int, int],
    known_differences: bool,
) -> str | None:
    if f.kind is not g.kind:
        return "kinds differ"
    match f.kind:
        case Kind.LITERAL:
            return None if f.value == g.value else "differs"
        case Kind.SET:
            return (
                None
                if f.value == g.value
                else (
                    f"only in A: {sorted(f.value - g.value)}, "
                    f"only in B: {sorted(g.value - f.value)}"
                )
            )
        case Kind.ZXID:
            if f.value <= 0 or g.value <= 0:
                return None if f.value == g.value else "zero/negative zxids must be equal"
            return zxids.check(f.value, g.value)
        case Kind.NOTIFICATION_ZXID:
            if known_differences and f.value == -1:
                # ZooKeeper 3.8 sends -1; corral sends the txn's zxid as 3.9 does
                # (docs/compatibility.md, "notification zxid").
                return None if g.value == -1 or g.value > 0 else "not a zxid"
            if f.value <= 0 or g.value <= 0:
                return None if f.value == g.value else "differs"
            return zxids.check(f.value, g.value)
        case Kind.TIME:
            (ta, za), (tb, zb) = f.value, g.value
            for times, t, z in ((times_a, ta, za), (times_b, tb, zb)):
                if times.setdefault(z, t) != t:
                    return f"zxid {z:#x} has two times on one side: {times[z]} and {t}"
            return None if (ta == 0) == (tb == 0) else "zero on one side only"
        case Kind.SESSION:
            if f.value == 0 or g.value == 0:
                return None if f.value == g.value else "zero on one side only"
            return sessions.check(f.value, g.value)
        case Kind.PASSWORD:
            if f.value == ZERO_PASSWORD or g.value == ZERO_PASSWORD:
                return None if f.value == g.value else "zero on one side only"
            if len(f.value) != len(g.value):
                return "lengths differ"
            return passwords.check(f.value, g.value)
    return "unknown kind"


def _check_times(ctx: SideContext, times: dict[int, int]) -> str | None:
    """Times grow with zxids and lie within the run (ms since the epoch, not s)."""
    low = ctx.start_ms - TIME_WINDOW_SLACK_MS
    high = ctx.end_ms + TIME_WINDOW_SLACK_MS
    previous: tuple[int, int] | None = None
    for zxid in sorted(times):
        t = times[zxid]
        if t == 0:
            continue
        if previous is not None and t < previous[1]:
            return f"time goes back: zxid {previous[0]:#x} at {previous[1]}, {zxid:#x} at {t}"
        previous = (zxid, t)
        if not low <= t <= high:
            return f"zxid {zxid:#x} has time {t}, outside the run [{low}, {high}] (ms?)"
    return None


def _sort_notifications(entries: list[Entry]) -> list[Entry]:
    slots = [i for i, e in enumerate(entries) if e.what == "notification"]
    ordered = sorted(
        (entries[i] for i in slots), key=lambda e: (str(e.get("type")), str(e.get("path")))
    )
    out = list(entries)
    for i, e in zip(slots, ordered, strict=True):
        out[i] = e
    return out


def _group(entries: list[Entry]) -> dict[int, list[Entry]]:
    out: dict[int, list[Entry]] = {}
    for e in entries:
        out.setdefault(e.step, []).append(e)
    return out


def _summary(entries: list[Entry]) -> list[str]:
    out = []
    for e in entries:
        if e.what == "reply":
            out.append(f"{e.session}: reply {e.get('err')} op {e.get('opcode')}")
        elif e.what == "notification":
            out.append(f"{e.session}: notification {e.get('type')} {e.get('path')}")
        else:
            out.append(f"{e.session}: {e.what}")
    return out


def _describe(step: Step) -> str:
    text = step.label or ""
    match step:
        case Op(session=s, opcode=op, record=r):
            try:
                name = OpCode(op).name
            except ValueError:
                name = str(op)
            rec = "<computed>" if callable(r) else r
            text = text or f"{s}: {name} {rec}"
        case _:
            text = text or repr(step)
    return text[:300]


# --------------------------------------------------------------------------- the whole run


@dataclass(slots=True)
class Totals:
    """What the terminal summary prints."""

    scenarios: int = 0
    fields_compared: int = 0
    mismatches: int = 0
    failed: list[str] = field(default_factory=list)


TOTALS = Totals()
_totals_lock = threading.Lock()


def run_differential(
    name: str,
    steps: Sequence[Step],
    a: tuple[str, int],
    b: tuple[str, int],
    *,
    known_differences: bool,
    literal_zxids: bool = False,
    restarts: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> Comparison:
    """Run `steps` against A and B concurrently, compare, and account in TOTALS."""
    results: dict[str, SideContext] = {}

    def run(side: str, address: tuple[str, int]) -> None:
        restart = None if restarts is None else restarts[0 if side == "A" else 1]
        results[side] = run_side(address[0], address[1], steps, restart)

    threads = [
        threading.Thread(target=run, args=(side, address), name=f"{name}-{side}", daemon=True)
        for side, address in (("A", a), ("B", b))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
        assert not thread.is_alive(), f"{name}: a side did not finish in 240 s"
    if os.environ.get("CORRAL_DIFF_DUMP"):
        for side in ("A", "B"):
            print(f"--- {name} side {side}")
            for e in results[side].entries:
                print(
                    f"  {e.step} {e.session} {e.what} "
                    + ", ".join(f"{f.name}={f.value!r}" for f in e.fields)
                )
    comparison = compare(
        steps,
        results["A"],
        results["B"],
        known_differences=known_differences,
        literal_zxids=literal_zxids,
    )
    with _totals_lock:
        TOTALS.scenarios += 1
        TOTALS.fields_compared += comparison.fields_compared
        TOTALS.mismatches += len(comparison.mismatches)
        if comparison.mismatches:
            TOTALS.failed.append(name)
    return comparison


def report(name: str, comparison: Comparison, limit: int = 25) -> str:
    lines = [f"scenario {name}: {len(comparison.mismatches)} mismatch(es)"]
    lines += [f"  {m}" for m in comparison.mismatches[:limit]]
    if len(comparison.mismatches) > limit:
        lines.append(f"  ... and {len(comparison.mismatches) - limit} more")
    return "\n".join(lines)
