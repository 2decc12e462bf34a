"""The replica's output batch, and the order in which a driver must execute it.

Rules: an Outbox is plain data. The driver executes one Outbox completely before the
next, in the order the replica produced them, and within one Outbox:

    0. send_now payloads that wait for nothing unpersisted (writes a follower forwards,
                their rejections, session touches, and while a persist is under way
                Raft's `take_messages()`: heartbeats, appends, heartbeat answers, read
                index traffic of a durable term): send at once, before step 1, in
                order — an earlier Outbox's `send` may still wait for its persist, and
                a forward must not overtake the forwards before it
    1. persist  install `snapshot` first if any (a snapshot received from the leader:
                make it durable as a snapshot file, atomically, and make the log start
                after `snapshot.meta.index`, so that a crash at any point recovers either
                the state before the install or the snapshot); then append `entries` and
                `hard_state` to the log; fsync when `must_sync`; then call
                `Replica.on_persisted(token)` (which replaces the data tree with the
                snapshot's)
    2. send     consensus messages to peers — only after step 1 is durable; and stream
                each of `snapshot_sends` to its peer: load the bytes of the durable
                snapshot file for `send.meta` (its content, not on the event loop) and send
                `encode_snapshot_chunks(send, content)` (replica/messages.py); if that
                snapshot is gone (purged), send nothing: Raft asks again with a newer one
    3. reply    frames to client connections, in list order (watch notifications and
                replies interleaved: a write's notifications precede its reply)
    4. close    connections to close once their frames are written
    5. paused   connections whose remaining answers wait until the client has read
                these: call `Replica.on_output_drained(connection_id)` when it has

Replies only ever acknowledge entries that were committed (durable) before this Outbox
was built, so step 3 never depends on step 1 of the same Outbox; the order above is
kept anyway so that a connection never sees frames out of order across Outboxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.consensus.types import Entry, HardState, Snapshot, SnapshotSend


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    token: int  # echo it in Replica.on_persisted
    entries: tuple[Entry, ...]
    hard_state: HardState | None
    must_sync: bool
    # A snapshot from the leader (its data: the content of a snapshot file, the
    # tree/snapshot.py encoding); installed before `entries`, which follow it.
    snapshot: Snapshot | None = None


@dataclass(slots=True, kw_only=True)
class Outbox:
    persist: Persist | None = None
    send_now: list[tuple[int, bytes]] = field(default_factory=list)  # (peer id, payload)
    send: list[tuple[int, bytes]] = field(default_factory=list)  # (peer id, payload)
    snapshot_sends: list[SnapshotSend] = field(default_factory=list)  # streamed after persist
    reply: list[tuple[int, bytes]] = field(default_factory=list)  # (connection_id, frame)
    close: list[int] = field(default_factory=list)  # connection ids
    # Connections with more answers ready than one batch may carry: once the driver has
    # handed what it has to the client (the client read it), it calls on_output_drained.
    paused: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.persist
            or self.send_now
            or self.send
            or self.snapshot_sends
            or self.reply
            or self.close
            or self.paused
        )
