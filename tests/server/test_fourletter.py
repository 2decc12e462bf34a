"""Four-letter words on the client port: ZooKeeper's formats and the whitelist."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from corral.cli.launch import CorralServer, four_letter_word
from corral.server.config import ServerConfig, parse_member
from corral.server.fourletter import java_double
from tests.server.conftest import RunningServer, start_server, stop_server
from tests.support.raw_client import RawClient


def word(server: RunningServer, name: str) -> str:
    return four_letter_word(server.host, server.port, name)


def test_java_double_formatting() -> None:
    assert java_double(0.0) == "0.0"
    assert java_double(2.0) == "2.0"
    assert java_double(2.05675) == "2.0568"
    assert java_double(1 / 3) == "0.3333"


def test_membership_text_is_zookeepers_quorum_configuration() -> None:
    # The format of ZooKeeper's QuorumServer.toString: the client part only when the
    # member's line gives one, 0.0.0.0 for a port without a host; members by id.
    members = (
        parse_member("server.3", "10.0.0.3:2888:3888:observer;2183"),
        parse_member("server.1", "10.0.0.1:2888:3888"),
        parse_member("server.2", "10.0.0.2:2889:3889:participant;10.0.0.9:2182"),
    )
    config = ServerConfig(members=members, my_id=1)
    assert config.membership_text() == (
        "server.1=10.0.0.1:2888:3888:participant\n"
        "server.2=10.0.0.2:2889:3889:participant;10.0.0.9:2182\n"
        "server.3=10.0.0.3:2888:3888:observer;0.0.0.0:2183\n"
        "version=0"
    )


def test_ruok_isro(corral: RunningServer) -> None:
    assert word(corral, "ruok") == "imok"
    assert word(corral, "isro") == "rw"


def test_srvr_lines_in_order(corral: RunningServer) -> None:
    lines = word(corral, "srvr").splitlines()
    assert lines[0].startswith("Zookeeper version: ")
    assert re.fullmatch(r"Latency min/avg/max: \d+/\d+\.\d+/\d+", lines[1])
    assert [line.split(":")[0] for line in lines[2:]] == [
        "Received",
        "Sent",
        "Connections",
        "Outstanding",
        "Zxid",
        "Mode",
        "Node count",
    ]
    assert "Mode: standalone" in lines
    assert "Node count: 5" in lines  # fresh tree, counted as ZooKeeper counts it
    assert re.fullmatch(r"Zxid: 0x[0-9a-f]+", lines[6])


def test_stat_lists_clients(corral: RunningServer) -> None:
    with RawClient(corral.host, corral.port) as raw:
        raw.connect()
        text = word(corral, "stat")
    lines = text.splitlines()
    assert lines[1] == "Clients:"
    assert any(
        re.fullmatch(r" /127\.0\.0\.1:\d+\[1\]\(queued=\d+,recved=\d+,sent=\d+\)", l) for l in lines
    )
    assert "Mode: standalone" in lines


def test_mntr_keys(corral: RunningServer) -> None:
    lines = word(corral, "mntr").splitlines()
    keys = [line.split("\t")[0] for line in lines]
    assert keys[:2] == ["zk_version", "zk_server_state"]
    assert all(len(line.split("\t")) == 2 for line in lines)
    for key in ("zk_avg_latency", "zk_znode_count", "zk_watch_count", "zk_num_alive_connections"):
        assert key in keys


def test_conf_envi_dirs_wchs(corral: RunningServer) -> None:
    conf = dict(line.split("=", 1) for line in word(corral, "conf").splitlines())
    assert conf["tickTime"] == "2000"
    assert conf["maxSessionTimeout"] == "40000"
    assert word(corral, "envi").startswith("Environment:\n")
    assert re.fullmatch(r"datadir_size: \d+\nlogdir_size: \d+\n", word(corral, "dirs"))
    assert re.fullmatch(
        r"\d+ connections watching \d+ paths\nTotal watches:\d+\n", word(corral, "wchs")
    )


def test_watch_listings_show_data_watches_only(corral: RunningServer) -> None:
    from corral.protocol.constants import OpCode
    from corral.protocol.records import (
        OPEN_ACL_UNSAFE,
        CreateRequest,
        GetChildrenRequest,
        GetDataRequest,
    )

    with RawClient(corral.host, corral.port) as raw:
        session = raw.connect()
        assert session is not None
        raw.request(OpCode.CREATE, CreateRequest(path="/w", data=b"", acl=OPEN_ACL_UNSAFE, flags=0))
        raw.request(OpCode.GET_DATA, GetDataRequest(path="/w", watch=True))
        raw.request(OpCode.GET_CHILDREN, GetChildrenRequest(path="/", watch=True))
        assert word(corral, "wchs").startswith("1 connections watching 1 paths\n")
        assert word(corral, "wchc") == f"0x{session.session_id:x}\n\t/w\n\n"
        assert word(corral, "wchp") == f"/w\n\t0x{session.session_id:x}\n\n"


def test_default_whitelist_refuses_costly_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    running, thread = start_server(tmp_path, **{"4lw.commands.whitelist": "ruok"})
    try:
        assert word(running, "ruok") == "imok"
        assert word(running, "srvr").startswith("Zookeeper version")  # always enabled
        assert word(running, "cons") == "cons is not executed because it is not in the whitelist.\n"
    finally:
        stop_server(running, thread)


def test_sigterm_stops_the_server_cleanly() -> None:
    server = CorralServer().start()
    try:
        assert server.four_letter_word("ruok") == "imok"
        process = server._process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "corral stopped" in server.log_tail()
    finally:
        server.stop()


def test_server_command_refuses_a_bad_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("tickTime=0\n")
    result = subprocess.run(
        [sys.executable, "-m", "corral", "server", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "tickTime" in result.stderr
