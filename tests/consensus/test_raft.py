"""Raft core, single voter (standalone is a cluster of one): propose / tick / ready / advance."""

from __future__ import annotations

import random
from typing import Any

import pytest

from corral.consensus.log_storage import MemoryLogStorage
from corral.consensus.raft import Raft
from corral.consensus.types import Entry, EntryKind, HardState, Message, MessageKind, Ready, Role


def _raft(storage: MemoryLogStorage | None = None, *, seed: int = 0, **kwargs: Any) -> Raft:
    return Raft(
        replica_id=1,
        voters=(1,),
        storage=storage if storage is not None else MemoryLogStorage(),
        rng=random.Random(seed),
        **kwargs,
    )


def _execute(raft: Raft, storage: MemoryLogStorage, applied: list[Entry]) -> Ready:
    """One driver cycle in contract order: persist, (send), apply, advance."""
    ready = raft.ready()
    storage.append(ready.entries)
    if ready.hard_state is not None:
        storage.set_hard_state(ready.hard_state)
    assert ready.messages == ()  # a single voter has nobody to talk to
    applied.extend(ready.committed_entries)
    raft.advance(ready)
    return ready


def _drain(raft: Raft, storage: MemoryLogStorage, applied: list[Entry]) -> list[Ready]:
    readies = []
    for _ in range(10):
        if not raft.has_ready():
            return readies
        readies.append(_execute(raft, storage, applied))
    raise AssertionError("Ready never ran dry")


def _leader() -> tuple[Raft, MemoryLogStorage, list[Entry]]:
    storage = MemoryLogStorage()
    raft = _raft(storage)
    applied: list[Entry] = []
    raft.campaign()
    _drain(raft, storage, applied)
    assert raft.role == Role.LEADER
    return raft, storage, applied


def test_fresh_single_voter_elects_itself_step_by_step() -> None:
    storage = MemoryLogStorage()
    raft = _raft(storage)
    applied: list[Entry] = []
    assert (raft.role, raft.term, raft.leader_id, raft.last_index) == (Role.FOLLOWER, 0, 0, 0)
    assert not raft.has_ready()

    raft.campaign()
    assert (raft.role, raft.term, raft.vote) == (Role.CANDIDATE, 1, 1)
    assert raft.propose(b"early") is None

    first = _execute(raft, storage, applied)
    assert first.hard_state == HardState(term=1, vote=1, commit=0)
    assert first.entries == ()
    assert first.must_sync
    # The vote is durable now, so it counts: leader. Its log is empty, so there is no
    # earlier-term entry to commit and no NOOP is needed.
    assert (raft.role, raft.leader_id) == (Role.LEADER, 1)
    assert raft.last_index == 0
    assert raft.commit_index == 0
    assert not raft.has_ready()

    assert raft.propose(b"first") == 1
    second = _execute(raft, storage, applied)
    assert second.entries == (Entry(term=1, index=1, kind=EntryKind.NORMAL, data=b"first"),)
    assert second.hard_state is None
    assert second.committed_entries == ()
    assert second.must_sync
    assert raft.commit_index == 1

    third = _execute(raft, storage, applied)
    assert third.hard_state == HardState(term=1, vote=1, commit=1)
    assert third.committed_entries == second.entries
    assert not third.must_sync  # only the commit index changed
    assert raft.applied_index == 1
    assert not raft.has_ready()
    assert storage.initial_state() == HardState(term=1, vote=1, commit=1)


def test_term_and_vote_must_be_persisted_before_leading() -> None:
    storage = MemoryLogStorage()
    raft = _raft(storage)
    raft.campaign()
    ready = raft.ready()
    assert ready.hard_state == HardState(term=1, vote=1, commit=0)
    # Handed out but not yet acknowledged: still a candidate, proposals refused.
    assert raft.role == Role.CANDIDATE
    assert raft.propose(b"x") is None
    assert storage.initial_state().term == 0
    storage.set_hard_state(ready.hard_state)
    raft.advance(ready)
    assert raft.role == Role.LEADER


