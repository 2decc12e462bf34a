"""`corral bench`: measure a server, or corral and Apache ZooKeeper side by side.

    corral bench --server HOST:PORT [--pid PID] [options]
    corral bench --compare [options]          # starts ZooKeeper 3.8 and corral itself
    corral bench failover [options]           # fail-over of 3-member ensembles (its --help)

Rules:
- We claim speed only from measurements taken in one run on one machine: --compare runs
  every workload on both servers, alternately (the order flips at each workload, so
  neither side always runs on a warmer machine), and reports corral / ZooKeeper ratios.
- Equivalent settings: both servers fsync every write before acknowledging it
  (ZooKeeper's forceSync=yes, its default), same tick time, no per-client connection
  limit (watch fan-out and the session storm open hundreds of connections).
  ZooKeeper runs on its stock JIT and garbage collector with a fixed heap ceiling.
- Every run is bounded by a count and a time (see bench_load); every process this
  command starts (servers, client processes) is stopped by its PID before it returns,
  also on Ctrl-C.
- Progress goes to stderr, the table to stdout, files only where --json / --html say.
- Exit status: 0 when every run completed, 1 when any run failed (the table still
  shows what was measured), 2 for bad arguments or a server that does not start.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import os
import platform
import queue
import re
import shutil
import subprocess
import sys
import time
import traceback
from array import array
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, replace
from multiprocessing.sharedctypes import RawArray
from pathlib import Path
from typing import IO, Any, TypeVar

from corral.cli import bench_load
from corral.cli.bench_load import (
    LARGE_VALUE_SIZE,
    WORKLOADS,
    BenchError,
    Shape,
    WorkerResult,
    WorkerSpec,
)
from corral.cli.bench_report import (
    TargetInfo,
    WorkloadResult,
    render_text,
    to_html,
    to_json,
)
from corral.cli.bench_stats import (
    BYTES_PER_MB,
    ProcessSample,
    positive_float,
    positive_int,
    read_process,
    summarize,
)
from corral.cli.launch import ApacheZooKeeper, CorralServer, four_letter_word
from corral.limits import PENDING_REQUESTS_PER_CONNECTION_MAX

T = TypeVar("T")

SAMPLES_PER_WORKER_MAX = 1_000_000  # latency samples kept per client process
DRAIN_TIMEOUT_S = 30.0  # after a run's time bound, for the replies still in flight
WORKER_START_TIMEOUT_S = 60.0  # spawning a client process and opening its connections
SETUP_TIMEOUT_S = 600.0  # creating a workload's znodes (and removing leftovers)
CLEANUP_TIMEOUT_S = 300.0
PROGRESS_INTERVAL_TTY_S = 0.25
PROGRESS_INTERVAL_LOG_S = 2.0
ZOOKEEPER_HEAP_SIZE_MAX_MB = 2_048  # room for 1,000,000 znodes without GC thrash
JCMD_TIMEOUT_S = 120.0
RSS_SETTLE_TIMEOUT_S = 10.0
RSS_SETTLE_INTERVAL_S = 0.25
RSS_SETTLED_BYTES = 1 << 20  # RSS moving less than this per interval counts as settled
CONNECTIONS_MAX = 10_000
PROCESSES_MAX = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Sizes of a run; the defaults are the full run, --quick shrinks them."""

    workloads: tuple[str, ...]
    ops: int  # count bound of one pipelined/single workload on one target
    duration_s: float  # time bound of one workload on one target
    connections: int
    in_flight: int  # per connection
    processes: int  # client processes for pipelined workloads and the session storm
    watchers: int
    fanout_rounds: int
    sessions: int
    znodes: int
    memory_timeout_s: float  # time bound of the memory workload (creating N znodes)
    warmup_s: float  # unmeasured 90/10 mix on each server before the first workload
    seed: int
    quick: bool
    repeat: int = 1  # runs of each workload on each target; the median run is reported


FULL = Settings(
    workloads=tuple(WORKLOADS),
    ops=1_000_000,
    duration_s=10.0,
    connections=16,
    in_flight=32,
    processes=1,
    watchers=1_000,
    fanout_rounds=20,
    sessions=5_000,
    znodes=1_000_000,
    memory_timeout_s=900.0,
    warmup_s=5.0,
    seed=1,
    quick=False,
)
QUICK = replace(
    FULL,
    ops=50_000,
    duration_s=3.0,
    watchers=200,
    fanout_rounds=10,
    sessions=500,
    znodes=20_000,
    memory_timeout_s=120.0,
    warmup_s=1.0,
    quick=True,
)


