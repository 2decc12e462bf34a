"""A TCP proxy the tests can cut, stall and resume, to break connections on purpose.

Runs on the test's event loop; listens on 127.0.0.1 with an OS-chosen port.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepting = True
        self.stalled = False  # when True, client bytes are held back (a request "in flight")
        self.connections_total = 0
        self.attempts_total = 0  # connection attempts, refused ones included
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts_total += 1
        if not self.accepting:
            writer.close()
            return
        self.connections_total += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._pipes.update((writer, up_writer))
        task_a = asyncio.create_task(self._pump(reader, up_writer, upstream=True))
        task_b = asyncio.create_task(self._pump(up_reader, writer, upstream=False))
        self._tasks.update((task_a, task_b))

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for _ in range(10_000):  # bounded: at most 10 s of stalling per chunk
                    if not (upstream and self.stalled):
                        break
                    await asyncio.sleep(0.001)
                writer.write(data)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def cut(self) -> None:
        """Close every proxied connection now (both directions)."""
        for writer in list(self._pipes):
            writer.close()
        self._pipes.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def expire_session(zk: Any, proxy: Proxy, direct_hosts: str) -> None:
    """Expire `zk`'s session for real and fast: keep zk (connected through `proxy`) away,
    resume its session directly, close it, then let zk reconnect (it is told "expired")."""
    from corral.client.aio import Client

    proxy.accepting = False
    proxy.cut()
    twin = Client(
        direct_hosts, timeout_s=10, session_id=zk.session_id, session_password=zk.session_password
    )
    await twin.start()
    await twin.close()
    proxy.accepting = True
