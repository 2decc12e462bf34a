"""Multi-voter Raft: one interaction test (or a few) per mechanism, on a hand-driven cluster.

Each test scripts which messages arrive; `Cluster.execute` checks the Ready contract on
every batch (granted votes and acknowledgements only after the state they vouch for is
durable).
"""

from __future__ import annotations

import random

import pytest

from corral.consensus import raft as raft_module
from corral.consensus.log_storage import MemoryLogStorage
from corral.consensus.raft import Raft
from corral.consensus.types import (
    EntryKind,
    HardState,
    Message,
    MessageKind,
    ReadState,
    Role,
    SnapshotMeta,
    SnapshotSend,
    decode_membership,
    encode_membership,
)
from corral.limits import (
    APPEND_ENTRIES_MAX,
    INFLIGHT_APPENDS_PER_PEER_MAX,
    SNAPSHOT_CHUNK_SIZE_MAX,
)
from tests.consensus.cluster import Cluster, entry

# -- elections and replication --------------------------------------------------------


def test_three_voters_elect_replicate_and_apply_in_order() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    assert [r.leader_id for r in cluster.rafts.values()] == [1, 1, 1]
    assert {r.term for r in cluster.rafts.values()} == {1}
    cluster.propose(1, b"a", b"b", b"c")
    cluster.stabilize()
    for replica_id in (1, 2, 3):
        assert cluster.data(replica_id) == [b"a", b"b", b"c"]
        assert cluster.rafts[replica_id].commit_index == 3
    assert cluster.rafts[2].propose(b"x") is None  # followers refuse proposals


def test_votes_go_out_with_the_hard_state_that_records_them() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.rafts[1].campaign()
    first = cluster.execute(1)
    assert first is not None
    # Pre-vote: nothing durable changes, the term stays.
    assert first.hard_state is None
    assert {m.kind for m in first.messages} == {MessageKind.PRE_VOTE}
    assert {m.term for m in first.messages} == {1}
    assert cluster.rafts[1].term == 0
    cluster.deliver()
    cluster.flush()  # the pre-vote grants come back
    cluster.deliver()
    second = cluster.execute(1)
    assert second is not None
    assert second.hard_state == HardState(term=1, vote=1, commit=0)
    assert {m.kind for m in second.messages} == {MessageKind.VOTE}
    cluster.stabilize()
    assert cluster.leaders() == [1]


def test_a_candidate_with_a_shorter_log_loses() -> None:
    logs = {1: [entry(1, 1)], 2: [entry(1, 1), entry(1, 2)], 3: [entry(1, 1), entry(1, 2)]}
    hard = HardState(term=1, vote=0, commit=1)
    cluster = Cluster((1, 2, 3), logs=logs, hard_states=dict.fromkeys((1, 2, 3), hard))
    cluster.rafts[1].campaign()
    cluster.stabilize()
    assert cluster.leaders() == []
    assert cluster.rafts[1].term == 1  # the pre-vote failed, so no term was spent
    cluster.elect(2)
    cluster.stabilize()
    assert cluster.rafts[1].last_index == 3  # entry 2 and the new leader's NOOP
    assert cluster.rafts[1].commit_index == 3


def test_batching_and_pipelining_are_bounded() -> None:
    cluster = Cluster((1, 2, 3), append_entries_max=4, inflight_appends_max=2)
    cluster.elect(1)
    cluster.propose(1, *(b"%d" % i for i in range(10)))
    ready = cluster.execute(1)
    assert ready is not None
    appends = [m for m in ready.messages if m.kind == MessageKind.APPEND and m.to_id == 2]
    # Ten proposals, four entries per APPEND, two APPENDs in flight per peer.
    assert [len(m.entries) for m in appends] == [4, 4]
    cluster.stabilize()
    assert cluster.data(2) == [b"%d" % i for i in range(10)]
    for message in cluster.sent(MessageKind.APPEND):
        assert len(message.entries) <= 4


def test_batching_defaults_come_from_limits() -> None:
    cluster = Cluster((1, 2))
    cluster.elect(1)
    cluster.propose(1, *(b"x" for _ in range(APPEND_ENTRIES_MAX + 1)))
    ready = cluster.execute(1)
    assert ready is not None
    sizes = [len(m.entries) for m in ready.messages if m.kind == MessageKind.APPEND]
    assert sizes == [APPEND_ENTRIES_MAX, 1]
    assert INFLIGHT_APPENDS_PER_PEER_MAX >= 2
    with pytest.raises(ValueError):
        Cluster((1, 2), append_entries_max=APPEND_ENTRIES_MAX + 1)
    with pytest.raises(ValueError):
        Cluster((1, 2), inflight_appends_max=0)


def test_lost_appends_are_sent_again() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize(lambda m: not (m.to_id == 3 and m.kind == MessageKind.APPEND))
    assert cluster.data(3) == []
    assert cluster.data(2) == [b"a"]
    cluster.tick([1], count=1)  # the heartbeat response shows 3 is short of what was sent
    assert cluster.data(3) == [b"a"]


