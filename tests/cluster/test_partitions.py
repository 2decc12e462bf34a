"""Cut peer links between three real corral servers (issue #7).

Every replica-to-replica link goes through tests/support/faultproxy.py: each server
dials its peers at a proxy (zoo.cfg `peer.dialAddress.N`), so the test can drop,
blackhole or heal each direction on its own. What must hold: the side without a quorum
acknowledges no write, the majority elects a leader and goes on, and once healed every
server holds the same tree, compared node by node through the wire protocol, with
every acknowledged write in it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError

from corral.cli.launch import CorralServer, free_ports
from tests.cluster.test_ensemble import IDS, WAIT_S, mode_of, wait_for_leader
from tests.support.faultproxy import FaultNetwork, Mode

# tickTime 200 ms and syncLimit 2: an election after 0.4-0.8 s of silence.
TICK_TIME_MS = 200
SYNC_LIMIT = 2
ANSWER_WAIT_S = 20  # for the isolated side to answer a write with an error
# A member that hears its leader but cannot reach it may hold a forwarded write without
# answering; waiting this long (several election timeouts) shows it is not acknowledged.
ONE_WAY_WAIT_S = 5
STAT_FIELDS = (
    "czxid mzxid pzxid ctime mtime version cversion aversion ephemeralOwner dataLength numChildren"
).split()
NODES_MAX = 10_000


@dataclass
class Cluster:
    servers: dict[int, CorralServer]
    network: FaultNetwork


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    ports = iter(free_ports(2 * len(IDS)))
    quorum_ports = {rid: (next(ports), next(ports)) for rid in IDS}
    members = {f"server.{rid}": f"127.0.0.1:{q}:{e}" for rid, (q, e) in quorum_ports.items()}
    with FaultNetwork() as network:
        dial = {
            (a, b): network.add_link(a, b, quorum_ports[b][0]) for a in IDS for b in IDS if a != b
        }
        servers = {
            rid: CorralServer(
                tick_time_ms=TICK_TIME_MS,
                config={
                    **members,
                    "myid": str(rid),
                    "ensemble.secret": "partition-tests",
                    "syncLimit": str(SYNC_LIMIT),
                    "initLimit": "10",
                    "maxSessionTimeout": "60000",  # no session expires while cut off
                    **{
                        f"peer.dialAddress.{b}": f"127.0.0.1:{port}"
                        for (a, b), port in dial.items()
                        if a == rid
                    },
                },
            )
            for rid in IDS
        }
        try:
            for server in servers.values():
                server.start()
            yield Cluster(servers=servers, network=network)
        finally:
            for server in servers.values():
                server.stop()


def connect(server: CorralServer) -> KazooClient:
    client = KazooClient(hosts=server.address, timeout=30)
    client.start(timeout=WAIT_S)
    return client


def close(*clients: KazooClient) -> None:
    for client in clients:
        client.stop()
        client.close()


def write_acknowledged(client: KazooClient, path: str, data: bytes) -> None:
    """Create `path`, retrying while the ensemble elects (bounded); returns once acknowledged."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            client.create(path, data, makepath=True)
            return
        except NodeExistsError:
            return  # an earlier attempt was applied before its answer got lost
        except KazooException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def refuses_write(client: KazooClient, path: str) -> bool:
    """True when a write through `client` ends in an error (not a success) in time."""
    result = client.create_async(path, b"must not be acknowledged")
    try:
        result.get(timeout=ANSWER_WAIT_S)
    except KazooException:
        return True
    return False


def tree_of(server: CorralServer) -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """Every znode (path -> data and the Stat fields replicas must agree on), read
    through the wire protocol after a sync; breadth first, no recursion."""
    client = connect(server)
    try:
        client.sync("/")
        nodes: dict[str, tuple[bytes, tuple[int, ...]]] = {}
        queue = ["/"]
        while queue:
            assert len(nodes) < NODES_MAX, "tree larger than the test ever writes"
            path = queue.pop()
            data, stat = client.get(path)
            nodes[path] = (data, tuple(getattr(stat, name) for name in STAT_FIELDS))
            for child in client.get_children(path):
                queue.append(f"{path.rstrip('/')}/{child}")
        return nodes
    finally:
        close(client)


