"""Fixtures for the client tests: a real server per factory, a fresh chroot per test.

The same tests run against every server named in CORRAL_CLIENT_TEST_SERVERS (comma
separated names from SERVER_FACTORIES; default: both). `corral` runs them against
corral's own server (`python -m corral server ...`), `zookeeper` against Apache
ZooKeeper. Without ZooKeeper installed the ZooKeeper-backed tests skip with
the install hint, except with CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from corral.cli.launch import ApacheZooKeeper, CorralServer, zookeeper_available

T = TypeVar("T")

# name -> factory of a not-yet-started server (tick 2000 ms: session timeouts 4000..40000).
SERVER_FACTORIES: dict[str, Callable[[], Any]] = {
    "zookeeper": lambda: ApacheZooKeeper(tick_time_ms=2000),
    "corral": lambda: CorralServer(tick_time_ms=2000),
}
DEFAULT_SERVERS = "zookeeper,corral"
SERVERS = [
    name.strip()
    for name in os.environ.get("CORRAL_CLIENT_TEST_SERVERS", DEFAULT_SERVERS).split(",")
    if name.strip()
]
assert set(SERVERS) <= set(SERVER_FACTORIES), f"unknown server in {SERVERS}"
INSTALL_HINT = "Apache ZooKeeper is not installed: apt-get install -y zookeeper"
TEST_TIMEOUT_S = 60.0
_counter = itertools.count()


def _require(name: str) -> None:
    if name == "zookeeper" and not zookeeper_available():
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)


@pytest.fixture(scope="session", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    _require(request.param)
    instance = SERVER_FACTORIES[request.param]()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def run(coroutine: Coroutine[Any, Any, T], timeout_s: float = TEST_TIMEOUT_S) -> T:
    """Run one test body on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout_s)

    return asyncio.run(bounded())


@pytest.fixture
def chroot(server: Any, request: pytest.FixtureRequest) -> str:
    """A fresh, existing znode for this test; clients use it as their chroot."""
    from corral.client.sync import SyncClient

    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:80]
    path = f"/client-tests/{name}-{next(_counter)}"
    with SyncClient(server.address, timeout_s=10) as zk:
        zk.ensure_path(path)
    return path


@pytest.fixture
def hosts(server: Any, chroot: str) -> str:
    """The connect string of this test: the server and the test's chroot."""
    return f"{server.address}{chroot}"
