"""Recipes built on the public client API only (corral.client.aio.Client).

Rules: no protocol records, no session internals, no asyncio (client/aio.py exports
what a recipe needs to wait: Waiter, Flag, sleep). Every recipe is safe under
connection loss (a create whose reply was lost is found again by its unique prefix,
never repeated blindly) and under session expiry (ephemeral state is treated as lost
and re-established or reported, never assumed).

    Lock, ReadWriteLock, Semaphore       lock.py
    LeaderElection                       election.py
    Barrier, DoubleBarrier               barrier.py
    Queue                                queue.py
    Counter                              counter.py
    Party                                party.py
    ServiceRegistry, ServiceWatch        registry.py
"""

from corral.client.recipes.barrier import Barrier, DoubleBarrier
from corral.client.recipes.counter import Counter
from corral.client.recipes.election import LeaderElection
from corral.client.recipes.lock import Lock, LockLost, ReadWriteLock, Semaphore
from corral.client.recipes.party import Party
from corral.client.recipes.queue import Queue
from corral.client.recipes.registry import Instance, ServiceRegistry, ServiceWatch

__all__ = [
    "Barrier",
    "Counter",
    "DoubleBarrier",
    "Instance",
    "LeaderElection",
    "Lock",
    "LockLost",
    "Party",
    "Queue",
    "ReadWriteLock",
    "Semaphore",
    "ServiceRegistry",
    "ServiceWatch",
]