def converged_tree(cluster: Cluster) -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """Wait (bounded) until every server serves and all hold the same tree; return it."""
    wait_for_leader(cluster.servers)
    deadline = time.monotonic() + WAIT_S
    while True:
        trees = {rid: tree_of(server) for rid, server in cluster.servers.items()}
        if all(tree == trees[IDS[0]] for tree in trees.values()):
            return trees[IDS[0]]
        if time.monotonic() > deadline:
            differing = {
                rid: sorted(set(tree.items()) ^ set(trees[IDS[0]].items()))[:5]
                for rid, tree in trees.items()
            }
            raise AssertionError(f"trees differ after healing: {differing}")
        time.sleep(0.2)


def majority_goes_on(cluster: Cluster, cut_off: int, prefix: str) -> list[str]:
    """A leader among the others, and writes through it acknowledged; their paths."""
    leader = wait_for_leader(cluster.servers, excluded=cut_off)
    assert leader != cut_off
    client = connect(cluster.servers[next(rid for rid in IDS if rid not in (cut_off, leader))])
    try:
        paths = [f"{prefix}/{i}" for i in range(5)]
        for path in paths:
            write_acknowledged(client, path, path.encode())
        return paths
    finally:
        close(client)


def check_healed(
    cluster: Cluster, acknowledged: list[str]
) -> dict[str, tuple[bytes, tuple[int, ...]]]:
    cluster.network.heal()
    tree = converged_tree(cluster)
    missing = [path for path in acknowledged if path not in tree]
    assert missing == [], f"acknowledged writes lost: {missing}"
    return tree


def test_an_isolated_leader_stops_writes_and_the_majority_goes_on(cluster: Cluster) -> None:
    old = wait_for_leader(cluster.servers)
    writer = connect(cluster.servers[next(rid for rid in IDS if rid != old)])
    old_client = connect(cluster.servers[old])
    try:
        acknowledged = [f"/before/{i}" for i in range(5)]
        for path in acknowledged:
            write_acknowledged(writer, path, b"1")
        cluster.network.isolate(old, Mode.DROP)
        assert refuses_write(old_client, "/from-the-old-leader")
        acknowledged += majority_goes_on(cluster, old, "/during")
        assert mode_of(cluster.servers[old]) != "leader"
    finally:
        close(writer, old_client)  # nothing of the old leader's left queued in the client
    tree = check_healed(cluster, acknowledged)
    # Never committed: the old leader's entry is overwritten by the newer term's log.
    assert "/from-the-old-leader" not in tree


@pytest.mark.parametrize("direction", ["leader-cannot-receive", "leader-cannot-send"])
def test_a_one_way_cut_of_the_leader(cluster: Cluster, direction: str) -> None:
    old = wait_for_leader(cluster.servers)
    others = [rid for rid in IDS if rid != old]
    writer = connect(cluster.servers[others[0]])
    try:
        acknowledged = [f"/before/{i}" for i in range(3)]
        for path in acknowledged:
            write_acknowledged(writer, path, b"1")
    finally:
        close(writer)
    old_client = connect(cluster.servers[old])
    try:
        for other in others:
            if direction == "leader-cannot-receive":
                cluster.network.set_mode(other, old, Mode.DROP)
            else:
                cluster.network.set_mode(old, other, Mode.DROP)
        # No acknowledgement from the side without a quorum: an error, or no answer.
        result = old_client.create_async("/one-way", b"must not be acknowledged")
        with pytest.raises((KazooException, KazooTimeoutError)):
            result.get(timeout=ONE_WAY_WAIT_S)
        acknowledged += majority_goes_on(cluster, old, "/during")
    finally:
        close(old_client)
    check_healed(cluster, acknowledged)


def test_an_isolated_follower_refuses_writes_and_catches_up(cluster: Cluster) -> None:
    leader = wait_for_leader(cluster.servers)
    follower = next(rid for rid in IDS if rid != leader)
    follower_client = connect(cluster.servers[follower])
    try:
        write_acknowledged(follower_client, "/before", b"1")
        # A silent partition: connections stay open, nothing gets through.
        cluster.network.isolate(follower, Mode.BLACKHOLE)
        assert refuses_write(follower_client, "/from-the-follower")
        acknowledged = ["/before", *majority_goes_on(cluster, follower, "/during")]
        assert wait_for_leader(cluster.servers, excluded=follower) == leader
    finally:
        close(follower_client)
    tree = check_healed(cluster, acknowledged)
    assert tree["/during/4"][0] == b"/during/4"