# -- pre-vote and check-quorum --------------------------------------------------------


def test_a_partitioned_replica_does_not_inflate_its_term_and_rejoins_quietly() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.isolate(3)
    cluster.tick([3], count=10 * cluster.election_ticks)
    assert cluster.rafts[3].term == 1  # pre-vote: no quorum, no new term
    assert cluster.rafts[3].role in (Role.PRE_CANDIDATE, Role.FOLLOWER)
    cluster.heal()
    cluster.propose(1, b"after")
    cluster.tick([1, 2], count=2)
    assert cluster.leaders() == [1]
    assert cluster.rafts[1].term == 1
    assert cluster.data(3) == [b"after"]


def test_a_follower_that_stops_hearing_the_leader_cannot_disrupt_it() -> None:
    """One-way cut leader -> 3: 3 times out, but 2 still hears the leader (lease)."""
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.cut.add((1, 3))
    for _ in range(3 * cluster.election_ticks):
        cluster.tick()
    assert cluster.leaders() == [1]
    assert cluster.rafts[1].term == 1
    assert cluster.rafts[2].term == 1


def test_a_paused_leader_is_replaced_and_steps_down_when_it_resumes() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.isolate(1)  # paused: it hears nothing and sends nothing
    cluster.tick([2, 3], count=3 * cluster.election_ticks)
    leaders = cluster.leaders()
    assert len(leaders) == 2 and 1 in leaders  # 1 does not know yet
    (new_leader,) = [i for i in leaders if i != 1]
    assert cluster.rafts[new_leader].term == 2
    cluster.heal()
    cluster.tick([1], count=1)  # its heartbeats meet the new term
    assert cluster.leaders() == [new_leader]
    assert cluster.rafts[1].role == Role.FOLLOWER
    assert cluster.rafts[1].term == 2


def test_check_quorum_makes_a_cut_off_leader_step_down() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.isolate(1)
    cluster.tick([1], count=2 * cluster.election_ticks)
    assert cluster.rafts[1].role == Role.FOLLOWER
    assert cluster.rafts[1].term == 1
    assert cluster.rafts[1].propose(b"x") is None


def test_check_quorum_keeps_a_leader_that_hears_a_majority() -> None:
    cluster = Cluster((1, 2, 3, 4, 5))
    cluster.elect(1)
    cluster.isolate(4)
    cluster.isolate(5)
    cluster.cut -= {(1, 2), (2, 1), (1, 3), (3, 1)}
    cluster.tick([1, 2, 3], count=3 * cluster.election_ticks)
    assert cluster.rafts[1].role == Role.LEADER


# -- log replication and back-tracking ------------------------------------------------


def test_fast_backtracking_skips_a_term_per_round_trip() -> None:
    """Follower 3 holds 50 entries of an old term the leader never had (Raft §5.3)."""
    common = [entry(1, 1), entry(1, 2)]
    leader_log = common + [entry(3, i) for i in range(3, 30)]
    stale_log = common + [entry(2, i) for i in range(3, 53)]
    hard = HardState(term=3, vote=0, commit=2)
    cluster = Cluster(
        (1, 2, 3),
        logs={1: leader_log, 2: leader_log, 3: stale_log},
        hard_states=dict.fromkeys((1, 2, 3), hard),
    )
    cluster.elect(1)
    cluster.stabilize()
    rejections = [m for m in cluster.sent(MessageKind.APPEND_RESPONSE) if m.reject]
    assert 1 <= len(rejections) <= 2  # linear back-tracking would take ~50
    raft = cluster.rafts[3]
    assert raft.last_index == 30
    assert [raft.term_at(i) for i in (2, 3, 29, 30)] == [1, 3, 3, 4]
    assert raft.commit_index == 30


def test_follower_ahead_with_a_longer_stale_log_is_truncated() -> None:
    logs = {
        1: [entry(1, 1), entry(3, 2)],
        2: [entry(1, 1), entry(3, 2)],
        3: [entry(1, 1)] + [entry(2, i) for i in range(2, 12)],
    }
    hard = HardState(term=3, vote=0, commit=1)
    cluster = Cluster((1, 2, 3), logs=logs, hard_states=dict.fromkeys((1, 2, 3), hard))
    cluster.elect(1)
    cluster.propose(1, b"new")
    cluster.stabilize()
    assert cluster.rafts[3].last_index == 4
    assert cluster.data(3)[-1] == b"new"
    assert cluster.storages[3].last_index() == 4
    assert [e.term for e in cluster.storages[3].entries(1, 5)] == [1, 3, 4, 4]


