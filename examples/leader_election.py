"""Master election with fail-over, across processes.

Run it against a server on 127.0.0.1:2181 (`corral server`, or Apache ZooKeeper):

    python examples/leader_election.py

That one command starts three candidate processes (a, b, c). They run an election on
/examples/election (corral's LeaderElection recipe: ephemeral sequential znodes, each
candidate watching only the one before it). The leader does the "master work" (prints
a heartbeat); the others wait. The demo then kills the leader with SIGKILL, as a crash
would: its session lives on until it times out (--session-timeout, default 4 s), then
its znode goes and the next candidate in line takes over. The demo ends by itself
after --duration seconds (default 30) or on Ctrl-C, and stops every process it started.

One candidate per terminal instead:

    python examples/leader_election.py candidate --name a
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

from corral.client import Client
from corral.client.recipes import LeaderElection

ELECTION_PATH = "/examples/election"
HEARTBEAT_INTERVAL_S = 1.0
POLL_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 5.0


def log(who: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {who}: {message}", flush=True)


async def run_candidate(server: str, name: str, session_timeout_s: float, duration_s: float) -> int:
    async with Client(server, timeout_s=session_timeout_s) as zk:

        async def lead() -> None:
            log(name, "elected: I am the master now")
            for beat in range(1, 1_000_000):
                log(name, f"master heartbeat {beat}")
                await asyncio.sleep(HEARTBEAT_INTERVAL_S)

        def lost() -> None:
            log(name, "lost leadership (session expired): stopping master work")

        election = LeaderElection(zk, ELECTION_PATH, name.encode(), on_elected=lead, on_lost=lost)
        election.start()
        log(name, "candidate: waiting in line")
        await wait_for_stop(duration_s)
        await election.resign()
        log(name, "resigned")
    return 0


async def wait_for_stop(duration_s: float) -> None:
    """Sleep `duration_s`, or less if SIGTERM or SIGINT (Ctrl-C) arrives."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), duration_s)


async def current_leader(zk: Client) -> str | None:
    leader = await LeaderElection(zk, ELECTION_PATH).leader()
    return None if leader is None else leader.decode()


async def wait_for_leader(zk: Client, deadline: float, *, other_than: str | None) -> str | None:
    while time.monotonic() < deadline:
        leader = await current_leader(zk)
        if leader is not None and leader != other_than:
            return leader
        await asyncio.sleep(POLL_INTERVAL_S)
    return None


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


async def run_demo(server: str, session_timeout_s: float, duration_s: float) -> int:
    deadline = time.monotonic() + duration_s
    names = ("a", "b", "c")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    current: str | None = None  # the leader as far as the demo knows
    try:
        for name in names:
            processes[name] = subprocess.Popen(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "candidate",
                    "--name",
                    name,
                    "--server",
                    server,
                    "--session-timeout",
                    str(session_timeout_s),
                    "--duration",
                    str(duration_s),
                ]
            )
        async with Client(server, timeout_s=10) as zk:
            leader = current = await wait_for_leader(zk, deadline, other_than=None)
            if leader is None:
                log("demo", "no leader was elected in time")
                return 1
            log("demo", f"{leader} leads; killing it with SIGKILL (a crash)")
            await asyncio.sleep(2 * HEARTBEAT_INTERVAL_S)
            killed_at = time.monotonic()
            processes[leader].kill()
            processes[leader].wait(timeout=STOP_TIMEOUT_S)
            successor = current = await wait_for_leader(zk, deadline, other_than=leader)
            if successor is None:
                log("demo", "nobody took over in time")
                return 1
            waited_s = time.monotonic() - killed_at
            log("demo", f"fail-over: {successor} took over {waited_s:.1f} s after the crash")
            remaining_s = max(0.0, deadline - time.monotonic())
            await asyncio.sleep(min(3 * HEARTBEAT_INTERVAL_S, remaining_s))
    finally:
        # The waiting candidates first, the leader last: stopping it first would only
        # elect the next one for a moment.
        leader_last = sorted(processes, key=lambda name: name == current)
        for name in leader_last:
            stop(processes[name])
    log("demo", "done")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="demo", choices=("demo", "candidate"))
    parser.add_argument("--name", default=f"candidate-{os.getpid()}")
    parser.add_argument("--server", default="127.0.0.1:2181", help="host:port[/chroot]")
    parser.add_argument("--session-timeout", type=float, default=4.0, help="seconds")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds before exiting")
    args = parser.parse_args(argv)
    if args.role == "candidate":
        job = run_candidate(args.server, args.name, args.session_timeout, args.duration)
    else:
        job = run_demo(args.server, args.session_timeout, args.duration)
    try:
        return asyncio.run(job)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
