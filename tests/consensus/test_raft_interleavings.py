"""Raft core, single voter: random interleavings of propose / tick / campaign / ready /
persist / advance / crash-restart.

Checked: every committed entry was durable before it was handed out, committed entries
arrive contiguously after the applied index, and every proposed entry is applied exactly
once and in proposal order, unless a crash lost it before it was durable.
Hypothesis prints the failing operation list; rerun the test to reproduce it.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.consensus.log_storage import MemoryLogStorage
from corral.consensus.raft import Raft
from corral.consensus.types import EntryKind, Ready, Role

_OPERATIONS = ("propose", "propose", "tick", "campaign", "ready", "persist", "advance", "crash")


class _Driver:
    def __init__(self, seed: int, election_ticks: int) -> None:
        self.seed = seed
        self.election_ticks = election_ticks
        self.storage = MemoryLogStorage()
        self.raft = self._start(applied=0)
        self.ready: Ready | None = None
        self.persisted = False
        self.next_data = 0
        self.proposed: list[bytes] = []  # in proposal order
        self.lost: set[bytes] = set()  # proposals a crash dropped before they were durable
        self.applied_data: list[bytes] = []
        self.applied_index = 0
        self.restarts = 0

    def _start(self, applied: int) -> Raft:
        return Raft(
            replica_id=1,
            voters=(1,),
            storage=self.storage,
            rng=random.Random(self.seed),
            election_ticks=self.election_ticks,
            applied=applied,
        )

    def do(self, operation: str) -> None:
        raft = self.raft
        if operation == "propose":
            data = b"%d" % self.next_data
            index = raft.propose(data)
            if index is not None:
                self.next_data += 1
                self.proposed.append(data)
                assert index == raft.last_index
        elif operation == "tick":
            raft.tick()
        elif operation == "campaign":
            raft.campaign()
        elif operation == "ready":
            if self.ready is None and raft.has_ready():
                self.ready = raft.ready()
                self.persisted = False
                self._check_committed_are_durable(self.ready)
        elif operation == "persist":
            self._persist()
        elif operation == "advance":
            if self.ready is not None:
                self._persist()
                self._apply(self.ready)
                raft.advance(self.ready)
                self.ready = None
        elif operation == "crash":
            self._crash()
        else:
            raise AssertionError(operation)
        assert raft.commit_index <= raft.last_index
        assert raft.applied_index <= raft.commit_index

    def _persist(self) -> None:
        if self.ready is None or self.persisted:
            return
        self.storage.append(self.ready.entries)
        if self.ready.hard_state is not None:
            self.storage.set_hard_state(self.ready.hard_state)
        self.persisted = True

    def _apply(self, ready: Ready) -> None:
        for entry in ready.committed_entries:
            assert entry.index == self.applied_index + 1, (entry.index, self.applied_index)
            self.applied_index = entry.index
            if entry.kind == EntryKind.NORMAL:
                self.applied_data.append(entry.data)

    def _check_committed_are_durable(self, ready: Ready) -> None:
        for entry in ready.committed_entries:
            assert entry.index <= self.storage.last_index(), entry
            assert self.storage.entries(entry.index, entry.index + 1) == [entry]

    def _crash(self) -> None:
        # Whatever the outstanding Ready held and was not persisted is gone; durable
        # entries survive. The state machine restarts from what it had applied.
        durable = {e.data for e in self.storage.entries(1, self.storage.last_index() + 1) if e.data}
        self.lost |= {data for data in self.proposed if data not in durable}
        self.ready = None
        self.persisted = False
        self.restarts += 1
        self.raft = self._start(applied=self.applied_index)

    def finish(self) -> None:
        """Let the cluster of one settle, bounded, then check every durable proposal applied."""
        self.do("advance")
        if self.raft.role != Role.LEADER:
            self.raft.campaign()
        for _ in range(20):
            if not self.raft.has_ready():
                break
            self.do("ready")
            self.do("advance")
        assert self.raft.role == Role.LEADER
        assert not self.raft.has_ready()
        assert self.raft.applied_index == self.raft.commit_index == self.raft.last_index
        expected = [data for data in self.proposed if data not in self.lost]
        assert self.applied_data == expected
        if self.restarts == 0:
            assert self.lost == set()


@settings(max_examples=300, deadline=None, print_blob=True)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    election_ticks=st.integers(min_value=2, max_value=5),
    operations=st.lists(st.sampled_from(_OPERATIONS), max_size=80),
)
def test_every_proposal_is_applied_once_in_order(
    seed: int, election_ticks: int, operations: list[str]
) -> None:
    driver = _Driver(seed, election_ticks)
    for operation in operations:
        driver.do(operation)
    driver.finish()


@settings(max_examples=100, deadline=None, print_blob=True)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    operations=st.lists(st.sampled_from([op for op in _OPERATIONS if op != "crash"]), max_size=80),
)
def test_without_crashes_nothing_is_lost(seed: int, operations: list[str]) -> None:
    driver = _Driver(seed, election_ticks=3)
    for operation in operations:
        driver.do(operation)
    driver.finish()
    assert driver.applied_data == driver.proposed
