"""A configuration centre: one place holds an application's settings; services reload
them the moment they change.

Run it against a server on 127.0.0.1:2181 (`corral server`, or Apache ZooKeeper):

    python examples/config_centre.py

That one command runs the demo in one process: two services ("billing" and "search",
each with its own session) read the JSON config at /examples/config/app and keep a
persistent watch on it; an admin publishes a new version every second (--updates
times, default 5) with a compare-and-set on the znode's version, so concurrent admins
never overwrite each other blindly. Each service prints the config it reloaded. It ends
after the last update has reached both services, after --duration seconds, or on Ctrl-C.

Or in two terminals:

    python examples/config_centre.py watch                     # a service following the config
    python examples/config_centre.py set feature_x=on limit=10  # publish a change
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

from corral.client import JSON, Client
from corral.client.exceptions import BadVersionError, NodeExistsError, NoNodeError

CONFIG_PATH = "/examples/config/app"
UPDATE_INTERVAL_S = 1.0
CAS_TRIES_MAX = 100  # compare-and-set attempts of one update under contention


def log(who: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {who}: {message}", flush=True)


async def publish(zk: Client, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge `changes` into the config with a versioned compare-and-set; the new config."""
    for _ in range(CAS_TRIES_MAX):
        try:
            config, stat = await zk.get(CONFIG_PATH, codec=JSON)
        except NoNodeError:
            new_config = {"revision": 1, **changes}
            try:
                await zk.create(CONFIG_PATH, new_config, codec=JSON, make_parents=True)
            except NodeExistsError:
                continue  # another admin created it first: merge into theirs
            return new_config
        new_config = {**(config or {}), **changes}
        new_config["revision"] = int((config or {}).get("revision", 0)) + 1
        try:
            await zk.set(CONFIG_PATH, new_config, stat.version, codec=JSON)
        except BadVersionError:
            continue  # changed since we read it: read again, never overwrite blindly
        return new_config
    raise RuntimeError(f"config not updated after {CAS_TRIES_MAX} tries (too much contention)")


async def follow(
    server: str, name: str, duration_s: float, *, last_revision: int | None = None
) -> int:
    """Print the config now and after every change; returns the last revision seen."""
    deadline = time.monotonic() + duration_s
    revision = 0
    async with Client(server, timeout_s=10) as zk:
        await zk.ensure_path(CONFIG_PATH.rsplit("/", 1)[0])
        # Watch first, then read: no change can slip between the read and the watch.
        async with zk.watch(CONFIG_PATH, persistent=True) as events:
            while True:
                try:
                    config, stat = await zk.get(CONFIG_PATH, codec=JSON)
                except NoNodeError:
                    log(name, "no config published yet")
                else:
                    revision = int(config.get("revision", 0))
                    log(name, f"loaded config (znode version {stat.version}): {config}")
                if last_revision is not None and revision >= last_revision:
                    return revision
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0 or await events.next(timeout_s=remaining_s) is None:
                    return revision


async def run_demo(server: str, updates: int, duration_s: float) -> int:
    deadline = time.monotonic() + duration_s
    async with Client(server, timeout_s=10) as admin:
        with contextlib.suppress(NoNodeError):
            await admin.delete(CONFIG_PATH)
        first = await publish(admin, {"feature_x": False, "limit": 10})
        log("admin", f"published {first}")
        last_revision = first["revision"] + updates
        services = [
            asyncio.create_task(follow(server, name, duration_s, last_revision=last_revision))
            for name in ("billing", "search")
        ]
        try:
            for update in range(1, updates + 1):
                await asyncio.sleep(UPDATE_INTERVAL_S)
                if time.monotonic() >= deadline:
                    break
                config = await publish(admin, {"feature_x": update % 2 == 1, "limit": 10 * update})
                log("admin", f"published {config}")
            seen = await asyncio.gather(*services)
        finally:
            for service in services:
                service.cancel()
    ok = all(revision == last_revision for revision in seen)
    log("demo", f"services reached revisions {seen}; expected {last_revision}")
    return 0 if ok else 1


def parse_assignments(items: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected key=value, got {item!r}")
        value: Any = text
        if text in ("on", "true", "off", "false"):
            value = text in ("on", "true")
        elif text.lstrip("-").isdigit():
            value = int(text)
        changes[key] = value
    return changes


async def run_set(server: str, changes: dict[str, Any]) -> int:
    async with Client(server, timeout_s=10) as zk:
        log("admin", f"published {await publish(zk, changes)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="demo", choices=("demo", "watch", "set"))
    parser.add_argument("assignments", nargs="*", help="for set: key=value ...")
    parser.add_argument("--server", default="127.0.0.1:2181", help="host:port[/chroot]")
    parser.add_argument("--updates", type=int, default=5, help="versions the demo publishes")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds at most")
    args = parser.parse_args(argv)
    if args.role == "watch":
        job = follow(args.server, "service", args.duration)
    elif args.role == "set":
        job = run_set(args.server, parse_assignments(args.assignments))
    else:
        job = run_demo(args.server, args.updates, args.duration)
    try:
        result = asyncio.run(job)
    except KeyboardInterrupt:
        return 0
    return 0 if args.role == "watch" else int(result)


if __name__ == "__main__":
    sys.exit(main())