def test_an_earlier_term_entry_commits_only_through_the_current_term() -> None:
    """Raft figure 8: index 2 (term 2) on a majority must not commit in term 4 by counting."""
    logs = {
        1: [entry(1, 1), entry(2, 2)],
        2: [entry(1, 1), entry(2, 2)],
        3: [entry(1, 1)],
        4: [entry(1, 1)],
        5: [entry(1, 1), entry(3, 2)],
    }
    hard = HardState(term=3, vote=0, commit=1)
    cluster = Cluster(
        (1, 2, 3, 4, 5),
        logs=logs,
        hard_states=dict.fromkeys((1, 2, 3, 4, 5), hard),
        append_entries_max=1,
        inflight_appends_max=1,
    )
    cluster.crash(2)
    cluster.crash(5)
    cluster.rafts[1].campaign()
    # Elect 1 (term 4) with 3 and 4, then let only the one-entry APPENDs of index 2 land.
    for _ in range(20):
        cluster.flush()
        cluster.deliver(
            lambda m: (
                not (
                    m.kind == MessageKind.APPEND
                    and m.entries
                    and m.entries[-1].index > 2
                    and cluster.rafts[m.to_id].last_index >= 2
                )
            )
        )
        if cluster.rafts[3].last_index == 2 and cluster.rafts[4].last_index == 2:
            break
    cluster.flush()
    cluster.deliver(lambda m: m.kind == MessageKind.APPEND_RESPONSE)
    cluster.flush()
    leader = cluster.rafts[1]
    assert (leader.role, leader.term) == (Role.LEADER, 4)
    assert leader.peer_match_index(3) == 2
    assert leader.peer_match_index(4) == 2
    assert leader.commit_index == 1  # on 1, 3 and 4, but of term 2
    cluster.stabilize()
    assert leader.commit_index == 3  # with the term-4 NOOP
    assert cluster.rafts[3].commit_index == 3


def test_a_follower_does_not_commit_past_what_the_leader_sent() -> None:
    """A stale suffix after the matching prefix is not covered by the leader's commit."""
    logs = {
        1: [entry(1, 1), entry(1, 2), entry(3, 3), entry(3, 4)],
        2: [entry(1, 1), entry(1, 2), entry(3, 3), entry(3, 4)],
        3: [entry(1, 1), entry(1, 2), entry(2, 3), entry(2, 4)],
    }
    hard = HardState(term=3, vote=0, commit=1)
    cluster = Cluster(
        (1, 2, 3),
        logs=logs,
        hard_states=dict.fromkeys((1, 2, 3), hard),
        append_entries_max=1,
    )
    cluster.rafts[1].campaign()
    cluster.stabilize(lambda m: m.to_id != 3 or m.kind != MessageKind.APPEND)
    assert cluster.rafts[1].commit_index == 5
    # Now a one-entry APPEND (index 2) with commit 5 reaches 3, whose 3 and 4 are stale.
    message = Message(
        kind=MessageKind.APPEND,
        from_id=1,
        to_id=3,
        term=4,
        index=1,
        log_term=1,
        entries=(entry(1, 2),),
        commit=5,
    )
    cluster.rafts[3].step(message)
    assert cluster.rafts[3].commit_index == 2
    cluster.stabilize()
    assert cluster.rafts[3].commit_index == 5
    assert [cluster.rafts[3].term_at(i) for i in range(1, 6)] == [1, 1, 3, 3, 4]


# -- learners -------------------------------------------------------------------------


def test_a_learner_is_replicated_to_but_never_counted_and_never_campaigns() -> None:
    cluster = Cluster((1, 2, 3), learners=(4,))
    assert cluster.rafts[4].role == Role.LEARNER
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.data(4) == [b"a"]
    assert cluster.rafts[4].leader_id == 1
    # With both other voters gone, the learner's acknowledgement commits nothing.
    cluster.crash(2)
    cluster.crash(3)
    cluster.propose(1, b"b")
    cluster.stabilize()
    assert cluster.rafts[4].last_index == 2
    assert cluster.rafts[1].commit_index == 1
    # And the leader steps down: a learner does not make a quorum for check-quorum.
    cluster.tick([1, 4], count=2 * cluster.election_ticks)
    assert cluster.rafts[1].role == Role.FOLLOWER
    # The learner never campaigns, however long it waits.
    cluster.tick([4], count=5 * cluster.election_ticks)
    assert cluster.rafts[4].role == Role.LEARNER
    assert cluster.rafts[4].term == 1
    assert not [m for m in cluster.sent(MessageKind.PRE_VOTE) if m.from_id == 4]


def test_a_learner_does_not_vote() -> None:
    cluster = Cluster((1, 2), learners=(3,))
    cluster.rafts[1].campaign()
    cluster.stabilize()
    assert not [m for m in cluster.sent(MessageKind.PRE_VOTE_RESPONSE) if m.from_id == 3]
    assert not [m for m in cluster.sent(MessageKind.PRE_VOTE) if m.to_id == 3]
    assert cluster.leaders() == [1]


