"""A fault-injecting TCP proxy for replica-to-replica links, on a thread of its own.

Rules:
* One listener per directed link (replica A to replica B), on 127.0.0.1 with an
  OS-chosen port, forwarding to B's quorum port. A dials B at the listener
  (zoo.cfg `peer.dialAddress.B`), so the test decides the fate of what A sends B.
* A link is in one `Mode` at a time: PASS forwards; DROP closes its connections and
  closes new ones at once (a cut: A sees errors and redials); BLACKHOLE keeps
  connections open and forwards nothing either way (a silent partition: nothing fails
  on A's side). Leaving BLACKHOLE closes the silenced connections, as TCP would once
  its retransmissions give up, so no stream ever resumes with a gap in it.
* Everything is bounded: live connections per link (CONNECTIONS_MAX), bytes per read
  (CHUNK_SIZE), bytes recorded (CAPTURE_SIZE_MAX), every call from the test's thread
  (CALL_TIMEOUT_S). close() stops every task and joins the thread.
* Test support only: it never runs in a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

CONNECTIONS_MAX = 32
CHUNK_SIZE = 65_536
CAPTURE_SIZE_MAX = 1024 * 1024
CALL_TIMEOUT_S = 10
UPSTREAM_CONNECT_TIMEOUT_S = 2

T = TypeVar("T")


class Mode(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    BLACKHOLE = "blackhole"


@dataclass(slots=True)
class _Link:
    source_id: int
    target_id: int
    target_port: int
    mode: Mode = Mode.PASS
    port: int = 0
    server: asyncio.Server | None = None
    pipes: set[asyncio.StreamWriter] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    captured: bytearray = field(default_factory=bytearray)  # dialer's bytes, if capturing
    capture: bool = False
    accepted_total: int = 0


class FaultNetwork:
    """Directed links between replicas, each through a proxy the test controls.

    Use as a context manager; `add_link(a, b, port_of_b)` returns the port A should dial.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._links: dict[tuple[int, int], _Link] = {}
        self._thread.start()

    def __enter__(self) -> FaultNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ test thread

    def add_link(self, source_id: int, target_id: int, target_port: int) -> int:
        """Proxy what `source_id` sends `target_id` (listening on `target_port`)."""
        link = _Link(source_id=source_id, target_id=target_id, target_port=target_port)
        self._call(self._start_link(link))
        self._links[(source_id, target_id)] = link
        return link.port

    def set_mode(self, source_id: int, target_id: int, mode: Mode) -> None:
        self._call(self._set_mode(self._links[(source_id, target_id)], mode))

    def isolate(self, replica_id: int, mode: Mode = Mode.DROP) -> None:
        """Every link to and from `replica_id` in `mode`."""
        for (source_id, target_id), link in self._links.items():
            if replica_id in (source_id, target_id):
                self._call(self._set_mode(link, mode))

    def heal(self) -> None:
        for link in self._links.values():
            self._call(self._set_mode(link, Mode.PASS))

    def links(self) -> Iterable[tuple[int, int]]:
        return tuple(self._links)

    def start_capture(self, source_id: int, target_id: int) -> None:
        """Record what the dialer sends on new connections of this link (bounded)."""
        self._links[(source_id, target_id)].capture = True

    def captured(self, source_id: int, target_id: int) -> bytes:
        return self._call(self._captured(self._links[(source_id, target_id)]))

    def accepted_total(self, source_id: int, target_id: int) -> int:
        return self._links[(source_id, target_id)].accepted_total

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CALL_TIMEOUT_S)
        assert not self._thread.is_alive(), "the proxy thread did not stop"
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=CALL_TIMEOUT_S)

    # ------------------------------------------------------------------ proxy thread

    async def _start_link(self, link: _Link) -> None:
        link.server = await asyncio.start_server(
            lambda r, w: self._accept(link, r, w), host="127.0.0.1", port=0
        )
        link.port = link.server.sockets[0].getsockname()[1]

    async def _set_mode(self, link: _Link, mode: Mode) -> None:
        previous, link.mode = link.mode, mode
        if mode is Mode.DROP or (previous is Mode.BLACKHOLE and mode is not Mode.BLACKHOLE):
            self._close_pipes(link)

    async def _captured(self, link: _Link) -> bytes:
        return bytes(link.captured)

    @staticmethod
    def _close_pipes(link: _Link) -> None:
        for writer in list(link.pipes):
            writer.close()
        link.pipes.clear()

    async def _accept(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if link.mode is Mode.DROP or len(link.pipes) >= CONNECTIONS_MAX * 2:
            writer.close()
            return
        link.accepted_total += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", link.target_port),
                timeout=UPSTREAM_CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        link.pipes.update((writer, up_writer))
        for task in (
            asyncio.create_task(self._pump(link, reader, up_writer, writer, from_dialer=True)),
            asyncio.create_task(self._pump(link, up_reader, writer, up_writer, from_dialer=False)),
        ):
            link.tasks.add(task)
            task.add_done_callback(link.tasks.discard)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        from_dialer: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(CHUNK_SIZE)
                if not data or link.mode is Mode.DROP:
                    break
                if link.mode is Mode.BLACKHOLE:
                    continue  # read and forget: the sender sees nothing wrong
                if from_dialer and link.capture:
                    room = CAPTURE_SIZE_MAX - len(link.captured)
                    link.captured += data[: max(0, room)]
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for end in (writer, other):
                end.close()
                link.pipes.discard(end)

    async def _close_all(self) -> None:
        for link in self._links.values():
            link.mode = Mode.DROP
            self._close_pipes(link)
            if link.server is not None:
                link.server.close()
                await link.server.wait_closed()
        tasks = [t for link in self._links.values() for t in link.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
