"""RPC service registry: providers register ip:port, a caller discovers them and follows changes.

Run it against a server on 127.0.0.1:2181 (`corral server`, or Apache ZooKeeper):

    python examples/service_registry.py

That one command runs the whole demo in one process for --duration seconds (default
20): three "echo" RPC providers, each a real TCP server on 127.0.0.1 with its own
session, register `127.0.0.1:<port>` under /examples/services/echo (an ephemeral
znode each). A caller discovers them with a live, watched list, calls them round-robin
and prints the list whenever it changes. Every few seconds a provider shuts down (its
registration vanishes with its session) or a new one starts, and the caller follows.

Or in several terminals:

    python examples/service_registry.py provider     # one provider; start as many as you like
    python examples/service_registry.py caller       # discover them and call them

Options: --server host:port[/chroot], --duration seconds. Ctrl-C stops it sooner.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import time

from corral.client import Client
from corral.client.recipes import Instance, ServiceRegistry

SERVICE = "echo"
REGISTRY_ROOT = "/examples/services"
CALL_INTERVAL_S = 0.5
CALL_TIMEOUT_S = 2.0
CHURN_INTERVAL_S = 3.0  # the demo stops or starts a provider this often
LINE_SIZE_MAX = 4096  # bytes of one echo request or reply


def log(who: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {who}: {message}", flush=True)


class Provider:
    """An echo server on 127.0.0.1 plus its registration (its own session)."""

    def __init__(self, server: str, name: str) -> None:
        self.server = server
        self.name = name
        self.zk = Client(server, timeout_s=10)
        self.tcp: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self.tcp = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.tcp.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        await self.zk.start()
        registry = ServiceRegistry(self.zk, root=REGISTRY_ROOT)
        await registry.register(SERVICE, self.address, {"name": self.name, "pid": os.getpid()})
        log(self.name, f"serving and registered as {self.address}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.closing(writer):
            line = await reader.readline()
            writer.write(f"{self.name} echoes {line[:LINE_SIZE_MAX].decode().strip()}\n".encode())
            await writer.drain()

    async def stop(self) -> None:
        # Closing the session deletes the ephemeral registration at once; a crash would
        # leave it until the session expires.
        await self.zk.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()
        log(self.name, "stopped (registration gone with the session)")


async def call(address: str, message: str) -> str:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, int(port)), CALL_TIMEOUT_S
    )
    with contextlib.closing(writer):
        writer.write(message.encode() + b"\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), CALL_TIMEOUT_S)
    return reply[:LINE_SIZE_MAX].decode().strip()


async def run_caller(server: str, deadline: float) -> int:
    """Discover the providers, follow changes, call them round-robin; returns calls made."""
    calls_ok = 0
    async with Client(server, timeout_s=10) as zk:
        registry = ServiceRegistry(zk, root=REGISTRY_ROOT)
        providers = registry.discover(SERVICE)

        def changed(instances: list[Instance]) -> None:
            addresses = [instance.address for instance in instances]
            log("caller", f"providers now: {addresses or 'none'}")

        providers.on_change(changed)
        try:
            for number in itertools.count(1):
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(CALL_INTERVAL_S)
                addresses = providers.addresses
                if not addresses:
                    continue
                address = addresses[number % len(addresses)]
                try:
                    reply = await call(address, f"hello #{number}")
                except (OSError, TimeoutError) as e:
                    # The provider went away between the change and our call.
                    log("caller", f"call to {address} failed ({e.__class__.__name__}); next one")
                    continue
                calls_ok += 1
                log("caller", f"{address} -> {reply}")
        finally:
            providers.stop()
    return calls_ok


async def run_demo(server: str, duration_s: float) -> int:
    deadline = time.monotonic() + duration_s
    names = (f"provider-{n}" for n in itertools.count(1))
    providers = [Provider(server, next(names)) for _ in range(3)]
    for provider in providers:
        await provider.start()
    caller = asyncio.create_task(run_caller(server, deadline))
    try:
        for step in itertools.count():
            remaining_s = deadline - time.monotonic()
            if remaining_s <= CHURN_INTERVAL_S:
                break
            await asyncio.sleep(CHURN_INTERVAL_S)
            if step % 2 == 0 and len(providers) > 1:
                await providers.pop(0).stop()
            else:
                provider = Provider(server, next(names))
                await provider.start()
                providers.append(provider)
        calls_ok = await caller
    finally:
        caller.cancel()
        for provider in providers:
            await provider.stop()
    log("demo", f"done: {calls_ok} calls answered")
    return 0 if calls_ok > 0 else 1


async def run_provider(server: str, duration_s: float) -> int:
    provider = Provider(server, f"provider-{os.getpid()}")
    await provider.start()
    try:
        await asyncio.sleep(duration_s)
    finally:
        await provider.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="demo", choices=("demo", "provider", "caller"))
    parser.add_argument("--server", default="127.0.0.1:2181", help="host:port[/chroot]")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds before exiting")
    args = parser.parse_args(argv)
    if args.role == "provider":
        job = run_provider(args.server, args.duration)
    elif args.role == "caller":
        job = run_caller(args.server, time.monotonic() + args.duration)
    else:
        job = run_demo(args.server, args.duration)
    try:
        result = asyncio.run(job)
    except KeyboardInterrupt:
        return 0
    return 0 if args.role == "caller" else int(result)


if __name__ == "__main__":
    sys.exit(main())