# -- leader transfer ------------------------------------------------------------------


def test_leader_transfer_hands_over_without_an_election_timeout() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.rafts[1].transfer_leadership(2)
    assert cluster.rafts[1].propose(b"refused") is None  # no proposals while handing over
    cluster.stabilize()
    assert cluster.leaders() == [2]
    assert cluster.rafts[2].term == 2
    assert cluster.rafts[1].role == Role.FOLLOWER
    votes = [m for m in cluster.sent(MessageKind.VOTE) if m.term == 2]
    assert [m.leader_transfer for m in votes] == [True, True]
    cluster.propose(2, b"b")
    cluster.stabilize()
    assert cluster.data(1) == [b"a", b"b"]


def test_leader_transfer_to_a_lagging_peer_catches_it_up_first() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.isolate(3)
    cluster.propose(1, b"a", b"b")
    cluster.stabilize()
    cluster.heal()
    assert cluster.rafts[1].transfer_leadership(3)
    cluster.stabilize()
    assert cluster.leaders() == [3]
    assert cluster.data(3) == [b"a", b"b"]


def test_a_transfer_that_does_not_complete_is_abandoned() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.cut.add((1, 2))
    assert cluster.rafts[1].transfer_leadership(2)
    cluster.tick([1, 3], count=cluster.election_ticks)
    assert cluster.rafts[1].role == Role.LEADER
    assert cluster.rafts[1].transfer_target == 0
    assert cluster.rafts[1].propose(b"again") is not None


def test_transfer_refusals() -> None:
    cluster = Cluster((1, 2), learners=(3,))
    cluster.elect(1)
    assert not cluster.rafts[1].transfer_leadership(1)
    assert not cluster.rafts[1].transfer_leadership(3)  # a learner cannot lead
    assert not cluster.rafts[2].transfer_leadership(1)  # only the leader hands over


# -- snapshots ------------------------------------------------------------------------


def _lagging_cluster() -> Cluster:
    cluster = Cluster((1, 2, 3), chunk_size_bytes=5)
    cluster.elect(1)
    cluster.crash(3)
    cluster.propose(1, *(b"value-%d" % i for i in range(20)))
    cluster.stabilize()
    cluster.compact(1, keep_entries=2)
    assert cluster.rafts[1].first_index == 19
    return cluster


def _snapshot_chunks_in_flight(cluster: Cluster) -> list[Message]:
    """Restart 3 and run until the leader's chunks are on the wire; take them off it."""
    cluster.start(3)
    cluster.rafts[1].tick()  # a heartbeat: 3's answer shows how far behind it is
    for _ in range(10):
        cluster.flush()
        chunks = [m for m in cluster.inbox if m.kind == MessageKind.SNAPSHOT_CHUNK]
        if chunks:
            cluster.inbox = [m for m in cluster.inbox if m.kind != MessageKind.SNAPSHOT_CHUNK]
            return chunks
        cluster.deliver()
    raise AssertionError("no snapshot was sent")


def test_a_far_behind_follower_gets_the_snapshot_in_chunks() -> None:
    cluster = _lagging_cluster()
    cluster.start(3)
    cluster.tick([1, 2, 3], count=1)
    cluster.stabilize()
    assert 3 in cluster.snapshots
    assert cluster.snapshots[3] == cluster.snapshots[1]
    chunks = cluster.sent(MessageKind.SNAPSHOT_CHUNK) or [
        m for m in cluster.inbox if m.kind == MessageKind.SNAPSHOT_CHUNK
    ]
    installs = [ready.snapshot for i, ready in cluster.readies if i == 3 and ready.snapshot]
    assert len(installs) == 1
    assert installs[0] is not None and installs[0].meta.index == 20
    assert cluster.rafts[3].applied_index == 20
    assert cluster.storages[3].first_index() == 21
    del chunks
    cluster.propose(1, b"after")
    cluster.stabilize()
    assert cluster.data(3) == [b"after"]
    assert cluster.rafts[3].commit_index == cluster.rafts[1].commit_index == 21


def test_snapshot_chunks_out_of_order_and_duplicated_still_assemble() -> None:
    cluster = _lagging_cluster()
    chunks = _snapshot_chunks_in_flight(cluster)
    assert len(chunks) > 3
    assert [m.done for m in chunks].count(True) == 1
    cluster.inbox.extend(reversed(chunks + chunks[:2]))
    cluster.stabilize()
    assert cluster.snapshots[3] == cluster.snapshots[1]
    assert cluster.rafts[3].applied_index == 20


def test_a_stalled_snapshot_transfer_starts_again() -> None:
    cluster = _lagging_cluster()
    chunks = _snapshot_chunks_in_flight(cluster)
    cluster.inbox.extend(chunks[:1] + chunks[2:])  # chunk 1 is lost
    cluster.stabilize()
    assert 3 not in cluster.snapshots
    cluster.tick([1, 2, 3], count=2 * cluster.election_ticks + 1)
    assert cluster.snapshots[3] == cluster.snapshots[1]
    assert cluster.rafts[3].applied_index == 20


