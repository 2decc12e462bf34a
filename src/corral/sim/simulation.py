"""Deterministic simulation of a cluster of consensus cores, from one seed.

N `Raft` cores (voters and learners) run in one process on a simulated millisecond
clock. Around them the simulation plays the driver (persist -> send -> apply -> advance,
raft.py's contract), the disk, the network and the clients, and injects faults:

* network: loss, duplication, random delay, reordering (a link is FIFO like the TCP stream
  it models, except that a message may overtake the queue, as across a reconnect),
  partitions that split the cluster in two, one-way links; messages in flight across a
  cut link are lost;
* replicas: crashes (everything not yet persisted is lost: the outstanding Ready, the
  volatile state machine, received messages; a persist under way may be torn, keeping
  the snapshot and some entries but not the hard state) and restarts from the simulated disk;
  pauses (no ticks, no delivery, no disk progress) and resumes; slow disks (a persist
  takes from 1 ms to 100 ms);
* drivers: log compaction behind a snapshot at random moments, leader transfers,
  link-loss hints (`leader_unreachable`) when a replica crashes or a cut closes links,
  membership changes (a learner promoted or a voter demoted, one at a time), and leaders
  crashing right after their commit index advanced;
* clients: propose unique values to whichever replica believes it leads, and ask any
  replica for a read index (`sync`).

Invariants, checked after every step (a millisecond): at most one leader per term; log
matching (an (index, term) pair names one entry and one preceding term everywhere, which
by induction makes equal pairs carry equal prefixes); leader completeness (a new leader
holds every entry applied anywhere before it was elected); state-machine safety (every
replica applies the same entry at each index, snapshots included); linearizable reads (a
read index covers every write acknowledged before the read was asked); and no
acknowledged proposal lost (a value the proposing leader applied is at that index on
every replica at the end, after the faults are healed and the cluster has converged).

Rules: no clock, no IO, no module-level random; one `random.Random(seed)` drives every
choice, so a seed reproduces a run exactly (`python -m corral.sim --seed N`). Everything
is bounded by `SimConfig` (steps, proposals, messages in flight).
"""

from __future__ import annotations

import heapq
import random
import struct
from collections import deque
from dataclasses import dataclass, field

from corral.consensus.log_storage import MemoryLogStorage
from corral.consensus.raft import Raft
from corral.consensus.types import (
    Entry,
    EntryKind,
    Message,
    Ready,
    Role,
    SnapshotMeta,
    decode_membership,
)