def test_a_stale_persisted_vote_does_not_elect() -> None:
    storage = MemoryLogStorage()
    raft = _raft(storage, election_ticks=3)
    raft.campaign()
    ready = raft.ready()
    # The election times out again before the driver finishes: term 2 now.
    for _ in range(6):
        raft.tick()
        if raft.term == 2:
            break
    assert (raft.role, raft.term) == (Role.CANDIDATE, 2)
    assert ready.hard_state is not None
    storage.set_hard_state(ready.hard_state)
    raft.advance(ready)
    assert raft.role == Role.CANDIDATE  # the term-1 vote is no vote for term 2
    following = raft.ready()
    assert following.hard_state == HardState(term=2, vote=1, commit=0)
    storage.set_hard_state(following.hard_state)
    raft.advance(following)
    assert (raft.role, raft.term) == (Role.LEADER, 2)


def test_committed_only_after_advance() -> None:
    raft, storage, applied = _leader()
    index = raft.propose(b"a")
    assert index == 1
    assert raft.last_index == 1
    ready = raft.ready()
    assert [e.data for e in ready.entries] == [b"a"]
    assert ready.committed_entries == ()
    assert raft.commit_index == 0  # not durable yet
    # A proposal while the Ready is out waits for the next one.
    assert raft.propose(b"b") == 2
    assert not raft.has_ready()  # one Ready at a time
    storage.append(ready.entries)
    raft.advance(ready)
    assert raft.commit_index == 1
    following = raft.ready()
    assert [e.data for e in following.entries] == [b"b"]
    assert [e.data for e in following.committed_entries] == [b"a"]
    assert following.hard_state == HardState(term=1, vote=1, commit=1)
    storage.append(following.entries)
    storage.set_hard_state(following.hard_state)
    applied.extend(following.committed_entries)
    raft.advance(following)
    assert raft.applied_index == 1
    assert raft.commit_index == 2
    _drain(raft, storage, applied)
    assert [e.data for e in applied if e.kind == EntryKind.NORMAL] == [b"a", b"b"]
    assert [e.index for e in applied] == [1, 2]


def test_advance_checks_that_the_driver_persisted() -> None:
    raft, _storage, _applied = _leader()
    raft.propose(b"a")
    ready = raft.ready()
    with pytest.raises(AssertionError):
        raft.advance(ready)  # entries were never appended to storage


def test_ready_twice_without_advance_is_a_bug() -> None:
    raft, _storage, _applied = _leader()
    raft.propose(b"a")
    raft.ready()
    with pytest.raises(AssertionError):
        raft.ready()


def test_election_timeout_is_randomized_within_one_to_two_election_ticks() -> None:
    for seed in range(20):
        raft = _raft(seed=seed, election_ticks=5)
        ticks = 0
        while raft.role == Role.FOLLOWER and ticks < 100:
            raft.tick()
            ticks += 1
        assert raft.role == Role.CANDIDATE, f"seed {seed}"
        assert 5 <= ticks < 10, f"seed {seed}: campaigned after {ticks} ticks"


def test_leader_ignores_campaign_and_ticks() -> None:
    raft, _storage, _applied = _leader()
    raft.campaign()
    for _ in range(50):
        raft.tick()
    assert (raft.role, raft.term, raft.leader_id) == (Role.LEADER, 1, 1)