def test_a_restarted_replica_recovers_from_its_snapshot() -> None:
    cluster = _lagging_cluster()
    cluster.start(3)
    cluster.tick([1, 2, 3], count=1)
    cluster.stabilize()
    cluster.crash(3)
    cluster.start(3)
    raft = cluster.rafts[3]
    assert (raft.applied_index, raft.commit_index, raft.first_index) == (20, 20, 21)
    cluster.propose(1, b"later")
    cluster.stabilize()
    assert cluster.data(3) == [b"later"]


def test_compact_rejects_bad_arguments() -> None:
    cluster = Cluster((1,))
    cluster.elect(1)
    cluster.propose(1, b"a", b"b")
    cluster.stabilize()
    raft = cluster.rafts[1]
    meta = raft.snapshot_meta()
    with pytest.raises(ValueError):
        raft.compact(meta.index + 1, meta)
    cluster.propose(1, b"c")
    with pytest.raises(ValueError):
        raft.compact(1, meta.__class__(index=3, term=1, voters=(1,)))  # not applied yet
    raft.compact(1, meta)


# -- membership -----------------------------------------------------------------------


def test_membership_entries_add_a_learner_and_promote_it() -> None:
    cluster = Cluster((1, 2, 3), learners=(4,))
    cluster.elect(1)
    # Nothing of its term has committed yet: no membership change.
    assert cluster.rafts[1].propose_membership((1, 2, 3), (4,)) is None
    cluster.propose(1, b"first")
    cluster.stabilize()
    index = cluster.rafts[1].propose_membership((1, 2, 3), (4,))
    assert index is not None
    assert cluster.rafts[1].propose_membership((1, 2, 3, 4), ()) is None  # one at a time
    cluster.stabilize()
    assert cluster.rafts[1].propose_membership((1, 2, 3, 4), ()) is not None
    cluster.stabilize()
    for raft in cluster.rafts.values():
        assert raft.voters == (1, 2, 3, 4)
    assert cluster.rafts[4].role == Role.FOLLOWER
    assert cluster.rafts[1].quorum_size == 3
    membership = [e for e in cluster.applied[4] if e.kind == EntryKind.MEMBERSHIP]
    assert decode_membership(membership[-1].data) == ((1, 2, 3, 4), ())
    assert encode_membership((1, 2), (3,)) == bytes([2, 1, 2, 3])


def test_malformed_peer_messages_are_dropped() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    follower = cluster.rafts[2]
    gap = Message(
        kind=MessageKind.APPEND,
        from_id=1,
        to_id=2,
        term=1,
        index=0,
        log_term=0,
        entries=(entry(1, 2),),  # should start at index 1
        commit=2,
    )
    future = Message(
        kind=MessageKind.APPEND,
        from_id=1,
        to_id=2,
        term=1,
        index=0,
        log_term=0,
        entries=(entry(5, 1),),  # a term beyond the sender's
        commit=1,
    )
    for message in (gap, future):
        follower.step(message)
        assert follower.last_index == 0
        assert not follower.has_ready()


def test_a_restarted_voter_remembers_its_vote() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.rafts[2].campaign()
    cluster.stabilize(lambda m: m.to_id != 3)  # 3 hears nothing of it
    assert cluster.storages[1].initial_state() == HardState(term=1, vote=2, commit=0)
    cluster.crash(1)
    cluster.start(1, seed=1)
    rival = Message(kind=MessageKind.VOTE, from_id=3, to_id=1, term=1, index=0, log_term=0)
    cluster.rafts[1].step(rival)
    ready = cluster.execute(1)
    assert ready is not None
    (answer,) = [m for m in ready.messages if m.kind == MessageKind.VOTE_RESPONSE]
    assert answer.reject


def test_snapshot_chunks_cover_the_data_exactly() -> None:
    meta = SnapshotMeta(index=4, term=2, voters=(1, 2))
    send = SnapshotSend(from_id=1, to_id=2, term=3, meta=meta)
    (only,) = send.chunks(b"")
    assert (only.offset, only.data, only.done) == (0, b"", True)
    chunks = send.chunks(b"abcdef", chunk_size_bytes=3)
    assert [(m.offset, m.data, m.done) for m in chunks] == [(0, b"abc", False), (3, b"def", True)]
    assert {m.snapshot for m in chunks} == {meta}
    with pytest.raises(AssertionError):
        send.chunks(b"x", chunk_size_bytes=SNAPSHOT_CHUNK_SIZE_MAX + 1)


