"""corral.cli.launch: servers start on a free port, answer, and stop by PID, leaving nothing."""

from __future__ import annotations

import contextlib
import os

import pytest

from corral.cli import launch
from corral.cli.launch import ApacheZooKeeper, CorralServer, ServerStartError, free_ports
from tests.support import servers
from tests.support.raw_client import RawClient
from tests.support.servers import require_corral_server, require_zookeeper


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.zookeeper
@pytest.mark.parametrize("kind", ["zookeeper", "corral"])
def test_start_answer_restart_stop(kind: str) -> None:
    server: ApacheZooKeeper | CorralServer
    if kind == "zookeeper":
        require_zookeeper()
        server = ApacheZooKeeper(tick_time_ms=1_000, config={"maxSessionTimeout": "30000"})
    else:
        require_corral_server()
        server = CorralServer(tick_time_ms=1_000, config={"maxSessionTimeout": "30000"})
    with server:
        pid, port, workdir = server.pid, server.port, server.workdir
        assert server.running
        assert server.four_letter_word("ruok") == "imok"
        with RawClient(server.host, server.port) as client:
            response = client.connect(timeout_ms=100_000)
            assert response is not None
            assert response.timeout_ms == 30_000  # the config reached the server
        server.restart()
        assert server.port == port
        assert server.pid != pid
        assert not pid_alive(pid)
        assert server.four_letter_word("ruok") == "imok"
        new_pid = server.pid
    assert not pid_alive(new_pid)
    assert not workdir.exists()


def test_start_failure_is_reported_with_the_log(tmp_path) -> None:
    server = CorralServer(python=str(tmp_path / "no-such-python"), start_timeout_ms=5_000)
    with pytest.raises((ServerStartError, OSError)):
        server.start()
    assert not server.running
    with pytest.raises(AssertionError, match="not started"):
        _ = server.workdir  # the temporary directory went with the failed start


@pytest.mark.zookeeper
def test_a_server_that_exits_at_once_fails_with_its_log() -> None:
    require_zookeeper()
    server = ApacheZooKeeper(config={"tickTime": "0"}, start_timeout_ms=30_000)
    with pytest.raises(ServerStartError, match="exited with code"):
        server.start()


def test_missing_zookeeper_skips_outside_ci_and_fails_in_ci(monkeypatch) -> None:
    monkeypatch.setattr(servers, "zookeeper_available", lambda: False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y zookeeper"):
        require_zookeeper()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y zookeeper"):
        require_zookeeper()


def test_free_port_is_bindable() -> None:
    import socket

    port = launch.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_ports_are_distinct_and_bindable() -> None:
    import socket

    ports = free_ports(64)
    assert len(set(ports)) == 64  # separate free_port() calls can repeat a port
    for port in ports[:4]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_free_ports_keep_out_of_the_ports_to_avoid() -> None:
    taken = frozenset(free_ports(32))
    # The OS hands out recently freed ports readily: avoiding them must still work.
    ports = free_ports(32, avoid=taken)
    assert len(set(ports)) == 32 and not taken & set(ports)


def test_free_port_run_gives_consecutive_bindable_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    base = launch.free_port_run(3)
    with contextlib.ExitStack() as stack:
        for port in range(base, base + 3):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", port))
    # A run with a port in use is passed over: the first two candidate bases put a busy
    # port inside the run, the third is the OS's choice again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        real_free_port = launch.free_port
        candidates = iter([busy - 1, busy - 2])
        monkeypatch.setattr(launch, "free_port", lambda: next(candidates, None) or real_free_port())
        base = launch.free_port_run(3)
        assert not base <= busy < base + 3
        assert next(candidates, None) is None  # both were tried and refused
