"""Three real corral servers on 127.0.0.1 as one ensemble (zoo.cfg server.N lines).

What is shown here: an elected leader, writes through any member visible on every
member, a new leader serving writes after the old one is killed with SIGKILL (also in
the middle of a write load, losing no acknowledged write and no session), and a
member wiped clean catching up from the leader's snapshot once the leader has compacted
its log.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.states import KazooState

from corral import limits
from corral.cli.launch import (
    CorralServer,
    Ensemble,
    four_letter_word,
    free_port_run,
    free_ports,
)
from tests.support.servers import require_zookeeper

WAIT_S = 30
IDS = (1, 2, 3)


def mode_of(server: CorralServer) -> str:
    try:
        text = server.four_letter_word("srvr")
    except OSError:
        return "down"
    for line in text.splitlines():
        if line.startswith("Mode: "):
            return line.removeprefix("Mode: ")
    return "unknown"


def wait_for_leader(servers: dict[int, CorralServer], excluded: int = 0) -> int:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        modes = {rid: mode_of(s) for rid, s in servers.items() if rid != excluded}
        leaders = [rid for rid, mode in modes.items() if mode == "leader"]
        if len(leaders) == 1 and all(m in ("leader", "follower") for m in modes.values()):
            return leaders[0]
        time.sleep(0.1)
    raise AssertionError(f"no single leader: {modes}")


def start_ensemble(extra: dict[str, str]) -> Iterator[dict[int, CorralServer]]:
    ports = iter(free_ports(3 * len(IDS)))  # client, quorum, election: none clash
    quorum_ports = {rid: (next(ports), next(ports)) for rid in IDS}
    members = {f"server.{rid}": f"127.0.0.1:{q}:{e}" for rid, (q, e) in quorum_ports.items()}
    servers = {
        rid: CorralServer(
            config={**members, "myid": str(rid), "ensemble.secret": "test-ensemble", **extra}
        )
        for rid in IDS
    }
    for server in servers.values():
        server.port = next(ports)
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def ensemble() -> Iterator[dict[int, CorralServer]]:
    yield from start_ensemble({})


@pytest.fixture
def compacting_ensemble() -> Iterator[dict[int, CorralServer]]:
    # A snapshot (and log compaction) every 26..50 txns, autopurge on.
    yield from start_ensemble(
        {"snapCount": "50", "autopurge.purgeInterval": "1", "autopurge.snapRetainCount": "3"}
    )


def client_for(server: CorralServer) -> KazooClient:
    client = KazooClient(hosts=f"127.0.0.1:{server.port}", timeout=10)
    client.start(timeout=WAIT_S)
    return client


def test_writes_anywhere_are_seen_everywhere(ensemble: dict[int, CorralServer]) -> None:
    leader = wait_for_leader(ensemble)
    followers = [rid for rid in IDS if rid != leader]
    writer = client_for(ensemble[followers[0]])
    readers = {rid: client_for(ensemble[rid]) for rid in IDS}
    try:
        writer.create("/hello", b"world")
        for rid, reader in readers.items():
            reader.sync("/hello")
            assert reader.get("/hello")[0] == b"world", rid
    finally:
        for client in (writer, *readers.values()):
            client.stop()
            client.close()


def test_killing_the_leader_elects_another_that_serves_writes(
    ensemble: dict[int, CorralServer],
) -> None:
    leader = wait_for_leader(ensemble)
    survivor = next(rid for rid in IDS if rid != leader)
    client = client_for(ensemble[survivor])
    try:
        client.create("/before", b"1")
        ensemble[leader].kill()
        new_leader = wait_for_leader(ensemble, excluded=leader)
        assert new_leader != leader
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                client.create("/after", b"2")
                break
            except Exception:  # connection loss while the ensemble elects; bounded retry
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert client.get("/before")[0] == b"1"
        assert client.get("/after")[0] == b"2"
    finally:
        client.stop()
        client.close()


def test_ensemble_up_starts_a_working_local_ensemble(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess
    import sys

    base = free_port_run(3)  # members use base, base+1, base+2
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral",
            "ensemble",
            "up",
            "--size",
            "3",
            "--dir",
            str(tmp_path),
            "--base-port",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        client = KazooClient(hosts=f"127.0.0.1:{base},127.0.0.1:{base + 1}", timeout=10)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                client.start(timeout=5)
                client.create("/from-ensemble-up", b"ok")
                break
            except Exception:  # the members are still starting and electing; bounded
                client.stop()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert client.get("/from-ensemble-up")[0] == b"ok"
        client.stop()
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0
    assert "ensemble of 3 up" in output
    assert (tmp_path / "member1" / "myid").read_text().strip() == "1"


def test_a_leader_stopped_gracefully_hands_over_leadership(
    ensemble: dict[int, CorralServer],
) -> None:
    leader = wait_for_leader(ensemble)
    client = client_for(ensemble[next(rid for rid in IDS if rid != leader)])
    try:
        client.create("/handover", b"1")  # the followers are up to date
        ensemble[leader].stop(keep_workdir=True)
        log_text = ensemble[leader].log_path.read_text()
        assert "handing leadership to replica" in log_text
        target = int(log_text.split("handing leadership to replica ")[1].split()[0])
        assert wait_for_leader(ensemble, excluded=leader) == target
        assert client.get("/handover")[0] == b"1"
    finally:
        client.stop()
        client.close()


def test_a_paused_leader_cannot_split_the_ensemble(ensemble: dict[int, CorralServer]) -> None:
    import os
    import signal

    old = wait_for_leader(ensemble)
    others = [rid for rid in IDS if rid != old]
    writer = client_for(ensemble[others[0]])
    old_client = client_for(ensemble[old])
    try:
        writer.create("/paused", b"0")
        os.kill(ensemble[old].pid, signal.SIGSTOP)
        try:
            new = wait_for_leader(ensemble, excluded=old)
            assert new != old
            writer.set("/paused", b"1")  # the majority goes on
        finally:
            os.kill(ensemble[old].pid, signal.SIGCONT)
        # The old leader comes back into a newer term: one leader, one history.
        assert wait_for_leader(ensemble) in others
        # Its connection may have been closed by the change of leader: either way is fine.
        with contextlib.suppress(Exception):
            old_client.set("/paused", b"from-the-old-leader")
        values = set()
        for rid in IDS:
            reader = client_for(ensemble[rid])
            try:
                reader.sync("/paused")
                values.add(reader.get("/paused")[0])
            finally:
                reader.stop()
                reader.close()
        assert len(values) == 1, values  # every member agrees on the value
    finally:
        for client in (writer, old_client):
            client.stop()
            client.close()


def test_mntr_and_srvr_show_the_ensemble(ensemble: dict[int, CorralServer]) -> None:
    leader = wait_for_leader(ensemble)
    client = client_for(ensemble[leader])
    try:
        client.create("/figures", b"x" * 100)
        deadline = time.monotonic() + WAIT_S
        while True:
            lines = ensemble[leader].four_letter_word("mntr").splitlines()
            metrics = dict(line.split("\t", 1) for line in lines)
            if metrics.get("zk_synced_followers") == "2" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert metrics["zk_server_state"] == "leader"
        assert metrics["zk_peer_state"] == "leading - broadcast"
        assert metrics["zk_quorum_size"] == "2"
        assert metrics["zk_learners"] == "2"
        assert metrics["zk_synced_followers"] == "2"
        assert int(metrics["zk_max_proposal_size"]) >= 100
        srvr = ensemble[leader].four_letter_word("srvr").splitlines()
        assert srvr[-1].startswith("Proposal sizes last/min/max: ")
        follower = next(rid for rid in IDS if rid != leader)
        lines = ensemble[follower].four_letter_word("mntr").splitlines()
        follower_metrics = dict(line.split("\t", 1) for line in lines)
        assert follower_metrics["zk_server_state"] == "follower"
        assert follower_metrics["zk_peer_state"] == "following - broadcast"
        assert "zk_synced_followers" not in follower_metrics
    finally:
        client.stop()
        client.close()


def tree_of(client: KazooClient) -> dict[str, tuple[bytes, object]]:
    """Every znode's data and Stat, read through the wire protocol (iterative walk)."""
    client.sync("/")
    found: dict[str, tuple[bytes, object]] = {}
    pending = ["/"]
    while pending:
        path = pending.pop()
        data, stat = client.get(path)
        found[path] = (data, stat)
        for child in client.get_children(path):
            pending.append(f"{path.rstrip('/')}/{child}")
    return found