def test_a_snapshot_larger_than_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = _lagging_cluster()
    size_bytes = len(cluster.snapshots[1][1])
    monkeypatch.setattr(raft_module, "SNAPSHOT_SIZE_MAX", size_bytes - 1)
    chunks = _snapshot_chunks_in_flight(cluster)
    cluster.inbox.extend(chunks)
    cluster.flush()
    cluster.deliver()
    cluster.flush()
    refusals = [m for m in cluster.sent(MessageKind.SNAPSHOT_RESPONSE) if m.reject]
    assert refusals and 3 not in cluster.snapshots
    monkeypatch.setattr(raft_module, "SNAPSHOT_SIZE_MAX", size_bytes)  # exactly at the max
    cluster.tick([1, 2, 3], count=2)
    assert cluster.snapshots[3] == cluster.snapshots[1]


def test_an_abandoned_partial_snapshot_does_not_block_a_new_leaders_transfer() -> None:
    """Found by the simulation (seed 10850 at --steps 8000): a partial transfer of a
    larger snapshot from an earlier leader made the receiver drop every later chunk."""
    cluster = Cluster((1, 2, 3))
    cluster.elect(2)
    cluster.rafts[3].step(
        Message(
            kind=MessageKind.SNAPSHOT_CHUNK,
            from_id=2,
            to_id=3,
            term=1,
            snapshot=SnapshotMeta(index=99, term=1, voters=(1, 2, 3)),
            offset=0,
            data=b"partial",
        )
    )
    cluster.crash(2)  # and its transfer is abandoned
    cluster.tick([3], count=cluster.election_ticks)  # 3's lease on leader 2 runs out
    cluster.elect(1)
    assert cluster.rafts[1].term == 2
    cluster.start(2)
    cluster.propose(1, *(b"value-%d" % i for i in range(20)))
    cluster.rafts[1].tick()  # a heartbeat finds the restarted 2
    cluster.stabilize(lambda m: m.to_id != 3)
    cluster.compact(1)
    cluster.tick(count=2)
    assert cluster.snapshots[3] == cluster.snapshots[1]
    assert cluster.rafts[3].applied_index == cluster.rafts[1].applied_index


def test_a_torn_persist_is_recovered_from_the_log() -> None:
    """Entries of term 3 reached the disk, the hard state raising the term did not."""
    storage = MemoryLogStorage()
    storage.set_hard_state(HardState(term=2, vote=1, commit=0))
    storage.append([entry(1, 1), entry(3, 2)])
    raft = Raft(replica_id=2, voters=(1, 2, 3), storage=storage, rng=random.Random(0))
    assert (raft.term, raft.vote, raft.commit_index) == (3, 0, 0)
    ready = raft.ready()
    assert ready.hard_state == HardState(term=3, vote=0, commit=0)
    assert ready.must_sync


# -- reads ----------------------------------------------------------------------------


def _read_states(cluster: Cluster, replica_id: int) -> list[ReadState]:
    return [state for i, ready in cluster.readies if i == replica_id for state in ready.read_states]


def test_a_single_voter_answers_a_read_at_once() -> None:
    cluster = Cluster((1,))
    cluster.elect(1)
    assert cluster.rafts[1].read_index(7)  # empty log: nothing was ever committed
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.rafts[1].read_index(8)
    cluster.stabilize()
    assert _read_states(cluster, 1) == [
        ReadState(request_id=7, index=0),
        ReadState(request_id=8, index=1),
    ]


def test_the_leader_confirms_a_read_with_a_heartbeat_round() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.propose(1, b"a", b"b")
    cluster.stabilize()
    assert cluster.rafts[1].read_index(1)
    assert cluster.rafts[1].read_index(2)
    ready = cluster.execute(1)
    assert ready is not None and ready.read_states == ()
    heartbeats = [m for m in ready.messages if m.kind == MessageKind.HEARTBEAT]
    assert len(heartbeats) == 2  # one round for both reads
    cluster.stabilize()
    assert _read_states(cluster, 1) == [
        ReadState(request_id=1, index=2),
        ReadState(request_id=2, index=2),
    ]


def test_a_follower_read_is_forwarded_to_the_leader() -> None:
    cluster = Cluster((1, 2, 3), learners=(4,))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.rafts[4].read_index(5)
    cluster.stabilize()
    assert _read_states(cluster, 4) == [ReadState(request_id=5, index=1)]
    assert _read_states(cluster, 1) == []


def test_a_cut_off_leader_answers_no_read() -> None:
    cluster = Cluster((1, 2, 3, 4, 5))
    cluster.elect(1)
    cluster.isolate(1)
    cluster.cut -= {(1, 2), (2, 1)}  # it hears from one follower: no quorum
    assert cluster.rafts[1].read_index(1)
    cluster.tick([1], count=cluster.election_ticks - 1)
    assert _read_states(cluster, 1) == []
    assert not Cluster((1, 2, 3)).rafts[2].read_index(1)  # no leader known: refused


