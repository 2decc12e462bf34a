"""A hand-driven cluster of Raft cores for interaction tests (no randomness but the cores').

The test decides which messages are delivered, cut or dropped; `execute` runs the Ready
contract exactly as a driver must (persist -> send -> apply -> advance) and checks the
parts of it a core could get wrong: a granted vote or an acknowledgement leaves only after
the state it vouches for is durable.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from corral.consensus.log_storage import MemoryLogStorage
from corral.consensus.raft import Raft
from corral.consensus.types import (
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    Ready,
    Role,
    SnapshotMeta,
)


def entry(term: int, index: int, data: bytes | None = None) -> Entry:
    return Entry(
        term=term, index=index, kind=EntryKind.NORMAL, data=data or b"%d/%d" % (term, index)
    )


class Cluster:
    def __init__(
        self,
        voters: tuple[int, ...],
        learners: tuple[int, ...] = (),
        *,
        election_ticks: int = 10,
        logs: dict[int, list[Entry]] | None = None,
        hard_states: dict[int, HardState] | None = None,
        chunk_size_bytes: int = 8,
        **raft_options: Any,  # Raft's keyword options (ints and a bool)
    ) -> None:
        self.voters = voters
        self.learners = learners
        self.election_ticks = election_ticks
        self.raft_options = raft_options
        self.chunk_size_bytes = chunk_size_bytes
        self.storages: dict[int, MemoryLogStorage] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.snapshots: dict[int, tuple[SnapshotMeta, bytes]] = {}
        self.rafts: dict[int, Raft] = {}
        self.inbox: list[Message] = []
        self.cut: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.readies: list[tuple[int, Ready]] = []  # every Ready executed, for inspection
        for replica_id in (*voters, *learners):
            storage = MemoryLogStorage()
            if logs and replica_id in logs:
                storage.append(logs[replica_id])
            if hard_states and replica_id in hard_states:
                storage.set_hard_state(hard_states[replica_id])
            self.storages[replica_id] = storage
            self.start(replica_id)

    def start(self, replica_id: int, seed: int = 0) -> None:
        applied = self.snapshots[replica_id][0].index if replica_id in self.snapshots else 0
        # The state machine restarts from the snapshot (its entries stand in as NOOPs).
        self.applied[replica_id] = [
            Entry(term=1, index=i, kind=EntryKind.NOOP, data=b"") for i in range(1, applied + 1)
        ]
        self.rafts[replica_id] = Raft(
            replica_id=replica_id,
            voters=self.voters,
            learners=self.learners,
            storage=self.storages[replica_id],
            rng=random.Random(replica_id * 100 + seed),
            election_ticks=self.election_ticks,
            applied=applied,
            **self.raft_options,
        )
        self.down.discard(replica_id)

    def crash(self, replica_id: int) -> None:
        """Volatile state is gone; the storage keeps what was persisted."""
        self.down.add(replica_id)
        self.inbox = [m for m in self.inbox if m.to_id != replica_id]

    def isolate(self, replica_id: int) -> None:
        for other in self.rafts:
            if other != replica_id:
                self.cut |= {(replica_id, other), (other, replica_id)}

    def heal(self) -> None:
        self.cut = set()

    # -- the driver -----------------------------------------------------------------------

    def execute(self, replica_id: int) -> Ready | None:
        raft = self.rafts[replica_id]
        if replica_id in self.down or not raft.has_ready():
            return None
        storage = self.storages[replica_id]
        ready = raft.ready()
        if ready.snapshot is not None:
            storage.apply_snapshot(ready.snapshot.meta)
            self.snapshots[replica_id] = (ready.snapshot.meta, ready.snapshot.data)
            self.applied[replica_id] = [
                Entry(term=1, index=i, kind=EntryKind.NOOP, data=b"")
                for i in range(1, ready.snapshot.meta.index + 1)
            ]  # the state machine is replaced by the snapshot's
        storage.append(ready.entries)
        if ready.hard_state is not None:
            storage.set_hard_state(ready.hard_state)
        durable = storage.initial_state()
        for message in ready.messages:
            if message.kind == MessageKind.VOTE_RESPONSE and not message.reject:
                assert (durable.term, durable.vote) == (message.term, message.to_id), message
            if message.kind == MessageKind.VOTE:
                assert (durable.term, durable.vote) == (message.term, replica_id), message
            if message.kind == MessageKind.APPEND_RESPONSE and not message.reject:
                assert storage.last_index() >= message.index, (message, storage.last_index())
        self.inbox.extend(ready.messages)
        for send in ready.snapshot_sends:
            meta, data = self.snapshots[replica_id]
            assert meta == send.meta, (meta, send.meta)
            self.inbox.extend(send.chunks(data, self.chunk_size_bytes))
        self.applied[replica_id].extend(ready.committed_entries)
        raft.advance(ready)
        self.readies.append((replica_id, ready))
        return ready

    def flush(self) -> None:
        for _ in range(100):
            if not any([self.execute(replica_id) for replica_id in self.rafts]):
                return
        raise AssertionError("Readies never ran dry")

    def deliver(self, keep: Callable[[Message], bool] = lambda m: True) -> int:
        """Deliver every message in flight that `keep` accepts; the rest are dropped."""
        messages, self.inbox = self.inbox, []
        delivered = 0
        for message in messages:
            if (message.from_id, message.to_id) in self.cut or message.to_id in self.down:
                continue
            if keep(message):
                self.rafts[message.to_id].step(message)
                delivered += 1
        return delivered

    def stabilize(self, keep: Callable[[Message], bool] = lambda m: True) -> None:
        for _ in range(200):
            self.flush()
            if not self.inbox:
                return
            self.deliver(keep)
        raise AssertionError("the cluster never went quiet")

    def tick(self, replica_ids: Iterable[int] | None = None, count: int = 1) -> None:
        ids = list(self.rafts) if replica_ids is None else list(replica_ids)
        for _ in range(count):
            for replica_id in ids:
                if replica_id not in self.down:
                    self.rafts[replica_id].tick()
            self.stabilize()

    def elect(self, replica_id: int) -> None:
        self.rafts[replica_id].campaign()
        self.stabilize()
        assert self.rafts[replica_id].role == Role.LEADER, self.rafts[replica_id].role

    def propose(self, replica_id: int, *values: bytes) -> list[int]:
        indexes = []
        for value in values:
            index = self.rafts[replica_id].propose(value)
            assert index is not None
            indexes.append(index)
        return indexes

    def compact(self, replica_id: int, keep_entries: int = 0) -> SnapshotMeta:
        """Snapshot the replica's applied state (the bytes stand for it) and compact."""
        raft = self.rafts[replica_id]
        meta = raft.snapshot_meta()
        data = b"|".join(e.data for e in self.applied[replica_id])
        self.snapshots[replica_id] = (meta, data)
        index = meta.index - keep_entries
        raft.compact(index, meta)
        self.storages[replica_id].compact(index, meta)
        return meta

    def data(self, replica_id: int) -> list[bytes]:
        return [e.data for e in self.applied[replica_id] if e.kind == EntryKind.NORMAL]

    def leaders(self) -> list[int]:
        return [i for i, r in self.rafts.items() if i not in self.down and r.role == Role.LEADER]

    def sent(self, kind: MessageKind) -> list[Message]:
        return [m for _, ready in self.readies for m in ready.messages if m.kind == kind]
