"""An in-process corral server per test, on 127.0.0.1 and a free port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from corral.server.config import build_config
from corral.server.server import Server

START_TIMEOUT_S = 10


@dataclass
class RunningServer:
    server: Server
    host: str
    port: int
    loop: asyncio.AbstractEventLoop

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    def call(self, fn):  # type: ignore[no-untyped-def]
        """Run fn() on the server's loop and return its result (for inspecting state)."""
        future = asyncio.run_coroutine_threadsafe(_call(fn), self.loop)
        return future.result(timeout=START_TIMEOUT_S)


async def _call(fn):  # type: ignore[no-untyped-def]
    return fn()


def start_server(tmp_path, **settings: str) -> tuple[RunningServer, threading.Thread]:  # type: ignore[no-untyped-def]
    properties = {
        "dataDir": str(tmp_path / "data"),
        "clientPortAddress": "127.0.0.1",
        "clientPort": "0",
        "tickTime": "2000",
        "4lw.commands.whitelist": "*",
        "extendedTypesEnabled": "true",
        # On by default (0.0.0.0:8080, as ZooKeeper); tests that want it set a free port.
        "admin.enableServer": "false",
    }
    properties.update(settings)
    config = build_config(properties)
    started = threading.Event()
    holder: dict[str, object] = {}

    def runner() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        server = Server(config)
        holder["server"] = server

        def ready(port: int) -> None:
            holder["port"] = port
            started.set()

        try:
            loop.run_until_complete(server.serve(ready))
        finally:
            loop.close()
            started.set()

    thread = threading.Thread(target=runner, name="corral-server", daemon=True)
    thread.start()
    assert started.wait(START_TIMEOUT_S), "server did not start"
    assert "port" in holder, "server failed to start"
    running = RunningServer(
        server=holder["server"],  # type: ignore[arg-type]
        host="127.0.0.1",
        port=holder["port"],  # type: ignore[arg-type]
        loop=holder["loop"],  # type: ignore[arg-type]
    )
    return running, thread


def stop_server(running: RunningServer, thread: threading.Thread) -> None:
    running.loop.call_soon_threadsafe(running.server.stop)
    thread.join(START_TIMEOUT_S)
    assert not thread.is_alive(), "server did not stop"


@pytest.fixture
def corral(tmp_path) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    running, thread = start_server(tmp_path)
    try:
        yield running
    finally:
        stop_server(running, thread)