def test_a_new_leader_answers_reads_only_after_committing_in_its_term() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.crash(1)
    cluster.tick([3], count=cluster.election_ticks)  # 3's lease on leader 1 runs out
    cluster.rafts[2].campaign()
    for _ in range(10):  # pre-votes, then votes, but no APPEND answered yet
        cluster.flush()
        if cluster.rafts[2].role == Role.LEADER:
            break
        cluster.deliver()
    assert cluster.rafts[2].role == Role.LEADER
    assert cluster.rafts[2].commit_index < cluster.rafts[2].last_index
    assert cluster.rafts[2].read_index(9)
    cluster.stabilize()
    assert _read_states(cluster, 2) == [ReadState(request_id=9, index=2)]


def test_pending_reads_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raft_module, "READS_PENDING_MAX", 2)
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    leader = cluster.rafts[1]
    assert leader.read_index(1)
    assert leader.read_index(2)  # at the max
    assert not leader.read_index(3)  # max + 1: refused, the caller answers or retries
    cluster.stabilize()
    assert [s.request_id for s in _read_states(cluster, 1)] == [1, 2]
    assert leader.read_index(4)  # room again once they are answered


def test_a_promoted_learner_votes_before_it_applies_its_promotion() -> None:
    """Found by the simulation with membership changes: the promoted learner ignored the
    votes it now had to give, and the cluster could never elect a leader again."""
    cluster = Cluster((1,), learners=(2,))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.isolate(2)
    assert cluster.rafts[1].propose_membership((1, 2), ()) is not None
    cluster.stabilize()  # a quorum of one commits and applies it
    assert cluster.rafts[1].voters == (1, 2)
    assert cluster.rafts[2].role == Role.LEARNER  # it never heard of it
    cluster.tick([1], count=2 * cluster.election_ticks)  # check-quorum: 2 is silent
    assert cluster.rafts[1].role != Role.LEADER
    cluster.heal()
    cluster.tick([1, 2], count=3 * cluster.election_ticks)
    assert cluster.leaders() == [1]
    assert cluster.rafts[2].voters == (1, 2)
    assert cluster.rafts[2].role == Role.FOLLOWER


def test_messages_that_promise_nothing_leave_without_waiting_for_the_disk() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    leader = cluster.rafts[1]
    leader.propose(b"a")
    out = leader.ready()  # its persist is slow: still out
    assert [m.kind for m in out.messages] == [MessageKind.APPEND, MessageKind.APPEND]
    leader.propose(b"b")
    leader.tick()  # heartbeat_ticks is 1: heartbeats are due
    early = leader.take_messages()
    kinds = {m.kind for m in early}
    assert kinds == {MessageKind.HEARTBEAT}  # appends of b go with the next ready()
    follower = cluster.rafts[2]
    for message in out.messages + early:
        if message.to_id == 2:
            follower.step(message)
    # The follower's heartbeat answer may go at once; its acknowledgement of `a` may not.
    answers = follower.take_messages()
    assert {m.kind for m in answers} == {MessageKind.HEARTBEAT_RESPONSE}
    ready = follower.ready()
    assert [m.kind for m in ready.messages] == [MessageKind.APPEND_RESPONSE]
    assert [e.data for e in ready.entries] == [b"a"]
    # Not taken: they ride in the next Ready, first.
    leader.tick()
    storage = cluster.storages[1]
    storage.append(out.entries)
    leader.advance(out)
    following = leader.ready()
    assert following.messages[0].kind == MessageKind.HEARTBEAT
    assert MessageKind.APPEND in {m.kind for m in following.messages}


def test_a_leader_that_demotes_itself_hands_over_first() -> None:
    """Found by the simulation (seed 42221 at --steps 8000): the demoted leader stepped
    down at once, the remaining voter had not learned the change was committed, still
    needed the old leader's vote, and could never get it."""
    cluster = Cluster((1, 2))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    assert cluster.rafts[1].propose_membership((2,), (1,)) is not None
    cluster.stabilize()
    assert cluster.leaders() == [2]
    assert cluster.rafts[1].role == Role.LEARNER
    assert cluster.rafts[2].voters == (2,) and cluster.rafts[1].voters == (2,)
    cluster.propose(2, b"b")
    cluster.stabilize()
    assert cluster.data(1) == [b"a", b"b"]


def test_a_demoted_leader_retries_the_hand_over() -> None:
    cluster = Cluster((1, 2, 3))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    cluster.rafts[1].propose_membership((2, 3), (1,))
    cluster.stabilize(lambda m: m.kind != MessageKind.TIMEOUT_NOW)  # the first is lost
    assert cluster.rafts[1].role == Role.LEADER
    assert cluster.rafts[1].voters == (2, 3)
    assert cluster.rafts[1].propose(b"no") is None  # handing over
    cluster.tick([1, 2, 3], count=cluster.election_ticks + 1)
    (leader,) = cluster.leaders()
    assert leader in (2, 3)
    assert cluster.rafts[1].role == Role.LEARNER