def wait_for_log_line(server: CorralServer, text: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while True:
        log_text = server.log_path.read_text(errors="replace")
        if text in log_text:
            return log_text
        assert time.monotonic() < deadline, f"no {text!r} in the log of {server.port}"
        time.sleep(0.1)


def test_a_member_wiped_clean_catches_up_by_snapshot(
    compacting_ensemble: dict[int, CorralServer],
) -> None:
    servers = compacting_ensemble
    leader = wait_for_leader(servers)
    wiped = next(rid for rid in IDS if rid != leader)
    client = client_for(servers[leader])
    try:
        for i in range(300):
            client.create(f"/before{i}", b"b%d" % i)
        for i in range(6):  # a snapshot of several 1 MiB chunks, streamed a few at a time
            client.create(f"/big{i}", bytes([i]) * 1_000_000)
        servers[wiped].stop(keep_workdir=True)
        data_dir = servers[wiped].data_dir
        for path in data_dir.iterdir():  # wipe everything but myid (if it is a file)
            if path.name != "myid":
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        for i in range(200):
            client.create(f"/after{i}", b"a%d" % i)
        # The leader snapshotted and compacted its log: it no longer holds index 1.
        leader_log = wait_for_log_line(servers[leader], "written in")
        assert "snapshot at index" in leader_log
        assert list((servers[leader].data_dir / "snapshots").glob("snapshot.*"))

        servers[wiped].start()
        wiped_log = wait_for_log_line(servers[wiped], "installed the leader's snapshot at index")
        assert "installed snapshot" in wiped_log
        assert list((data_dir / "snapshots").glob("snapshot.*"))
        leader_text = servers[leader].log_path.read_text(errors="replace")
        sent = [
            int(size) for size in re.findall(r"sending snapshot \d+ \((\d+) bytes\)", leader_text)
        ]
        # More chunks than a link may hold at once: the send was paced.
        assert max(sent) > limits.SNAPSHOT_CHUNKS_QUEUED_MAX * limits.SNAPSHOT_CHUNK_SIZE_MAX
        client.create("/last", b"z")
        reader = client_for(servers[wiped])
        try:
            deadline = time.monotonic() + WAIT_S
            while reader.exists("/last") is None:  # bounded: the member is catching up
                assert time.monotonic() < deadline, "the wiped member never caught up"
                time.sleep(0.1)
            assert tree_of(reader) == tree_of(client)
        finally:
            reader.stop()
            reader.close()
    finally:
        client.stop()
        client.close()


def test_kill_9_of_the_leader_under_write_load_loses_no_acknowledged_write(
    ensemble: dict[int, CorralServer],
) -> None:
    """Three clients write without pause, one starting on each member (all three in its
    connect string); the leader gets SIGKILL mid-load. Every acknowledged create must be
    on both survivors, every client must keep its session (and its ephemeral node), and
    writes must go on under the new leader."""
    leader = wait_for_leader(ensemble)
    order = list(IDS)
    clients: dict[int, KazooClient] = {}
    lost: list[int] = []
    try:
        _write_through_a_leader_kill(ensemble, leader, order, clients, lost)
    finally:
        for client in clients.values():
            client.stop()
            client.close()


def _write_through_a_leader_kill(
    ensemble: dict[int, CorralServer],
    leader: int,
    order: list[int],
    clients: dict[int, KazooClient],
    lost: list[int],
) -> None:
    for rid in IDS:
        hosts = ",".join(
            f"127.0.0.1:{ensemble[r].port}" for r in order[rid - 1 :] + order[: rid - 1]
        )
        client = KazooClient(hosts=hosts, timeout=10, randomize_hosts=False)
        client.add_listener(
            lambda state, rid=rid: lost.append(rid) if state == KazooState.LOST else None
        )
        clients[rid] = client
        client.start(timeout=WAIT_S)
    clients[1].ensure_path("/load")
    sessions = {rid: c.client_id[0] for rid, c in clients.items()}
    for rid, client in clients.items():
        client.create(f"/eph-{rid}", b"", ephemeral=True)

    acked: dict[int, list[str]] = {rid: [] for rid in IDS}
    unknown: dict[int, list[str]] = {rid: [] for rid in IDS}
    stop = threading.Event()

    def write(rid: int) -> None:
        for n in range(20_000):  # bounded by count and by the stop event
            if stop.is_set():
                return
            path = f"/load/w{rid}-{n:05d}"
            try:
                clients[rid].create(path, b"x")
                acked[rid].append(path)
            except KazooException:  # connection loss during the election: outcome unknown
                unknown[rid].append(path)
                time.sleep(0.05)

    writers = [threading.Thread(target=write, args=(rid,), daemon=True) for rid in IDS]
    try:
        for thread in writers:
            thread.start()
        deadline = time.monotonic() + WAIT_S
        while min(len(a) for a in acked.values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        before_kill = {rid: len(a) for rid, a in acked.items()}
        ensemble[leader].kill()
        new_leader = wait_for_leader(ensemble, excluded=leader)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and any(
            len(acked[rid]) < before_kill[rid] + 20 for rid in IDS
        ):
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=WAIT_S)
    assert new_leader != leader
    assert all(len(acked[rid]) >= before_kill[rid] + 20 for rid in IDS), (before_kill, acked)
    assert lost == []  # no session expired
    assert {rid: c.client_id[0] for rid, c in clients.items()} == sessions

    survivors = [rid for rid in IDS if rid != leader]
    children: dict[int, set[str]] = {}
    for rid in survivors:
        checker = client_for(ensemble[rid])
        try:
            checker.sync("/load")
            children[rid] = {f"/load/{name}" for name in checker.get_children("/load")}
            for owner in clients:
                stat = checker.exists(f"/eph-{owner}")
                assert stat is not None and stat.ephemeralOwner == sessions[owner], owner
        finally:
            checker.stop()
            checker.close()
    everything_acked = {path for paths in acked.values() for path in paths}
    for rid in survivors:
        assert everything_acked <= children[rid], sorted(everything_acked - children[rid])[:5]
        possible = everything_acked | {p for paths in unknown.values() for p in paths}
        assert children[rid] <= possible
    assert children[survivors[0]] == children[survivors[1]]


def _conf_shape(ensemble: Ensemble, member_id: int) -> tuple[list[str], list[str]]:
    """`conf` of one member with the ensemble's ports named (q1, e1, ...) and the values
    that differ by product or machine (directories, sizes, limits) left out: the keys in
    order with the ensemble's values, then the membership lines."""
    member = ensemble.members[member_id]
    text = four_letter_word(member.host, member.port, "conf")
    names: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("server."):
            n, _, address = line.partition("=")
            _, quorum, election, *_ = address.split(";")[0].split(":")
            names[quorum] = f"q{n.removeprefix('server.')}"
            names[election] = f"e{n.removeprefix('server.')}"
    head, _, membership = text.partition("membership: \n")
    shown = {"serverId", "initLimit", "syncLimit", "electionAlg", "electionPort", "quorumPort"}
    keys = []
    for line in head.splitlines():
        key, _, value = line.partition("=")
        keys.append(f"{key}={names.get(value, value)}" if key in shown | {"peerType"} else key)
    lines = [
        ":".join(names.get(part, part) for part in line.split(":"))
        for line in membership.splitlines()
    ]
    return keys, lines


def _config_znode(ensemble: Ensemble, member_id: int) -> tuple[bytes, tuple[int, ...]]:
    """/zookeeper/config as a client reads it from one member, with the ensemble's ports
    named as in `_conf_shape`; its Stat without mtime (ZooKeeper stamps its start-up
    time there, corral 0: docs/compatibility.md)."""
    member = ensemble.members[member_id]
    client = KazooClient(hosts=f"{member.host}:{member.port}", timeout=WAIT_S)
    client.start(timeout=WAIT_S)
    try:
        data, stat = client.get("/zookeeper/config")
    finally:
        client.stop()
        client.close()
    for n, other in ensemble.members.items():
        quorum, election = (int(port) for port in other.config[f"server.{n}"].split(":")[1:3])
        data = data.replace(b":%d:%d:" % (quorum, election), b":q%d:e%d:" % (n, n))
    figures = (stat.czxid, stat.mzxid, stat.ctime, stat.version, stat.cversion, stat.aversion)
    return data, (*figures, stat.ephemeralOwner, stat.dataLength, stat.numChildren, stat.pzxid)


def test_conf_shows_the_quorum_keys_and_membership_like_zookeeper() -> None:
    require_zookeeper()
    config = {"initLimit": "7", "syncLimit": "3", "4lw.commands.whitelist": "*"}
    shapes = {}
    znodes = {}
    for product in ("zookeeper", "corral"):
        ensemble = Ensemble(product, config=config)
        try:
            ensemble.start()
            shapes[product] = _conf_shape(ensemble, 2)
            znodes[product] = _config_znode(ensemble, 3)
        finally:
            ensemble.stop()
    assert shapes["corral"] == shapes["zookeeper"]
    assert znodes["corral"] == znodes["zookeeper"]
    data, stat = znodes["corral"]
    assert data.decode().splitlines() == shapes["corral"][1]  # conf's membership lines
    assert stat[3] == -1  # data version, as ZooKeeper sets it
    keys, lines = shapes["corral"]
    assert keys[-7:] == [
        "serverId=2",
        "initLimit=7",
        "syncLimit=3",
        "electionAlg=3",
        "electionPort=e2",
        "quorumPort=q2",
        "peerType=0",
    ]
    assert lines == [f"server.{n}=127.0.0.1:q{n}:e{n}:participant" for n in IDS] + ["version=0"]
