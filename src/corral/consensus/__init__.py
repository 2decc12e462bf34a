"""corral.consensus: Raft as a pure state machine (see raft.py for the rules)."""

from corral.consensus.log_storage import LogStorage, MemoryLogStorage
from corral.consensus.raft import Raft
from corral.consensus.types import (
    EMPTY_HARD_STATE,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SnapshotSend,
    decode_membership,
    encode_membership,
)

__all__ = [
    "EMPTY_HARD_STATE",
    "Entry",
    "EntryKind",
    "HardState",
    "LogStorage",
    "MemoryLogStorage",
    "Message",
    "MessageKind",
    "Raft",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotSend",
    "decode_membership",
    "encode_membership",
]
