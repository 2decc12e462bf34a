"""Service registry: providers register `address` (+ metadata) under a service name;
callers discover a live list of instances and are told when providers come and go.

Rules:
- `register(service, address, metadata)` creates the ephemeral znode
  `<root>/<service>/<address>` holding JSON `{"address": ..., "metadata": {...}}`; it
  vanishes if the provider dies (session expiry). After expiry of a live provider's
  session the registration is re-created on the new session.
- `discover(service)` returns a ServiceWatch: `instances` is refreshed by a task owned
  by the client, driven by a child watch on the service (an exists watch while the
  service node does not exist), and re-read after reconnects; `on_change` callbacks
  and `wait_for(predicate)` let callers follow it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.client.aio import BYTES, Client, Flag, SessionEvent
from corral.client.exceptions import ConnectionLoss, NodeExistsError, NoNodeError
from corral.client.recipes._common import deadline_for, delete_quietly, remaining_s

REFRESHES_MAX = 10_000_000  # refresh passes of one ServiceWatch; bounds a runaway loop
REGISTER_TRIES_MAX = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    service: str
    address: str
    metadata: dict[str, Any] = field(default_factory=dict)


class Registration:
    def __init__(self, registry: ServiceRegistry, instance: Instance, path: str) -> None:
        self.registry = registry
        self.instance = instance
        self.path = path
        self.active = True

    async def unregister(self) -> None:
        self.active = False
        await delete_quietly(self.registry.zk, self.path)


class ServiceRegistry:
    def __init__(self, zk: Client, root: str = "/services") -> None:
        self.zk = zk
        self.root = root.rstrip("/") or ""
        self._registrations: list[Registration] = []
        zk.add_listener(self._on_session_event)

    def _service_path(self, service: str) -> str:
        if not service or "/" in service:
            raise ValueError(f"invalid service name {service!r}")
        return f"{self.root}/{service}"

    def _on_session_event(self, event: SessionEvent) -> None:
        if event is SessionEvent.CONNECTED:
            for registration in self._registrations:
                if registration.active:
                    self.zk.spawn(
                        self._create(registration), name=f"re-register {registration.path}"
                    )

    async def _create(self, registration: Registration) -> None:
        instance = registration.instance
        data = json.dumps({"address": instance.address, "metadata": instance.metadata}).encode()
        for _ in range(REGISTER_TRIES_MAX):
            try:
                await self.zk.create(
                    registration.path, data, ephemeral=True, make_parents=True, codec=BYTES
                )
                return
            except NodeExistsError:
                return  # ours (a lost reply) or a stale one of a previous session, soon gone
            except ConnectionLoss:
                await self.zk.wait_connected()

    async def register(
        self, service: str, address: str, metadata: dict[str, Any] | None = None
    ) -> Registration:
        if not address or "/" in address:
            raise ValueError(f"invalid address {address!r}")
        instance = Instance(service=service, address=address, metadata=dict(metadata or {}))
        registration = Registration(self, instance, f"{self._service_path(service)}/{address}")
        self._registrations.append(registration)
        await self._create(registration)
        return registration

    async def instances(self, service: str) -> list[Instance]:
        """The instances registered right now (one read, no watch)."""
        return await self._read(service, None)

    async def _read(self, service: str, watch: Any) -> list[Instance]:
        path = self._service_path(service)
        children = await self.zk.get_children(path, watch=watch)
        result: list[Instance] = []
        for child in sorted(children):
            try:
                data, _ = await self.zk.get(f"{path}/{child}", codec=BYTES)
            except NoNodeError:
                continue
            try:
                document = json.loads(data)
                metadata = dict(document.get("metadata") or {})
                address = str(document.get("address") or child)
            except (ValueError, AttributeError):
                metadata, address = {}, child
            result.append(Instance(service=service, address=address, metadata=metadata))
        return result

    def discover(self, service: str) -> ServiceWatch:
        self._service_path(service)
        watch = ServiceWatch(self, service)
        watch.start()
        return watch


class ServiceWatch:
    """The live list of a service's instances."""

    def __init__(self, registry: ServiceRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.instances: list[Instance] = []
        self.ready = Flag()  # set after the first read
        self._changed = Flag()
        self._callbacks: list[Callable[[list[Instance]], object]] = []
        self._task: Any = None
        self._stopped = False

    @property
    def addresses(self) -> list[str]:
        return [instance.address for instance in self.instances]

    def on_change(self, callback: Callable[[list[Instance]], object]) -> None:
        self._callbacks.append(callback)

    def start(self) -> None:
        zk = self.registry.zk
        self._task = zk.spawn(self._follow(), name=f"discover {self.service}")

    def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def wait_for(
        self, predicate: Callable[[list[Instance]], bool], timeout_s: float | None = None
    ) -> bool:
        """Wait until `predicate(instances)` holds; False on timeout."""
        deadline = deadline_for(timeout_s)
        await self.ready.wait(remaining_s(deadline))
        for _ in range(REFRESHES_MAX):
            if self.ready.is_set() and predicate(self.instances):
                return True
            self._changed.clear()
            if not await self._changed.wait(remaining_s(deadline)):
                return predicate(self.instances)
        return False

    async def _follow(self) -> None:
        zk = self.registry.zk
        path = self.registry._service_path(self.service)
        for _ in range(REFRESHES_MAX):
            if self._stopped:
                return
            waiter = zk.waiter()
            try:
                instances = await self.registry._read(self.service, waiter)
            except NoNodeError:
                instances = []
                if await zk.exists(path, watch=waiter) is not None:
                    continue  # created meanwhile: read it
            except ConnectionLoss:
                await zk.wait_connected()
                continue
            if instances != self.instances or not self.ready.is_set():
                self.instances = instances
                self.ready.set()
                self._changed.set()
                for callback in list(self._callbacks):
                    callback(instances)
            await waiter.wait()  # a child change, or EXPIRED (then we read on the new session)