def test_a_leader_that_demoted_itself_does_not_vouch_for_its_reads() -> None:
    """Found by the simulation (seed 2024 at --steps 8000): a leader no longer among the
    voters, with one voter left, answered read_index at once (quorum size 1) while that
    voter had already been handed leadership and committed newer writes."""
    cluster = Cluster((1, 2))
    cluster.elect(1)
    cluster.propose(1, b"a")
    cluster.stabilize()
    # The removal commits, but the hand-over (TIMEOUT_NOW) and everything after it from
    # 2 are lost: 1 still believes it leads, with voters (2,).
    cluster.rafts[1].propose_membership((2,), (1,))
    cluster.stabilize(lambda m: m.kind != MessageKind.TIMEOUT_NOW)
    assert cluster.rafts[1].role == Role.LEADER and cluster.rafts[1].voters == (2,)
    cluster.cut |= {(2, 1)}
    assert cluster.rafts[1].read_index(7)
    cluster.stabilize()
    states = [s for _, r in cluster.readies for s in r.read_states]
    assert all(state.request_id != 7 for state in states)  # unconfirmed: no answer
    cluster.heal()
    cluster.tick([1, 2], count=2)  # a heartbeat round with the voter confirms it
    states = [s for _, r in cluster.readies for s in r.read_states]
    assert [s.request_id for s in states if s.request_id == 7] == [7]


def test_a_voter_whose_removal_is_not_committed_still_campaigns() -> None:
    """Found by the simulation (seed 50340 at --steps 8000): the removed leader lost its
    quorum before the removal committed; the other voter, without the entry, still needed
    its vote but had the shorter log, and the removed one no longer campaigned."""
    cluster = Cluster((1, 2))
    cluster.elect(2)
    cluster.propose(2, b"a")
    cluster.stabilize()
    cluster.isolate(2)
    assert cluster.rafts[2].propose_membership((1,), (2,)) is not None
    cluster.stabilize()
    assert cluster.rafts[2].voters == (1,)  # in effect on append
    assert cluster.rafts[1].voters == (1, 2)
    cluster.tick([2], count=2 * cluster.election_ticks)  # check-quorum: 1 is silent
    assert cluster.rafts[2].role in (Role.FOLLOWER, Role.PRE_CANDIDATE)  # not a learner yet
    cluster.heal()
    cluster.tick([1, 2], count=6 * cluster.election_ticks)
    assert cluster.leaders() == [1]
    assert cluster.rafts[1].voters == (1,)
    assert cluster.rafts[2].role == Role.LEARNER
    cluster.propose(1, b"b")
    cluster.stabilize()
    assert cluster.data(2) == [b"a", b"b"]


def test_leader_unreachable_elects_a_new_leader_within_a_few_ticks() -> None:
    cluster = Cluster((1, 2, 3), election_ticks=50)
    cluster.elect(1)
    cluster.propose(1, b"before")
    cluster.stabilize()
    term = cluster.rafts[2].term
    cluster.crash(1)
    for follower in (2, 3):  # both links from the dead leader closed
        cluster.rafts[follower].leader_unreachable(1)
    cluster.tick([2, 3], count=2)  # far fewer than the 50-tick election timeout
    assert cluster.leaders() == [2]  # the lowest-ranked survivor, without a split vote
    assert cluster.rafts[2].term == term + 1
    cluster.propose(2, b"after")
    cluster.stabilize()
    assert cluster.data(3) == [b"before", b"after"]


def test_a_follower_behind_defers_to_the_next_survivor() -> None:
    cluster = Cluster((1, 2, 3), election_ticks=50)
    cluster.elect(1)
    cluster.isolate(2)
    cluster.propose(1, b"only on 1 and 3")
    cluster.stabilize()
    cluster.heal()
    cluster.crash(1)
    for follower in (2, 3):
        cluster.rafts[follower].leader_unreachable(1)
    cluster.tick([2, 3], count=3)
    # 2 asked first but its log is behind: refused; 3 asked one tick later and won.
    assert cluster.leaders() == [3]
    assert cluster.data(3) == [b"only on 1 and 3"]


def test_a_wrong_leader_unreachable_hint_does_not_disturb_a_live_leader() -> None:
    cluster = Cluster((1, 2, 3), election_ticks=50)
    cluster.elect(1)
    term = cluster.rafts[1].term
    cluster.rafts[2].leader_unreachable(1)  # a flapping link; the leader is fine
    assert cluster.rafts[2].leader_id == 0
    cluster.tick(count=3)  # 2's pre-vote is refused: 3 still hears its leader
    assert cluster.leaders() == [1]
    assert all(r.term == term for r in cluster.rafts.values())
    assert cluster.rafts[2].leader_id == 1  # the next heartbeat brought it back
    for hint in (3, 0, 2):  # not our leader: ignored
        cluster.rafts[2].leader_unreachable(hint)
        assert cluster.rafts[2].leader_id == 1
