"""A fair distributed lock shared by several processes.

Run it against a server on 127.0.0.1:2181 (`corral server`, or Apache ZooKeeper):

    python examples/distributed_lock.py

That one command starts three worker processes. Each takes the lock /examples/lock/mutex
(corral's fair Lock recipe: an ephemeral sequential znode per waiter, each waiting on
the one just before it, so the lock goes in arrival order and a release wakes one
waiter only) --rounds times, and while holding it does a deliberately unsafe
read-modify-write of the counter znode /examples/lock/counter (read, pause, write
back +1). Without the lock updates would be lost; with it the final counter is
exactly workers x rounds, which the demo checks (exit code 1 if not). It ends by
itself (every worker is bounded by --duration seconds) or on Ctrl-C.

One worker per terminal instead:

    python examples/distributed_lock.py worker --name a --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time

from corral.client import JSON, Client
from corral.client.recipes import Lock

LOCK_PATH = "/examples/lock/mutex"
COUNTER_PATH = "/examples/lock/counter"
CRITICAL_SECTION_S = 0.05  # the pause between reading and writing the counter
WORKERS = ("a", "b", "c")
STOP_TIMEOUT_S = 5.0


def log(who: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {who}: {message}", flush=True)


async def run_worker(server: str, name: str, rounds: int, duration_s: float) -> int:
    deadline = time.monotonic() + duration_s
    async with Client(server, timeout_s=10) as zk:
        await zk.ensure_path(LOCK_PATH)
        lock = Lock(zk, LOCK_PATH, name.encode())
        for round_number in range(1, rounds + 1):
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or not await lock.acquire(timeout_s=remaining_s):
                log(name, f"gave up waiting for the lock in round {round_number}")
                return 1
            try:
                value, _ = await zk.get(COUNTER_PATH, codec=JSON)
                await asyncio.sleep(CRITICAL_SECTION_S)  # others would slip in here
                await zk.set(COUNTER_PATH, value + 1, codec=JSON)
                log(name, f"round {round_number}: holds the lock, counter {value} -> {value + 1}")
            finally:
                await lock.release()
    return 0


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


async def run_demo(server: str, rounds: int, duration_s: float) -> int:
    async with Client(server, timeout_s=10) as zk:
        await zk.ensure_path(LOCK_PATH)
        if await zk.exists(COUNTER_PATH) is None:
            await zk.create(COUNTER_PATH, 0, codec=JSON)
        else:
            await zk.set(COUNTER_PATH, 0, codec=JSON)
    log("demo", f"counter reset to 0; starting workers {', '.join(WORKERS)}")
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "worker",
                "--name",
                name,
                "--server",
                server,
                "--rounds",
                str(rounds),
                "--duration",
                str(duration_s),
            ]
        )
        for name in WORKERS
    ]
    deadline = time.monotonic() + duration_s + STOP_TIMEOUT_S
    codes: list[int | None] = []
    try:
        for process in processes:
            try:
                codes.append(process.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        for process in processes:
            stop(process)
    async with Client(server, timeout_s=10) as zk:
        counter, _ = await zk.get(COUNTER_PATH, codec=JSON)
    expected = len(WORKERS) * rounds
    verdict = "no update lost" if counter == expected else "UPDATES LOST"
    log("demo", f"counter = {counter} (expected {expected}): {verdict}")
    return 0 if counter == expected and codes == [0] * len(WORKERS) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="demo", choices=("demo", "worker"))
    parser.add_argument("--name", default=f"worker-{os.getpid()}")
    parser.add_argument("--server", default="127.0.0.1:2181", help="host:port[/chroot]")
    parser.add_argument("--rounds", type=int, default=5, help="times each worker takes the lock")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds at most")
    args = parser.parse_args(argv)
    if args.role == "worker":
        # SIGTERM from the demo ends a worker as Ctrl-C does; closing the client on the
        # way out deletes its lock znode, so nobody waits for a dead worker.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        job = run_worker(args.server, args.name, args.rounds, args.duration)
    else:
        job = run_demo(args.server, args.rounds, args.duration)
    try:
        return asyncio.run(job)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
