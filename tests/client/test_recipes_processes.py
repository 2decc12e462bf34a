"""Recipes across real processes: kill -9 the lock holder / the leader; the next one
takes over after the session expires; the lock is never held by two at once (checked
on an append-only log of holders)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
TAKEOVER_TIMEOUT_S = 40.0  # session 4 s + up to a tick, plus JVM/loaded-machine slack
POLL_S = 0.05


class Workers:
    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.client.recipe_worker", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready"; bounded by the client's connect timeout
        if line.strip() != "ready":
            process.kill()
            process.wait(10)
            assert process.stderr is not None
            raise AssertionError(f"worker did not start: {line!r} {process.stderr.read()}")
        return process

    def kill(self, pid: int) -> None:
        for process in self.processes:
            if process.pid == pid and process.poll() is None:
                os.kill(pid, signal.SIGKILL)
                process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
            if process.stderr is not None:
                process.stderr.close()


@pytest.fixture
def workers() -> Iterator[Workers]:
    pool = Workers()
    try:
        yield pool
    finally:
        pool.stop_all()


def read_log(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    result = []
    for line in path.read_text().splitlines():
        kind, pid = line.split()
        result.append((kind, int(pid)))
    return result


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def check_mutual_exclusion(events: list[tuple[str, int]]) -> None:
    """Holders never overlap: every acquire/elected finds nobody holding, except a holder
    the test killed (its hold ends at `killed`)."""
    holder: int | None = None
    for index, (kind, pid) in enumerate(events):
        if kind in ("acquire", "elected"):
            assert holder is None, f"event {index}: {pid} took over while {holder} held: {events}"
            holder = pid
        elif kind in ("release", "lost"):
            assert holder == pid, f"event {index}: {pid} released but {holder} held: {events}"
            holder = None
        elif kind == "killed" and holder == pid:
            holder = None


def test_lock_survives_kill_9_of_its_holder_without_overlap(
    server: Any, chroot: str, tmp_path: Path, workers: Workers
) -> None:
    log = tmp_path / "holders.log"
    hosts = f"{server.address}{chroot}"
    pids = [workers.start("lock", hosts, "/lock", str(log), "0.2", "1000").pid for _ in range(3)]
    wait_for(lambda: len(read_log(log)) >= 6, READY_TIMEOUT_S, "a few lock rounds")
    # Kill whoever holds the lock right now (an acquire without its release yet).
    victim: int | None = None
    for _ in range(1000):
        events = read_log(log)
        if events and events[-1][0] == "acquire":
            victim = events[-1][1]
            os.kill(victim, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert victim is not None, "never caught a holder"
    workers.kill(victim)
    with log.open("a") as f:
        f.write(f"killed {victim}\n")
    marker = len(read_log(log))

    def someone_else_acquired() -> bool:
        return any(kind == "acquire" and pid != victim for kind, pid in read_log(log)[marker:])

    wait_for(someone_else_acquired, TAKEOVER_TIMEOUT_S, "a survivor to take the lock")
    workers.stop_all()
    events = read_log(log)
    check_mutual_exclusion(events)
    assert {pid for kind, pid in events if kind == "acquire"} <= set(pids)
    # The victim's hold ended with it: no later event of the victim.
    assert all(pid != victim for _, pid in events[marker:])


def test_leader_election_fails_over_after_kill_9(
    server: Any, chroot: str, tmp_path: Path, workers: Workers
) -> None:
    log = tmp_path / "leaders.log"
    hosts = f"{server.address}{chroot}"
    for _ in range(3):
        workers.start("elect", hosts, "/election", str(log))
    wait_for(lambda: len(read_log(log)) >= 1, READY_TIMEOUT_S, "a first leader")
    first = read_log(log)
    assert [kind for kind, _ in first] == ["elected"]
    leader = first[0][1]
    workers.kill(leader)
    with log.open("a") as f:
        f.write(f"killed {leader}\n")
    wait_for(lambda: len(read_log(log)) >= 3, TAKEOVER_TIMEOUT_S, "a new leader")
    time.sleep(0.5)  # long enough to catch a (wrong) second concurrent leader
    events = read_log(log)
    check_mutual_exclusion(events)
    assert [kind for kind, _ in events] == ["elected", "killed", "elected"]
    assert events[2][1] != leader


def test_the_overlap_check_catches_two_holders() -> None:
    check_mutual_exclusion([("acquire", 1), ("killed", 1), ("acquire", 2), ("release", 2)])
    with pytest.raises(AssertionError):
        check_mutual_exclusion([("acquire", 1), ("acquire", 2)])
    with pytest.raises(AssertionError):
        check_mutual_exclusion([("elected", 1), ("killed", 2), ("elected", 2)])
