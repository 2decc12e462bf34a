"""The replica's output batch, and the order in which a driver must execute it.

Rules: an Outbox is plain data. The driver executes one Outbox completely before the
next, in the order the replica produced them, and within one Outbox:

    1. persist  append `entries` and `hard_state` to the log; fsync when `must_sync`;
                then call `Replica.on_persisted(token)`
    2. send     consensus messages to peers — only after step 1 is durable
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

from corral.consensus.types import Entry, HardState


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    token: int  # echo it in Replica.on_persisted
    entries: tuple[Entry, ...]
    hard_state: HardState | None
    must_sync: bool


@dataclass(slots=True, kw_only=True)
class Outbox:
    persist: Persist | None = None
    send: list[tuple[int, bytes]] = field(default_factory=list)  # (peer id, payload)
    reply: list[tuple[int, bytes]] = field(default_factory=list)  # (connection_id, frame)
    close: list[int] = field(default_factory=list)  # connection ids
    # Connections with more answers ready than one batch may carry: once the driver has
    # handed what it has to the client (the client read it), it calls on_output_drained.
    paused: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.persist or self.send or self.reply or self.close or self.paused)