# --------------------------------------------------------------------------- arguments


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _workload_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(WORKLOADS)}"
        )
    return names


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Registers `bench` on the `corral` command's subparsers; sets func=run_bench."""
    workload_help = "; ".join(f"{w.name}: {w.summary}" for w in WORKLOADS.values())
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="benchmark a server, or corral against Apache ZooKeeper (--compare)",
        description=__doc__.split("\n\nRules:")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Not required=True: `corral bench failover` takes neither (run_bench checks).
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--server", type=_address, metavar="HOST:PORT", help="benchmark this running server"
    )
    mode.add_argument(
        "--compare",
        action="store_true",
        help="start Apache ZooKeeper 3.8 and corral, run every workload on both",
    )
    parser.add_argument(
        "--pid", type=positive_int, help="the --server's process id, to read its CPU and RSS"
    )
    parser.add_argument(
        "--zookeeper",
        type=_address,
        metavar="HOST:PORT",
        help="with --compare: use this running ZooKeeper instead of starting one",
    )
    parser.add_argument("--zookeeper-pid", type=positive_int, metavar="PID")
    parser.add_argument(
        "--corral",
        type=_address,
        metavar="HOST:PORT",
        help="with --compare: use this running corral instead of starting one",
    )
    parser.add_argument("--corral-pid", type=positive_int, metavar="PID")
    # Development: compare ZooKeeper with a second ZooKeeper (the instrument's own noise).
    parser.add_argument("--dev-twin-zookeeper", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument(
        "--workloads",
        type=_workload_list,
        metavar="A,B,...",
        # argparse %-formats help text: a literal % must be doubled.
        help=f"run only these, in this order (default: all). {workload_help}".replace("%", "%%"),
    )
    parser.add_argument(
        "--duration-s", type=positive_float, help="time bound per workload per server"
    )
    parser.add_argument("--ops", type=positive_int, help="count bound per workload per server")
    parser.add_argument("--connections", type=positive_int, help="connections (sessions)")
    parser.add_argument("--in-flight", type=positive_int, help="requests in flight per connection")
    parser.add_argument("--processes", type=positive_int, help="client processes")
    parser.add_argument("--watchers", type=positive_int, help="watch-fanout: watchers")
    parser.add_argument("--rounds", type=positive_int, help="watch-fanout: setData rounds")
    parser.add_argument("--sessions", type=positive_int, help="session-storm: sessions")
    parser.add_argument("--znodes", type=positive_int, help="memory: znodes created")
    parser.add_argument(
        "--warmup-s",
        type=float,
        help="unmeasured load on each server before the first workload (0: none)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        metavar="N",
        help="run each workload N times on each server (alternately) and report the "
        "median run by ops/s (memory runs once)",
    )
    parser.add_argument("--seed", type=int, help="seed of latency sampling")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write an HTML chart")
    parser.set_defaults(func=run_bench)
    from corral.cli.bench_failover import add_failover_parser

    add_failover_parser(parser.add_subparsers(dest="bench_command", metavar="failover"))
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    settings = replace(
        base,
        workloads=args.workloads or base.workloads,
        ops=args.ops or base.ops,
        duration_s=args.duration_s or base.duration_s,
        connections=args.connections or base.connections,
        in_flight=args.in_flight or base.in_flight,
        processes=args.processes or base.processes,
        watchers=args.watchers or base.watchers,
        fanout_rounds=args.rounds or base.fanout_rounds,
        sessions=args.sessions or base.sessions,
        znodes=args.znodes or base.znodes,
        seed=base.seed if args.seed is None else args.seed,
        warmup_s=base.warmup_s if args.warmup_s is None else args.warmup_s,
        repeat=args.repeat or base.repeat,
    )
    if settings.connections > CONNECTIONS_MAX or settings.watchers > CONNECTIONS_MAX:
        raise ValueError(f"at most {CONNECTIONS_MAX} connections or watchers")
    if settings.in_flight > PENDING_REQUESTS_PER_CONNECTION_MAX:
        raise ValueError(f"at most {PENDING_REQUESTS_PER_CONNECTION_MAX} requests in flight")
    if settings.processes > PROCESSES_MAX:
        raise ValueError(f"at most {PROCESSES_MAX} client processes")
    return settings


# --------------------------------------------------------------------------- progress


class Progress:
    """One workload's progress line on stderr: rewritten in place on a terminal, a line
    every few seconds otherwise (logs, CI)."""

    def __init__(self, stream: IO[str], label: str, expected_ops: int, bound_s: float) -> None:
        self._stream = stream
        self._label = label
        self._expected_ops = expected_ops
        self._bound_s = bound_s
        self._tty = stream.isatty()
        self._interval_s = PROGRESS_INTERVAL_TTY_S if self._tty else PROGRESS_INTERVAL_LOG_S
        self._started_s = time.monotonic()
        self._shown_s = self._started_s

    def show(self, completed: int) -> None:
        now_s = time.monotonic()
        if now_s - self._shown_s < self._interval_s:
            return
        self._shown_s = now_s
        elapsed_s = now_s - self._started_s
        line = (
            f"bench: {self._label}: {elapsed_s:5.1f}/{self._bound_s:g} s, "
            f"{completed:,}/{self._expected_ops:,} ops, "
            f"{completed / elapsed_s if elapsed_s > 0 else 0:,.0f} ops/s"
        )
        self._write(line)

    def done(self, result: WorkloadResult) -> None:
        p99 = "-" if result.latency is None else f"{result.latency.p99_ms:.3f} ms"
        status = "" if result.failure is None else f"  FAILED: {result.failure}"
        self._write(
            f"bench: {self._label}: {result.ops_completed:,} ops in {result.duration_s:.2f} s, "
            f"{result.ops_per_s:,.0f} ops/s, p99 {p99}{status}",
            final=True,
        )

    def _write(self, line: str, final: bool = False) -> None:
        if self._tty:
            self._stream.write("\r" + line.ljust(100)[:120] + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


# --------------------------------------------------------------------------- running


def new_runner() -> asyncio.Runner:
    """An asyncio runner on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


@dataclass(slots=True, kw_only=True)
class Target:
    info: TargetInfo
    host: str
    port: int
    stop: Callable[[], object] | None  # set when this run started the server


def _worker_process_main(
    spec: WorkerSpec, counters: Any, slot: int, results: multiprocessing.Queue[Any]
) -> None:
    """Entry point of a client process: runs its share, sends back a WorkerResult."""

    def progress(completed: int) -> None:
        counters[slot] = completed

    try:
        with new_runner() as runner:
            result = runner.run(bench_load.run_worker(spec, progress))
    except BaseException as e:  # the process boundary: report, never leave the parent waiting
        result = bench_load.failed_result(
            spec.ops, f"client process crashed: {e!r}\n{traceback.format_exc()}"
        )
    results.put((slot, result))


def _split(total: int, parts: int) -> list[int]:
    """total split into `parts` shares differing by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _worker_specs(
    workload: str, target: Target, settings: Settings, ops: int, bound_s: float
) -> list[WorkerSpec]:
    spec = WORKLOADS[workload]
    connections, in_flight, processes = settings.connections, settings.in_flight, 1
    if spec.shape is Shape.SINGLE:
        connections, in_flight = 1, 1
    else:
        processes = settings.processes
    if spec.connections_max is not None:
        connections = min(connections, spec.connections_max)
    if spec.in_flight_max is not None:
        in_flight = min(in_flight, spec.in_flight_max)
    processes = max(1, min(processes, connections, ops))
    specs: list[WorkerSpec] = []
    first_index = 0
    for index, (share_connections, share_ops) in enumerate(
        zip(_split(connections, processes), _split(ops, processes), strict=True)
    ):
        specs.append(
            WorkerSpec(
                workload=workload,
                host=target.host,
                port=target.port,
                connections=share_connections,
                in_flight=in_flight,
                ops=share_ops,
                first_index=first_index,
                duration_s=bound_s,
                drain_timeout_s=DRAIN_TIMEOUT_S,
                samples_max=SAMPLES_PER_WORKER_MAX,
                seed=settings.seed * 1_000 + index,
            )
        )
        first_index += share_ops
    return specs


def _run_workers(
    runner: asyncio.Runner, specs: list[WorkerSpec], progress: Progress
) -> list[WorkerResult]:
    if len(specs) == 1:
        return [runner.run(bench_load.run_worker(specs[0], progress.show))]
    # fork, not spawn: no re-import of the parent's __main__ (which need not be guarded)
    # and a start in milliseconds. The child never touches the parent's event loop: it
    # builds its own runner and leaves with os._exit, as multiprocessing children do.
    context = multiprocessing.get_context("fork")
    counters = RawArray("q", len(specs))
    results: multiprocessing.Queue[Any] = context.Queue()
    processes: list[multiprocessing.process.BaseProcess] = [
        context.Process(
            target=_worker_process_main,
            args=(spec, counters, slot, results),
            name=f"corral-bench-{slot}",
            daemon=True,
        )
        for slot, spec in enumerate(specs)
    ]
    collected: dict[int, WorkerResult] = {}
    bound_s = max(s.duration_s for s in specs) + DRAIN_TIMEOUT_S + WORKER_START_TIMEOUT_S
    deadline_s = time.monotonic() + bound_s
    started: list[multiprocessing.process.BaseProcess] = []
    try:
        for process in processes:
            process.start()
            started.append(process)
        while len(collected) < len(specs) and time.monotonic() < deadline_s:
            try:
                slot, result = results.get(timeout=0.2)
                collected[slot] = result
            except queue.Empty:
                if not any(p.is_alive() for p in started) and results.empty():
                    break
            progress.show(sum(counters))
    finally:
        for process in started:
            process.join(timeout=5.0)
            if process.is_alive():
                process.kill()  # SIGKILL to this one child's PID
                process.join(timeout=5.0)
        results.close()
    merged: list[WorkerResult] = []
    for slot, spec in enumerate(specs):
        if slot in collected:
            merged.append(collected[slot])
            continue
        merged.append(
            bench_load.failed_result(
                spec.ops,
                f"client process {slot} gave no result (exit code "
                f"{processes[slot].exitcode}, time bound {bound_s:g} s)",
            )
        )
    return merged


def _merge(
    workload: str,
    target: Target,
    workers: list[WorkerResult],
    server_before: ProcessSample | None,
    server_after: ProcessSample | None,
    server_wall_s: float,
) -> WorkloadResult:
    completed = sum(w.ops_completed for w in workers)
    started_ns = min(w.started_ns for w in workers)
    finished_ns = max(w.finished_ns for w in workers)
    duration_s = max((finished_ns - started_ns) / 1e9, 1e-9)
    errors: dict[int, int] = {}
    samples: array[int] = array("q")
    extra: dict[str, float] = {}
    for w in workers:
        for code, count in w.errors.items():
            errors[code] = errors.get(code, 0) + count
        samples.extend(w.samples_ns)
        extra.update(w.extra)
    failures = [w.failure for w in workers if w.failure is not None]
    server_cpu_s = server_cpu_pct = server_rss_mb = server_disk_write_mb = None
    if server_before is not None and server_after is not None:
        server_cpu_s = server_after.cpu_s - server_before.cpu_s
        server_cpu_pct = 100 * server_cpu_s / max(server_wall_s, 1e-9)
        server_rss_mb = server_after.rss_bytes / BYTES_PER_MB
        if server_before.disk_write_bytes is not None and server_after.disk_write_bytes is not None:
            written = server_after.disk_write_bytes - server_before.disk_write_bytes
            server_disk_write_mb = written / BYTES_PER_MB
    return WorkloadResult(
        workload=workload,
        target=target.info.name,
        ops_requested=sum(w.ops_requested for w in workers),
        ops_completed=completed,
        errors=errors,
        duration_s=duration_s,
        ops_per_s=completed / duration_s,
        latency=summarize(samples),
        server_cpu_s=server_cpu_s,
        server_cpu_pct=server_cpu_pct,
        server_rss_mb=server_rss_mb,
        server_disk_write_mb=server_disk_write_mb,
        client_cpu_pct=100 * sum(w.cpu_s for w in workers) / duration_s,
        client_processes=len(workers),
        failure="; ".join(failures) if failures else None,
        extra=extra,
    )


def _bounded(coroutine: Coroutine[Any, Any, T], timeout_s: float) -> Coroutine[Any, Any, T]:
    async def run() -> T:
        async with asyncio.timeout(timeout_s):
            return await coroutine

    return run()


def run_workload(
    runner: asyncio.Runner,
    target: Target,
    workload: str,
    settings: Settings,
    stream: IO[str],
    label: str | None = None,
) -> WorkloadResult:
    """One workload on one target: prepare, measure, and (memory) tidy up."""
    shape = WORKLOADS[workload].shape
    label = label or f"{workload} on {target.info.name}"
    if shape is Shape.FANOUT:
        expected_ops, bound_s = settings.watchers * settings.fanout_rounds, settings.duration_s
    elif shape is Shape.SESSIONS:
        expected_ops, bound_s = settings.sessions, settings.duration_s
    elif shape is Shape.MEMORY:
        expected_ops, bound_s = settings.znodes, settings.memory_timeout_s
    else:
        expected_ops, bound_s = settings.ops, settings.duration_s
    progress = Progress(stream, label, expected_ops, bound_s)
    pid = target.info.pid
    try:
        runner.run(
            _bounded(bench_load.prepare(target.host, target.port, workload), SETUP_TIMEOUT_S)
        )
    except (BenchError, TimeoutError) as e:
        failed = bench_load.failed_result(expected_ops, f"setup failed: {e!r}")
        result = _merge(workload, target, [failed], None, None, 0.0)
        progress.done(result)
        return result
    heap_before = _jvm_live_heap_bytes(pid) if shape is Shape.MEMORY else None
    before = read_process(pid) if pid is not None else None
    wall_start_s = time.monotonic()
    if shape is Shape.FANOUT:
        workers = [
            runner.run(
                bench_load.run_fanout(
                    target.host,
                    target.port,
                    settings.watchers,
                    settings.fanout_rounds,
                    bound_s,
                    DRAIN_TIMEOUT_S,
                    progress.show,
                )
            )
        ]
    else:
        specs = _worker_specs(workload, target, settings, expected_ops, bound_s)
        workers = _run_workers(runner, specs, progress)
    after = read_process(pid) if pid is not None else None
    result = _merge(workload, target, workers, before, after, time.monotonic() - wall_start_s)
    extra = dict(result.extra)
    if workload == "large":
        extra["throughput_mb_per_s"] = result.ops_per_s * LARGE_VALUE_SIZE / BYTES_PER_MB
    if shape is Shape.MEMORY:
        created = result.ops_completed - result.error_count
        extra["znodes"] = float(created)
        # For a JVM, the full GC of the heap probe runs before both RSS readings, so
        # neither counts garbage; `after` (CPU) was read before that GC.
        heap_after = _jvm_live_heap_bytes(pid) if heap_before is not None else None
        rss_after = read_process(pid) if pid is not None else None
        if before is not None and rss_after is not None and created > 0:
            extra["rss_before_mb"] = before.rss_bytes / BYTES_PER_MB
            extra["rss_after_mb"] = rss_after.rss_bytes / BYTES_PER_MB
            extra["bytes_per_znode"] = (rss_after.rss_bytes - before.rss_bytes) / created
        if heap_before is not None and heap_after is not None and created > 0:
            extra["heap_bytes_per_znode"] = (heap_after - heap_before) / created
        if target.stop is None:
            # Not our server: leave it as we found it. Ours is discarded at the end.
            try:
                runner.run(
                    _bounded(
                        bench_load.delete_memory_znodes(target.host, target.port, expected_ops),
                        CLEANUP_TIMEOUT_S,
                    )
                )
            except (BenchError, TimeoutError) as e:
                stream.write(f"corral bench: could not delete the memory znodes: {e!r}\n")
    result = replace(result, extra=extra)
    progress.done(result)
    return result


def median_run(runs: list[WorkloadResult]) -> WorkloadResult:
    """The run to report out of several of one workload on one target: the median by
    ops/s (the lower of the two middle ones for an even count), its notes giving the
    count and the range. A failed run is reported instead, so a failure always shows."""
    failed = [run for run in runs if run.failure is not None]
    if failed:
        return failed[0]
    if len(runs) == 1:
        return runs[0]
    ranked = sorted(runs, key=lambda run: run.ops_per_s)
    median = ranked[(len(ranked) - 1) // 2]
    extra = dict(median.extra)
    extra["runs"] = float(len(runs))
    extra["ops_per_s_min"] = ranked[0].ops_per_s
    extra["ops_per_s_max"] = ranked[-1].ops_per_s
    return replace(median, extra=extra)


def _jvm_live_heap_bytes(pid: int | None) -> int | None:
    """The live heap of a JVM (after a full GC, via jcmd), or None if `pid` is not a
    java process or jcmd is missing. A JVM's RSS mostly tracks how far its heap grew
    with garbage, not what it keeps, so for ZooKeeper the memory workload also reports
    this figure."""
    if pid is None or shutil.which("jcmd") is None:
        return None
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "java":
            return None
        for command in ("GC.run", "GC.heap_info"):
            done = subprocess.run(
                ["jcmd", str(pid), command],
                capture_output=True,
                text=True,
                timeout=JCMD_TIMEOUT_S,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\bused (\d+)K", done.stdout)
    if match is None:
        return None
    _wait_rss_settled(pid)
    return int(match.group(1)) * 1024


def _wait_rss_settled(pid: int) -> None:
    """After a full GC, G1 hands the freed heap back to the OS from a background thread:
    wait (bounded) until RSS stops moving, so the next reading is not mid-uncommit."""
    deadline_s = time.monotonic() + RSS_SETTLE_TIMEOUT_S
    previous = read_process(pid)
    while previous is not None and time.monotonic() < deadline_s:
        time.sleep(RSS_SETTLE_INTERVAL_S)
        current = read_process(pid)
        if current is None or abs(current.rss_bytes - previous.rss_bytes) < RSS_SETTLED_BYTES:
            return
        previous = current


# --------------------------------------------------------------------------- servers


class BenchZooKeeper(ApacheZooKeeper):
    """ApacheZooKeeper as shipped: stock JIT and GC (launch.py trims both for a fast
    test start-up, which would handicap it here), forceSync=yes spelled out, and a heap
    ceiling with room for 1,000,000 znodes."""

    def __init__(self) -> None:
        super().__init__(
            config={"forceSync": "yes"},
            heap_size_max_mb=ZOOKEEPER_HEAP_SIZE_MAX_MB,
            start_up_jvm_flags=False,
        )


def _server_version(host: str, port: int) -> str | None:
    try:
        first_line = four_letter_word(host, port, "srvr").splitlines()[0]
    except (OSError, IndexError):
        return None
    return first_line if first_line.lower().startswith(("zookeeper", "corral")) else None


def _started(name: str, server: ApacheZooKeeper | CorralServer, settings: dict[str, str]) -> Target:
    return Target(
        info=TargetInfo(
            name=name,
            address=server.address,
            pid=server.pid,
            owned=True,
            version=_server_version(server.host, server.port),
            settings=settings,
        ),
        host=server.host,
        port=server.port,
        stop=server.stop,
    )


def _given(name: str, address: tuple[str, int], pid: int | None) -> Target:
    host, port = address
    return Target(
        info=TargetInfo(
            name=name,
            address=f"{host}:{port}",
            pid=pid,
            owned=False,
            version=_server_version(host, port),
        ),
        host=host,
        port=port,
        stop=None,
    )


_ZOOKEEPER_SETTINGS = {
    "forceSync": "yes (fsync before every acknowledgment)",
    "tickTime": "2000 ms",
    "maxClientCnxns": "0 (unlimited)",
    "jvm": f"-Xmx{ZOOKEEPER_HEAP_SIZE_MAX_MB}m, default JIT and GC",
}
_CORRAL_SETTINGS = {
    "forceSync": "yes (fsync before every acknowledgment)",
    "tickTime": "2000 ms",
    "maxClientCnxns": "0 (unlimited)",
}


def start_targets(args: argparse.Namespace, stream: IO[str]) -> list[Target]:
    """The servers to measure; on failure, every server already started is stopped."""
    if args.server is not None:
        return [_given("server", args.server, args.pid)]
    targets: list[Target] = []
    try:
        if args.zookeeper is not None:
            targets.append(_given("zookeeper", args.zookeeper, args.zookeeper_pid))
        else:
            stream.write("bench: starting Apache ZooKeeper ...\n")
            zookeeper = BenchZooKeeper().start()
            targets.append(_started("zookeeper", zookeeper, _ZOOKEEPER_SETTINGS))
        if args.dev_twin_zookeeper:
            stream.write("bench: starting a second Apache ZooKeeper (--dev-twin-zookeeper) ...\n")
            twin = BenchZooKeeper().start()
            targets.append(_started("zookeeper-b", twin, _ZOOKEEPER_SETTINGS))
        elif args.corral is not None:
            targets.append(_given("corral", args.corral, args.corral_pid))
        else:
            stream.write("bench: starting corral ...\n")
            corral = CorralServer(config={"maxClientCnxns": "0", "forceSync": "yes"}).start()
            targets.append(_started("corral", corral, _CORRAL_SETTINGS))
    except BaseException:
        stop_targets(targets)
        raise
    return targets


def stop_targets(targets: list[Target]) -> None:
    for target in targets:
        if target.stop is not None:
            target.stop()


# --------------------------------------------------------------------------- the command


def machine_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop

        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:
        loop = "asyncio"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "event_loop": loop,
    }


def run_bench(args: argparse.Namespace) -> int:
    stream: IO[str] = sys.stderr
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        stream.write(f"corral bench: {e}\n")
        return 2
    if args.server is None and not args.compare:
        stream.write("corral bench: give --server HOST:PORT or --compare\n")
        return 2
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    try:
        targets = start_targets(args, stream)
    except Exception as e:  # a server that does not start: say why, stop
        stream.write(f"corral bench: cannot start the servers: {e}\n")
        return 2
    results: list[WorkloadResult] = []
    try:
        with new_runner() as runner:
            if settings.warmup_s > 0:
                # The JVM compiles its hot paths in the first seconds of load: measure
                # ZooKeeper warm, as it runs in production. corral gets the same.
                warmup = replace(settings, duration_s=settings.warmup_s)
                for target in targets:
                    run_workload(
                        runner, target, "mix", warmup, stream, f"warm-up of {target.info.name}"
                    )
            for index, workload in enumerate(settings.workloads):
                # The memory workload leaves its znodes in place: one run only.
                rounds = 1 if WORKLOADS[workload].shape is Shape.MEMORY else settings.repeat
                runs: dict[str, list[WorkloadResult]] = {t.info.name: [] for t in targets}
                for round_index in range(rounds):
                    # Each round starts on the other server, so neither always goes first.
                    first = (index + round_index) % 2 == 0
                    for target in targets if first else list(reversed(targets)):
                        label = f"{workload} on {target.info.name}"
                        if rounds > 1:
                            label += f" (run {round_index + 1}/{rounds})"
                        result = run_workload(runner, target, workload, settings, stream, label)
                        runs[target.info.name].append(result)
                order = targets if index % 2 == 0 else list(reversed(targets))
                results.extend(median_run(runs[target.info.name]) for target in order)
            for target in targets:
                if target.stop is not None:
                    continue  # ours: discarded with its data directory
                try:
                    runner.run(
                        _bounded(bench_load.cleanup(target.host, target.port), CLEANUP_TIMEOUT_S)
                    )
                except (BenchError, TimeoutError) as e:
                    stream.write(
                        f"corral bench: could not remove {bench_load.ROOT_PATH} from "
                        f"{target.info.address}: {e!r}\n"
                    )
    except KeyboardInterrupt:
        stream.write("\ncorral bench: interrupted\n")
        return 1
    except (BenchError, TimeoutError) as e:
        stream.write(f"corral bench: {e!r}\n")
        return 1
    finally:
        stop_targets(targets)
    names = [t.info.name for t in targets]
    sys.stdout.write(render_text(results, names) + "\n")
    command = ["corral", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else sys.argv
    machine = machine_info()
    if args.json is not None:
        import json

        report = to_json(
            results=results,
            targets=[t.info for t in targets],
            settings=asdict(settings),
            machine=machine,
            command=command,
            started_at=started_at,
        )
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.html is not None:
        args.html.write_text(
            to_html(
                results=results,
                targets=[t.info for t in targets],
                machine=machine,
                command=command,
                started_at=started_at,
            )
        )
    return 1 if any(r.failure is not None for r in results) else 0
