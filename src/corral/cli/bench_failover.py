"""`corral bench failover`: the time from killing the leader to the first acknowledged write.

    corral bench failover [--trials N] [--compare | --product corral|zookeeper]
                          [--fault kill|pause] [--json FILE]

One trial, on one product: a 3-member ensemble on 127.0.0.1 is healthy (one member says
`Mode: leader` in `srvr`, every other `Mode: follower`). One writer per follower, pinned
to its member, issues setData of WRITE_PATH continuously, one request in flight. Once
every writer has WARMUP_ACKS acknowledgments, the leader is killed with SIGKILL (or,
with --fault pause, stopped with SIGSTOP: a hung process whose sockets stay open); the
instant is time.monotonic_ns() read just before the signal. Measured from that instant:
- write: the first acknowledgment, on any surviving member, of a write *sent* after the
  instant. A write sent before it may still be acknowledged after it (the old leader
  committed it just in time): that proves nothing about the new leader, so it is not
  counted;
- per writer, the same on its own member;
- leader: the first `srvr` answer of a survivor saying `Mode: leader` (each survivor is
  polled every LEADER_POLL_INTERVAL_MS).
Then the killed member is restarted (a paused one continued with SIGCONT) and the
ensemble is healthy again before the next trial: every trial starts from three members
in sync, the log a little longer each time.

Rules:
- Settings of the same safety for both products: forceSync=yes (fsync before every
  acknowledgment), the same tickTime, initLimit and syncLimit (ZooKeeper's sample
  zoo.cfg values unless given). ZooKeeper's JVM runs as shipped (stock JIT and GC).
- One run, one machine: with --compare both ensembles run for the whole run and the
  products alternate trial by trial (the order flips each trial), so neither always
  runs on a warmer or quieter machine.
- A writer whose connection drops reconnects to its own member with its session, as a
  client library does (a new session if the old one is gone), after
  RECONNECT_INTERVAL_MS: that interval is the figure's resolution, the same for both.
  A write that fails with an error code is retried after the same interval.
- Bounded: at most TRIALS_MAX trials; each trial's wait by --trial-timeout-s; every
  other wait has its own timeout. Every process is stopped by its PID on the way out,
  also on Ctrl-C, SIGTERM or an error.
- Progress goes to stderr, the table to stdout, the report where --json says. Exit
  status: 0 when every trial measured a write and a new leader, 1 when any did not (the
  table still shows what was measured), 2 for bad arguments or an ensemble that does
  not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from corral.cli.bench_stats import (
    format_ms,
    format_ratio,
    positive_float,
    positive_int,
    render_table,
)
from corral.cli.launch import (
    ENSEMBLE_CONFIG_DEFAULTS,
    PRODUCTS,
    Ensemble,
    ServerStartError,
)
from corral.limits import TICK_TIME_DEFAULT_MS
from corral.protocol.connection import (
    NEED_DATA,
    PEER_CLOSED,
    ClientConnection,
    ClientEvent,
    Connected,
    Notification,
    Reply,
)
from corral.protocol.constants import ANY_VERSION, CreateMode, ErrorCode, OpCode
from corral.protocol.errors import ProtocolError
from corral.protocol.records import (
    OPEN_ACL_UNSAFE,
    ConnectRequest,
    CreateRequest,
    Record,
    SetDataRequest,
)

ENSEMBLE_SIZE = 3
TRIALS_MAX = 1_000
TRIALS_DEFAULT = 5
WRITE_PATH = "/corral-failover"
WRITE_VALUE = b"x" * 100
WARMUP_ACKS = 20  # per writer, before the fault: every writer is known to work
WARMUP_TIMEOUT_S = 60.0
TRIAL_TIMEOUT_DEFAULT_S = 60.0  # from the fault: ZooKeeper's initLimit alone is 20 s
FAULTS = ("kill", "pause")
RECONNECT_INTERVAL_MS = 25
LEADER_POLL_INTERVAL_MS = 20
DONE_POLL_INTERVAL_MS = 10
CONNECT_TIMEOUT_S = 5.0  # TCP connect plus handshake, per attempt
PROBE_TIMEOUT_S = 2.0  # one `srvr`
CLOSE_TIMEOUT_S = 5.0  # writers finishing their request and closing their session
SESSION_TIMEOUT_MS = 30_000  # requested; the servers cap it at 20 tickTimes
ACKS_KEPT_MAX = 100_000  # per writer per trial: (sent, arrival) pairs after the fault
FOUR_LETTER_REPLY_SIZE_MAX = 1 << 16
READ_SIZE = 65_536
HEALTHY_TIMEOUT_MS = 120_000  # after a restart: the member rejoined, one leader, all serve
ZOOKEEPER_HEAP_SIZE_MAX_MB = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverSettings:
    products: tuple[str, ...]  # in the order of odd trials; even trials reverse it
    trials: int
    tick_time_ms: int
    init_limit: int  # in ticks
    sync_limit: int  # in ticks
    trial_timeout_s: float
    fault: str = "kill"  # one of FAULTS

    def __post_init__(self) -> None:
        assert self.fault in FAULTS, self.fault
        assert self.products, "no product"
        assert all(p in PRODUCTS for p in self.products), self.products
        assert 1 <= self.trials <= TRIALS_MAX, self.trials

    def zoo_cfg(self) -> dict[str, str]:
        """The keys both products get (tickTime is passed on its own)."""
        return {
            **ENSEMBLE_CONFIG_DEFAULTS,
            "initLimit": str(self.init_limit),
            "syncLimit": str(self.sync_limit),
            "forceSync": "yes",
            "maxClientCnxns": "0",
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterResult:
    member_id: int
    acks_before_kill: int
    first_ack_ms: float | None  # fault -> first acknowledged write sent after it
    reconnects: int  # connections opened after the first one
    sessions_lost: int  # reconnects refused because the session had expired
    errors: dict[str, int]  # error code name -> count, after the fault


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialResult:
    product: str
    trial: int  # 1-based
    old_leader_id: int
    new_leader_id: int | None  # the first survivor seen leading, None if none in time
    write_ms: float | None  # fault -> first acknowledged write on any survivor
    leader_ms: float | None  # fault -> a survivor's srvr says leader
    writers: tuple[WriterResult, ...]
    failure: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    product: str
    trials: int
    measured: int  # trials with a write after the fault
    write_median_ms: float | None
    write_max_ms: float | None
    leader_median_ms: float | None
    leader_max_ms: float | None
    write_samples_ms: tuple[float, ...]
    leader_samples_ms: tuple[float, ...]


# --------------------------------------------------------------------------- arguments


def add_failover_parser(subparsers: Any) -> None:
    """Registers `failover` under `corral bench`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "failover",
        help="time from killing the leader of a 3-member ensemble to the first write",
        description=__doc__.split("\n\nRules:")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--compare",
        action="store_true",
        help="corral and Apache ZooKeeper 3.8, alternately, in one run (the default)",
    )
    which.add_argument("--product", choices=PRODUCTS, help="only this product")
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=TRIALS_DEFAULT,
        help=f"trials per product (default {TRIALS_DEFAULT}, at most {TRIALS_MAX})",
    )
    parser.add_argument(
        "--fault",
        choices=FAULTS,
        default="kill",
        help="kill: SIGKILL the leader (its sockets close; the default); pause: SIGSTOP it "
        "(a hung leader whose sockets stay open), continued with SIGCONT after the trial",
    )
    parser.add_argument(
        "--tick-time-ms",
        type=positive_int,
        default=TICK_TIME_DEFAULT_MS,
        help=f"tickTime of both products (default {TICK_TIME_DEFAULT_MS})",
    )
    parser.add_argument(
        "--init-limit",
        type=positive_int,
        default=int(ENSEMBLE_CONFIG_DEFAULTS["initLimit"]),
        help="initLimit of both products, in ticks",
    )
    parser.add_argument(
        "--sync-limit",
        type=positive_int,
        default=int(ENSEMBLE_CONFIG_DEFAULTS["syncLimit"]),
        help="syncLimit of both products, in ticks",
    )
    parser.add_argument(
        "--trial-timeout-s",
        type=positive_float,
        default=TRIAL_TIMEOUT_DEFAULT_S,
        help=f"longest wait after a kill (default {TRIAL_TIMEOUT_DEFAULT_S:g})",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parser.set_defaults(func=run_failover)


def settings_from_args(args: argparse.Namespace) -> FailoverSettings:
    if args.trials > TRIALS_MAX:
        raise ValueError(f"at most {TRIALS_MAX} trials")
    products = (args.product,) if args.product is not None else ("zookeeper", "corral")
    return FailoverSettings(
        products=products,
        trials=args.trials,
        tick_time_ms=args.tick_time_ms,
        init_limit=args.init_limit,
        sync_limit=args.sync_limit,
        trial_timeout_s=args.trial_timeout_s,
        fault=args.fault,
    )


# --------------------------------------------------------------------------- the writer


class _Lost(Exception):
    """The member closed the connection (ZooKeeper does while it has no leader)."""


class _Writer:
    """One client pinned to one member: setData, one request in flight, forever.

    Acknowledgments count until `watch_from_ns` is set; from then on each one is kept
    as (sent_ns, arrival_ns), so the trial can pick the first one sent after the fault.
    """

    def __init__(self, member_id: int, host: str, port: int) -> None:
        self.member_id = member_id
        self.host = host
        self.port = port
        self.acks_before_watch = 0
        self.watch_from_ns: int | None = None
        self.acks_after: list[tuple[int, int]] = []
        self.connections = 0
        self.sessions_lost = 0
        self.errors: dict[str, int] = {}
        self._session_id = 0
        self._password = bytes(16)
        self._last_zxid = 0
        self._created = False
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def first_ack_ns(self, after_ns: int) -> int | None:
        """Arrival of the first acknowledgment of a write sent at or after `after_ns`."""
        arrivals = [arrival for sent, arrival in self.acks_after if sent >= after_ns]
        return min(arrivals) if arrivals else None

    def result(self, fault_at_ns: int) -> WriterResult:
        first = self.first_ack_ns(fault_at_ns)
        return WriterResult(
            member_id=self.member_id,
            acks_before_kill=self.acks_before_watch,
            first_ack_ms=None if first is None else (first - fault_at_ns) / 1e6,
            reconnects=max(0, self.connections - 1),
            sessions_lost=self.sessions_lost,
            errors=dict(self.errors),
        )

    async def run(self) -> None:
        """Until `stop()`: a session, and on any trouble another after the interval."""
        while not self._stop.is_set():
            # The member is down, or has no leader and closed the connection: try again.
            with contextlib.suppress(OSError, TimeoutError, ProtocolError, _Lost):
                await self._session()
            if not self._stop.is_set():
                await asyncio.sleep(RECONNECT_INTERVAL_MS / 1000)

    async def _session(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(self.host, self.port)
        self.connections += 1
        codec = ClientConnection()
        try:
            writer.write(
                codec.connect(
                    ConnectRequest(
                        protocol_version=0,
                        last_zxid_seen=self._last_zxid,
                        timeout_ms=SESSION_TIMEOUT_MS,
                        session_id=self._session_id,
                        password=self._password,
                        read_only=False,
                    )
                )
            )
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                event, _ = await _next_event(reader, codec)
            if not isinstance(event, Connected):
                raise _Lost
            if event.response.timeout_ms <= 0:  # expired while the ensemble had no leader
                self.sessions_lost += 1
                self._session_id, self._password = 0, bytes(16)
                return
            self._session_id = event.response.session_id
            self._password = event.response.password
            xid = 0
            while not self._stop.is_set():
                xid += 1
                opcode, record = self._next_write()
                sent_ns = time.monotonic_ns()
                writer.write(codec.send_request(xid, opcode, record))
                reply, arrival_ns = await _next_event(reader, codec)
                assert isinstance(reply, Reply), reply
                self._last_zxid = max(self._last_zxid, reply.zxid)
                if reply.err == ErrorCode.OK or (
                    opcode == OpCode.CREATE and reply.err == ErrorCode.NODE_EXISTS
                ):
                    self._created = True
                    self._ack(sent_ns, arrival_ns)
                else:
                    self._error(reply.err)
                    await asyncio.sleep(RECONNECT_INTERVAL_MS / 1000)
            # Stopped between requests: close the session so it leaves nothing behind.
            writer.write(codec.send_request(xid + 1, OpCode.CLOSE_SESSION, None))
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await _next_event(reader, codec)
        finally:
            writer.close()

    def _next_write(self) -> tuple[int, Record]:
        if not self._created:
            return OpCode.CREATE, CreateRequest(
                path=WRITE_PATH,
                data=WRITE_VALUE,
                acl=OPEN_ACL_UNSAFE,
                flags=CreateMode.PERSISTENT,
            )
        return OpCode.SET_DATA, SetDataRequest(
            path=WRITE_PATH, data=WRITE_VALUE, version=ANY_VERSION
        )

    def _ack(self, sent_ns: int, arrival_ns: int) -> None:
        if self.watch_from_ns is None or sent_ns < self.watch_from_ns:
            self.acks_before_watch += 1
        elif len(self.acks_after) < ACKS_KEPT_MAX:
            self.acks_after.append((sent_ns, arrival_ns))

    def _error(self, err: int) -> None:
        if self.watch_from_ns is None:
            return
        try:
            name = ErrorCode(err).name
        except ValueError:
            name = str(err)
        self.errors[name] = self.errors.get(name, 0) + 1


async def _next_event(
    reader: asyncio.StreamReader, codec: ClientConnection
) -> tuple[ClientEvent, int]:
    """The next handshake answer or reply (notifications skipped) and the monotonic
    instant its bytes arrived; _Lost when the member closes the connection."""
    arrival_ns = time.monotonic_ns()
    while True:
        event = codec.next_event()
        if event is NEED_DATA:
            data = await reader.read(READ_SIZE)
            arrival_ns = time.monotonic_ns()
            codec.receive_data(data)  # b"": the member closed, next_event says PEER_CLOSED
            continue
        if event is PEER_CLOSED:
            raise _Lost
        if isinstance(event, Notification):
            continue
        return event, arrival_ns


async def _mode(host: str, port: int) -> str:
    """`srvr`'s Mode, as launch.server_mode but without blocking the event loop."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"srvr")
                chunks: list[bytes] = []
                size = 0
                while size <= FOUR_LETTER_REPLY_SIZE_MAX:
                    chunk = await reader.read(READ_SIZE)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return "down"
    for line in b"".join(chunks).decode("utf-8", errors="replace").splitlines():
        if line.startswith("Mode: "):
            return line.removeprefix("Mode: ").strip()
    return "not serving"


async def _watch_leader(
    survivors: dict[int, tuple[str, int]], deadline_ns: int
) -> tuple[int, int] | None:
    """(member id, instant) of the first survivor whose `srvr` says leader, or None."""
    while time.monotonic_ns() < deadline_ns:
        ids = list(survivors)
        modes = await asyncio.gather(*(_mode(*survivors[n]) for n in ids))
        seen_ns = time.monotonic_ns()
        for member_id, mode in zip(ids, modes, strict=True):
            if mode == "leader":
                return member_id, seen_ns
        await asyncio.sleep(LEADER_POLL_INTERVAL_MS / 1000)
    return None


# --------------------------------------------------------------------------- one trial


async def _measure(
    ensemble: Ensemble, leader_id: int, trial: int, settings: FailoverSettings
) -> TrialResult:
    survivors = {
        n: (member.host, member.port) for n, member in ensemble.members.items() if n != leader_id
    }
    writers = [_Writer(n, host, port) for n, (host, port) in survivors.items()]
    tasks = [asyncio.create_task(w.run(), name=f"writer-{w.member_id}") for w in writers]
    leader_task: asyncio.Task[tuple[int, int] | None] | None = None

    def result(fault_at_ns: int, failure: str | None, seen: tuple[int, int] | None) -> TrialResult:
        firsts = [f for f in (w.first_ack_ns(fault_at_ns) for w in writers) if f is not None]
        return TrialResult(
            product=ensemble.product,
            trial=trial,
            old_leader_id=leader_id,
            new_leader_id=None if seen is None else seen[0],
            write_ms=(min(firsts) - fault_at_ns) / 1e6 if firsts else None,
            leader_ms=None if seen is None else (seen[1] - fault_at_ns) / 1e6,
            writers=tuple(w.result(fault_at_ns) for w in writers),
            failure=failure,
        )

    try:
        deadline_s = time.monotonic() + WARMUP_TIMEOUT_S
        while any(w.acks_before_watch < WARMUP_ACKS for w in writers):
            if time.monotonic() > deadline_s:
                counts = {w.member_id: w.acks_before_watch for w in writers}
                return result(0, f"writers did not get going before the fault: {counts}", None)
            await asyncio.sleep(DONE_POLL_INTERVAL_MS / 1000)
        for w in writers:
            w.watch_from_ns = time.monotonic_ns()
        # In a thread: reaping the killed process must not stall the writers' loop.
        inject = ensemble.kill if settings.fault == "kill" else ensemble.pause
        fault_at_ns = await asyncio.to_thread(inject, leader_id)
        deadline_ns = fault_at_ns + int(settings.trial_timeout_s * 1e9)
        leader_task = asyncio.create_task(_watch_leader(survivors, deadline_ns))
        while time.monotonic_ns() < deadline_ns:
            if leader_task.done() and all(w.first_ack_ns(fault_at_ns) for w in writers):
                break
            await asyncio.sleep(DONE_POLL_INTERVAL_MS / 1000)
        seen = await leader_task if leader_task.done() else None
        trial_result = result(fault_at_ns, None, seen)
        missing = []
        if trial_result.write_ms is None:
            missing.append("no acknowledged write")
        if seen is None:
            missing.append("no new leader")
        if missing:
            trial_result = result(
                fault_at_ns,
                f"{' and '.join(missing)} within {settings.trial_timeout_s:g} s of the fault",
                seen,
            )
        return trial_result
    finally:
        for w in writers:
            w.stop()
        owned = [*tasks, *([leader_task] if leader_task is not None else [])]
        _, pending = await asyncio.wait(owned, timeout=CLOSE_TIMEOUT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*owned, return_exceptions=True)


def run_trial(
    runner: asyncio.Runner, ensemble: Ensemble, trial: int, settings: FailoverSettings
) -> TrialResult:
    """Kill the leader of a healthy ensemble, measure, restart it, wait until healthy."""
    leader_id = ensemble.wait_healthy()
    try:
        result = runner.run(_measure(ensemble, leader_id, trial, settings))
    finally:
        ensemble.resume(leader_id)  # if paused: it comes back and follows the new leader
    # Not on Ctrl-C or an error (raised above): the caller stops every member then.
    if not ensemble.members[leader_id].running:
        ensemble.restart(leader_id)
    ensemble.wait_healthy(timeout_ms=HEALTHY_TIMEOUT_MS)
    return result


# --------------------------------------------------------------------------- the report


def summarize(product: str, results: list[TrialResult]) -> Summary:
    mine = [r for r in results if r.product == product]
    writes = tuple(r.write_ms for r in mine if r.write_ms is not None)
    leaders = tuple(r.leader_ms for r in mine if r.leader_ms is not None)
    return Summary(
        product=product,
        trials=len(mine),
        measured=len(writes),
        write_median_ms=statistics.median(writes) if writes else None,
        write_max_ms=max(writes) if writes else None,
        leader_median_ms=statistics.median(leaders) if leaders else None,
        leader_max_ms=max(leaders) if leaders else None,
        write_samples_ms=writes,
        leader_samples_ms=leaders,
    )


def render_text(summaries: list[Summary], settings: FailoverSettings) -> str:
    header = [
        "product",
        "trials",
        "write median ms",
        "write max ms",
        "leader median ms",
        "leader max ms",
    ]
    rows = [
        [
            s.product,
            f"{s.measured}/{s.trials}",
            format_ms(s.write_median_ms),
            format_ms(s.write_max_ms),
            format_ms(s.leader_median_ms),
            format_ms(s.leader_max_ms),
        ]
        for s in summaries
    ]
    by_product = {s.product: s for s in summaries}
    if "corral" in by_product and "zookeeper" in by_product:
        c, z = by_product["corral"], by_product["zookeeper"]
        rows.append(
            [
                "corral/zookeeper",
                "",
                format_ratio(c.write_median_ms, z.write_median_ms),
                format_ratio(c.write_max_ms, z.write_max_ms),
                format_ratio(c.leader_median_ms, z.leader_median_ms),
                format_ratio(c.leader_max_ms, z.leader_max_ms),
            ]
        )
    lines = [
        f"fail-over: {_FAULT_NAMES[settings.fault]} of the leader of {ENSEMBLE_SIZE} members "
        "on 127.0.0.1 -> first acknowledged write (write) / a survivor leading in srvr (leader)",
        f"tickTime={settings.tick_time_ms} ms, initLimit={settings.init_limit}, "
        f"syncLimit={settings.sync_limit}, forceSync=yes",
        "",
        render_table(header, rows),
        "",
    ]
    for s in summaries:
        samples = ", ".join(format_ms(v) for v in s.write_samples_ms) or "-"
        lines.append(f"{s.product} write samples (ms): {samples}")
    return "\n".join(lines)


def to_json(
    *,
    results: list[TrialResult],
    summaries: list[Summary],
    settings: FailoverSettings,
    machine: dict[str, Any],
    command: list[str],
    started_at: str,
) -> dict[str, Any]:
    by_product = {s.product: s for s in summaries}
    ratios: dict[str, float | None] = {}
    if "corral" in by_product and "zookeeper" in by_product:
        c, z = by_product["corral"], by_product["zookeeper"]
        for name in ("write_median_ms", "write_max_ms", "leader_median_ms", "leader_max_ms"):
            num, den = getattr(c, name), getattr(z, name)
            ratios[name] = None if num is None or not den else num / den
    return {
        "benchmark": "failover",
        "command": command,
        "started_at": started_at,
        "machine": machine,
        "settings": {**asdict(settings), "zoo_cfg": settings.zoo_cfg()},
        "trials": [asdict(r) for r in results],
        "summary": [asdict(s) for s in summaries],
        "ratios_corral_over_zookeeper": ratios,
    }


_FAULT_NAMES = {"kill": "kill -9", "pause": "SIGSTOP"}


def _describe(result: TrialResult, settings: FailoverSettings) -> str:
    if result.write_ms is None and result.leader_ms is None:
        return f"FAILED: {result.failure}"
    done = "killed" if settings.fault == "kill" else "paused"
    text = (
        f"leader {result.old_leader_id} {done}; member {result.new_leader_id} leads after "
        f"{format_ms(result.leader_ms)} ms; first write after {format_ms(result.write_ms)} ms"
    )
    return text if result.failure is None else f"{text}  FAILED: {result.failure}"


# --------------------------------------------------------------------------- the command


@dataclass(slots=True)
class _Run:
    ensembles: dict[str, Ensemble] = field(default_factory=dict)
    results: list[TrialResult] = field(default_factory=list)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so the servers are stopped as on Ctrl-C."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_ensemble(product: str, settings: FailoverSettings) -> Ensemble:
    return Ensemble(
        product,
        size=ENSEMBLE_SIZE,
        tick_time_ms=settings.tick_time_ms,
        config=settings.zoo_cfg(),
        zookeeper_start_up_jvm_flags=False,
        zookeeper_heap_size_max_mb=ZOOKEEPER_HEAP_SIZE_MAX_MB,
    ).start()


def run_failover(args: argparse.Namespace) -> int:
    from corral.cli.bench import machine_info, new_runner

    stream: IO[str] = sys.stderr
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        stream.write(f"corral bench failover: {e}\n")
        return 2
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    run = _Run()
    interrupted = False
    with _sigterm_interrupts():
        try:
            for product in settings.products:
                stream.write(f"failover: starting {ENSEMBLE_SIZE} {product} members ...\n")
                stream.flush()
                run.ensembles[product] = _start_ensemble(product, settings)
        except KeyboardInterrupt:
            stream.write("\ncorral bench failover: interrupted\n")
            _stop_all(run)
            return 1
        except ServerStartError as e:
            stream.write(f"corral bench failover: cannot start the ensembles: {e}\n")
            _stop_all(run)
            return 2
        except BaseException:
            _stop_all(run)
            raise
        try:
            with new_runner() as runner:
                for trial in range(1, settings.trials + 1):
                    order = settings.products if trial % 2 == 1 else settings.products[::-1]
                    for product in order:
                        result = run_trial(runner, run.ensembles[product], trial, settings)
                        run.results.append(result)
                        stream.write(
                            f"failover: trial {trial}/{settings.trials} {product}: "
                            f"{_describe(result, settings)}\n"
                        )
                        stream.flush()
        except KeyboardInterrupt:
            stream.write("\ncorral bench failover: interrupted\n")
            interrupted = True
        except ServerStartError as e:
            stream.write(f"corral bench failover: an ensemble did not recover: {e}\n")
            interrupted = True
        finally:
            _stop_all(run)
    summaries = [summarize(product, run.results) for product in settings.products]
    sys.stdout.write(render_text(summaries, settings) + "\n")
    if args.json is not None:
        argv = sys.argv[1:]
        command = ["corral", *argv] if argv[:2] == ["bench", "failover"] else sys.argv
        report = to_json(
            results=run.results,
            summaries=summaries,
            settings=settings,
            machine=machine_info(),
            command=command,
            started_at=started_at,
        )
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = interrupted or any(r.failure is not None for r in run.results)
    return 1 if failed else 0


def _stop_all(run: _Run) -> None:
    for ensemble in run.ensembles.values():
        ensemble.stop()