_ENTRY_HEADER = struct.Struct(">QQBI")  # index, term, kind, data length
MESSAGES_IN_FLIGHT_MAX = 100_000  # the simulated network refuses more (a bug if reached)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything a run depends on besides the seed's random stream."""

    seed: int
    voters: int = 3
    learners: int = 0
    steps: int = 4_000  # simulated milliseconds with faults
    settle_steps: int = 10_000  # then faults heal; the cluster must converge within this
    tick_ms: int = 10
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    delay_max_ms: int = 15
    loss_probability: float = 0.02
    duplicate_probability: float = 0.02
    # Peers talk over one TCP stream per link, so a link is FIFO; reordering comes from
    # reconnects, modelled as a message that ignores the queue ahead of it.
    reorder_probability: float = 0.02
    fault_probability: float = 0.004  # per millisecond: crash, pause, partition, ...
    proposal_probability: float = 0.05  # per millisecond
    snapshot_chunk_size_bytes: int = 256
    compaction_probability: float = 0.002  # per replica and millisecond
    slow_disk_probability: float = 0.05  # per persist: 20..100 ms instead of 1..3
    # A crash during a persist keeps a prefix of it (snapshot, some entries) but not the
    # hard state: the order a write-ahead log writes them in.
    torn_write_probability: float = 0.5
    leader_fault_share: float = 0.3  # how often a fault picks the leader on purpose
    # A leader that just advanced its commit index crashes: the moment when the rest of
    # the cluster knows least about what it committed.
    crash_on_commit_probability: float = 0.0
    membership_changes: bool = False  # leaders promote learners and demote voters
    take_messages_early: bool = True  # the driver sends Raft.take_messages() at once
    append_entries_max: int = 1_024
    inflight_appends_max: int = 64

    @classmethod
    def from_seed(cls, seed: int, *, steps: int = 4_000) -> SimConfig:
        """A configuration drawn from the seed, so that seeds explore shapes too."""
        rng = random.Random(seed ^ 0x5EED)
        delay_max_ms = rng.choice((2, 15, 40))
        # Raft needs round trips (plus an fsync: heartbeats wait behind it) well inside
        # the election timeout; below that, leaders churn forever, as they would anywhere.
        election_ticks = rng.choice((4, 10)) if delay_max_ms < 40 else 20
        append_entries_max = rng.choice((1, 4, 1_024))
        inflight_appends_max = rng.choice((1, 4, 64))
        proposal_probability = rng.choice((0.02, 0.05, 0.2))
        if append_entries_max * inflight_appends_max < 16:
            # A thin pipeline moves a few dozen entries a second over a slow network:
            # fewer clients, so that the cluster can catch up once the faults stop.
            proposal_probability = 0.02
        return cls(
            seed=seed,
            voters=rng.choice((1, 3, 3, 3, 5, 5)),
            election_ticks=election_ticks,
            heartbeat_ticks=rng.choice((1, 2)),
            learners=rng.choice((0, 0, 1, 2)),
            steps=steps,
            delay_max_ms=delay_max_ms,
            loss_probability=rng.choice((0.0, 0.02, 0.1)),
            duplicate_probability=rng.choice((0.0, 0.02, 0.1)),
            reorder_probability=rng.choice((0.0, 0.02, 0.2)),
            fault_probability=rng.choice((0.002, 0.005, 0.01, 0.02, 0.05)),
            proposal_probability=proposal_probability,
            compaction_probability=rng.choice((0.0, 0.002, 0.01)),
            leader_fault_share=rng.choice((0.0, 0.3, 0.7, 0.9)),
            crash_on_commit_probability=rng.choice((0.0, 0.0, 0.01, 0.1)),
            membership_changes=rng.random() < 0.3,
            take_messages_early=rng.random() < 0.5,
            append_entries_max=append_entries_max,
            inflight_appends_max=inflight_appends_max,
        )


@dataclass(slots=True, kw_only=True)
class SimResult:
    seed: int
    config: SimConfig
    violations: list[str]
    proposals: int = 0
    acknowledged: int = 0
    applied_max: int = 0
    elections: int = 0
    crashes: int = 0
    snapshots_installed: int = 0
    messages_sent: int = 0
    reads_answered: int = 0
    trace: list[str] = field(default_factory=list)  # the last events, for a failing run

    @property
    def reproduce(self) -> str:
        return f"reproduce: python -m corral.sim --seed {self.seed}"


def encode_state(applied: list[Entry]) -> bytes:
    """The simulated state machine as snapshot bytes: every applied entry, in order."""
    parts = []
    for entry in applied:
        parts.append(_ENTRY_HEADER.pack(entry.index, entry.term, entry.kind, len(entry.data)))
        parts.append(entry.data)
    return b"".join(parts)


def decode_state(data: bytes) -> list[Entry]:
    applied = []
    offset = 0
    while offset < len(data):
        index, term, kind, size = _ENTRY_HEADER.unpack_from(data, offset)
        offset += _ENTRY_HEADER.size
        payload = data[offset : offset + size]
        offset += size
        applied.append(Entry(index=index, term=term, kind=EntryKind(kind), data=payload))
    return applied


@dataclass(slots=True, kw_only=True)
class _Disk:
    """What survives a crash: the log, the hard state and the last snapshot."""

    log: MemoryLogStorage = field(default_factory=MemoryLogStorage)
    snapshot: tuple[SnapshotMeta, bytes] | None = None


