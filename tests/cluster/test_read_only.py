"""Read-only mode, side by side with Apache ZooKeeper: one member of a three-member
ensemble runs alone (its peers are never started), so it never has a quorum.

With `readonlymode.enabled` both products must, after their start-up delay, answer
`isro` with `ro`, show the read-only banner and mode in `srvr`, accept a client that
allows a read-only server (ConnectedReadOnly), serve its reads, answer its writes and
sync with NOTREADONLY, and refuse a client that does not allow read-only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KeeperState

from corral.cli.launch import ApacheZooKeeper, CorralServer, free_ports
from tests.support.servers import require_zookeeper

READ_ONLY_WAIT_S = 60  # ZooKeeper starts its read-only server after an election round
CONNECT_TIMEOUT_S = 20
REFUSED_TIMEOUT_S = 4


def three_members() -> dict[str, str]:
    ports = iter(free_ports(6))
    return {f"server.{n}": f"127.0.0.1:{next(ports)}:{next(ports)}" for n in (1, 2, 3)}


def alone(product: str, *, read_only: bool) -> ApacheZooKeeper | CorralServer:
    """Member 1 of a three-member ensemble whose other members never start."""
    members = three_members()
    if product == "zookeeper":
        require_zookeeper()
        return ApacheZooKeeper(
            # Without local sessions ZooKeeper's read-only server cannot create a session (it
            # answers the connect with a NOTREADONLY reply header): the mode needs them.
            config={**members, "initLimit": "10", "syncLimit": "5", "localSessionsEnabled": "true"},
            system_properties={"readonlymode.enabled": "true"} if read_only else {},
            myid=1,
        )
    return CorralServer(
        config={
            **members,
            "myid": "1",
            "ensemble.secret": "read-only-test",
            "readonlymode.enabled": "true" if read_only else "false",
            "admin.enableServer": "false",
        }
    )


@pytest.fixture(params=["corral", "zookeeper"])
def lonely_member(request: pytest.FixtureRequest) -> Iterator[ApacheZooKeeper | CorralServer]:
    with alone(request.param, read_only=True) as server:
        yield server


@pytest.mark.parametrize("product", ["corral", "zookeeper"])
def test_a_member_without_quorum_and_read_only_mode_serves_no_one(product: str) -> None:
    server = alone(product, read_only=False)
    server.launch()  # it never becomes ready to serve: do not wait for that
    try:
        deadline = time.monotonic() + READ_ONLY_WAIT_S
        srvr = ""
        while time.monotonic() < deadline:
            try:
                srvr = server.four_letter_word("srvr")
            except OSError:
                srvr = ""
            if srvr:
                break
            time.sleep(0.2)
        assert srvr == "This ZooKeeper instance is not currently serving requests\n"
        assert server.four_letter_word("isro") == "null"
        assert server.four_letter_word("ruok") == "imok"
        client = KazooClient(hosts=server.address, read_only=True, timeout=4)
        try:
            with pytest.raises(KazooTimeoutError):
                client.start(timeout=REFUSED_TIMEOUT_S)
        finally:
            client.stop()
            client.close()
    finally:
        server.stop()


def wait_read_only(server: ApacheZooKeeper | CorralServer) -> None:
    deadline = time.monotonic() + READ_ONLY_WAIT_S
    answer = ""
    while time.monotonic() < deadline:
        try:
            answer = server.four_letter_word("isro")
        except OSError:
            answer = "(no answer)"
        if answer == "ro":
            return
        time.sleep(0.2)
    pytest.fail(f"{server.name} never went read-only (isro: {answer!r})\n{server.log_tail()}")


def test_a_member_without_quorum_serves_read_only_clients(
    lonely_member: ApacheZooKeeper | CorralServer,
) -> None:
    server = lonely_member
    wait_read_only(server)
    lines = server.four_letter_word("srvr").splitlines()
    assert lines[0].startswith("Zookeeper version: ")
    assert lines[1] == "READ-ONLY mode; serving only read-only clients"
    assert "Mode: read-only" in lines

    client = KazooClient(hosts=server.address, read_only=True, timeout=10)
    client.start(timeout=CONNECT_TIMEOUT_S)
    try:
        assert client.client_state == KeeperState.CONNECTED_RO
        assert "zookeeper" in client.get_children("/")
        assert client.exists("/zookeeper") is not None
        assert client.exists("/absent") is None
        with pytest.raises(NotReadOnlyCallError):
            client.create("/written", b"x")
        with pytest.raises(NotReadOnlyCallError):
            client.set("/zookeeper", b"x")
        with pytest.raises(NotReadOnlyCallError):
            client.sync("/")
        assert client.exists("/written") is None
        assert client.connected  # refusals do not cost the connection
    finally:
        client.stop()
        client.close()

    refused = KazooClient(hosts=server.address, read_only=False, timeout=4)
    try:
        with pytest.raises(KazooTimeoutError):
            refused.start(timeout=REFUSED_TIMEOUT_S)
    finally:
        refused.stop()
        refused.close()