def test_restart_redelivers_committed_entries_and_commits_the_rest() -> None:
    raft, storage, applied = _leader()
    for data in (b"a", b"b", b"c"):
        raft.propose(data)
    _drain(raft, storage, applied)
    assert raft.commit_index == 3
    # Two more entries become durable, but the process dies before they commit.
    raft.propose(b"d")
    raft.propose(b"e")
    ready = raft.ready()
    storage.append(ready.entries)
    assert storage.initial_state() == HardState(term=1, vote=1, commit=3)

    restarted = _raft(storage, seed=1, applied=2)
    assert (restarted.role, restarted.term, restarted.commit_index) == (Role.FOLLOWER, 1, 3)
    assert restarted.applied_index == 2
    assert restarted.last_index == 5
    again: list[Entry] = []
    redelivery = _execute(restarted, storage, again)
    assert [e.data for e in redelivery.committed_entries] == [b"c"]
    assert redelivery.entries == ()
    assert redelivery.hard_state is None
    assert restarted.propose(b"f") is None  # a follower does not accept proposals

    for _ in range(2 * 10):  # election_ticks=10: the timeout is under 20 ticks
        restarted.tick()
    assert (restarted.role, restarted.term) == (Role.CANDIDATE, 2)
    _drain(restarted, storage, again)
    assert (restarted.role, restarted.leader_id) == (Role.LEADER, 1)
    # d and e (term 1) commit through the term-2 NOOP.
    assert [(e.term, e.kind, e.data) for e in again[1:]] == [
        (1, EntryKind.NORMAL, b"d"),
        (1, EntryKind.NORMAL, b"e"),
        (2, EntryKind.NOOP, b""),
    ]
    assert restarted.commit_index == restarted.applied_index == 6
    assert storage.initial_state() == HardState(term=2, vote=1, commit=6)


def test_restart_from_a_hard_state_alone_keeps_the_term() -> None:
    storage = MemoryLogStorage()
    storage.set_hard_state(HardState(term=5, vote=0, commit=0))
    raft = _raft(storage)
    assert raft.term == 5
    raft.campaign()
    applied: list[Entry] = []
    _drain(raft, storage, applied)
    assert raft.term == 6
    assert raft.role == Role.LEADER
    assert applied == []  # an empty log needs no NOOP


def test_construction_rules() -> None:
    storage = MemoryLogStorage()
    rng = random.Random(0)
    with pytest.raises(ValueError):
        Raft(replica_id=4, voters=(1, 2, 3), storage=storage, rng=rng)
    with pytest.raises(ValueError):
        Raft(replica_id=1, voters=(1, 2), storage=storage, rng=rng, learners=(2,))
    with pytest.raises(ValueError):
        Raft(replica_id=4, voters=(), storage=storage, rng=rng, learners=(4,))
    with pytest.raises(ValueError):
        Raft(replica_id=2, voters=(1,), storage=storage, rng=rng)
    with pytest.raises(ValueError):
        Raft(replica_id=0, voters=(0,), storage=storage, rng=rng)
    with pytest.raises(ValueError):
        Raft(replica_id=1, voters=(1, 1), storage=storage, rng=rng)
    with pytest.raises(ValueError):
        Raft(replica_id=1, voters=(1, 256), storage=storage, rng=rng)
    with pytest.raises(ValueError):
        Raft(replica_id=1, voters=(1,), storage=storage, rng=rng, applied=1)
    with pytest.raises(ValueError):
        Raft(replica_id=1, voters=(1,), storage=storage, rng=rng, election_ticks=0)


def test_messages_from_non_members_are_dropped() -> None:
    raft, _storage, _applied = _leader()
    raft.step(Message(kind=MessageKind.VOTE, from_id=7, to_id=1, term=99, log_term=99, index=99))
    assert (raft.role, raft.term) == (Role.LEADER, 1)
    assert not raft.has_ready()
    with pytest.raises(AssertionError):
        raft.step(Message(kind=MessageKind.APPEND, from_id=7, to_id=2, term=1))


@pytest.mark.parametrize("checked", [True, False])
def test_invariant_checks_run_only_when_asked(
    checked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = Raft._check_invariants

    def counting(self: Raft) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(Raft, "_check_invariants", counting)
    storage = MemoryLogStorage()
    raft = Raft(
        replica_id=1,
        voters=(1,),
        storage=storage,
        rng=random.Random(0),
        check_invariants=checked,
    )
    raft.campaign()
    applied: list[Entry] = []
    _drain(raft, storage, applied)
    assert raft.propose(b"x") is not None
    _drain(raft, storage, applied)
    assert [e.data for e in applied if e.kind == EntryKind.NORMAL] == [b"x"]
    assert bool(calls) == checked
