"""A contender process for the multi-process recipe tests.

    python -m tests.client.recipe_worker lock HOSTS PATH LOG HOLD_S ROUNDS
    python -m tests.client.recipe_worker elect HOSTS PATH LOG

Appends one line per event to LOG (O_APPEND, one write per line: lines never
interleave): `acquire PID`, `release PID`, `elected PID`. Prints `ready` once its
session is up. Session timeout 4000 ms (ZooKeeper's minimum with tickTime 2000), so a
killed holder's lock passes on within seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys

from corral.client.aio import Client
from corral.client.recipes import LeaderElection, Lock

SESSION_TIMEOUT_S = 4.0
ELECTED_WAIT_MAX_S = 600.0  # a leader stays until killed; bounded anyway


def append(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


async def lock_worker(hosts: str, path: str, log: str, hold_s: float, rounds: int) -> None:
    pid = os.getpid()
    async with Client(hosts, timeout_s=SESSION_TIMEOUT_S) as zk:
        print("ready", flush=True)
        lock = Lock(zk, path, str(pid).encode())
        for _ in range(rounds):
            await lock.acquire()
            append(log, f"acquire {pid}")
            await asyncio.sleep(hold_s)
            if lock.is_held:
                append(log, f"release {pid}")
            else:
                append(log, f"lost {pid}")
            await lock.release()


async def elect_worker(hosts: str, path: str, log: str) -> None:
    pid = os.getpid()
    async with Client(hosts, timeout_s=SESSION_TIMEOUT_S) as zk:
        print("ready", flush=True)
        election = LeaderElection(
            zk,
            path,
            str(pid).encode(),
            on_elected=lambda: append(log, f"elected {pid}"),
            on_lost=lambda: append(log, f"lost {pid}"),
        )
        election.start()
        await asyncio.sleep(ELECTED_WAIT_MAX_S)


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "lock":
        hosts, path, log, hold_s, rounds = argv[1:6]
        asyncio.run(lock_worker(hosts, path, log, float(hold_s), int(rounds)))
    elif kind == "elect":
        hosts, path, log = argv[1:4]
        asyncio.run(elect_worker(hosts, path, log))
    else:
        raise SystemExit(f"unknown worker kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
