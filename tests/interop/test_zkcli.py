"""Apache ZooKeeper's own zkCli.sh against corral, compared with Apache ZooKeeper.

The same command script runs against a corral server and an Apache ZooKeeper server
(both as child processes on 127.0.0.1); the printed outputs must match once the values
that legitimately differ are normalised: times, session ids and zxids (mapped in order
of appearance, so equal stays equal and order is kept).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.cli.launch import ApacheZooKeeper, CorralServer, zookeeper_available

ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")
RUN_TIMEOUT_S = 120

SCRIPT = """\
ls /
create /a hello
create -s /a/seq- x
create -s /a/seq- y
create -e /a/eph
create -c /box
create -t 60000 /ttl
get -s /a
set /a world
stat /a
ls -s /a
getAllChildrenNumber /a
getEphemerals
getAcl /a
addauth digest alice:secret
setAcl /a auth:alice:secret:crwda
getAcl /a
whoami
get /missing
create /a dup
delete /a
deleteall /a
ls /
sync /
quit
"""


def _zkcli_available() -> bool:
    return ZKCLI.is_file() and zookeeper_available()


pytestmark = pytest.mark.skipif(
    not _zkcli_available() and os.environ.get("CI") != "true",
    reason="Apache ZooKeeper is not installed: apt-get install -y zookeeper",
)


def run_zkcli(port: int, script: str) -> str:
    result = subprocess.run(
        [str(ZKCLI), "-server", f"127.0.0.1:{port}"],
        input=script,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    return result.stdout


_NOISE = re.compile(r"^(SLF4J:|Connecting to |Welcome to ZooKeeper|JLine support|WATCHER::|$)")
_TIME = re.compile(r"^(ctime|mtime) = .*$")
_HEX = re.compile(r"0x[0-9a-f]+")


def normalise(output: str) -> list[str]:
    lines: list[str] = []
    mapping: dict[str, str] = {}
    for line in output.splitlines():
        line = line.rstrip()
        if _NOISE.match(line) or line.startswith("WatchedEvent state:SyncConnected type:None"):
            continue
        line = _TIME.sub(r"\1 = <time>", line)

        def map_hex(match: re.Match[str]) -> str:
            value = match.group()
            if value == "0x0":
                return value
            return mapping.setdefault(value, f"<hex{len(mapping)}>")

        lines.append(_HEX.sub(map_hex, line))
    return _sort_identity_runs(lines)


_IDENTITY = re.compile(r"^(ip|digest|super|sasl|x509): ")


def _sort_identity_runs(lines: list[str]) -> list[str]:
    """whoami lists the connection's identities, a set whose order ZooKeeper leaves open."""
    result: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        if _IDENTITY.match(line):
            run.append(line)
            continue
        result.extend(sorted(run))
        run = []
        result.append(line)
    return result[:-1]


@pytest.fixture(scope="module")
def corral_server() -> Iterator[CorralServer]:
    with CorralServer() as server:
        yield server


@pytest.fixture(scope="module")
def zookeeper_server() -> Iterator[ApacheZooKeeper]:
    with ApacheZooKeeper() as server:
        yield server


def test_zkcli_session_matches_apache_zookeeper(
    corral_server: CorralServer, zookeeper_server: ApacheZooKeeper
) -> None:
    ours = normalise(run_zkcli(corral_server.port, SCRIPT))
    theirs = normalise(run_zkcli(zookeeper_server.port, SCRIPT))
    # Sanity: the script really ran (not two identical connection failures).
    assert "Created /a" in ours
    assert any(line.startswith("cZxid = ") for line in ours)
    assert "Node does not exist: /missing" in ours
    assert ours == theirs
