"""The programs in examples/ run, briefly, against a corral server this test starts.

Each example runs as its docstring says (`python examples/<name>.py`), pointed at the
test's server under a fresh chroot, with a short --duration; it must exit 0 on its own
and print what shows it did its job (providers followed, a fail-over, no lost update,
every config revision reloaded). An example that hangs is killed with its process
group (the demos start worker processes of their own, which they stop themselves).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.cli.launch import CorralServer
from corral.client.sync import SyncClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_TIMEOUT_S = 60
TICK_TIME_MS = 500  # sessions may be as short as 1 s: a fail-over after a crash is quick

_names = itertools.count()


@pytest.fixture(scope="module")
def corral_server() -> Iterator[CorralServer]:
    with CorralServer(tick_time_ms=TICK_TIME_MS) as server:
        yield server


@pytest.fixture
def server(corral_server: CorralServer) -> str:
    """`host:port/chroot`, the chroot fresh for each example."""
    root = f"/examples{os.getpid()}_{next(_names)}"
    with SyncClient(corral_server.address, timeout_s=10) as zk:
        zk.create(root, b"")
    return corral_server.address + root


def run_example(name: str, *args: str) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: we can stop it with its workers
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        pytest.fail(f"{name} did not finish in {RUN_TIMEOUT_S} s; output:\n{output}")
    return process.returncode, output


def test_service_registry(server: str) -> None:
    code, output = run_example("service_registry.py", "--server", server, "--duration", "7")
    assert code == 0, output
    changes = [line for line in output.splitlines() if "caller: providers now:" in line]
    assert len(changes) >= 2, output  # the initial list, then at least one change followed
    assert "echoes hello" in output, output
    assert "registration gone with the session" in output, output


def test_leader_election_fails_over(server: str) -> None:
    code, output = run_example(
        "leader_election.py", "--server", server, "--duration", "15", "--session-timeout", "2"
    )
    assert code == 0, output
    killed = re.search(r"demo: (\w+) leads; killing it with SIGKILL", output)
    took_over = re.search(r"demo: fail-over: (\w+) took over", output)
    assert killed is not None and took_over is not None, output
    assert killed.group(1) != took_over.group(1), output
    assert f"{took_over.group(1)}: elected: I am the master now" in output, output


def test_distributed_lock_loses_no_update(server: str) -> None:
    code, output = run_example(
        "distributed_lock.py", "--server", server, "--rounds", "3", "--duration", "30"
    )
    assert code == 0, output
    assert "counter = 9 (expected 9): no update lost" in output, output


def test_config_centre_reloads_every_revision(server: str) -> None:
    code, output = run_example(
        "config_centre.py", "--server", server, "--updates", "3", "--duration", "20"
    )
    assert code == 0, output
    for service in ("billing", "search"):
        reloads = [line for line in output.splitlines() if f"{service}: loaded config" in line]
        assert len(reloads) >= 2, output
    assert "services reached revisions [4, 4]; expected 4" in output, output