@dataclass(slots=True, kw_only=True)
class _Replica:
    replica_id: int
    disk: _Disk
    raft: Raft | None = None  # None while crashed
    applied: list[Entry] = field(default_factory=list)  # the volatile state machine
    outstanding: Ready | None = None
    persist_done_ms: int = 0
    paused: bool = False
    held: list[Message] = field(default_factory=list)  # arrived while paused
    next_tick_ms: int = 0
    restarts: int = 0
    recover_ms: int = -1  # when a crashed replica restarts or a paused one resumes
    commit_seen: int = 0  # the commit index last seen while it led


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now_ms = 0
        self.voters = tuple(range(1, config.voters + 1))
        self.learners = tuple(range(config.voters + 1, config.voters + config.learners + 1))
        self.replicas: dict[int, _Replica] = {}
        for replica_id in (*self.voters, *self.learners):
            replica = _Replica(replica_id=replica_id, disk=_Disk())
            self.replicas[replica_id] = replica
            self._start(replica)
        self.network: list[tuple[int, int, Message]] = []  # heap of (deliver_ms, seq, msg)
        self.sequence = 0
        self.cut: set[tuple[int, int]] = set()  # (from, to) links that drop messages
        self.link_last_ms: dict[tuple[int, int], int] = {}  # FIFO per link
        self.heal_ms = 0  # when the current partition heals
        self.faults_on = True
        self.violations: list[str] = []
        self.trace: deque[str] = deque(maxlen=300)
        # Invariant bookkeeping.
        self.leaders: dict[int, int] = {}  # term -> leader id
        self.entry_seen: dict[tuple[int, int], tuple[EntryKind, bytes, int]] = {}
        self.committed: dict[int, Entry] = {}  # index -> entry applied somewhere
        self.proposed: dict[bytes, tuple[int, int]] = {}  # value -> (replica, index)
        self.acknowledged: dict[bytes, int] = {}  # value -> index
        self.next_value = 0
        self.reads: dict[tuple[int, int], int] = {}  # (replica, request) -> index floor
        self.next_read = 0
        self.result = SimResult(seed=config.seed, config=config, violations=self.violations)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> SimResult:
        config = self.config
        try:
            for _ in range(config.steps):
                self._step()
                if self.violations:
                    return self._finish()
            self._heal_everything()
            for _ in range(config.settle_steps):
                self._step()
                if self.violations or self._converged():
                    break
            if not self.violations and not self._converged():
                self._violation("the cluster did not converge after the faults healed")
            self._check_final()
        except AssertionError as error:
            # A core (or simulated storage) assertion: our bug, reported with the seed.
            self._violation(f"assertion failed: {error!r}")
        return self._finish()

    def _finish(self) -> SimResult:
        self.result.trace = list(self.trace)
        self.result.acknowledged = len(self.acknowledged)
        self.result.applied_max = max(self.committed, default=0)
        return self.result

    def _step(self) -> None:
        self.now_ms += 1
        if self.faults_on:
            self._maybe_fault()
        self._deliver()
        for replica in self.replicas.values():
            if replica.raft is None or replica.paused:
                continue
            while self.now_ms >= replica.next_tick_ms:
                replica.next_tick_ms += self.config.tick_ms
                replica.raft.tick()
            self._pump(replica)
        if self.faults_on and self.rng.random() < self.config.proposal_probability:
            self._propose()  # clients stop with the faults, so that the cluster can settle
        if self.faults_on and self.rng.random() < self.config.proposal_probability / 2:
            self._read()
        self._check_step()

    def _log(self, text: str) -> None:
        self.trace.append(f"{self.now_ms:>6} {text}")

    def _violation(self, text: str) -> None:
        self._log(f"VIOLATION {text}")
        self.violations.append(f"t={self.now_ms}ms {text}")

    # -- replicas and the driver ----------------------------------------------------------

    def _start(self, replica: _Replica) -> None:
        disk = replica.disk
        applied: list[Entry] = []
        if disk.snapshot is not None:
            applied = decode_state(disk.snapshot[1])
        replica.applied = applied
        # The driver restarts with the membership its state machine last applied.
        voters, learners = self.voters, self.learners
        for entry in reversed(applied):
            if entry.kind == EntryKind.MEMBERSHIP:
                voters, learners = decode_membership(entry.data)
                break
        replica.raft = Raft(
            replica_id=replica.replica_id,
            voters=voters,
            learners=learners,
            storage=disk.log,
            rng=random.Random(
                self.config.seed * 1_000 + replica.replica_id * 37 + replica.restarts
            ),
            election_ticks=self.config.election_ticks,
            heartbeat_ticks=self.config.heartbeat_ticks,
            applied=len(applied),
            append_entries_max=self.config.append_entries_max,
            inflight_appends_max=self.config.inflight_appends_max,
        )
        replica.outstanding = None
        replica.paused = False
        replica.held = []
        # Replicas tick out of phase, as separate machines do.
        replica.next_tick_ms = self.now_ms + 1 + self.rng.randrange(self.config.tick_ms)

    def _pump(self, replica: _Replica) -> None:
        raft = replica.raft
        assert raft is not None
        if self.config.take_messages_early:
            for message in raft.take_messages():
                self._send(message)
        for _ in range(100):
            if replica.outstanding is not None:
                if self.now_ms < replica.persist_done_ms:
                    return
                self._execute(replica, replica.outstanding)
                replica.outstanding = None
            if not raft.has_ready():
                return
            ready = raft.ready()
            replica.outstanding = ready
            if ready.entries or ready.hard_state is not None or ready.snapshot is not None:
                slow = self.rng.random() < self.config.slow_disk_probability
                latency_ms = self.rng.randint(20, 100) if slow else self.rng.randint(1, 3)
                replica.persist_done_ms = self.now_ms + latency_ms
            else:
                replica.persist_done_ms = self.now_ms
        raise AssertionError("Ready never ran dry")

    def _execute(self, replica: _Replica, ready: Ready) -> None:
        """Persist -> send -> apply -> advance, raft.py's contract."""
        raft = replica.raft
        assert raft is not None
        disk = replica.disk
        if ready.snapshot is not None:
            meta = ready.snapshot.meta
            disk.log.apply_snapshot(meta)
            disk.snapshot = (meta, ready.snapshot.data)
            installed = decode_state(ready.snapshot.data)
            self._log(f"r{replica.replica_id} installs snapshot at {meta.index}")
            self.result.snapshots_installed += 1
            if len(installed) != meta.index:
                self._violation(f"snapshot at {meta.index} holds {len(installed)} entries")
            for entry in installed:
                self._check_applied(replica.replica_id, entry)
            replica.applied = installed
        if ready.entries:
            disk.log.append(ready.entries)
            for entry in ready.entries:
                self._check_log_matching(replica.replica_id, entry, disk.log.term(entry.index - 1))
        if ready.hard_state is not None:
            disk.log.set_hard_state(ready.hard_state)
        for message in ready.messages:
            self._send(message)
        for send in ready.snapshot_sends:
            held = disk.snapshot
            if held is None or held[0] != send.meta:
                continue  # that snapshot is gone; the leader notices and asks again
            self._log(f"r{replica.replica_id} streams snapshot {send.meta.index} to r{send.to_id}")
            for chunk in send.chunks(held[1], self.config.snapshot_chunk_size_bytes):
                self._send(chunk)
        for state in ready.read_states:
            # A duplicated READ_INDEX may be answered twice; never one that was not asked.
            floor = self.reads.get((replica.replica_id, state.request_id))
            assert floor is not None, state
            self.result.reads_answered += 1
            if state.index < floor:
                self._violation(
                    f"r{replica.replica_id} read at {state.index} misses a write "
                    f"acknowledged at {floor} before the read"
                )
        for entry in ready.committed_entries:
            if entry.index != len(replica.applied) + 1:
                self._violation(
                    f"r{replica.replica_id} applies {entry.index} after {len(replica.applied)}"
                )
            replica.applied.append(entry)
            self._check_applied(replica.replica_id, entry)
            proposer = self.proposed.get(entry.data) if entry.kind == EntryKind.NORMAL else None
            if proposer == (replica.replica_id, entry.index):
                self.acknowledged[entry.data] = entry.index  # the client gets its answer
        raft.advance(ready)
        if (
            self.rng.random() < self.config.compaction_probability
            and raft.applied_index - raft.first_index > 8
        ):
            self._compact(replica)

    def _compact(self, replica: _Replica) -> None:
        raft = replica.raft
        assert raft is not None
        meta = raft.snapshot_meta()
        data = encode_state(replica.applied)
        assert len(replica.applied) == meta.index, (len(replica.applied), meta)
        # Keep a short tail of entries for peers that are only a little behind.
        index = max(raft.first_index - 1, meta.index - self.rng.randrange(4))
        replica.disk.snapshot = (meta, data)  # durable first
        raft.compact(index, meta)
        replica.disk.log.compact(index, meta)
        self._log(f"r{replica.replica_id} compacts to {index} (snapshot {meta.index})")

    def _crash(self, replica: _Replica) -> None:
        ready = replica.outstanding
        if (
            ready is not None
            and self.now_ms < replica.persist_done_ms
            and self.rng.random() < self.config.torn_write_probability
        ):
            kept = self.rng.randint(0, len(ready.entries))
            if ready.snapshot is not None:
                replica.disk.log.apply_snapshot(ready.snapshot.meta)
                replica.disk.snapshot = (ready.snapshot.meta, ready.snapshot.data)
            replica.disk.log.append(ready.entries[:kept])
            self._log(f"r{replica.replica_id} persists {kept} of {len(ready.entries)} entries")
        self._log(f"r{replica.replica_id} crashes")
        self.result.crashes += 1
        replica.raft = None
        replica.outstanding = None
        replica.applied = []
        replica.held = []
        replica.paused = False
        self._links_closed({(replica.replica_id, other) for other in self.replicas})

    def _links_closed(self, links: set[tuple[int, int]]) -> None:
        """What a driver sees when links close (a crash, a cut): the receiving end hears
        that it lost its link from the sender (`leader_unreachable`; a hint Raft may act
        on early, never a safety input)."""
        for sender, receiver in sorted(links):
            target = self.replicas.get(receiver)
            if receiver != sender and target is not None and target.raft is not None:
                target.raft.leader_unreachable(sender)

    def _restart(self, replica: _Replica) -> None:
        replica.restarts += 1
        self._log(f"r{replica.replica_id} restarts")
        self._start(replica)

    # -- network --------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self.result.messages_sent += 1
        if self.faults_on and self.rng.random() < self.config.loss_probability:
            return
        copies = 1
        if self.faults_on and self.rng.random() < self.config.duplicate_probability:
            copies = 2
        for _ in range(copies):
            assert len(self.network) < MESSAGES_IN_FLIGHT_MAX, "network flooded"
            deliver_ms = self.now_ms + self.rng.randint(1, self.config.delay_max_ms)
            link = (message.from_id, message.to_id)
            if not (self.faults_on and self.rng.random() < self.config.reorder_probability):
                deliver_ms = max(deliver_ms, self.link_last_ms.get(link, 0))
                self.link_last_ms[link] = deliver_ms
            self.sequence += 1
            heapq.heappush(self.network, (deliver_ms, self.sequence, message))

    def _deliver(self) -> None:
        for replica in self.replicas.values():
            if replica.held and not replica.paused and replica.raft is not None:
                held, replica.held = replica.held, []
                for message in held:
                    replica.raft.step(message)
        while self.network and self.network[0][0] <= self.now_ms:
            _, _, message = heapq.heappop(self.network)
            if (message.from_id, message.to_id) in self.cut:
                continue
            target = self.replicas[message.to_id]
            if target.raft is None:
                continue
            if target.paused:
                target.held.append(message)
                continue
            target.raft.step(message)

    # -- faults and clients ---------------------------------------------------------------

    def _maybe_fault(self) -> None:
        rng = self.rng
        if self.cut and self.now_ms >= self.heal_ms:
            self._log("network heals")
            self.cut = set()
        for replica in self.replicas.values():
            if self.now_ms == replica.recover_ms:
                if replica.raft is None:
                    self._restart(replica)
                elif replica.paused:
                    replica.paused = False
                    self._log(f"r{replica.replica_id} resumes")
        if rng.random() >= self.config.fault_probability:
            return
        replica = self.replicas[rng.choice(list(self.replicas))]
        if rng.random() < self.config.leader_fault_share:
            replica = self._a_leader() or replica  # leaders failing is what tests Raft most
        fault = rng.choice(("crash", "pause", "partition", "one_way", "transfer", "membership"))
        # Short outages make elections overlap with recoveries, long ones make logs drift.
        outage_ms = rng.choice((rng.randint(5, 100), rng.randint(100, 2_000)))
        if fault == "crash" and replica.raft is not None:
            self._crash(replica)
            replica.recover_ms = self.now_ms + outage_ms
        elif fault == "pause" and replica.raft is not None and not replica.paused:
            replica.paused = True
            replica.recover_ms = self.now_ms + outage_ms
            self._log(f"r{replica.replica_id} pauses")
        elif fault == "partition" and not self.cut and len(self.replicas) > 1:
            ids = list(self.replicas)
            rng.shuffle(ids)
            side = set(ids[: rng.randint(1, len(ids) - 1)])
            if rng.random() < self.config.leader_fault_share:
                side.add(replica.replica_id)  # often the leader ends up in the minority
            self.cut = {(a, b) for a in ids for b in ids if (a in side) != (b in side)}
            if rng.random() < 0.5:  # a cut that closes connections, not a silent one
                self._links_closed(self.cut)
            self.heal_ms = self.now_ms + outage_ms
            self._log(f"partition {sorted(side)} | {sorted(set(ids) - side)}")
        elif fault == "one_way" and len(self.replicas) > 1:
            other = rng.choice([r for r in self.replicas if r != replica.replica_id])
            link = (
                (replica.replica_id, other) if rng.random() < 0.5 else (other, replica.replica_id)
            )
            self.cut.add(link)
            if rng.random() < 0.5:
                self._links_closed({link})
            self.heal_ms = max(self.heal_ms, self.now_ms + outage_ms)
            self._log(f"link r{link[0]} -> r{link[1]} cut")
        elif fault == "transfer" and replica.raft is not None and len(replica.raft.voters) > 1:
            raft = replica.raft
            target = rng.choice([v for v in raft.voters if v != replica.replica_id])
            if raft.role == Role.LEADER and raft.transfer_leadership(target):
                self._log(f"r{replica.replica_id} transfers leadership to r{target}")
        elif fault == "membership" and self.config.membership_changes:
            self._change_membership(replica)

    def _change_membership(self, replica: _Replica) -> None:
        """The leader promotes a learner or demotes a voter (itself included): one voter
        at a time, the only change the core allows without joint consensus."""
        raft = replica.raft
        if raft is None or raft.role != Role.LEADER:
            return
        voters, learners = list(raft.voters), list(raft.learners)
        # An operator promotes a learner that has caught up; a lagging new voter would
        # stall commits (and elections) until it catches up.
        ready = [m for m in learners if (raft.peer_match_index(m) or 0) >= raft.commit_index]
        if ready and (len(voters) == 1 or self.rng.random() < 0.5):
            member = self.rng.choice(ready)
            learners.remove(member)
            voters.append(member)
        elif len(voters) > 1:
            member = self.rng.choice(voters)
            voters.remove(member)
            learners.append(member)
        else:
            return
        if raft.propose_membership(tuple(voters), tuple(learners)) is not None:
            self._log(f"r{replica.replica_id} proposes voters {voters} learners {learners}")

    def _a_leader(self) -> _Replica | None:
        leaders = [
            r
            for r in self.replicas.values()
            if r.raft is not None and not r.paused and r.raft.role == Role.LEADER
        ]
        return self.rng.choice(leaders) if leaders else None

    def _propose(self) -> None:
        leader = self._a_leader()
        if leader is None or leader.raft is None:
            return
        value = b"v%d" % self.next_value
        index = leader.raft.propose(value)
        if index is None:
            return
        self.next_value += 1
        self.result.proposals += 1
        self.proposed[value] = (leader.replica_id, index)

    def _read(self) -> None:
        """A linearizable read (or sync) at any replica: its read index must cover every
        write acknowledged before it was asked."""
        replica = self.replicas[self.rng.choice(list(self.replicas))]
        if replica.raft is None or replica.paused:
            return
        self.next_read += 1
        if replica.raft.read_index(self.next_read):
            floor = max(self.acknowledged.values(), default=0)
            self.reads[(replica.replica_id, self.next_read)] = floor

    def _heal_everything(self) -> None:
        self._log("faults stop: heal, restart, resume")
        self.faults_on = False
        self.cut = set()
        for replica in self.replicas.values():
            if replica.raft is None:
                self._restart(replica)
            replica.paused = False

    # -- invariants -----------------------------------------------------------------------

    def _check_step(self) -> None:
        for replica in self.replicas.values():
            raft = replica.raft
            if raft is None or raft.role != Role.LEADER:
                continue
            if raft.commit_index > replica.commit_seen:
                replica.commit_seen = raft.commit_index
                if self.faults_on and self.rng.random() < self.config.crash_on_commit_probability:
                    self._crash(replica)
                    replica.recover_ms = self.now_ms + self.rng.randint(5, 300)
                    continue
            known = self.leaders.get(raft.term)
            if known is None:
                self.leaders[raft.term] = replica.replica_id
                self.result.elections += 1
                self._log(f"r{replica.replica_id} leads term {raft.term}")
                self._check_leader_completeness(replica)
            elif known != replica.replica_id:
                self._violation(
                    f"two leaders in term {raft.term}: r{known} and r{replica.replica_id}"
                )

    def _check_log_matching(self, replica_id: int, entry: Entry, previous_term: int) -> None:
        key = (entry.index, entry.term)
        seen = (entry.kind, entry.data, previous_term)
        known = self.entry_seen.setdefault(key, seen)
        if known != seen:
            self._violation(f"log matching: r{replica_id} holds {entry} after term {previous_term}")

    def _check_applied(self, replica_id: int, entry: Entry) -> None:
        known = self.committed.setdefault(entry.index, entry)
        if known != entry:
            self._violation(f"r{replica_id} applies {entry} where {known} was applied")

    def _check_leader_completeness(self, replica: _Replica) -> None:
        raft = replica.raft
        assert raft is not None
        for index in range(raft.first_index, max(self.committed, default=0) + 1):
            entry = self.committed[index]
            if index > raft.last_index or raft.term_at(index) != entry.term:
                self._violation(
                    f"leader completeness: r{replica.replica_id} leads term {raft.term} "
                    f"without committed entry {index} (term {entry.term})"
                )
                return

    def _converged(self) -> bool:
        """Every replica is up and has applied everything its leader holds.

        Followers may still hold uncommitted entries of an old term: a leader whose log is
        empty appends no NOOP (raft.py), so nothing overwrites them until the next write.
        """
        leaders = [
            r.raft
            for r in self.replicas.values()
            if r.raft is not None and r.raft.role == Role.LEADER
        ]
        if not leaders:
            return False
        # The newest leader; a deposed one may not know yet (no random pick: the check
        # must not consume the seed's random stream).
        leader = max(leaders, key=lambda raft: raft.term)
        target = leader.last_index
        if leader.commit_index != target:
            return False
        for replica in self.replicas.values():
            raft = replica.raft
            if raft is None or raft.applied_index != target or raft.commit_index != target:
                return False
        return all(index <= target for index in self.acknowledged.values())

    def _check_final(self) -> None:
        for value, index in self.acknowledged.items():
            for replica in self.replicas.values():
                if len(replica.applied) < index or replica.applied[index - 1].data != value:
                    self._violation(
                        f"acknowledged {value!r} at {index} lost on r{replica.replica_id}"
                    )
                    return
        first = next(iter(self.replicas.values())).applied
        for replica in self.replicas.values():
            if replica.applied != first:
                self._violation(f"r{replica.replica_id} applied a different history")
                return


def run_simulation(seed: int, *, steps: int = 4_000) -> SimResult:
    return Simulation(SimConfig.from_seed(seed, steps=steps)).run()
